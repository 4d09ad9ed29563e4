"""md-check: liquid-water MD of a potential (short runs on OpenMM's CPU platform).

The short protocol (64 waters, 5.5 Å cutoff, 0.5 ps in all) runs in seconds; it cannot give
converged structure, but it separates a physical liquid from a collapsing one.
"""

import json
import math

import numpy as np
import pytest

pytest.importorskip("openmm", reason="md-check needs OpenMM (pip install openmm)")

from mctsff.cli import main  # noqa: E402
from mctsff.expr.params import Potential  # noqa: E402
from mctsff.water import mdcheck as mc  # noqa: E402
from mctsff.water.mdcheck import dft_forces, stability  # noqa: E402
from mctsff.water.models import model_potential  # noqa: E402

CUTOFF = 5.5  # 64 waters: box 12.4 Å >= 2.2 cutoffs
SHORT = mc.WaterProtocol(
    n_molecules=64,
    equilibration_ps=0.1,
    npt_ps=0.2,
    nvt_ps=0.1,
    nve_ps=0.1,
    sample_fs=25.0,
    threads=1,
)


@pytest.mark.slow
def test_qspcfw_liquid_is_stable_at_a_physical_density():
    res = mc.run_water("q-spcfw", SHORT, cutoff=CUTOFF)
    assert res["stable"], res["failure"]
    assert res["n_molecules"] == 64
    assert 0.8 < res["density"] < 1.2
    assert res["liquid"]
    assert res["min_distance"] > 1.2  # hydrogen bonds, no overlaps
    assert 0.85 < res["min_bond"] and res["max_bond"] < 1.2
    drift, se = res["nve_drift_kT_ps_per_molecule"], res["nve_drift_stderr_kT_ps_per_molecule"]
    assert abs(drift) - 2 * se < SHORT.max_drift
    peak = res["peaks"]["O-O"]
    assert 2.6 < peak["r"] < 3.0 and peak["g"] > 2.0


def test_published_potential_through_the_exporter_matches_pme_structure():
    """q-SPC/Fw's intermolecular form as a mctsff Potential (CustomNonbondedForce, shifted
    force) also gives a stable liquid: the exporter path runs in MD."""
    base = model_potential("q-spcfw")
    pot = Potential(
        base.program,
        base.params,
        base.species,
        base.type_pairs,
        cutoff=CUTOFF,
        scheme="shifted-force",
    )
    res = mc.run_water(pot, SHORT, cutoff=CUTOFF)
    assert res["stable"], res["failure"]
    assert 0.8 < res["density"] < 1.2
    # 0.1 ps of NVE sampled every 25 fs: too few samples to judge the drift by
    assert res["nve_drift_judged"] is False
    assert 2.6 < res["peaks"]["O-O"]["r"] < 3.0


def test_attractive_potential_without_wall_is_unstable():
    broken = Potential("-C/r**6", {"C": 50.0}, ("H", "O"), cutoff=CUTOFF, scheme="shifted-force")
    res = mc.run_water(broken, SHORT, cutoff=CUTOFF)
    assert not res["stable"]
    assert not res["liquid"]
    assert "nve" not in res["segments_done"]
    assert any(w in res["failure"] for w in ("apart", "bond", "non-finite", "OpenMM", "box"))


def test_density_drift_judges_a_settled_and_a_moving_density():
    rng = np.random.default_rng(0)
    t = 2.0 + 0.05 * np.arange(40)  # the second half of a 4 ps NPT segment
    rows = [{"t_ps": x} for x in t]
    flat = 1.0 + 0.005 * rng.standard_normal(t.size)
    falling = 0.70 - 0.07 * (t - 2.0) + 0.005 * rng.standard_normal(t.size)
    settled = stability._density_drift(rows, flat)
    assert settled["density_settled"] is True and abs(settled["density_drift"]) < 0.01
    moving = stability._density_drift(rows, falling)
    assert moving["density_settled"] is False
    assert moving["density_drift"] == pytest.approx(-0.07, abs=0.01)
    k = mc.MIN_DRIFT_SAMPLES - 1
    few = stability._density_drift(rows[:k], falling[:k])
    assert few["density_settled"] is None


@pytest.mark.slow
def test_water_without_intermolecular_forces_is_not_a_liquid():
    """A negligible potential (no cohesion): the barostat expands the box and the density
    is still falling at the end of NPT. Its mean lies inside 0.5-1.5 g/cm³, yet it is not
    a liquid; q-SPC/Fw under the same protocol is."""
    from dataclasses import replace

    proto = replace(SHORT, npt_ps=1.0, min_distance=1e-3)
    gas = Potential("A/r**12", {"A": 1e-12}, ("H", "O"), cutoff=CUTOFF, scheme="shifted-force")
    res = mc.run_water(gas, proto, cutoff=CUTOFF)
    assert res["stable"], res["failure"]
    assert res["density_drift"] < 0 and res["density_settled"] is False
    assert not res["liquid"]
    water = mc.run_water("q-spcfw", proto, cutoff=CUTOFF)
    assert water["stable"] and water["density_settled"] is True and water["liquid"]


def test_rdf_distance_and_peaks_on_the_experimental_reference():
    r, g = mc.experimental_rdf()
    assert mc.first_peak(r, g["O-O"], "O-O") == {"r": 2.79, "g": 2.4953}
    same = mc.rdf_distance(r, g["O-O"], r, g["O-O"])
    assert same["rms"] == 0.0 and same["iae"] == 0.0
    shifted = mc.rdf_distance(r, np.interp(r - 0.1, r, g["O-O"]), r, g["O-O"])
    assert shifted["rms"] > 0.1 and shifted["iae"] > 0.1
    assert mc.rdf_distance(r + 20.0, g["O-O"], r, g["O-O"])["rms"] is None


def test_dft_rdf_and_forces():
    r, g = mc.dft_rdf()
    assert r[-1] < 6.3  # half the 12.445 Å box
    assert 2.6 < mc.first_peak(r, g["O-O"], "O-O")["r"] < 3.0
    out = mc.dft_force_rmse([("intra", None), ("q", "q-spcfw")], cutoff=CUTOFF, frames=2)
    assert out["supercell"] == 1 and out["frames"] == 2
    # the q-SPC/Fw bonds and angles explain part of the DFT forces (eV/Å)
    assert out["rmse"]["intra"] < out["force_rms_dft"]
    assert math.isfinite(out["rmse"]["q"]) and out["rmse"]["q"] < 2 * out["force_rms_dft"]
    # per molecule the bonds and angles cancel: they leave the DFT net forces and torques whole
    ref = out["molecule_rms_dft"]
    assert out["molecule_rmse"]["intra"] == pytest.approx(ref, rel=1e-4)
    # q-SPC/Fw explains about half of them (0.142 of 0.277 eV/Å, 0.116 of 0.215 eV)
    for k in ("force", "torque"):
        assert out["molecule_rmse"]["q"][k] < 0.7 * ref[k]


def test_molecule_net_force_and_torque():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 3))  # two "waters", O H H each
    # pair forces inside each molecule (any bond or angle term is a sum of such) cancel
    f = np.zeros_like(x)
    for m in range(2):
        for i, j in ((0, 1), (0, 2), (1, 2)):
            a, b = 3 * m + i, 3 * m + j
            fij = rng.normal() * (x[a] - x[b])
            f[a] += fij
            f[b] -= fij
    net, torque = dft_forces.molecule_forces_torques(x, f)
    assert np.allclose(net, 0, atol=1e-12) and np.allclose(torque, 0, atol=1e-12)
    # a force proportional to mass (a uniform field) has no torque about the centre of mass
    g = np.array([0.3, -0.2, 0.5])
    mass = np.tile([mc.MASSES["O"], mc.MASSES["H"], mc.MASSES["H"]], 2)
    net, torque = dft_forces.molecule_forces_torques(x, mass[:, None] * g)
    assert np.allclose(net, np.outer([18.0154, 18.0154], g))
    assert np.allclose(torque, 0, atol=1e-12)
    # a force on one H about the centre of mass: r x F
    f = np.zeros_like(x)
    f[1] = [1.0, 0.0, 0.0]
    com = (mass[:3, None] * x[:3]).sum(0) / mass[:3].sum()
    net, torque = dft_forces.molecule_forces_torques(x, f)
    assert np.allclose(torque[0], np.cross(x[1] - com, f[1])) and np.allclose(torque[1], 0)


def write_run(tmp_path, expr, params):
    point = {"expression": expr, "complexity": 7, "params": params, "rmse_valid": 0.05}
    (tmp_path / "pareto.json").write_text(json.dumps([point]))
    run = {"species": ["H", "O"], "type_pairs": [["H", "H"], ["H", "O"], ["O", "O"]]}
    run.update(cutoff=CUTOFF, variables=["r"], cutoff_scheme="shifted-force", wall=0.5)
    (tmp_path / "run.json").write_text(json.dumps(run))
    return tmp_path


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["md-check", "water", str(tmp_path / "missing")]) == 2
    assert "no such run folder" in capsys.readouterr().err
    run = write_run(tmp_path, "A/r**12", {"A": 1.0})
    assert main(["md-check", "water", str(run), "--index", "3"]) == 2
    assert "out of range" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_water_check_writes_report_and_plot(tmp_path, capsys):
    base = model_potential("q-spcfw")
    run = write_run(tmp_path, str(base.program.expression), dict(base.params))
    args = ["md-check", "water", str(run), "--index", "0", "--molecules", "64"]
    args += ["--equilibration", "0.1", "--npt", "0.1", "--nvt", "0.1", "--nve", "0.05"]
    args += ["--threads", "1", "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "q-SPC/Fw" in out and "wrote" in out
    report = json.loads((run / "md-check" / "water.json").read_text())
    assert set(report["models"]) == {"member 0", "q-SPC/Fw"}
    assert report["member"]["cutoff_scheme"] == "shifted-force"
    assert report["models"]["member 0"]["stable"]
    dist = report["models"]["q-SPC/Fw"]["distance"]
    assert set(dist["experiment"]) == {"O-O", "O-H", "H-H"} and "O-O" in dist["dft"]
    assert set(report["dft_forces"]["rmse"]) == {"intramolecular only", "member 0", "q-SPC/Fw"}
    assert set(report["dft_forces"]["molecule_rmse"]) == set(report["dft_forces"]["rmse"])
    assert "per molecule, net force" in out
    assert (run / "md-check" / "rdf.png").stat().st_size > 10_000


def test_kj_mol_nm_to_ev_ang_is_defined_once():
    """md-check's force conversion is the one of the solvent-force module (it was defined
    in both): 1 kJ/mol/nm is 1/964.853 eV/Å."""
    from mctsff.water import md

    assert dft_forces.KJ_MOL_NM_TO_EV_ANG is md.KJ_MOL_NM_TO_EV_ANG
    assert math.isclose(md.KJ_MOL_NM_TO_EV_ANG * 964.853, 1.0, rel_tol=1e-5)


# --------------------------------------------------------------------------------------------
# search(..., md_rerank=N): the check on the best front members after a search
# --------------------------------------------------------------------------------------------

#: Two forms: Coulomb alone (under the strict wall its charges must all have one sign, and it
#: then barely beats U = 0: not on the front) and Coulomb + per-pair r^-12 + dispersion (a
#: liquid).
TWO_FORMS = """// @variables r
start: PROD_CONST "/r"                                          -> coulomb
     | PROD_CONST "/r+" PAIR_CONST "/r**12-" GEOM_CONST "/r**6"  -> coulomb_lj
PROD_CONST: "Q"
PAIR_CONST: "P"
GEOM_CONST: "E"
"""

#: Neutral charges and an r^-12 wall that holds at 0.5 Å (dU/dr = -28 eV/Å for H-O) but is
#: too weak beyond: H-O turns attractive at 0.67 Å, so H atoms fall onto other molecules.
SHALLOW_WALL = (
    "prod_c1/r+pair_c2/r**12",
    {"prod_c1[O]": -0.8, "prod_c1[H]": 0.4, "pair_c2[H-H]": 1e-3, "pair_c2[H-O]": 3e-4,
     "pair_c2[O-O]": 1e-3},
)  # fmt: skip


def test_search_md_rerank_writes_scores_and_records_the_unstable_member(tmp_path):
    import csv
    from dataclasses import asdict

    from mctsff import Fitter, dataset_path, load_dataset, search
    from mctsff.engines.pareto import ParetoFront
    from mctsff.fit.result import FitResult
    from mctsff.water.rerank import md_rerank, rerank_order

    grammar = tmp_path / "two.lark"
    grammar.write_text(TWO_FORMS)
    train, valid, _ = load_dataset(dataset_path("water-dimers"), cutoff=CUTOFF).split_holdout(
        0.2, 0.2, seed=0
    )
    # max_drift: 0.1 ps of NVE on 64 waters is too short to judge the drift at 0.05 kT/ps
    options = {**asdict(SHORT), "max_drift": 0.2}
    out = tmp_path / "run"
    res = search(Fitter(train, valid), grammar, budget=5, out=out, md_rerank=2, md_options=options)
    lj = "prod_c1/r+pair_c1/r**12-geom_c1/r**6"
    by_expr = {p["expression"]: p for p in json.loads((out / "pareto.json").read_text())}
    assert set(by_expr) == {lj}
    liquid = by_expr[lj]["md_check"]
    assert res.best.expression == lj and liquid["order"] == 0
    assert liquid["stable"] and liquid["failure"] is None, liquid["failure"]
    assert 0.5 < liquid["density"] < 1.5 and 2.6 < liquid["oo_peak_r"] < 3.3
    assert 0 < liquid["rms_exp_OO"] < 2 and 0 < liquid["rms_dft_OO"] < 2
    assert liquid["n_molecules"] == 64 and math.isfinite(liquid["nve_drift"])
    with open(out / "pareto.csv", newline="") as fh:
        rows = {r["expression"]: r for r in csv.DictReader(fh)}
    row = rows[lj]
    assert row["md_stable"] == "1" and float(row["md_rms_exp_OO"]) == liquid["rms_exp_OO"]
    front = ParetoFront.from_json(out / "pareto.json")  # the scores read back
    assert {p.extra["md_check"]["stable"] for p in front.points} == {True}
    assert (out / "pareto.png").stat().st_size > 10_000
    # a member whose wall record holds (as a fit to data whose shortest distances are
    # 0.6 Å would give: strict at 0.5 Å only, as half of 0.6 Å is inside the wall radius)
    # and whose strict end holds: checked, and recorded unstable
    expr, params = SHALLOW_WALL
    front = ParetoFront(null_loss=1.0)
    front.update(FitResult(expr, 9, params=params, rmse_valid=0.05, rmse_train=0.05,
                           constraints={"wall": 0.0}, species=("H", "O"), cutoff=CUTOFF,
                           cutoff_scheme="shifted-force",
                           type_pairs=(("H", "H"), ("H", "O"), ("O", "O")),
                           extra={"wall_shortest": [0.6, 0.6, 0.6]}))  # fmt: skip
    assert len(rerank_order(front)) == 1
    (shallow,) = md_rerank(front, 2, SHORT)
    scores = shallow.extra["md_check"]
    assert scores["stable"] is False and "apart" in scores["failure"]
    assert scores["density"] is None and scores["rms_exp_OO"] is None


def test_md_rerank_refuses_data_that_is_not_water_before_the_search(tmp_path, capsys):
    from mctsff import Fitter, dataset_path, load_dataset, search
    from mctsff.search import SearchError

    ds = load_dataset(dataset_path("ala2-solvent"), cutoff=4.0, frames=[0, 1])
    with pytest.raises(SearchError, match="atom types are .*not H and O"):
        search(Fitter(ds), "pair", budget=5, out=tmp_path / "run", md_rerank=1)
    assert not (tmp_path / "run").exists()
    args = ["search", "water-dimers", "--cutoff", str(CUTOFF), "--out", str(tmp_path / "r2")]
    assert main([*args, "--md-rerank", "1", "--md-option", "npt_ps=-1", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--md-rerank" in err[0] and "npt_ps" in err[0]
    assert not (tmp_path / "r2").exists()

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
    settled = mc._density_drift(rows, flat)
    assert settled["density_settled"] is True and abs(settled["density_drift"]) < 0.01
    moving = mc._density_drift(rows, falling)
    assert moving["density_settled"] is False
    assert moving["density_drift"] == pytest.approx(-0.07, abs=0.01)
    few = mc._density_drift(rows[: mc.MIN_DRIFT_SAMPLES - 1], falling[: mc.MIN_DRIFT_SAMPLES - 1])
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
    assert (run / "md-check" / "rdf.png").stat().st_size > 10_000


def test_solvent_member_force_equals_the_fit_on_the_fits_pairs():
    """The member on alanine dipeptide (CustomBondForce from the exporter's energy string,
    topology exclusions up to 2 bonds) gives the forces mctsff's Potential gives on the
    dataset with exclude_bonded_pairs(ds, 2): same pairs, same shifted potential."""
    import openmm
    from openmm import app, unit

    from mctsff.data import data_file, load_dataset
    from mctsff.water.md import exclude_bonded_pairs

    ds = exclude_bonded_pairs(load_dataset(data_file(mc.SOLVENT_FILE), 12.0, frames=[0]), 2)
    params = {"prod_c1[C]": 0.9, "prod_c1[H]": 1.23, "prod_c1[N]": -1.94, "prod_c1[O]": -3.6}
    pot = Potential(
        "prod_c1*erf(c1*r) + pair_B/r**6",
        {
            **params,
            "c1": 0.38,
            **{f"pair_B[{a}-{b}]": 0.1 * k for k, (a, b) in enumerate(ds.type_pairs)},
        },
        ds.species,
        ds.type_pairs,
        cutoff=12.0,
        scheme="shifted-force",
    )
    ref, _ = pot.forces(ds)
    topology = app.PDBFile(str(data_file(mc.SOLUTE_PDB))).topology
    excluded = set(mc._excluded_pairs(topology, 2))
    species = [a.element.symbol for a in topology.atoms()]
    n = len(species)
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n) if (i, j) not in excluded]
    assert len(pairs) == ds.n_pairs == 174
    system = openmm.System()
    for _ in range(n):
        system.addParticle(1.0)
    system.addForce(mc._member_pair_force(pot, species, pairs))
    ctx = openmm.Context(
        system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference")
    )
    ctx.setPositions(ds.positions[:n] / 10.0)
    f = ctx.getState(getForces=True).getForces(asNumpy=True)
    f = np.asarray(f.value_in_unit(unit.kilojoule_per_mole / unit.nanometer))
    assert np.abs(f * mc.KJ_MOL_NM_TO_EV_ANG - ref).max() < 1e-6 * np.abs(ref).max()


def test_kj_mol_nm_to_ev_ang_is_defined_once():
    """md-check's force conversion is the one of the solvent-force module (it was defined
    in both): 1 kJ/mol/nm is 1/964.853 eV/Å."""
    from mctsff.water import md

    assert mc.KJ_MOL_NM_TO_EV_ANG is md.KJ_MOL_NM_TO_EV_ANG
    assert math.isclose(md.KJ_MOL_NM_TO_EV_ANG * 964.853, 1.0, rel_tol=1e-5)


def test_js_divergence_and_dihedrals():
    p = np.array([1.0, 0.0, 0.0, 0.0])
    assert mc.js_divergence(p, p) == 0.0
    assert math.isclose(mc.js_divergence(p, np.array([0.0, 1.0, 0.0, 0.0])), 1.0)
    phi, psi = mc.reference_angles()
    assert len(phi) == len(psi) == 300
    assert np.all(np.abs(phi) <= 180.0)
    # explicit-solvent alanine dipeptide at 300 K: phi mostly negative (beta / alpha_R)
    assert np.mean(phi < 0) > 0.8


def test_halves_divergence_tells_a_converged_histogram_from_a_drifting_one():
    """The solvent check reported no convergence figure; the halves' divergence is 0 for a
    series whose halves are alike, 1 when the halves visit different basins, and in the
    report and its printed summary for each run and the reference."""
    rng = np.random.default_rng(0)
    beta = np.column_stack([rng.uniform(-170, -50, 400), rng.uniform(100, 170, 400)])
    alpha = np.column_stack([rng.uniform(-90, -50, 400), rng.uniform(-60, -20, 400)])
    steady = mc.halves_js_divergence(*np.vstack([beta, beta]).T, 36)
    assert set(steady) == {"phi", "psi", "phi-psi"} and all(v == 0.0 for v in steady.values())
    drift = mc.halves_js_divergence(*np.vstack([beta, alpha]).T, 36)
    assert drift["psi"] == 1.0 and drift["phi-psi"] == 1.0 and 0 < drift["phi"] < 1
    assert mc.halves_js_divergence(np.array([1.0]), np.array([1.0]), 36) == {}
    ref = mc.halves_js_divergence(*mc.reference_angles(), 36)  # 150 frames each
    assert 0.1 < ref["phi-psi"] < 0.25
    report = {
        "member": {"index": 0, "expression": "c1/r"},
        "js_divergence_to_explicit": {"vacuum": drift},
        "js_divergence_between_halves": {"reference": ref, "vacuum": drift},
        "runs": {"vacuum": {"stable": True}},
    }
    text = mc.solvent_summary(report)
    line = f"between the halves of each run: reference {ref['phi-psi']:.4f}, vacuum 1.0000"
    assert sum(line in x for x in text.splitlines()) == 1


def test_explicit_reference_from_tsv_extxyz_and_the_fit_data(tmp_path):
    """md-check solvent compared with the 300 ps fit trajectory only; now the reference is
    a series the user names (TSV or a solvent-forces extxyz) with its length, and the report's
    summary says which one it used."""
    import ase.io

    from mctsff.data import data_file

    fit = mc.explicit_reference("fit-data")
    assert (fit["kind"], fit["samples"], fit["length_ps"], fit["sample_ps"]) == (
        "fit-data", 300, 300.0, 1.0
    )  # fmt: skip
    phi, psi = mc.reference_angles()
    np.testing.assert_array_equal(fit["phi"], phi)
    tsv = tmp_path / "ref.tsv"
    mc.write_angles_tsv(tsv, [0.5, 1.0, 1.5, 2.0], phi[:4], psi[:4], ["made by a test"])
    got = mc.explicit_reference(tsv)
    assert (got["kind"], got["samples"], got["length_ps"], got["sample_ps"]) == (
        "file", 4, 2.0, 0.5
    )  # fmt: skip
    np.testing.assert_allclose(got["psi"], psi[:4], atol=0.005)
    xyz = tmp_path / "three.extxyz"
    ase.io.write(xyz, ase.io.read(data_file(mc.SOLVENT_FILE), ":3"), format="extxyz")
    got = mc.explicit_reference(xyz)
    assert (got["samples"], got["length_ps"]) == (3, 3.0)
    np.testing.assert_allclose(got["phi"], phi[:3])
    report = {
        "member": {"index": 0, "expression": "c1/r"},
        "reference": {"file": "ref.tsv", "samples": 4, "length_ps": 2.0},
        "fit_data_js_to_reference": {"phi": 0.1, "psi": 0.2, "phi-psi": 0.3},
        "js_divergence_to_explicit": {},
        "runs": {},
    }
    text = mc.solvent_summary(report).splitlines()
    assert "explicit-solvent reference: ref.tsv (4 samples, 2 ps)" in text
    assert sum("against it: JS phi / psi / phi-psi 0.1000 / 0.2000 / 0.3000" in x for x in text)


def test_shipped_long_reference_is_the_default_and_longer_than_the_fit_data():
    ref = mc.explicit_reference()
    assert ref["kind"] == "long" and ref["file"] == mc.LONG_REFERENCE_FILE
    assert ref["length_ps"] >= 1000.0 and ref["samples"] >= 1000
    assert np.all(np.abs(ref["phi"]) <= 180.0) and np.mean(ref["phi"] < 0) > 0.8


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("time_ps\tphi\tpsi\n1\t0\t0\n", "line 1: expected the header"),
        ("time_ps\tphi_deg\tpsi_deg\n1\t0\t0\n2\t-181\t0\n", "line 3: angles must lie"),
        ("time_ps\tphi_deg\tpsi_deg\n1\t0\t0\n1\t0\t0\n", "line 3: time_ps must increase"),
        ("# c\ntime_ps\tphi_deg\tpsi_deg\n1\t0\tx\n", "line 3: expected three numbers"),
        ("time_ps\tphi_deg\tpsi_deg\n1\t0\t0\n", "fewer than two rows"),
    ],
)
def test_bad_reference_tsv_is_one_error_line(tmp_path, capsys, text, why):
    bad = tmp_path / "bad.tsv"
    bad.write_text(text)
    assert main(["md-check", "solvent", str(tmp_path), "--reference", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"bad.tsv: {why}" in err


def test_reference_extxyz_of_another_molecule_is_refused(tmp_path):
    from mctsff.data import data_file

    with pytest.raises(mc.MDCheckError, match="frame 0: the atoms are not"):
        mc.explicit_reference(data_file("water_dimers_mp2_sample20.extxyz"))
    with pytest.raises(mc.MDCheckError, match="no such file"):
        mc.explicit_reference(tmp_path / "missing.extxyz")


@pytest.mark.slow
def test_solvent_check_runs_and_reports_divergences(tmp_path):
    sp = ["C", "H", "N", "O"]
    params = {"prod_c1[C]": 0.9, "prod_c1[H]": 1.23, "prod_c1[N]": -1.94, "prod_c1[O]": -3.6}
    point = {"expression": "prod_c1*erf(c1*r)", "complexity": 7, "params": {**params, "c1": 0.38}}
    (tmp_path / "pareto.json").write_text(json.dumps([point]))
    run = {"species": sp, "type_pairs": [[a, b] for i, a in enumerate(sp) for b in sp[i:]]}
    run.update(cutoff=12.0, variables=["r"], cutoff_scheme="shifted-force")
    (tmp_path / "run.json").write_text(json.dumps(run))
    protocol = mc.SolventProtocol(equilibration_ps=1.0, production_ps=10.0, threads=1)
    rep = mc.solvent_check(tmp_path, 0, protocol=protocol, progress=False)
    js = rep["js_divergence_to_explicit"]
    assert set(js) == {"vacuum", "vacuum + member 0"}
    assert all(0.0 <= v <= 1.0 for d in js.values() for v in d.values())
    halves = rep["js_divergence_between_halves"]
    assert set(halves) == {"reference", "vacuum", "vacuum + member 0"}
    assert all(0.0 <= v <= 1.0 for d in halves.values() for v in d.values())
    saved = json.loads((tmp_path / "md-check" / "solvent.json").read_text())
    assert saved["js_divergence_between_halves"] == halves
    assert rep["runs"]["vacuum + member 0"]["member_pairs"] == 174
    assert saved["reference"]["kind"] == "long" and saved["reference"]["length_ps"] >= 1000
    assert set(saved["fit_data_js_to_reference"]) == {"phi", "psi", "phi-psi"}
    assert (tmp_path / "md-check" / "ramachandran.png").is_file()


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

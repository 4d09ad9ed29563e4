"""md-check solvent: alanine dipeptide's phi/psi in vacuum with and without a member, against
explicit solvent (angles, divergences, the reference series, the member's pair force)."""

import json
import math

import numpy as np
import pytest

pytest.importorskip("openmm", reason="md-check needs OpenMM (pip install openmm)")

from mctsff.cli import main  # noqa: E402
from mctsff.expr.params import Potential  # noqa: E402
from mctsff.water import mdcheck as mc  # noqa: E402
from mctsff.water.mdcheck import solvent  # noqa: E402


def test_solvent_member_force_equals_the_fit_on_the_fits_pairs():
    """The member on alanine dipeptide (CustomBondForce from the exporter's energy string,
    topology exclusions up to 2 bonds) gives the forces mctsff's Potential gives on the
    dataset with exclude_bonded_pairs(ds, 2): same pairs, same shifted potential."""
    import openmm
    from openmm import app, unit

    from mctsff.data import data_file, load_dataset
    from mctsff.water.md import KJ_MOL_NM_TO_EV_ANG, exclude_bonded_pairs

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
    excluded = set(solvent._excluded_pairs(topology, 2))
    species = [a.element.symbol for a in topology.atoms()]
    n = len(species)
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n) if (i, j) not in excluded]
    assert len(pairs) == ds.n_pairs == 174
    system = openmm.System()
    for _ in range(n):
        system.addParticle(1.0)
    system.addForce(solvent._member_pair_force(pot, species, pairs))
    ctx = openmm.Context(
        system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference")
    )
    ctx.setPositions(ds.positions[:n] / 10.0)
    f = ctx.getState(getForces=True).getForces(asNumpy=True)
    f = np.asarray(f.value_in_unit(unit.kilojoule_per_mole / unit.nanometer))
    assert np.abs(f * KJ_MOL_NM_TO_EV_ANG - ref).max() < 1e-6 * np.abs(ref).max()


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

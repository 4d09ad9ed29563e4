"""Solvent forces from explicit-water MD (OpenMM)."""

import importlib.util
from pathlib import Path

import ase.io
import numpy as np
import pytest

from mctsff.data import data_file, load_dataset
from mctsff.water.md import (
    FORCEFIELD_FILES,
    NONBONDED_GROUP,
    add_solvent_switch,
    exclude_bonded_pairs,
    solvate,
    solvent_force_on_solute,
    solvent_forces,
)

try:
    import openmm
    from openmm import app, unit
except ImportError:  # pragma: no cover - optional dependency
    openmm = app = unit = None

needs_openmm = pytest.mark.skipif(
    openmm is None, reason="solvent-force tests need OpenMM (pip install openmm)"
)
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ALA = "ala2_solvent_forces.extxyz"


KJ = None if unit is None else unit.kilojoule_per_mole / unit.nanometer


def _context(system, positions):
    plat = openmm.Platform.getPlatformByName("Reference")
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), plat)
    ctx.setPositions(positions)
    return ctx


def _forces(ctx, groups=None):
    kw = {} if groups is None else {"groups": groups}
    return ctx.getState(getForces=True, **kw).getForces(asNumpy=True).value_in_unit(KJ)


@pytest.fixture(scope="module")
def prepared():
    if openmm is None:
        pytest.skip("solvent-force tests need OpenMM (pip install openmm)")
    sol = solvate()
    assert len(sol.solute) == 22 and sol.n_waters == 231 and sol.box_nm >= 2.0
    original = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(sol.system))
    solvent = np.setdiff1d(np.arange(sol.system.getNumParticles()), sol.solute)
    add_solvent_switch(sol.nonbonded, solvent)
    ctx = _context(sol.system, sol.positions)  # the Modeller's geometry is good enough here
    return sol, original, ctx, sol.positions


def test_switch_on_is_the_original_system(prepared):
    sol, original, ctx, pos = prepared
    ref = _forces(_context(original, pos))
    np.testing.assert_allclose(_forces(ctx), ref, rtol=0, atol=1e-6 * np.abs(ref).max())


def test_solvent_force_equals_full_minus_solute_alone(prepared):
    sol, _, ctx, pos = prepared
    f = solvent_force_on_solute(ctx, sol.solute)
    assert ctx.getParameter("solv") == 1.0
    # independent: the solute alone in the same periodic box (same PME), subtracted from the
    # nonbonded force of the full system
    mod = app.Modeller(sol.topology, pos)
    mod.delete([r for r in mod.topology.residues() if r.name == "HOH"])
    alone = app.ForceField(*FORCEFIELD_FILES).createSystem(
        mod.topology, nonbondedMethod=app.PME, nonbondedCutoff=1.0 * unit.nanometer
    )
    for force in alone.getForces():
        is_nb = isinstance(force, openmm.NonbondedForce)
        force.setForceGroup(NONBONDED_GROUP if is_nb else 0)
    f_alone = _forces(_context(alone, mod.positions), {NONBONDED_GROUP})
    f_full = _forces(ctx, {NONBONDED_GROUP})[sol.solute]
    scale = np.abs(f).max()
    assert scale > 10.0  # kJ/mol/nm: the solvent does push
    np.testing.assert_allclose(f, f_full - f_alone, atol=1e-6 * scale)


@pytest.mark.slow
@needs_openmm
def test_solvent_forces_file(tmp_path):
    out = tmp_path / "ala.extxyz"
    info = solvent_forces(None, out, 3, stride=10, equilibration_ps=0.02, progress=False)
    assert info["n_frames"] == 3 and info["n_atoms"] == 22 and info["n_waters"] == 231
    frames = ase.io.read(out, ":")
    assert len(frames) == 3
    for k, f in enumerate(frames):
        assert f.info["frame"] == k and f.info["n_waters"] == 231
        assert f.get_chemical_formula() == "C6H12N2O2"
        assert f.arrays["atom_name"][1] == "CH3"
        assert not f.pbc.any()
        # whole molecule (not wrapped): every bond under 2 Å
        assert f.get_distance(1, 4) < 2.0
    ds = load_dataset(out, 12.0)
    assert ds.force_array == "forces" and not ds.intermolecular and ds.mol is None
    assert ds.species == ("C", "H", "N", "O") and len(ds.type_pairs) == 10
    assert ds.n_pairs == 3 * 22 * 21 // 2  # every solute pair within 12 Å
    rms = np.sqrt(np.mean(ds.forces**2))
    assert rms == pytest.approx(info["force_rms"])
    assert 0.05 < rms < 10.0  # eV/Å: instantaneous solvent forces are large


def test_shipped_solvent_forces():
    ds = load_dataset(data_file(ALA), 12.0)
    assert ds.n_frames == 300 and ds.n_atoms == 300 * 22 and ds.mol is None
    assert ds.n_pairs == 300 * 231
    assert 0.1 < np.sqrt(np.mean(ds.forces**2)) < 0.2  # eV/Å (measured 0.143)


def test_exclude_bonded_pairs():
    ds = load_dataset(data_file(ALA), 12.0, frames=[0, 7])
    one = exclude_bonded_pairs(ds, 1)
    two = exclude_bonded_pairs(ds, 2)
    three = exclude_bonded_pairs(ds, 3)
    # alanine dipeptide: 21 bonds, 36 angles (1-3 pairs), 41 unique 1-4 pairs
    assert ds.n_pairs == 2 * 231
    assert (one.n_pairs, two.n_pairs, three.n_pairs) == (2 * 210, 2 * 174, 2 * 133)
    assert one.r.min() > 1.5 and ds.r.min() < 1.2
    np.testing.assert_array_equal(two.forces, ds.forces)
    assert two.subset([1]).n_pairs == 174
    with pytest.raises(ValueError):
        exclude_bonded_pairs(ds, 0)


@pytest.mark.slow
def test_alanine_example_runs(tmp_path):
    spec = importlib.util.spec_from_file_location("ala_example", EXAMPLES / "alanine_dipeptide.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    argv = ["--frames", "6", "--budget", "4", "--time", "60", "--workers", "1"]
    summary = mod.main(argv + ["--out", str(tmp_path)])
    assert summary["n_frames"] == 6 and summary["exclude_bonds"] == 2
    assert summary["n_evaluations"] == 4
    # four fits on six frames may leave no member that beats U = 0 by more than the
    # validation frames resolve: the front is then empty and the verdict says so
    assert all(m["gain_vs_zero"] > 0 for m in summary["front"])
    assert not summary["non_trivial"] or summary["front"]
    assert summary["verdict"].startswith("no non-trivial") is not summary["non_trivial"]
    assert (tmp_path / "pareto.png").is_file() and (tmp_path / "summary.json").is_file()

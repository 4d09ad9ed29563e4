"""Solvent forces on a solute from explicit-water MD (OpenMM): data for implicit-solvent fits.

:func:`solvent_forces` solvates a solute (amber14-all + amber14/tip3p, cubic box with
``padding_nm`` of water, PME with a 1 nm cutoff, H-bond constraints, rigid water), minimises,
equilibrates with a Langevin thermostat (300 K, 1/ps, 2 fs; NVT at the Modeller's density) and
then writes one frame every ``stride`` steps:

* the solute geometry (positions in Å, element species, the molecule kept whole, no cell) and
* per-atom ``forces`` = the exact force of the solvent on each solute atom in eV/Å
  (1 kJ/mol/nm = 0.001036427 eV/Å, from :mod:`ase.units`), plus per-atom ``atom_name``
  (PDB names) and info ``frame``, ``time_ps``, ``n_waters``, ``temperature_K``, ``box_nm``,
  ``forcefield``.

The exact solvent force.  A global parameter ``solv`` is added to the NonbondedForce; every
solvent particle gets charge 0 and ε 0 plus ``addParticleParameterOffset("solv", i, q, 0, ε)``,
so ``solv = 1`` is the unchanged system and ``solv = 0`` switches the solvent off.  The nonbonded
forces on the solute atoms at ``solv = 1`` minus those at ``solv = 0`` are the solute–solvent
forces: the solute–solute terms (direct, exceptions and PME reciprocal space, including the
solute's periodic images) are identical in both and cancel.  Force groups cannot do this: they
cannot split solute–solvent pairs inside one NonbondedForce.

Which pairs the fitted potential acts on.  An implicit-solvent pair potential replaces the solvent
by an effective interaction between solute atoms, so the frames carry no ``mol`` array and
:func:`mctsff.data.load_dataset` keeps *all* solute–solute pairs within the cutoff (bonded ones
included), as in the originating study; the target is the instantaneous solvent force.  Such
forces are large and noisy (RMS ≈ 0.14 eV/Å for alanine dipeptide at 300 K).  Beware of bonded
pairs: with H-bond constraints an X–H distance is fixed, so a pair term on it is a constant force
along the bond, and it fits the large mean solvent push along polar bonds (≈ 0.21 eV/Å outward on
the amide H atoms) without describing anything a constrained simulation would feel.
:func:`exclude_bonded_pairs` removes pairs up to n bonds apart (1–2 and 1–3 by default, as a force
field's nonbonded exclusions); see ``docs/reproduction.md``.

OpenMM is optional (``pip install "mctsff[md]"``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from ase import units

__all__ = [
    "KJ_MOL_NM_TO_EV_ANG",
    "MDError",
    "SolvatedSystem",
    "add_solvent_switch",
    "exclude_bonded_pairs",
    "solvate",
    "solvent_force_on_solute",
    "solvent_forces",
]

#: kJ/mol/nm → eV/Å.
KJ_MOL_NM_TO_EV_ANG: float = units.kJ / units.mol / units.nm

#: Force fields used for the solute and the water.
FORCEFIELD_FILES: tuple[str, str] = ("amber14-all.xml", "amber14/tip3p.xml")

#: Force group that holds the NonbondedForce (all other forces go to group 0).
NONBONDED_GROUP: int = 1


class MDError(RuntimeError):
    """OpenMM is missing, or the system cannot be built or simulated."""


def _openmm():
    try:
        import openmm
        from openmm import app, unit
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MDError("solvent forces need OpenMM: pip install openmm (or 'mctsff[md]')") from exc
    return openmm, app, unit


@dataclass
class SolvatedSystem:
    """A solvated solute ready for simulation.

    Attributes
    ----------
    topology : openmm.app.Topology
        Solute followed by the water.
    positions : openmm.unit.Quantity
        Initial positions.
    system : openmm.System
        The force-field system; the NonbondedForce is in :data:`NONBONDED_GROUP`.
    nonbonded : openmm.NonbondedForce
        The system's NonbondedForce (with the ``solv`` switch once
        :func:`add_solvent_switch` ran).
    solute : ndarray of int
        Particle indices of the solute atoms.
    symbols : list of str
        Element symbols of the solute atoms.
    atom_names : list of str
        PDB atom names of the solute atoms.
    n_waters : int
        Number of water molecules.
    box_nm : float
        Edge of the cubic box in nm.
    """

    topology: Any
    positions: Any
    system: Any
    nonbonded: Any
    solute: np.ndarray
    symbols: list[str]
    atom_names: list[str]
    n_waters: int
    box_nm: float


def solvate(
    pdb: str | os.PathLike[str] | None = None,
    *,
    padding_nm: float = 1.0,
    cutoff_nm: float = 1.0,
) -> SolvatedSystem:
    """Solvate a solute in TIP3P and build its amber14 system (PME).

    Parameters
    ----------
    pdb : str or path-like, optional
        Solute PDB with hydrogens (default: the shipped alanine dipeptide).
    padding_nm : float
        Minimum water layer around the solute (nm).  The box edge is raised to at least
        ``2 * cutoff_nm`` when needed.
    cutoff_nm : float
        Real-space cutoff of PME (nm).

    Returns
    -------
    SolvatedSystem

    Raises
    ------
    MDError
        For a missing OpenMM, an unreadable PDB, or residues the force field does not know.
    """
    openmm, app, unit = _openmm()
    if pdb is None:
        from mctsff.data import data_file

        pdb = data_file("alanine_dipeptide.pdb")
    try:
        structure = app.PDBFile(os.fspath(pdb))
    except Exception as exc:
        raise MDError(f"{pdb}: cannot read PDB ({type(exc).__name__}: {exc})") from exc
    ff = app.ForceField(*FORCEFIELD_FILES)
    modeller = app.Modeller(structure.topology, structure.positions)
    n_solute = modeller.topology.getNumAtoms()
    try:
        modeller.addSolvent(ff, model="tip3p", padding=padding_nm * unit.nanometer)
        vecs = modeller.topology.getPeriodicBoxVectors()
        edge = max(v.value_in_unit(unit.nanometer) for v in (vecs[0][0], vecs[1][1], vecs[2][2]))
        if edge < 2 * cutoff_nm:
            modeller = app.Modeller(structure.topology, structure.positions)
            size = 2 * cutoff_nm * 1.0001
            modeller.addSolvent(ff, model="tip3p", boxSize=openmm.Vec3(size, size, size))
            edge = size
        system = ff.createSystem(
            modeller.topology,
            nonbondedMethod=app.PME,
            nonbondedCutoff=cutoff_nm * unit.nanometer,
            constraints=app.HBonds,
            rigidWater=True,
        )
    except Exception as exc:
        raise MDError(f"{pdb}: cannot build the system ({type(exc).__name__}: {exc})") from exc
    nonbonded = None
    for f in system.getForces():
        if isinstance(f, openmm.NonbondedForce):
            f.setForceGroup(NONBONDED_GROUP)
            nonbonded = f
        else:
            f.setForceGroup(0)
    if nonbonded is None:  # pragma: no cover - amber14 always has one
        raise MDError("the system has no NonbondedForce")
    atoms = list(modeller.topology.atoms())
    solute = np.arange(n_solute, dtype=np.int64)
    n_waters = sum(1 for r in modeller.topology.residues() if r.name == "HOH")
    return SolvatedSystem(
        topology=modeller.topology,
        positions=modeller.positions,
        system=system,
        nonbonded=nonbonded,
        solute=solute,
        symbols=[atoms[i].element.symbol for i in solute],
        atom_names=[atoms[i].name for i in solute],
        n_waters=n_waters,
        box_nm=float(edge),
    )


def add_solvent_switch(nonbonded, solvent: np.ndarray, name: str = "solv") -> None:
    """Move the solvent's charges and LJ ε into offsets of a global parameter.

    After this, the global parameter ``name`` (default 1) scales the solvent's charges and ε:
    1 is the original system, 0 switches the solvent's nonbonded interactions off.

    Parameters
    ----------
    nonbonded : openmm.NonbondedForce
        Force to modify (before a Context is created).
    solvent : array of int
        Particle indices of the solvent.
    name : str
        Name of the global parameter.
    """
    nonbonded.addGlobalParameter(name, 1.0)
    for i in np.asarray(solvent, dtype=int):
        q, sig, eps = nonbonded.getParticleParameters(int(i))
        nonbonded.setParticleParameters(int(i), 0.0 * q, sig, 0.0 * eps)
        nonbonded.addParticleParameterOffset(name, int(i), q, 0.0, eps)


def solvent_force_on_solute(context, solute: np.ndarray, name: str = "solv") -> np.ndarray:
    """Exact solvent force on each solute atom (kJ/mol/nm) in the context's current state.

    Parameters
    ----------
    context : openmm.Context
        Context of a system prepared with :func:`add_solvent_switch`.
    solute : array of int
        Particle indices of the solute.
    name : str
        The global parameter of :func:`add_solvent_switch`.

    Returns
    -------
    ndarray, shape (n_solute, 3)
        ``F_nonbonded(solv=1) − F_nonbonded(solv=0)`` on the solute atoms.  The parameter is
        left at 1.
    """
    _, _, unit = _openmm()
    kjnm = unit.kilojoule_per_mole / unit.nanometer

    def nb_forces() -> np.ndarray:
        st = context.getState(getForces=True, groups={NONBONDED_GROUP})
        return np.asarray(st.getForces(asNumpy=True).value_in_unit(kjnm))[solute]

    f_on = nb_forces()
    context.setParameter(name, 0.0)
    try:
        f_off = nb_forces()
    finally:
        context.setParameter(name, 1.0)
    return f_on - f_off


def _platform(openmm, threads: int):
    plat = openmm.Platform.getPlatformByName("CPU")
    return plat, {"Threads": str(max(1, int(threads)))}


def solvent_forces(
    pdb: str | os.PathLike[str] | None,
    out: str | os.PathLike[str],
    frames: int = 300,
    *,
    stride: int = 500,
    equilibration_ps: float = 20.0,
    padding_nm: float = 1.0,
    cutoff_nm: float = 1.0,
    temperature: float = 300.0,
    timestep_fs: float = 2.0,
    friction_per_ps: float = 1.0,
    seed: int = 0,
    threads: int = 1,
    progress: bool | TextIO = True,
) -> dict[str, Any]:
    """Run explicit-solvent MD and write the solvent force on the solute every ``stride`` steps.

    Parameters
    ----------
    pdb : str, path-like or None
        Solute PDB (``None``: the shipped alanine dipeptide).
    out : str or path-like
        extxyz file to write (overwritten).
    frames : int
        Frames to write (>= 1).
    stride : int
        MD steps between frames (500 × 2 fs = 1 ps: the solvent force decorrelates within it).
    equilibration_ps : float
        Equilibration after minimisation, before the first frame.
    padding_nm, cutoff_nm
        As in :func:`solvate`.
    temperature, timestep_fs, friction_per_ps
        Langevin (``LangevinMiddleIntegrator``) settings.
    seed : int
        Seed of the initial velocities and the thermostat.
    threads : int
        Threads of OpenMM's CPU platform.
    progress : bool or text stream
        Progress lines (to stderr for ``True``).

    Returns
    -------
    dict
        ``{"path", "n_frames", "n_waters", "n_atoms", "force_rms", "seconds", "ms_per_step"}``
        (``force_rms`` in eV/Å).

    Raises
    ------
    MDError
        Missing OpenMM, a bad PDB or a failed simulation.
    """
    import ase
    import ase.io

    if frames < 1 or stride < 1:
        raise ValueError("frames and stride must be >= 1")
    openmm, app, unit = _openmm()
    stream = sys.stderr if progress is True else (progress or None)

    def log(msg: str) -> None:
        if stream is not None:
            print(msg, file=stream, flush=True)

    t0 = time.perf_counter()
    sol = solvate(pdb, padding_nm=padding_nm, cutoff_nm=cutoff_nm)
    n_total = sol.system.getNumParticles()
    solvent = np.setdiff1d(np.arange(n_total), sol.solute)
    add_solvent_switch(sol.nonbonded, solvent)
    integrator = openmm.LangevinMiddleIntegrator(
        temperature * unit.kelvin, friction_per_ps / unit.picosecond, timestep_fs * unit.femtosecond
    )
    integrator.setRandomNumberSeed(int(seed) + 1)
    plat, props = _platform(openmm, threads)
    context = openmm.Context(sol.system, integrator, plat, props)
    context.setPositions(sol.positions)
    openmm.LocalEnergyMinimizer.minimize(context, 10.0, 500)
    context.setVelocitiesToTemperature(temperature * unit.kelvin, int(seed) + 1)
    n_eq = int(round(equilibration_ps * 1000.0 / timestep_fs))
    log(
        f"solvated: {len(sol.solute)} solute atoms, {sol.n_waters} waters, box {sol.box_nm:.3f} nm;"
        f" equilibrating {n_eq} steps"
    )
    if n_eq:
        integrator.step(n_eq)
    path = Path(out)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    if tmp.exists():
        tmp.unlink()
    t_md = time.perf_counter()
    sq = 0.0
    nm = unit.nanometer
    with open(tmp, "w") as fh:
        for k in range(frames):
            integrator.step(stride)
            state = context.getState(getPositions=True)
            pos = np.asarray(state.getPositions(asNumpy=True).value_in_unit(nm))[sol.solute]
            f = solvent_force_on_solute(context, sol.solute) * KJ_MOL_NM_TO_EV_ANG
            if not np.all(np.isfinite(f)) or not np.all(np.isfinite(pos)):
                raise MDError(f"frame {k}: non-finite positions or forces (the MD blew up)")
            atoms = ase.Atoms(sol.symbols, positions=pos * 10.0)
            atoms.arrays["forces"] = f
            atoms.arrays["atom_name"] = np.array(sol.atom_names, dtype="U8")
            t_ps = (n_eq + (k + 1) * stride) * timestep_fs / 1000.0
            atoms.info.update(
                frame=k,
                time_ps=round(t_ps, 6),
                n_waters=sol.n_waters,
                temperature_K=temperature,
                box_nm=round(sol.box_nm, 6),
                forcefield="+".join(FORCEFIELD_FILES),
            )
            ase.io.write(fh, atoms, format="extxyz")
            fh.flush()
            sq += float(np.sum(f * f))
            if (k + 1) % max(1, frames // 20) == 0 or k + 1 == frames:
                rate = (time.perf_counter() - t_md) / ((k + 1) * stride) * 1000.0
                log(
                    f"[{k + 1}/{frames}] t = {t_ps:.1f} ps  solvent force RMS so far "
                    f"{math.sqrt(sq / (3 * len(sol.solute) * (k + 1))):.4g} eV/Å  "
                    f"{rate:.2f} ms/step"
                )
    os.replace(tmp, path)
    ms = (time.perf_counter() - t_md) / (frames * stride) * 1000.0
    return {
        "path": str(path),
        "n_frames": frames,
        "n_waters": sol.n_waters,
        "n_atoms": len(sol.solute),
        "force_rms": math.sqrt(sq / (3 * len(sol.solute) * frames)),
        "seconds": time.perf_counter() - t0,
        "ms_per_step": ms,
    }


def exclude_bonded_pairs(dataset, n_bonds: int = 2, scale: float = 1.2):
    """Dataset without the pairs that are at most ``n_bonds`` covalent bonds apart.

    Bonds are atom pairs closer than ``scale`` times the sum of ASE's covalent radii, found per
    frame among the dataset's pairs; topological distances come from the bond graph of each
    frame.  ``n_bonds=2`` drops 1–2 and 1–3 pairs (the usual nonbonded exclusions), ``3`` also
    1–4 pairs.  Atoms, reference forces and frames are unchanged.

    Parameters
    ----------
    dataset : mctsff.data.Dataset
        E.g. solvent forces loaded with all solute pairs.
    n_bonds : int
        Largest bond separation removed (>= 1).
    scale : float
        Factor on the covalent-radius sum that defines a bond (1.2, as
        :data:`mctsff.data.BOND_SCALE`).

    Returns
    -------
    mctsff.data.Dataset
        Same frames and forces, fewer pairs.
    """
    from ase.data import atomic_numbers, covalent_radii
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import shortest_path

    if n_bonds < 1:
        raise ValueError(f"n_bonds must be >= 1, got {n_bonds}")
    ds = dataset
    radius = np.array([covalent_radii[atomic_numbers[s]] for s in ds.species])[ds.atom_type]
    bonded = ds.r < scale * (radius[ds.pair_i] + radius[ds.pair_j])
    keep = np.ones(ds.n_pairs, dtype=bool)
    po, fo = ds.pair_offsets, ds.frame_offsets
    for f in range(ds.n_frames):
        sl = slice(int(po[f]), int(po[f + 1]))
        n = int(fo[f + 1] - fo[f])
        i, j, b = ds.pair_i[sl] - fo[f], ds.pair_j[sl] - fo[f], bonded[sl]
        graph = csr_matrix((np.ones(int(b.sum())), (i[b], j[b])), shape=(n, n))
        dist = shortest_path(graph, directed=False, unweighted=True)
        keep[sl] = dist[i, j] > n_bonds
    return dataclasses.replace(
        ds,
        pair_i=ds.pair_i[keep],
        pair_j=ds.pair_j[keep],
        r=np.ascontiguousarray(ds.r[keep]),
        u=np.ascontiguousarray(ds.u[keep]),
        pair_type=ds.pair_type[keep],
        pair_frame=ds.pair_frame[keep],
    )

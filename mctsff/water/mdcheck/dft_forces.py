"""Transferability: force RMSE of a potential (plus q-SPC/Fw's intramolecular terms) on the
shipped bulk-water DFT frames (:func:`dft_force_rmse`), per atom and per molecule (net force
and torque, in which intramolecular forces cancel)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from mctsff.water.md import KJ_MOL_NM_TO_EV_ANG  # kJ/mol/nm → eV/Å, defined once there
from mctsff.water.mdcheck.base import MDCheckError, _openmm
from mctsff.water.mdcheck.rdf import DFT_FILE, _dft_frames, _nearest_o_molecules
from mctsff.water.mdcheck.system import MASSES, water_system


def _dft_waters(atoms) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One DFT frame as whole molecules ordered O, H, H: positions, forces, cell edges (Å).

    Each H joins its nearest O (minimum image) and is placed next to it; a frame where an O
    does not get exactly two H is refused.
    """
    box = np.diag(atoms.cell.array).copy()
    pos = atoms.positions
    is_o = np.array([s == "O" for s in atoms.get_chemical_symbols()])
    mol = _nearest_o_molecules(pos, is_o, box)
    o_idx = np.flatnonzero(is_o)
    order, x = [], []
    for m, o in enumerate(o_idx):
        hs = np.flatnonzero(~is_o & (mol == m))
        if len(hs) != 2:
            raise MDCheckError(f"{DFT_FILE}: oxygen {o} has {len(hs)} hydrogens, not 2")
        order += [o, *hs]
        d = pos[hs] - pos[o]
        d -= box * np.rint(d / box)
        x += [pos[o], *(pos[o] + d)]
    forces = np.asarray(atoms.get_forces())[order]
    return np.array(x), forces, box


def molecule_forces_torques(x: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Net force (eV/Å) and torque about the centre of mass (eV) of each water.

    ``x`` and ``f`` are ``(3 n, 3)``, whole molecules ordered O, H, H.  Forces that depend
    only on a molecule's internal coordinates (bonds, angles) add nothing to either: both are
    intermolecular quantities even when ``f`` holds total forces.
    """
    mass = np.array([MASSES["O"], MASSES["H"], MASSES["H"]])
    xm = x.reshape(-1, 3, 3)
    fm = f.reshape(-1, 3, 3)
    com = np.einsum("a,mai->mi", mass, xm) / mass.sum()
    torque = np.cross(xm - com[:, None, :], fm).sum(axis=1)
    return fm.sum(axis=1), torque


def _rms(a: np.ndarray) -> float:
    return round(float(np.sqrt(np.mean(a * a))), 5)


def dft_force_rmse(
    intermolecular: Sequence[tuple[str, Any]],
    *,
    cutoff: float = 9.0,
    frames: int | None = None,
    threads: int = 0,
) -> dict[str, Any]:
    """Force RMSE (eV/Å per component) on the shipped bulk-water DFT frames.

    Every model is the q-SPC/Fw intramolecular terms plus its intermolecular part, evaluated
    by OpenMM on a supercell of each frame large enough for the cutoff (forces of the first
    copy compared with the DFT total forces).

    Parameters
    ----------
    intermolecular
        ``(name, potential)`` pairs; a potential as in :func:`water_system` (``None``:
        intramolecular terms only, ``"q-spcfw"``: published q-SPC/Fw with PME).
    cutoff
        Cutoff (Å) that sizes the supercell (and q-SPC/Fw's real-space cutoff).
    frames
        Use the first ``frames`` frames (default all 80).
    threads
        OpenMM CPU threads (0: OpenMM's default).

    Returns
    -------
    dict
        ``{"frames", "supercell", "force_rms_dft", "rmse": {name: value}}``, and per molecule
        (:func:`molecule_forces_torques`) ``molecule_rms_dft`` and ``molecule_rmse``
        (``{name: {"force": eV/Å, "torque": eV}}``, per component): the part of the DFT forces
        that an intermolecular potential can explain, with no intramolecular residual in it.
    """
    openmm, unit = _openmm()
    images = _dft_frames()[:frames]
    waters = [_dft_waters(a) for a in images]
    box0 = waters[0][2]
    k = max(1, math.ceil(2.0 * cutoff * 1.0001 / float(box0.min())))
    shifts = np.array([(a, b, c) for a in range(k) for b in range(k) for c in range(k)], float)
    n_atoms = len(waters[0][0])
    n_mol = n_atoms // 3 * len(shifts)
    plat = openmm.Platform.getPlatformByName("CPU")
    props = {"Threads": str(threads)} if threads else {}
    ref = np.concatenate([w[1] for w in waters])
    ref_mol = [molecule_forces_torques(x, f) for x, f, _ in waters]
    ref_net = np.concatenate([m[0] for m in ref_mol])
    ref_torque = np.concatenate([m[1] for m in ref_mol])
    out: dict[str, Any] = {
        "data": DFT_FILE,
        "frames": len(waters),
        "supercell": k,
        "cutoff": cutoff,
        "force_rms_dft": round(float(np.sqrt(np.mean(ref * ref))), 5),
        "rmse": {},
        "molecule_rms_dft": {"force": _rms(ref_net), "torque": _rms(ref_torque)},
        "molecule_rmse": {},
    }
    for name, pot in intermolecular:
        system = water_system(pot, n_mol, float(box0.max()) * k, cutoff=cutoff)
        ctx = openmm.Context(system, openmm.VerletIntegrator(0.0005), plat, props)
        got = []
        for x, _, box in waters:
            big = (x[None, :, :] + (shifts * box)[:, None, :]).reshape(-1, 3)
            e = box * k / 10.0
            ctx.setPeriodicBoxVectors(
                openmm.Vec3(e[0], 0, 0), openmm.Vec3(0, e[1], 0), openmm.Vec3(0, 0, e[2])
            )
            ctx.setPositions(big / 10.0)
            f = ctx.getState(getForces=True).getForces(asNumpy=True)
            f = np.asarray(f.value_in_unit(unit.kilojoule_per_mole / unit.nanometer))
            got.append(f[:n_atoms] * KJ_MOL_NM_TO_EV_ANG)
        d = np.concatenate(got) - ref
        out["rmse"][name] = round(float(np.sqrt(np.mean(d * d))), 5)
        mol = [molecule_forces_torques(w[0], g) for w, g in zip(waters, got, strict=True)]
        out["molecule_rmse"][name] = {
            "force": _rms(np.concatenate([m[0] for m in mol]) - ref_net),
            "torque": _rms(np.concatenate([m[1] for m in mol]) - ref_torque),
        }
        del ctx
    return out

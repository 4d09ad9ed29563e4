"""Unit plausibility of reference data (:func:`unit_warnings`): positions that do not look
like Å, forces that do not look like eV/Å, energies and forces in different unit systems."""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING

import numpy as np

from mctsff.data.geometry import _DIRECT_MAX_ATOMS, _frame_pairs, _periodic_basis
from mctsff.data.validation import DataError

if TYPE_CHECKING:  # pragma: no cover
    from mctsff.data.dataset import Dataset

__all__ = ["UnitWarning", "unit_warnings"]

#: Median nearest-neighbour distance over the covalent bond length of the pair (ASE
#: covalent radii) outside which positions do not look like Å: about 1 in Å (bonded
#: neighbours, ions, metals), 0.1 in nm, 1.9 in bohr.
UNIT_BOND_RATIO: tuple[float, float] = (0.5, 1.6)
#: Median nearest intermolecular distance (Å) outside which positions do not look like Å.
UNIT_INTER_DISTANCE: tuple[float, float] = (1.0, 10.0)
#: RMS reference force component (eV/Å) above which forces do not look like eV/Å (the
#: 80 shipped bulk-water DFT frames: 0.82; in kcal/mol/Å they would read 18.8).
UNIT_MAX_RMS_FORCE: float = 10.0
#: Frames looked at by :func:`unit_warnings` (spread over the data).
UNIT_FRAMES: int = 5
#: RMS component (eV/Å) of the net force on a molecule above which forces do not look
#: like eV/Å.  Intramolecular forces cancel in the sum over a molecule's atoms, so the net
#: force is intermolecular whether the file holds total or intermolecular forces (shipped
#: data: 0.14 water dimers, 0.26 the 20 dimers, 0.28 bulk water DFT, 0.29 the solvated
#: alanine dipeptide's molecules; in kcal/mol/Å they would read 3.2 to 6.7).
UNIT_MAX_RMS_MOLECULE_FORCE: float = 1.5
#: Energy/force consistency (:func:`unit_warnings`): at most this many non-periodic frames
#: of at most :data:`UNIT_CONSISTENCY_ATOMS` atoms, at least :data:`UNIT_CONSISTENCY_MIN`.
UNIT_CONSISTENCY_FRAMES: int = 60
UNIT_CONSISTENCY_ATOMS: int = 200
UNIT_CONSISTENCY_MIN: int = 10
#: The energies' variance (beyond per-species offsets) the pair model fitted to the forces
#: must explain before its energy scale is judged.
UNIT_CONSISTENCY_R2: float = 0.7
#: Factor between the energies and the pair model fitted to the forces outside which they
#: do not look like one unit system (consistent shipped dimers: 1.2 to 1.3).
UNIT_CONSISTENCY_RATIO: float = 4.0
#: Decay lengths (Å) of the exponential radial basis of the consistency model (with 1/r).
_UNIT_BASIS_DECAY: tuple[float, ...] = (0.3, 0.6, 1.2, 2.4)
_NOBLE_GASES = frozenset({"He", "Ne", "Ar", "Kr", "Xe", "Rn"})


class UnitWarning(UserWarning):
    """Data whose distances or forces do not look like Å and eV/Å (see :func:`unit_warnings`)."""


def _nearest_bond_ratios(ds: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-neighbour distance of each atom of up to :data:`UNIT_FRAMES` frames, and its
    ratio to the covalent bond length of the pair (noble-gas atoms and neighbours left out;
    neighbours searched within 6 file units, or half the periodic cell width if less)."""
    from ase.data import atomic_numbers, covalent_radii

    radius = np.array([covalent_radii[atomic_numbers.get(s, 0)] for s in ds.species])
    noble = np.array([s in _NOBLE_GASES for s in ds.species])
    frames = np.unique(np.linspace(0, ds.n_frames - 1, UNIT_FRAMES).round().astype(np.int64))
    dists, ratios = [], []
    for f in frames:
        a, b = int(ds.frame_offsets[f]), int(ds.frame_offsets[f + 1])
        if b - a < 2 or b - a > 5 * _DIRECT_MAX_ATOMS:
            continue
        pos = ds.positions[a:b]
        periodic = ds.pbc is not None and bool(ds.pbc[f].any())
        cell = ds.cells[f] if periodic else np.zeros((3, 3))
        pbc = ds.pbc[f] if periodic else np.zeros(3, dtype=bool)
        try:
            cut = 6.0
            if periodic:  # one image of each neighbour: at most half the cell width
                cut = min(cut, 0.5 * float(_periodic_basis(cell, pbc, "", int(f))[2].min()))
            i, j, _, r = _frame_pairs(pos, cell, pbc, cut, "", int(f), strict=True)
        except DataError:
            continue
        t = ds.atom_type[a:b]
        keep = ~(noble[t[i]] | noble[t[j]])
        i, j, r = i[keep], j[keep], r[keep]
        if not len(r):
            continue
        near = np.full(b - a, np.inf)
        np.minimum.at(near, i, r)
        np.minimum.at(near, j, r)
        # the neighbour's type: the partner of the pair that is the nearest one
        partner = np.full(b - a, -1)
        hit_i = r == near[i]
        partner[i[hit_i]] = j[hit_i]
        hit_j = r == near[j]
        partner[j[hit_j]] = i[hit_j]
        has = np.isfinite(near) & (partner >= 0)
        bond = radius[t[has]] + radius[t[partner[has]]]
        dists.append(near[has])
        ratios.append(near[has] / np.where(bond > 0, bond, np.nan))
    if not dists:
        return np.empty(0), np.empty(0)
    return np.concatenate(dists), np.concatenate(ratios)


def _molecule_net_forces(ds: Dataset) -> np.ndarray:
    """Net reference force (n_molecules, 3) on each molecule of each frame (empty without
    molecule ids): intramolecular forces cancel in it."""
    if ds.mol is None or not ds.forces.size:
        return np.empty((0, 3))
    key = np.stack([ds.atom_frame, ds.mol], axis=1)
    _, which = np.unique(key, axis=0, return_inverse=True)
    which = which.ravel()
    net = np.zeros((int(which.max()) + 1, 3))
    np.add.at(net, which, ds.forces)
    return net


def _energy_scale(ds: Dataset) -> float | None:
    """:func:`_fitted_energy_scale`, or ``None`` where its numbers overflow."""
    with np.errstate(all="ignore"):
        try:
            scale = _fitted_energy_scale(ds)
        except np.linalg.LinAlgError:  # e.g. positions so large that distances overflow
            return None
    return scale if scale is not None and math.isfinite(scale) else None


def _fitted_energy_scale(ds: Dataset) -> float | None:
    """Factor between the reference energies and those of a pair potential fitted to the
    reference forces (1 for consistent units, up to the model's error), or ``None`` when
    it cannot be judged.

    The model is linear: per type pair ``1/r`` and ``exp(-r/λ)`` for λ in
    ``_UNIT_BASIS_DECAY``, summed over every pair of the frame (no cutoff; same-molecule
    pairs left out for intermolecular data), fitted to the forces by least squares; the
    energies are then regressed on its energies plus per-species offsets.  Only
    non-periodic frames of at most :data:`UNIT_CONSISTENCY_ATOMS` atoms count (up to
    :data:`UNIT_CONSISTENCY_FRAMES` spread over the data, at least
    :data:`UNIT_CONSISTENCY_MIN`), and only a model explaining :data:`UNIT_CONSISTENCY_R2`
    of the energies' variance is judged.
    """
    if ds.energies is None or not ds.forces.size:
        return None
    sizes = np.diff(ds.frame_offsets)
    ok = (sizes >= 2) & (sizes <= UNIT_CONSISTENCY_ATOMS)
    if ds.pbc is not None:
        ok &= ~ds.pbc.any(axis=1)
    ok &= np.isfinite(ds.energies)
    cand = np.flatnonzero(ok)
    if len(cand) < UNIT_CONSISTENCY_MIN:
        return None
    pick = np.linspace(0, len(cand) - 1, min(UNIT_CONSISTENCY_FRAMES, len(cand)))
    frames = cand[np.unique(pick.round().astype(np.int64))]
    n_types = len(ds.species)
    n_basis = 1 + len(_UNIT_BASIS_DECAY)
    n_cols = n_basis * len(ds.type_pairs)
    gram, rhs = np.zeros((n_cols, n_cols)), np.zeros(n_cols)  # normal equations of the forces
    energy_rows, counts = [], []
    for f in frames:
        a, b = int(ds.frame_offsets[f]), int(ds.frame_offsets[f + 1])
        pos, t = ds.positions[a:b], ds.atom_type[a:b]
        i, j = np.triu_indices(b - a, 1)
        if ds.intermolecular and ds.mol is not None:
            keep = ds.mol[a:b][i] != ds.mol[a:b][j]
            i, j = i[keep], j[keep]
        d = pos[i] - pos[j]
        r = np.linalg.norm(d, axis=1)
        u = d / r[:, None]
        lo, hi = np.minimum(t[i], t[j]), np.maximum(t[i], t[j])
        tp = lo * n_types - lo * (lo - 1) // 2 + (hi - lo)  # upper-triangular pair index
        values = [(1.0 / r, 1.0 / r**2)]  # U and -dU/dr of each basis function
        values += [(np.exp(-r / lam), np.exp(-r / lam) / lam) for lam in _UNIT_BASIS_DECAY]
        g = np.zeros((3, (b - a) * n_cols))
        e = np.zeros(n_cols)
        for k, (phi, dphi) in enumerate(values):
            col = k * len(ds.type_pairs) + tp
            at = np.concatenate([i * n_cols + col, j * n_cols + col])
            push = dphi[:, None] * u  # the force on i; -push on j
            for axis in range(3):
                weights = np.concatenate([push[:, axis], -push[:, axis]])
                g[axis] += np.bincount(at, weights, minlength=g.shape[1])
            e += np.bincount(col, phi, minlength=n_cols)
        g = g.reshape(3, b - a, n_cols).transpose(1, 0, 2).reshape(-1, n_cols)
        gram += g.T @ g
        rhs += g.T @ ds.forces[a:b].ravel()
        energy_rows.append(e)
        counts.append(np.bincount(t, minlength=n_types))
    if not (np.isfinite(gram).all() and np.isfinite(rhs).all()):
        return None
    norm = np.sqrt(np.diag(gram))
    norm[norm == 0] = 1.0
    coef = np.linalg.lstsq(gram / np.outer(norm, norm), rhs / norm, rcond=1e-12)[0] / norm
    model = np.array(energy_rows) @ coef
    offsets = np.array(counts, dtype=float)
    ref_e = ds.energies[frames]
    base = ref_e - offsets @ np.linalg.lstsq(offsets, ref_e, rcond=None)[0]
    design = np.column_stack([model, offsets])
    sol = np.linalg.lstsq(design, ref_e, rcond=None)[0]
    rest = ref_e - design @ sol
    spread = float(np.sum(base**2))
    if spread <= 0 or 1.0 - float(np.sum(rest**2)) / spread < UNIT_CONSISTENCY_R2:
        return None
    return float(sol[0])


def _ev_per_kcal_kj_mol() -> tuple[float, float]:
    """eV per kcal/mol and per kJ/mol (:mod:`ase.units`, imported here on first use as
    everywhere in this module: importing it does not load ase)."""
    from ase import units

    return units.kcal / units.mol, units.kJ / units.mol


def _unit_mixups() -> dict[str, float]:
    """The factor :func:`_energy_scale` gives for each mix-up of units (ase.units)."""
    from ase import units

    kcal, kj = _ev_per_kcal_kj_mol()
    return {
        "forces in kcal/mol/Å": kcal,
        "forces in kJ/mol/Å": kj,
        "forces in hartree/bohr": units.Hartree / units.Bohr,
        "forces in Ry/bohr": units.Rydberg / units.Bohr,
        "energies in hartree": 1.0 / units.Hartree,
        "energies in Ry": 1.0 / units.Rydberg,
        "energies in kcal/mol": 1.0 / kcal,
        "energies in kJ/mol": 1.0 / kj,
    }


def unit_warnings(ds: Dataset) -> list[str]:
    """One line per quantity of ``ds`` that does not look like Å, eV or eV/Å.

    * positions: the median nearest-neighbour distance, over the covalent bond length of
      the pair (ASE's covalent radii), outside :data:`UNIT_BOND_RATIO` (about 0.1 for
      nm, 1.9 for bohr), or for intermolecular data the median nearest intermolecular
      distance outside :data:`UNIT_INTER_DISTANCE` Å;
    * forces: an RMS force component above :data:`UNIT_MAX_RMS_FORCE` eV/Å, or, with
      molecule ids, an RMS component of the net force on a molecule (intermolecular
      whatever the file holds: intramolecular forces cancel in it) above
      :data:`UNIT_MAX_RMS_MOLECULE_FORCE` eV/Å (e.g. kcal/mol/Å, 23 times eV/Å);
    * energies against forces: a pair potential fitted to the forces of the
      non-periodic frames (:func:`_fitted_energy_scale`) whose energies must be scaled by more
      than :data:`UNIT_CONSISTENCY_RATIO` (or less than its inverse) to match the
      reference energies: the two are in different units (e.g. forces in hartree/bohr
      with energies in eV); the line names the mix-ups that give such a factor.

    Noble-gas atoms are left out of the bond-length test (their nearest neighbours are
    not bonded).  An empty list means nothing looked wrong; it proves nothing.
    """
    from ase import units

    src = ds.path or "<atoms>"
    out: list[str] = []
    hints: list[str] = []
    dist, ratio = _nearest_bond_ratios(ds)
    ratio = ratio[np.isfinite(ratio)]
    if len(ratio):
        med = float(np.median(ratio))
        lo, hi = UNIT_BOND_RATIO
        if not lo <= med <= hi:
            guess = "nm" if med < lo else "bohr" if med < 2.5 else "another unit"
            hints.append(
                f"the median nearest-neighbour distance {float(np.median(dist)):.3g} is "
                f"{med:.2g} times the covalent bond length of the pair ({guess}?)"
            )
    if ds.intermolecular and ds.n_pairs:
        near = np.full(ds.n_atoms, np.inf)
        np.minimum.at(near, ds.pair_i, ds.r)
        np.minimum.at(near, ds.pair_j, ds.r)
        near = near[np.isfinite(near)]
        lo, hi = UNIT_INTER_DISTANCE
        med = float(np.median(near)) if len(near) else lo
        if not lo <= med <= hi:
            hints.append(f"the median nearest intermolecular distance is {med:.3g} Å")
    if hints:
        out.append(
            f"{src}: positions do not look like Å ({'; '.join(hints)}); mctsff reads "
            f"positions in Å (1 nm = {units.nm:g} Å, 1 bohr = {units.Bohr:.4g} Å)"
        )
    force_hints: list[str] = []
    if ds.forces.size:
        rms = float(np.sqrt(np.mean(np.square(ds.forces))))
        if rms > UNIT_MAX_RMS_FORCE:
            force_hints.append(f"RMS force component {rms:.3g}, above {UNIT_MAX_RMS_FORCE:g}")
        net = _molecule_net_forces(ds)
        rms_net = float(np.sqrt(np.mean(np.square(net)))) if len(net) else 0.0
        if rms_net > UNIT_MAX_RMS_MOLECULE_FORCE:
            force_hints.append(
                f"RMS component of the net force on a molecule {rms_net:.3g}, above "
                f"{UNIT_MAX_RMS_MOLECULE_FORCE:g}"
            )
    if force_hints:
        kcal, kj = _ev_per_kcal_kj_mol()
        out.append(
            f"{src}: forces do not look like eV/Å ({'; '.join(force_hints)}); mctsff reads "
            f"eV/Å (1 kcal/mol/Å = {kcal:.4g} eV/Å, 1 kJ/mol/Å = {kj:.4g} eV/Å, "
            f"1 hartree/bohr = {units.Hartree / units.Bohr:.4g} eV/Å)"
        )
    scale = _energy_scale(ds)
    if scale is not None and not 1 / UNIT_CONSISTENCY_RATIO <= scale <= UNIT_CONSISTENCY_RATIO:
        mixups = _unit_mixups()
        if scale > 0:
            near = sorted(mixups, key=lambda k: abs(math.log(mixups[k] / scale)))[:2]
            guess = " or ".join(k for k in near if abs(math.log(mixups[k] / scale)) < math.log(2))
        else:
            guess = ""
        out.append(
            f"{src}: energies and forces do not look like one unit system (the energies are "
            f"{scale:.3g} times those of a pair potential fitted to the forces"
            f"{'; ' + guess + '?' if guess else ''}); mctsff reads eV and eV/Å"
        )
    return out


def _warn_units(ds: Dataset) -> None:
    for message in unit_warnings(ds):
        warnings.warn(message, UnitWarning, stacklevel=3)

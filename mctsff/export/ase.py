"""ASE: :class:`MctsffCalculator` (energy, forces, per-atom energies, stress)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from mctsff.expr.params import Potential

if TYPE_CHECKING:  # pragma: no cover
    import ase

from mctsff.export.base import ExportError
from mctsff.export.front import (
    FrontPoint,
    _at_cutoff,
    _check_cutoff,
    is_universal,
    resolve_potential,
)
from mctsff.export.lammps import _shift_value


class MctsffCalculator(Calculator):
    """ASE calculator for a fitted pair potential (eV, Å).

    Parameters
    ----------
    potential
        Fitted :class:`~mctsff.expr.params.Potential` or :class:`FrontPoint`.
    cutoff
        Pair cutoff in Å (default: the front point's cutoff).
    mol
        Molecule id per atom (array), or the name of a per-atom array of the Atoms (e.g.
        ``"mol"``): then only pairs of different molecules interact, as in the fit.  ``None``:
        all pairs.
    shift
        Subtract U(cutoff) per pair (energy continuous at the cutoff); a no-op for a
        shifted-force or shifted-energy potential, which is used as fitted: shifted at
        ``cutoff``.
    allow_no_wall
        Accept a front point without a repulsive wall (see :func:`export`).
    **kwargs
        Passed to :class:`ase.calculators.calculator.Calculator`.

    Notes
    -----
    Pairs come from :func:`ase.neighborlist.neighbor_list`, so periodic cells use every image
    within the cutoff (the minimum image when the cutoff is below half the cell width).
    Results: ``energy``, ``free_energy``, ``forces``, ``energies`` (per atom, half of each pair),
    and ``stress`` for cells periodic in all three directions.
    """

    implemented_properties = ["energy", "free_energy", "forces", "energies", "stress"]
    nolabel = True

    def __init__(
        self,
        potential: Potential | FrontPoint,
        cutoff: float | None = None,
        mol: Sequence[int] | np.ndarray | str | None = None,
        *,
        shift: bool = False,
        allow_no_wall: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        pot, rc = resolve_potential(potential, cutoff=cutoff, allow_no_wall=allow_no_wall)
        self.cutoff = _check_cutoff(rc, "MctsffCalculator")
        pot = _at_cutoff(pot, self.cutoff)
        self.potential = pot
        self.mol = mol
        self.shift = bool(shift)
        self._universal = is_universal(pot)
        n_t = len(pot.species)
        self._tp = np.zeros((n_t, n_t), dtype=np.int64)
        for a in range(n_t):
            for b in range(n_t):
                self._tp[a, b] = pot.pair_index((pot.species[a], pot.species[b]))
        # per type pair: E = U(r) - a - (r - rc) b (the scheme's shift, or U(rc) for shift)
        self._a = np.array(
            [_shift_value(pot, p, self.cutoff, self.shift) for p in pot.type_pairs]
        ) + np.asarray(pot.shift_a, dtype=np.float64)
        self._b = np.asarray(pot.shift_b, dtype=np.float64)

    def _types(self, atoms: ase.Atoms) -> np.ndarray:
        if self._universal:
            return np.zeros(len(atoms), dtype=np.int64)
        index = {s: k for k, s in enumerate(self.potential.species)}
        symbols = atoms.get_chemical_symbols()
        unknown = sorted(set(symbols) - set(index))
        if unknown:
            raise ExportError(
                f"atoms of species {unknown} are not in the potential ({self.potential.species})"
            )
        return np.fromiter((index[s] for s in symbols), dtype=np.int64, count=len(symbols))

    def _mol(self, atoms: ase.Atoms) -> np.ndarray | None:
        if self.mol is None:
            return None
        if isinstance(self.mol, str):
            if self.mol not in atoms.arrays:
                raise ExportError(f"atoms have no per-atom array {self.mol!r}")
            m = np.asarray(atoms.arrays[self.mol])
        else:
            m = np.asarray(self.mol)
        if m.shape != (len(atoms),):
            raise ExportError(f"mol has shape {m.shape}, expected ({len(atoms)},)")
        return m

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        """Fill ``self.results`` with energy, forces, per-atom energies (and stress)."""
        from ase.neighborlist import neighbor_list

        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        n = len(atoms)
        i, j, d, D = neighbor_list("ijdD", atoms, self.cutoff)
        m = self._mol(atoms)
        if m is not None:
            keep = m[i] != m[j]
            i, j, d, D = i[keep], j[keep], d[keep], D[keep]
        t = self._types(atoms)
        group = self._tp[t[i], t[j]]
        p = self.potential.program
        with np.errstate(all="ignore"):
            u, du, _, _ = p.evaluate(d, self.potential.consts, group, mode=1)
        u = u - self._a[group] - (d - self.cutoff) * self._b[group]
        du = du - self._b[group]
        # full list: every pair twice (i->j and j->i); D = x_j - x_i (image)
        fvec = (du / d)[:, None] * D
        forces = np.column_stack([np.bincount(i, fvec[:, c], minlength=n) for c in range(3)])
        energies = 0.5 * np.bincount(i, weights=u, minlength=n)
        self.results["energies"] = energies
        self.results["energy"] = float(energies.sum())
        self.results["free_energy"] = self.results["energy"]
        self.results["forces"] = forces
        if atoms.cell.rank == 3 and all(atoms.pbc):
            virial = 0.5 * np.einsum("p,pa,pb->ab", du / d, D, D)
            stress = virial / atoms.get_volume()
            self.results["stress"] = stress.flat[[0, 4, 8, 5, 2, 1]]

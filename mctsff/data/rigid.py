"""Rigid-body force components of molecules (the ``match="rigid"`` target of a fit).

The forces on a molecule's atoms split into a rigid-body part (its net force and its torque:
the components along the molecule's translations and rotations) and the rest, which only
deforms the molecule.  Intramolecular forces have no rigid-body part, so the rigid-body part
of a molecule's *total* reference force (bulk DFT forces, say) is purely intermolecular, and
an intermolecular pair potential can be matched to it without any model of bonds and angles.

For a molecule of atoms at ``x_a`` (centre ``x̄``, the geometric mean, unwrapped across
periodic boundaries), the rigid-body patterns are the translations ``e_k`` on every atom and
the rotations ``e_k × (x_a − x̄)``; :class:`RigidBasis` holds an orthonormal basis ``Q_m`` of
their span per molecule (3 columns for one atom, 5 for a linear molecule, 6 otherwise), as one
sparse matrix over the dataset's ``3 n_atoms`` force components.  ``Q.T @ d`` of a force
error ``d`` has the squared norm of its projection ``P d = Q Q.T d``, so an RMSE of the
rigid-body error per force component is ``sqrt(|Q.T d|² / (3 n_atoms))``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

__all__ = ["RigidBasis", "rigid_basis"]


@dataclass(frozen=True)
class RigidBasis:
    """Orthonormal rigid-body patterns of every molecule of a dataset.

    Attributes
    ----------
    QT
        Sparse ``(n_rows, 3 n_atoms)``: each molecule's ``Q_m.T`` in its own rows.
    row_frame
        Frame of each row (for per-frame sums of squared errors).
    n_components
        ``3 n_atoms``: what an RMSE per force component divides by.
    """

    QT: sp.csr_matrix
    row_frame: np.ndarray
    n_components: int

    def __call__(self, d: np.ndarray) -> np.ndarray:
        """Rigid-body coordinates ``Q.T @ d`` of flat force components (or of the columns
        of a ``(3 n_atoms, m)`` Jacobian)."""
        return self.QT @ d


def _unwrapped(x: np.ndarray, cell: np.ndarray | None) -> np.ndarray:
    """Positions of one molecule's atoms brought next to its first atom (minimum image)."""
    if cell is None:
        return x
    d = x - x[0]
    frac = np.linalg.solve(cell.T, d.T).T
    return x[0] + (frac - np.round(frac)) @ cell


def rigid_basis(ds) -> RigidBasis:
    """The :class:`RigidBasis` of a :class:`~mctsff.data.Dataset` with molecule ids.

    Raises
    ------
    ValueError
        When the dataset has no molecule ids (``mol``).
    """
    if ds.mol is None:
        raise ValueError(
            "matching rigid-body forces needs molecule ids: give the file a 'mol' array or "
            "load it with molecules= (the CLI's --molecules)"
        )
    frame = np.asarray(ds.atom_frame, dtype=np.int64)
    mol = np.asarray(ds.mol, dtype=np.int64)
    pos = np.asarray(ds.positions, dtype=np.float64)
    key = np.stack([frame, mol], axis=1)
    _, which = np.unique(key, axis=0, return_inverse=True)
    which = which.ravel()
    order = np.argsort(which, kind="stable")
    bounds = np.flatnonzero(np.diff(which[order])) + 1
    rows, cols, vals, row_frame = [], [], [], []
    n_rows = 0
    eye = np.eye(3)
    for atoms in np.split(order, bounds):
        f = int(frame[atoms[0]])
        cell = ds.cells[f] if getattr(ds, "cells", None) is not None else None
        x = _unwrapped(pos[atoms], cell)
        x = x - x.mean(axis=0)
        n = len(atoms)
        patterns = np.zeros((3 * n, 6))
        for k in range(3):
            for a in range(n):
                patterns[3 * a : 3 * a + 3, k] = eye[k]
                patterns[3 * a : 3 * a + 3, 3 + k] = np.cross(eye[k], x[a])
        u, s, _ = np.linalg.svd(patterns, full_matrices=False)
        q = u[:, s > 1e-8 * max(s[0], 1.0)]  # 3 (one atom), 5 (linear) or 6 columns
        comp = (3 * atoms[:, None] + np.arange(3)).ravel()
        k = q.shape[1]
        rows.append(np.repeat(np.arange(n_rows, n_rows + k), 3 * n))
        cols.append(np.tile(comp, k))
        vals.append(q.T.ravel())
        row_frame.append(np.full(k, f))
        n_rows += k
    n_comp = 3 * len(pos)
    QT = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n_rows, n_comp),
    )
    return RigidBasis(QT, np.concatenate(row_frame), n_comp)

"""Pairs within a cutoff in one frame (all pairs, a k-d tree or ASE's neighbour list; the
minimum image of any periodic cell) and molecule ids from covalent bonds or the nearest
heavy atom."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mctsff.data.validation import _error

__all__ = ["BOND_SCALE"]

#: Factor on ASE's covalent radii (``natural_cutoffs``) used by ``molecules="bonds"``.
#: 1.2 keeps stretched O–H bonds of liquid water (up to ~1.14 Å) bonded while H-bonds
#: (O···H ≳ 1.4 Å) are not.
BOND_SCALE: float = 1.2

# Frames with more atoms than this use a k-d tree (_tree_pairs) instead of all i<j pairs.
_DIRECT_MAX_ATOMS = 2000

_TRIU_CACHE: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _triu(n: int) -> tuple[np.ndarray, np.ndarray]:
    hit = _TRIU_CACHE.get(n)
    if hit is None:
        i, j = np.triu_indices(n, 1)
        hit = (i.astype(np.int64), j.astype(np.int64))
        if len(_TRIU_CACHE) > 16:
            _TRIU_CACHE.clear()
        _TRIU_CACHE[n] = hit
    return hit


def _periodic_basis(
    cell: np.ndarray, pbc: np.ndarray, src: str, fid: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Periodic lattice vectors, their dual vectors and the perpendicular widths.

    Returns ``(A, B, w)``: ``A`` (m, 3) the periodic cell rows, ``B`` (3, m) with
    ``A @ B = I`` and columns in span(A), ``w`` (m,) the widths ``1 / |B[:, k]|`` (distance
    between lattice planes spanned by the other periodic vectors).

    Any displacement ``v`` with ``|v| < min(w) / 2`` has fractional coordinates ``v @ B`` in
    (-1/2, 1/2), so wrapping with ``rint`` recovers the unique image closer than ``min(w) / 2``
    for any (also triclinic) cell.
    """
    A = cell[np.asarray(pbc, dtype=bool)]
    lengths = np.linalg.norm(A, axis=1)
    if np.any(lengths <= 0):
        raise _error(src, f"periodic cell vector of zero length (cell {cell.tolist()})", fid)
    gram = A @ A.T
    s = np.linalg.svd(A, compute_uv=False)
    if s.min() <= 1e-10 * s.max():
        raise _error(src, f"periodic cell vectors are degenerate (cell {cell.tolist()})", fid)
    B = A.T @ np.linalg.inv(gram)
    w = 1.0 / np.linalg.norm(B, axis=0)
    return A, B, w


def _ase_pairs(
    pos: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float | Sequence[float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs i<j via ASE's neighbour list: returns i, j and d = x_i - x_j (image)."""
    from ase import Atoms
    from ase.neighborlist import neighbor_list

    atoms = Atoms(numbers=np.ones(len(pos), dtype=int), positions=pos, cell=cell, pbc=pbc)
    i, j, D = neighbor_list("ijD", atoms, cutoff)
    keep = i < j
    i, j, d = i[keep].astype(np.int64), j[keep].astype(np.int64), -D[keep]
    order = np.lexsort((j, i))
    return i[order], j[order], np.ascontiguousarray(d[order])


def _tree_pairs(
    pos: np.ndarray, cutoff: float, periodic: tuple[np.ndarray, np.ndarray, np.ndarray] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs i<j with ``r < cutoff`` (minimum image) from a k-d tree (scipy's ``cKDTree``):
    memory grows with the atoms and the pairs only, however the atoms are spread (a bin
    grid over a frame with one far atom, or a large sparse cell, can need gigabytes).

    ``periodic`` is :func:`_periodic_basis`'s ``(A, B, w)`` for a cutoff at most half the
    smallest width.  The tree then holds each atom's wrapped fractional coordinates along
    the periodic vectors times the widths ``w`` (a torus of sides ``w``) and its Cartesian
    coordinates across them; a displacement ``v`` maps to ``v @ T`` there, so pairs within
    ``cutoff * |T|`` of the tree (its own minimum image) include every pair within
    ``cutoff``, which the Cartesian minimum image then selects.  Returns i, j and
    ``d = x_i - x_j``, ordered by ``i`` then ``j``.
    """
    from scipy.spatial import cKDTree

    if periodic is None:
        pairs = cKDTree(pos).query_pairs(cutoff, output_type="ndarray")
        i, j = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)
        d = pos[i] - pos[j]
    else:
        A, B, w = periodic
        m = len(w)
        q = np.linalg.qr(A.T, mode="complete")[0]
        T = np.hstack([B * w, q[:, m:]])  # the tree's coordinates of a displacement
        y = pos @ T
        y[:, :m] = np.mod(y[:, :m], w)
        y[:, :m] = np.where(y[:, :m] >= w, 0.0, y[:, :m])  # mod's round-off up to w itself
        box = np.concatenate([w, np.zeros(3 - m)])  # 0: not periodic
        radius = cutoff * float(np.linalg.norm(T, 2)) * (1 + 1e-12)
        pairs = cKDTree(y, boxsize=box).query_pairs(radius, output_type="ndarray")
        i, j = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)
        d = pos[i] - pos[j]
        d -= np.rint(d @ B) @ A
    order = np.lexsort((j, i))
    return i[order], j[order], np.ascontiguousarray(d[order])


def _frame_pairs(
    pos: np.ndarray,
    cell: np.ndarray,
    pbc: np.ndarray,
    cutoff: float,
    src: str,
    fid: int,
    *,
    strict: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All pairs i<j of one frame with ``r < cutoff``.

    Returns frame-local ``i, j``, displacements ``d = x_i - x_j`` (minimum image) and ``r``.
    Frames of up to ``_DIRECT_MAX_ATOMS`` atoms compare every pair, larger ones go through
    a k-d tree (:func:`_tree_pairs`).  With ``strict`` a periodic cutoff above half the
    smallest cell width is an error; otherwise such frames go through ASE's neighbour list
    (which then may return several images).
    """
    n = len(pos)
    periodic = bool(np.any(pbc))
    A = B = w = None
    use_ase = False
    if periodic:
        A, B, w = _periodic_basis(cell, pbc, src, fid)
        half = 0.5 * float(w.min())
        if cutoff > half:
            if strict:
                raise _error(
                    src,
                    f"cutoff {cutoff:g} Å exceeds half the smallest perpendicular cell width "
                    f"({half:.6g} Å = {float(w.min()):.6g}/2); use a cutoff <= {half:.6g} Å "
                    "or a larger cell",
                    fid,
                )
            use_ase = True
    if n > _DIRECT_MAX_ATOMS and not use_ase:
        i, j, d = _tree_pairs(pos, cutoff, (A, B, w) if periodic else None)
        r = np.sqrt(np.einsum("ij,ij->i", d, d))
        keep = r < cutoff
        return i[keep], j[keep], d[keep], r[keep]
    if use_ase:
        i, j, d = _ase_pairs(pos, cell, pbc, cutoff)
        r = np.sqrt(np.einsum("ij,ij->i", d, d))
        keep = r < cutoff
        return i[keep], j[keep], d[keep], r[keep]
    i, j = _triu(n)
    d = pos[i] - pos[j]
    if periodic:
        d -= np.rint(d @ B) @ A
    r = np.sqrt(np.einsum("ij,ij->i", d, d))
    keep = r < cutoff
    return i[keep], j[keep], d[keep], r[keep]


def _assign_molecules(
    method: str,
    pos: np.ndarray,
    numbers: np.ndarray,
    cell: np.ndarray,
    pbc: np.ndarray,
    src: str,
    fid: int,
) -> np.ndarray:
    """Molecule ids of one frame by covalent bonds or nearest heavy atom."""
    n = len(pos)
    numbers = np.asarray(numbers)
    if method == "bonds":
        from ase.data import covalent_radii
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        rc = covalent_radii[numbers] * BOND_SCALE
        i, j, _, r = _frame_pairs(pos, cell, pbc, 2.0 * float(rc.max()), src, fid, strict=False)
        bonded = r < rc[i] + rc[j]
        i, j = i[bonded], j[bonded]
        graph = coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n))
        _, labels = connected_components(graph, directed=False)
        return labels.astype(np.int64)

    is_h = numbers == 1
    target = (numbers == 8) if method == "nearest-o" else ~is_h
    label = "O" if method == "nearest-o" else "non-H"
    mol = np.full(n, -1, dtype=np.int64)
    roots = np.flatnonzero(~is_h)
    mol[roots] = np.arange(len(roots))
    h_idx = np.flatnonzero(is_h)
    t_idx = np.flatnonzero(target)
    if len(h_idx) == 0:
        return mol
    if len(t_idx) == 0:
        raise _error(src, f"molecules={method!r}: frame has H atoms but no {label} atom", fid)
    periodic = bool(np.any(pbc))
    if periodic:
        A, B, w = _periodic_basis(cell, pbc, src, fid)
        half = 0.5 * float(w.min())
    chunk = max(1, 1_000_000 // len(t_idx))
    for start in range(0, len(h_idx), chunk):
        hs = h_idx[start : start + chunk]
        d = pos[hs][:, None, :] - pos[t_idx][None, :, :]
        if periodic:
            d -= np.rint(d @ B) @ A
        r2 = np.einsum("hkc,hkc->hk", d, d)
        best = np.argmin(r2, axis=1)
        if periodic:
            # rint gives the true minimum image for distances below half the cell width;
            # rows whose nearest candidate is farther are redone with ASE's exact find_mic.
            far = np.flatnonzero(r2[np.arange(len(hs)), best] >= half * half)
            if far.size:
                from ase.geometry import find_mic

                for row in far:
                    dd = pos[hs[row]][None, :] - pos[t_idx]
                    _, dist = find_mic(dd, cell, pbc)
                    best[row] = int(np.argmin(dist))
        mol[hs] = mol[t_idx[best]]
    return mol

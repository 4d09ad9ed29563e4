"""Grid projection of the force-matching loss: F = M·g, built once per dataset.

A pair potential enters the predicted forces only through ``U'(r)`` of each pair,
and linearly.  Sampling ``g = U'`` on a uniform grid of every type pair and
interpolating it to the pair distances (4-point Lagrange, cubic) turns the force
prediction into ``F ≈ M g`` with a fixed matrix ``M`` (3·n_atoms × n_grid).  The
weighted force loss then depends on the data only through

    A = MᵀWM,   b = MᵀWF⁰,   c = F⁰ᵀWF⁰,

which are accumulated once, frame chunk by frame chunk (memory bounded by the
chunk, never by the number of pairs).  With ``A = VΛVᵀ`` the loss is exactly

    ‖W^½(Mg − F⁰)‖² = ‖Rg − z‖² + c⊥,   R = Λ^½Vᵀ,  z = Λ^-½Vᵀb,  c⊥ = c − ‖z‖²,

so a least-squares solver can use the short residual ``Rg − z`` (one entry per
grid node, independent of the number of pairs) and its Jacobian ``R ∂g/∂θ``.

The only approximation is the interpolation of ``U'`` between grid nodes.  Its
effect is bounded by :meth:`ForceProjection.error_bound`: with ``ε_k`` the
interpolation error of ``U'`` in grid cell ``k`` (measured at the cell midpoint,
where the error of interior cubic stencils peaks) and ``G`` the matrix of
``|u_c|·w`` summing every pair's unit-vector component into its atom's row and its
cell's column, the force error obeys ``‖W^½ΔF‖ ≤ ‖Gε‖`` (the worst case, in which the
errors of all pairs of an atom add up), so ``|√L_proj − √L_exact| ≤ √(εᵀHε/n)``
with ``H = GᵀG`` accumulated next to ``A``.  Exact pair-wise evaluation stays the
reference (:class:`mctsff.fit.Fitter` reports exact RMSEs of every projected fit).

Dense linear algebra runs with one BLAS thread (``threadpoolctl``): these matrices
are small, and oversubscribed BLAS threads slow an eigen-decomposition 100-fold on a
loaded machine.

Energies are not projected: a projection serves force rows only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import scipy.linalg
from threadpoolctl import threadpool_limits

from mctsff.expr import kernels
from mctsff.expr.program import Program

__all__ = ["ForceProjection", "ProjectionError", "DEFAULT_SPACING"]

#: Default grid spacing in Å (cubic interpolation): relative force error ≲ 1e-4
#: for r⁻¹³ repulsion above 2.4 Å, much less for Coulomb and exponentials.
DEFAULT_SPACING = 0.05

#: Eigenvalues of A below this fraction of the largest are treated as zero.
_RCOND = 1e-13

#: Largest dense chunk (rows × grid columns) built at once, in float64 entries.
_CHUNK_ENTRIES = 2_000_000


class ProjectionError(ValueError):
    """A projection cannot be built from these data or options."""


def _lagrange4(t: np.ndarray) -> np.ndarray:
    """Weights (n, 4) of the cubic Lagrange interpolant through nodes 0,1,2,3 at ``t``."""
    t0, t1, t2, t3 = t, t - 1.0, t - 2.0, t - 3.0
    return np.stack(
        [-t1 * t2 * t3 / 6.0, t0 * t2 * t3 / 2.0, -t0 * t1 * t3 / 2.0, t0 * t1 * t2 / 6.0],
        axis=1,
    )


@dataclass
class _Grid:
    """Uniform grids of every type pair, concatenated into one column space."""

    spacing: float
    lo: np.ndarray  # (P,) first node of each type pair
    n: np.ndarray  # (P,) nodes of each type pair
    offset: np.ndarray  # (P + 1,) first column of each type pair

    @classmethod
    def build(cls, r_min: np.ndarray, cutoff: float, spacing: float) -> _Grid:
        P = len(r_min)
        lo = np.empty(P)
        n = np.empty(P, dtype=np.int64)
        for t in range(P):
            a = r_min[t] if math.isfinite(r_min[t]) else cutoff - 3 * spacing
            lo[t] = spacing * math.floor(a / spacing)
            n[t] = max(4, math.ceil((cutoff - lo[t]) / spacing) + 1)
        offset = np.concatenate([[0], np.cumsum(n)]).astype(np.int64)
        return cls(float(spacing), lo, n, offset)

    @property
    def size(self) -> int:
        return int(self.offset[-1])

    def nodes(self) -> tuple[np.ndarray, np.ndarray]:
        """Distances (size,) and type-pair index (size,) of every column."""
        r = np.concatenate([self.lo[t] + self.spacing * np.arange(k) for t, k in enumerate(self.n)])
        group = np.repeat(np.arange(len(self.n), dtype=np.int64), self.n)
        return r, group

    def midpoints(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cell midpoints (distance, type pair, cell column) of every cell."""
        r, g, c = [], [], []
        for t, k in enumerate(self.n):
            cells = np.arange(k - 1)
            r.append(self.lo[t] + self.spacing * (cells + 0.5))
            g.append(np.full(k - 1, t, dtype=np.int64))
            c.append(self.offset[t] + cells)
        return np.concatenate(r), np.concatenate(g), np.concatenate(c)

    def stencil(self, r: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Columns (n, 4), weights (n, 4) and cell column (n,) of distances ``r`` of type ``t``."""
        x = (r - self.lo[t]) / self.spacing
        nt = self.n[t]
        cell = np.clip(np.floor(x).astype(np.int64), 0, nt - 2)
        k0 = np.clip(cell - 1, 0, nt - 4)
        w = _lagrange4(x - k0)
        cols = (self.offset[t] + k0)[:, None] + np.arange(4)
        return cols, w, self.offset[t] + cell


class ForceProjection:
    """Projected force-matching loss of one dataset (see the module docstring).

    Build with :meth:`from_dataset` (in-memory data) or :meth:`from_frames` (any iterable
    of datasets, e.g. frame chunks streamed from a file).  Evaluate with :meth:`residual`
    (for least squares), :meth:`loss`, and :meth:`error_bound`.

    Attributes
    ----------
    spacing : float
        Grid spacing in Å.
    n_grid : int
        Grid nodes over all type pairs (length of ``g``).
    rank : int
        Kept eigen-directions of ``A`` (length of the reduced residual).
    n_rows : int
        Force components the projection summarises (3 × atoms).
    n_pairs : int
        Pairs the projection summarises.
    """

    def __init__(self, acc: _Accumulator):
        grid = acc.grid
        self.grid = grid
        self.type_pairs = acc.type_pairs
        self.species = tuple(sorted({s for tp in acc.type_pairs for s in tp}))
        self.spacing = grid.spacing
        self.cutoff = acc.cutoff
        self.path = acc.path
        self.force_array = acc.force_array
        self.n_rows = int(acc.n_rows)
        self.n_pairs = int(acc.n_pairs)
        self.n_frames = int(acc.n_frames)
        self.rms_forces = math.sqrt(acc.sum_f2 / max(self.n_rows, 1))
        with threadpool_limits(limits=1, user_api="blas"):
            lam, V = scipy.linalg.eigh(acc.A, driver="evr")
        keep = lam > _RCOND * max(lam[-1], 0.0)
        lam, V = lam[keep], V[:, keep]
        # everything per force component: loss() is the weighted mean square
        scale = 1.0 / math.sqrt(max(self.n_rows, 1))
        self.R = np.ascontiguousarray(scale * np.sqrt(lam)[:, None] * V.T)
        self.z = scale * (V.T @ acc.b) / np.sqrt(lam)
        self.c = acc.c * scale * scale
        self.c_perp = max(self.c - float(self.z @ self.z), 0.0)
        self.H = acc.H * (scale * scale)
        self.rank = int(lam.size)
        self.n_grid = grid.size
        self.r_nodes, self.group_nodes = grid.nodes()
        mid_r, mid_g, mid_cell = grid.midpoints()
        occ = acc.occupied[mid_cell]
        self.mid_r, self.mid_g, self._mid_cell = mid_r[occ], mid_g[occ], mid_cell[occ]
        self._mid_cols, self._mid_w, _ = grid.stencil(self.mid_r, self.mid_g)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dataset(
        cls,
        ds,
        spacing: float = DEFAULT_SPACING,
        weights: np.ndarray | None = None,
        r_min: np.ndarray | None = None,
    ) -> ForceProjection:
        """Projection of an in-memory :class:`~mctsff.data.Dataset`.

        Parameters
        ----------
        ds : Dataset
            Frames with pairs and reference forces.
        spacing : float
            Grid spacing in Å (> 0).
        weights : ndarray, optional
            Per-component weights of the residual, shape ``(n_atoms*3,)`` or
            ``(n_atoms, 3)``; they multiply the residual (the loss carries their squares).
        r_min : ndarray, optional
            First grid distance of each type pair; default the shortest pair of that type.
        """
        return cls.from_frames([ds], spacing, weights=[weights], r_min=r_min)

    @classmethod
    def from_frames(
        cls,
        chunks: Iterable,
        spacing: float = DEFAULT_SPACING,
        *,
        weights: Iterable[np.ndarray | None] | None = None,
        r_min: np.ndarray | None = None,
    ) -> ForceProjection:
        """Accumulate a projection over datasets that share species and cutoff.

        Each chunk is processed in row blocks of at most ~16 MB, so memory is bounded by
        the largest chunk passed in.  ``r_min`` (first grid distance per type pair) must be
        given when ``chunks`` is a one-pass stream; otherwise the chunks are materialised
        to find it (see :meth:`from_file` for a two-pass stream).
        """
        _check_spacing(spacing)
        if r_min is None:
            chunks = list(chunks)
            shortest: dict[tuple[str, str], float] = {}
            for ds in chunks:
                _update_shortest(shortest, ds)
            pairs = chunks[0].type_pairs if chunks else ()
            r_min = np.array([shortest.get(tuple(tp), math.inf) for tp in pairs])
        wlist = list(weights) if weights is not None else None
        acc = None
        for k, ds in enumerate(chunks):
            if acc is None:
                acc = _Accumulator(ds, r_min, spacing)
            w = None if wlist is None or wlist[k] is None else np.asarray(wlist[k], float).ravel()
            acc.add(ds, w)
        if acc is None:
            raise ProjectionError("no data to project")
        return acc.finish(cls)

    @classmethod
    def from_file(
        cls,
        path,
        cutoff: float,
        spacing: float = DEFAULT_SPACING,
        *,
        chunk_frames: int = 16,
        **options,
    ) -> ForceProjection:
        """Projection of a whole trajectory file read in chunks of frames (two passes).

        See :meth:`split_file`, of which this is the ``valid_fraction=0`` case.
        """
        train, _ = cls.split_file(
            path, cutoff, spacing, valid_fraction=0.0, chunk_frames=chunk_frames, **options
        )
        return train

    @classmethod
    def split_file(
        cls,
        path,
        cutoff: float,
        spacing: float = DEFAULT_SPACING,
        *,
        valid_fraction: float = 0.2,
        seed: int = 0,
        chunk_frames: int = 16,
        **options,
    ) -> tuple[ForceProjection, ForceProjection | None]:
        """Training and validation projections of a file too large for memory.

        The first pass over the file finds the frames, species and the shortest pair of
        every type pair; the frames are split exactly as :meth:`mctsff.data.Dataset.split`
        would split them; the second pass accumulates each chunk's training frames into
        one projection and its validation frames into another.  At most ``chunk_frames``
        frames with their pairs are in memory at any time.  ``options`` are those of
        :func:`mctsff.data.load_dataset` (``forces``, ``molecules``, ``intermolecular``).
        :meth:`holdout_file` holds out test frames too.

        Returns
        -------
        (ForceProjection, ForceProjection or None)
            ``(train, valid)``; ``valid`` is ``None`` when no frame is held out.
        """
        train, valid, _ = cls.holdout_file(
            path,
            cutoff,
            spacing,
            valid_fraction=valid_fraction,
            test_fraction=0.0,
            seed=seed,
            chunk_frames=chunk_frames,
            **options,
        )
        return train, valid

    @classmethod
    def holdout_file(
        cls,
        path,
        cutoff: float,
        spacing: float = DEFAULT_SPACING,
        *,
        valid_fraction: float = 0.2,
        test_fraction: float = 0.2,
        seed: int = 0,
        chunk_frames: int = 16,
        **options,
    ) -> tuple[ForceProjection, ForceProjection | None, ForceProjection | None]:
        """Training, validation and test projections of a file too large for memory.

        As :meth:`split_file`, with the frames split exactly as
        :meth:`mctsff.data.Dataset.split_holdout` splits them (:func:`mctsff.data.holdout_frames`).
        The test frames shape nothing but the test projection: the training and
        validation grids start at the shortest pair of their own frames (the first pass
        keeps each frame's shortest pair per type pair), so the fit's grid and repulsive
        wall do not depend on the test frames.

        Returns
        -------
        (ForceProjection, ForceProjection or None, ForceProjection or None)
            ``(train, valid, test)``; a part without frames is ``None``.
        """
        from mctsff.data import holdout_frames, iter_chunks

        _check_spacing(spacing)
        species: set[str] = set()
        # (file frame ids of a chunk, type pair, shortest pair of that type per frame)
        shortest: list[tuple[np.ndarray, tuple[str, str], np.ndarray]] = []
        n_frames = 0
        for ds in iter_chunks(path, cutoff, chunk_frames, **options):
            n_frames += ds.n_frames
            species.update(ds.species)
            for t, tp in enumerate(ds.type_pairs):
                sel = ds.pair_type == t
                if np.any(sel):
                    m = np.full(ds.n_frames, math.inf)
                    np.minimum.at(m, np.asarray(ds.pair_frame)[sel], np.asarray(ds.r)[sel])
                    shortest.append((np.asarray(ds.frame_ids), (tp[0], tp[1]), m))
        sp = tuple(sorted(species))
        tps = [(sp[a], sp[b]) for a in range(len(sp)) for b in range(a, len(sp))]
        _, valid_ids, test_ids = holdout_frames(
            n_frames, valid_fraction, test_fraction, seed, str(path)
        )
        part = np.zeros(n_frames, dtype=np.int8)  # 0 train, 1 validation, 2 test
        for k, ids in ((1, valid_ids), (2, test_ids)):
            if ids is not None:
                part[ids] = k

        def r_min(parts: tuple[int, ...]) -> np.ndarray:
            low: dict[tuple[str, str], float] = {}
            for ids, tp, m in shortest:
                keep = np.isin(part[ids], parts)
                if np.any(keep):
                    low[tp] = min(low.get(tp, math.inf), float(m[keep].min()))
            return np.array([low.get(tp, math.inf) for tp in tps])

        fitted = r_min((0, 1))
        grids = {0: fitted, 1: fitted, 2: r_min((2,))}
        accs: dict[int, _Accumulator] = {}
        for ds in iter_chunks(path, cutoff, chunk_frames, species=sp, **options):
            where = part[ds.frame_ids]
            for k in (0, 1, 2):
                sel = np.flatnonzero(where == k)
                if sel.size == 0:
                    continue
                sub = ds if sel.size == ds.n_frames else ds.subset(sel)
                if k not in accs:
                    accs[k] = _Accumulator(sub, grids[k], spacing)
                accs[k].add(sub, None)
        if 0 not in accs:
            raise ProjectionError(f"{path}: no training frames")
        train = accs[0].finish(cls)
        valid = accs[1].finish(cls) if 1 in accs else None
        test = accs[2].finish(cls) if 2 in accs else None
        return train, valid, test

    # ------------------------------------------------------------------ evaluation
    def grid_values(
        self, prog: Program, consts: np.ndarray, T: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """``g = U'`` at the grid nodes and, with the derivative tensor ``T``, ``∂g/∂θ``."""
        if T is None:
            _, d, _, _ = prog.evaluate(self.r_nodes, consts, self.group_nodes, mode=kernels.MODE_D)
            return d, None
        _, d, _, h = prog.evaluate(self.r_nodes, consts, self.group_nodes, mode=kernels.MODE_ALL)
        dg = np.einsum("nk,nkm->nm", h, T[self.group_nodes])
        return d, dg

    def residual(
        self, prog: Program, consts: np.ndarray, T: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Reduced residual ``Rg − z`` (length :attr:`rank`) and its Jacobian ``R ∂g/∂θ``.

        ``‖residual‖² + c_perp`` is the projected weighted mean square (:meth:`loss`).
        """
        g, dg = self.grid_values(prog, consts, T)
        res = self.R @ g - self.z
        return res, (None if dg is None else self.R @ dg)

    def loss(self, prog: Program, consts: np.ndarray) -> float:
        """Projected weighted mean square ``‖W^½(Mg − F⁰)‖² / n_rows``."""
        res, _ = self.residual(prog, consts)
        return float(res @ res) + self.c_perp

    def cell_errors(self, prog: Program, consts: np.ndarray) -> np.ndarray:
        """|U'_interp − U'| at the midpoint of every occupied cell, by cell column (eV/Å)."""
        eps = np.zeros(self.n_grid)
        if self.mid_r.size == 0:
            return eps
        g, _ = self.grid_values(prog, consts)
        _, d, _, _ = prog.evaluate(self.mid_r, consts, self.mid_g, mode=kernels.MODE_D)
        interp = np.einsum("nk,nk->n", g[self._mid_cols], self._mid_w)
        err = np.abs(interp - d)
        eps[self._mid_cell] = np.where(np.isfinite(err), err, np.inf)
        return eps

    def interpolation_error(self, prog: Program, consts: np.ndarray) -> float:
        """Largest |U'_interp − U'| over the cell midpoints of occupied cells (eV/Å)."""
        return float(self.cell_errors(prog, consts).max())

    def error_bound(self, prog: Program, consts: np.ndarray) -> dict[str, float]:
        """Bound on the projection's effect at these constants.

        Returns
        -------
        dict
            ``interp_error`` max ε (eV/Å), ``bound_sqrt_loss`` √(εᵀHε/n) (bound on
            |√L_proj − √L_exact|),
            ``loss_projected`` and ``loss_rel_bound`` (bound on |L_proj − L_exact| / L_proj).
        """
        cells = self.cell_errors(prog, consts)
        eps = float(cells.max())
        L = self.loss(prog, consts)
        if math.isfinite(eps):
            delta = math.sqrt(max(float(cells @ (self.H @ cells)), 0.0))
        else:
            delta = math.inf
        s = math.sqrt(L) if L > 0 else 0.0
        rel = (2 * s * delta + delta * delta) / L if L > 0 else math.inf
        return {
            "interp_error": eps,
            "bound_sqrt_loss": delta,
            "loss_projected": L,
            "loss_rel_bound": rel,
        }

    def nbytes(self) -> int:
        """Memory held by the projection (bytes)."""
        arrays = (self.R, self.z, self.H, self.r_nodes, self.group_nodes)
        return int(sum(a.nbytes for a in arrays))

    def __repr__(self) -> str:
        """Settings and size, and the weighted sum of squared forces it summarises (``c``,
        accumulated serially, so the same data and weights give the same text in every
        process: a resumed search notices a projection of another grid or weighting)."""
        return (
            f"ForceProjection(spacing={self.spacing:g}, cutoff={self.cutoff:g}, "
            f"n_grid={self.n_grid}, n_pairs={self.n_pairs}, n_rows={self.n_rows}, "
            f"c={self.c:.10g})"
        )

    def describe(self) -> dict[str, float | int]:
        """Summary for logs and JSON."""
        return {
            "spacing": self.spacing,
            "n_grid": self.n_grid,
            "rank": self.rank,
            "n_pairs": self.n_pairs,
            "n_rows": self.n_rows,
            "megabytes": round(self.nbytes() / 2**20, 3),
        }


def _check_spacing(spacing) -> None:
    if isinstance(spacing, bool) or not (
        isinstance(spacing, int | float) and math.isfinite(spacing) and spacing > 0
    ):
        raise ProjectionError(f"projection spacing must be a positive number of Å, not {spacing!r}")


class _Accumulator:
    """Running sums A, b, c, H of one projection, fed dataset by dataset."""

    def __init__(self, first, r_min, spacing: float):
        self.type_pairs = tuple(tuple(p) for p in first.type_pairs)
        self.cutoff = float(first.cutoff)
        self.path = first.path
        self.force_array = getattr(first, "force_array", "forces")
        r_min = np.asarray(r_min, dtype=float)
        if r_min.shape != (len(self.type_pairs),):
            raise ProjectionError(
                f"r_min needs one value per type pair {self.type_pairs}, got {r_min.shape}"
            )
        self.grid = _Grid.build(r_min, self.cutoff, float(spacing))
        n = self.grid.size
        self.A = np.zeros((n, n))
        self.H = np.zeros((n, n))
        self.b = np.zeros(n)
        self.occupied = np.zeros(n, dtype=bool)
        self.c = self.sum_f2 = 0.0
        self.n_rows = self.n_pairs = self.n_frames = 0

    def add(self, ds, w: np.ndarray | None) -> None:
        if tuple(tuple(p) for p in ds.type_pairs) != self.type_pairs:
            raise ProjectionError(
                f"all chunks of a projection need the same type pairs {self.type_pairs}"
            )
        if float(ds.cutoff) != self.cutoff:
            raise ProjectionError("all chunks of a projection need the same cutoff")
        with threadpool_limits(limits=1, user_api="blas"):
            dc, rows, pairs = _accumulate(self.grid, ds, w, self.A, self.b, self.H, self.occupied)
        self.c += dc
        self.sum_f2 += float(np.sum(np.square(ds.forces)))
        self.n_rows += rows
        self.n_pairs += pairs
        self.n_frames += int(ds.n_frames)

    def finish(self, cls) -> ForceProjection:
        if self.n_pairs == 0:
            raise ProjectionError("the data have no pairs within the cutoff")
        return cls(self)


def _accumulate(grid: _Grid, ds, w, A, b, H, occupied) -> tuple[float, int, int]:
    """Add one dataset's rows to A, b and H; return (c, rows, pairs)."""
    F0 = np.asarray(ds.forces, dtype=np.float64).ravel()
    if w is None:
        w = np.ones(F0.size)
    elif w.shape != F0.shape:
        raise ProjectionError(f"weights have shape {w.shape}, expected ({F0.size},)")
    ncol = grid.size
    fo = np.asarray(ds.frame_offsets)
    po = ds.pair_offsets
    max_atoms = max(1, _CHUNK_ENTRIES // (3 * ncol))
    c = float(np.sum((w * F0) ** 2))
    f0 = 0
    while f0 < ds.n_frames:
        # frames [f0, f1) whose atoms fit one block (at least one frame)
        f1 = f0 + 1
        while f1 < ds.n_frames and fo[f1 + 1] - fo[f0] <= max_atoms:
            f1 += 1
        a0, a1 = int(fo[f0]), int(fo[f1])
        p0, p1 = int(po[f0]), int(po[f1])
        f0 = f1
        if p1 == p0:
            continue
        r = ds.r[p0:p1]
        t = np.asarray(ds.pair_type[p0:p1], dtype=np.int64)
        u = ds.u[p0:p1]
        pi = np.asarray(ds.pair_i[p0:p1]) - a0
        pj = np.asarray(ds.pair_j[p0:p1]) - a0
        cols, wts, cell = grid.stencil(r, t)
        occupied[cell] = True
        idx, val, gidx, gval = [], [], [], []
        for comp in range(3):
            for atoms, sign in ((pi, -1.0), (pj, 1.0)):
                row = 3 * atoms + comp
                idx.append(((row * ncol)[:, None] + cols).ravel())
                val.append(((sign * u[:, comp])[:, None] * wts).ravel())
                gidx.append(row * ncol + cell)
                gval.append(np.abs(u[:, comp]))
        wb = w[3 * a0 : 3 * a1]
        D = _dense_block(idx, val, wb, ncol)
        A += D.T @ D
        b += D.T @ (wb * F0[3 * a0 : 3 * a1])
        D = _dense_block(gidx, gval, wb, ncol)
        H += D.T @ D
    return c, int(F0.size), int(ds.n_pairs)


def _dense_block(index: list, value: list, wb: np.ndarray, ncol: int) -> np.ndarray:
    """Row block (len(wb), ncol) summing ``value`` at flat ``index``, rows scaled by ``wb``."""
    nrow = wb.size
    D = np.bincount(np.concatenate(index), np.concatenate(value), nrow * ncol)
    return D.reshape(nrow, ncol) * wb[:, None]


def _update_shortest(r_min: dict[tuple[str, str], float], ds) -> None:
    """Lower ``r_min[type pair]`` to the shortest pair of each type in ``ds``."""
    for t, tp in enumerate(ds.type_pairs):
        sel = ds.r[ds.pair_type == t]
        if sel.size:
            r_min[tuple(tp)] = min(r_min.get(tuple(tp), math.inf), float(sel.min()))

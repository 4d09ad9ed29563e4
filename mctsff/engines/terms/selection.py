"""Sparse selection of sets of terms from the dictionary: a beam of forward selections
(orthogonal matching pursuit) with line-refined candidates, variable-projection refinement
of the best sets' nonlinear constants, a Pareto beam per number of nonlinear constants and
backward elimination."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np

from .columns import Atom, Dictionary, lstsq

__all__ = ["EXCHANGE_LEVELS", "EXCHANGE_TRIALS", "LINE_STEP", "PROJECTION_CANCEL", "Selection"]

#: First step (a factor) of the line search on a term's nonlinear constants.
LINE_STEP = 1.1

#: Replacements refined per number of nonlinear constants when a term is exchanged.
EXCHANGE_TRIALS = 2

#: Besides the sets best by the criterion, the lowest-loss set with each number of
#: nonlinear constants up to this one has its terms exchanged (the criterion's best sets are
#: the most flexible; a sparse set one exchange from the true one is often among these).
EXCHANGE_LEVELS = 1

#: An atom whose columns lose more than this share of some column's squared norm to the
#: set they are projected off has its projected Gram matrix computed from the projected
#: columns (:meth:`Selection._gains`), not as the difference of two Gram matrices.
PROJECTION_CANCEL = 1e-4

#: A set of terms with its loss.
Scored = tuple[float, list[Atom]]


class Selection:
    """One run of the selection on a :class:`~.columns.Dictionary`.

    Parameters
    ----------
    dictionary
        The shapes' columns and the forces they are fitted to.
    max_terms
        Largest number of terms in a set.
    beam
        Sets kept per number of terms and number of nonlinear constants.
    candidates
        Shapes added to each set per number of nonlinear constants (twice as many to the
        empty set).
    refine_nfev
        Residual evaluations of each set's refinement (0: grid values only).
    refine_per_level
        New sets refined per number of terms and number of nonlinear constants (the
        lowest-loss ones at their line-refined constants); the others keep that loss.
    exchanges
        Best sets per number of terms (by :meth:`criterion`) improved by exchanging their
        terms (:meth:`exchange`), with the lowest-loss set of each number of nonlinear
        constants up to :data:`EXCHANGE_LEVELS` (0: none).
    basins
        Local optima of a shape's gain over its grid refined as candidates in an exchange.
    check
        Called between steps (it may raise to end the selection).
    """

    def __init__(
        self,
        dictionary: Dictionary,
        *,
        max_terms: int,
        beam: int,
        candidates: int,
        refine_nfev: int,
        refine_per_level: int,
        exchanges: int = 0,
        basins: int = 2,
        check: Callable[[], None] = lambda: None,
    ) -> None:
        self.dictionary = dictionary
        self.max_terms = int(max_terms)
        self.beam = int(beam)
        self.candidates = int(candidates)
        self.refine_nfev = int(refine_nfev)
        self.refine_per_level = int(refine_per_level)
        self.exchanges = int(exchanges)
        self.basins = int(basins)
        #: replacements refined per number of nonlinear constants in an exchange
        self.check = check
        y = dictionary.y
        #: losses below this are rounding: equal for the beam (the first found kept first)
        self.floor = 1e-14 * float(y @ y)

    def run(self, atoms: list[Atom], blocks: list[np.ndarray]) -> dict[int, list[Scored]]:
        """Forward selection with a beam: for each number of terms the best sets of terms
        (distinct shapes), by the loss of all their amplitudes solved together after their
        nonlinear constants are refined; the candidates added to a set are the shapes whose
        best grid point lowers its residual most (orthogonal matching pursuit).  Of the new
        sets, only the ``refine_per_level`` lowest-loss ones per number of nonlinear
        constants (at the line-refined constants) are refined.  Then each set of the
        beam without each of its terms (backward elimination), and the best sets with
        each term exchanged (:meth:`exchange`)."""
        d = self.dictionary
        y = d.y
        sizes = [b.shape[1] for b in blocks]
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        # the dictionary with one row per column (projections and Gram blocks read rows),
        # each atom scaled to a largest entry of 1 (its gains do not change) and entries
        # below 1e-100 of that set to 0: subnormal numbers slow every product down
        XallT = np.concatenate(blocks, axis=1).T.copy()
        amax = np.maximum.reduceat(np.abs(XallT).max(axis=1), offsets[:-1])
        overflow = ~(amax < 1e150)  # its Gram matrix would overflow: no candidate
        amax[overflow | (amax == 0)] = 1.0
        XallT /= np.repeat(amax, sizes)[:, None]
        XallT[np.abs(XallT) < 1e-100] = 0.0
        self._atoms, self._XallT, self._offsets, self._overflow = atoms, XallT, offsets, overflow
        self._shape_of = np.array([s for s, _ in atoms])
        self._neighbours = _grid_neighbours(atoms)
        states: list[Scored] = [(float(y @ y), [])]
        out: dict[int, list[Scored]] = {}
        for size in range(1, self.max_terms + 1):
            children: dict[frozenset, Scored] = {}
            for _, chosen in states:
                self.check()
                Q, r, gains = self._project(chosen)
                rr = float(r @ r)
                used = {s for s, _ in chosen}
                cap = self.candidates * (2 if not chosen else 1)
                for level in self._candidates(gains, Q, r, used, cap).values():
                    for g, s, values in level:
                        # the set's loss with all amplitudes solved: the residual less the gain
                        key = frozenset((*used, s))
                        loss = max(rr - g, 0.0)
                        if key not in children or loss < children[key][0]:
                            children[key] = (loss, [*chosen, (s, values)])
            states = self._pareto(self._refine_best(children.values()))
            if not states:
                break
            out[size] = states
        # backward elimination: each set without each of its terms, refitted
        for size in range(max(out, default=0), 1, -1):
            kept = {frozenset(s for s, _ in chosen) for _, chosen in out[size - 1]}
            subsets: dict[frozenset, Scored] = {}
            for _, chosen in out[size]:
                for i in range(len(chosen)):
                    rest = chosen[:i] + chosen[i + 1 :]
                    key = frozenset(s for s, _ in rest)
                    if key not in kept and key not in subsets:
                        subsets[key] = (d.loss(rest), rest)
            refined = self._refine_best(subsets.values())
            out[size - 1] = self._pareto([*out[size - 1], *refined])
        if self.exchanges > 0:
            self._replacement_memo: dict = {}
            for size in sorted(out):
                if size < 2:
                    continue  # the forward step's candidates are the best single terms
                best = sorted(out[size], key=self.criterion)[: self.exchanges]
                # and the lowest-loss set with each number of nonlinear constants up to
                # EXCHANGE_LEVELS (the beam is sorted by loss within a number)
                firsts: dict[int, Scored] = {}
                for item in out[size]:
                    firsts.setdefault(sum(len(v) for _, v in item[1]), item)
                best += [
                    item
                    for level, item in sorted(firsts.items())
                    if level <= EXCHANGE_LEVELS and all(item is not b for b in best)
                ]
                found = [self.exchange(item) for item in best]
                new = [item for item, old in zip(found, best, strict=True) if item is not old]
                if new:
                    out[size] = self._pareto([*out[size], *new])
        return out

    def criterion(self, item: Scored) -> float:
        """Schwarz's criterion of a set (misfit against its amplitudes and nonlinear
        constants, one per term and one per constant): the sets' ranking."""
        loss, chosen = item
        n = self.dictionary.y.size
        k = len(chosen) + sum(len(v) for _, v in chosen)
        return n * math.log((loss + self.floor) / n) + k * math.log(n)

    def exchange(self, item: Scored) -> Scored:
        """A set improved by exchanging one term at a time (the set returned as given
        where no exchange improves it).

        Each term in turn (those with the most nonlinear constants first) is taken out and
        shapes with at most as many nonlinear constants are tried in its place
        (:meth:`_replacements`): per number of nonlinear constants the
        :data:`EXCHANGE_TRIALS` that lower the rest's residual most at their line-refined
        constants, each refined with the rest (:meth:`refine`).  The exchange that lowers
        the :meth:`criterion` most is kept, and the passes repeat (at most one per term)
        while one does.  So a sum as exact with fewer constants replaces one a flexible
        term made exact (a Morse term with its minimum beyond the data standing in for an
        exponential), and a term the forward selection added at a wrong constant or in
        place of another is exchanged."""
        best, score = item, self.criterion(item)
        for _ in range(len(item[1])):
            cur = best
            _, chosen = cur
            order = sorted(range(len(chosen)), key=lambda i: -len(chosen[i][1]))
            for i in order:
                self.check()
                removed = chosen[i]
                rest = chosen[:i] + chosen[i + 1 :]
                tried: dict[int, int] = {}
                for s, values in self._replacements(rest, len(removed[1])):
                    if s == removed[0] and values == removed[1]:
                        continue
                    tried[len(values)] = tried.get(len(values), 0) + 1
                    if tried[len(values)] > EXCHANGE_TRIALS:
                        continue
                    refined = self.refine([*rest[:i], (s, values), *rest[i:]])
                    refined_score = self.criterion(refined)
                    if refined_score < score:
                        best, score = refined, refined_score
            if best is cur:
                break
        return best

    def _replacements(self, rest: list[Atom], max_level: int) -> list[Atom]:
        """Terms to join ``rest`` with at most ``max_level`` nonlinear constants, per number
        of nonlinear constants the ``candidates`` that lower its residual most, largest
        gain first (kept per ``rest``).

        With ``max_level`` constants the candidates are drawn from the ``candidates`` shapes
        whose best grid point lowers the residual most (as in the forward step); with fewer,
        from every shape: a narrow optimum between two grid points (an exponential's short
        decay length) can rank a shape far down at its grid points and first once its
        constants are refined.  Each is refined on a line from its best ``basins`` local
        optima on the grid (:meth:`_candidates`)."""
        key = (tuple((s, tuple(sorted(v.items()))) for s, v in rest), max_level)
        memo = self._replacement_memo
        if key not in memo:
            Q, r, gains = self._project(rest)
            n = self.candidates
            pools = {
                k: (len(self.dictionary.shapes) if k < max_level else n)
                for k in range(max_level + 1)
            }
            levels = self._candidates(
                gains, Q, r, {s for s, _ in rest}, n, pool=pools, basins=self.basins
            )
            memo[key] = [(s, values) for level in levels.values() for _, s, values in level]
        return memo[key]

    def _project(self, chosen: list[Atom]):
        """``(Q, r, gains)``: an orthonormal basis of the set's columns (``None`` for the
        empty set), the residual of the forces off it, and every atom's gain on it
        (:meth:`_gains`)."""
        y = self.dictionary.y
        if chosen:
            Xc = self.dictionary.set_columns(chosen)
            Q, _ = np.linalg.qr(Xc)
            r = y - Q @ (Q.T @ y)
        else:
            Q, r = None, y
        gains = self._gains(Q, r)
        gains[self._overflow] = -np.inf
        return Q, r, gains

    def _candidates(
        self,
        gains: np.ndarray,
        Q,
        r: np.ndarray,
        used: set[int],
        cap: int,
        *,
        pool: int | dict[int, int] | None = None,
        basins: int = 1,
    ) -> dict[int, list[tuple[float, int, dict[str, float]]]]:
        """Per number of nonlinear constants, the ``cap`` shapes not in ``used`` that lower
        the residual ``r`` most: ``pool`` (twice ``cap``; a mapping: per number of
        nonlinear constants, none where it has none) shapes by their best grid point,
        then ``cap`` by their gain with the constants refined on a line
        (from each shape's best ``basins`` local optima on its grid, the best kept), as
        ``(gain, shape, constants)``, the largest gain first."""
        shapes = self.dictionary.shapes
        atoms, shape_of = self._atoms, self._shape_of
        n_pool = 2 * cap if pool is None else pool
        if not isinstance(n_pool, dict):
            n_pool = dict.fromkeys(range(max(len(x.nonlinear) for x in shapes) + 1), n_pool)
        by_level: dict[int, list[int]] = {}
        order = np.argsort(-gains, kind="stable")
        order = order[np.isfinite(gains[order])]
        _, first = np.unique(shape_of[order], return_index=True)
        for a in order[np.sort(first)]:  # each shape's best grid point, best first
            s = int(shape_of[a])
            if s in used:
                continue
            n_nonlinear = len(shapes[s].nonlinear)
            if len(by_level.get(n_nonlinear, ())) < n_pool.get(n_nonlinear, 0):
                by_level.setdefault(n_nonlinear, []).append(int(a))
        out = {}
        for n_nonlinear, level in by_level.items():
            scored = []
            for a in level:
                starts = [a] if basins <= 1 else self._basins(a, gains, basins)
                g, values = max(
                    (self._line_refine(atoms[b], float(gains[b]), Q, r) for b in starts),
                    key=lambda t: t[0],
                )
                scored.append((g, atoms[a][0], values))
            scored.sort(key=lambda t: -t[0])
            out[n_nonlinear] = scored[:cap]
        return out

    def _basins(self, a: int, gains: np.ndarray, k: int) -> list[int]:
        """The best ``k`` local optima of the gain over the grid of atom ``a``'s shape
        (``a``, its best grid point, first): grid points none of whose neighbours (one
        step along one constant) has a larger gain."""
        s = int(self._shape_of[a])
        mine = np.nonzero(self._shape_of == s)[0]
        optima = [
            int(b)
            for b in mine
            if np.isfinite(gains[b])
            and all(not gains[c] > gains[b] for c in self._neighbours.get(int(b), ()))
        ]
        optima.sort(key=lambda b: -gains[b])
        return [a, *[b for b in optima if b != a]][:k]

    def refine(self, chosen: list[Atom]) -> Scored:
        """The set's nonlinear constants refined from their grid values (variable
        projection: the amplitudes solved by least squares at every step); its loss."""
        from scipy.optimize import least_squares

        d = self.dictionary
        y, shapes = d.y, d.shapes
        names = [(i, c) for i, (_, v) in enumerate(chosen) for c in sorted(v)]
        if not names or self.refine_nfev <= 0:
            return d.loss(chosen), chosen
        x0 = np.array([chosen[i][1][c] for i, c in names])
        sign = np.where(x0 < 0, -1.0, 1.0)
        z0 = np.log(np.maximum(np.abs(x0), 1e-12))
        # each term's columns at its last few constants (a difference step moves one term)
        memo: list[dict] = [{} for _ in chosen]

        def at(z):
            vals = [dict(v) for _, v in chosen]
            for (i, c), zi, si in zip(names, z, sign, strict=True):
                vals[i][c] = float(si * math.exp(min(max(zi, -30.0), 30.0)))
            return [(s, v) for (s, _), v in zip(chosen, vals, strict=True)]

        def fun(z):
            blocks = []
            for i, (s, v) in enumerate(at(z)):
                key = tuple(sorted(v.items()))
                X = memo[i].get(key, False)
                if X is False:
                    if len(memo[i]) >= 8:
                        memo[i].clear()
                    X = memo[i][key] = d.columns(shapes[s], v)
                if X is None:
                    return np.full(y.size, 1e6)
                blocks.append(X)
            X = np.concatenate(blocks, axis=1)
            a = lstsq(X, y)
            return y - X @ a

        try:
            with np.errstate(all="ignore"):
                sol = least_squares(
                    fun, z0, method="trf", diff_step=1e-4, max_nfev=self.refine_nfev
                )
            best = at(sol.x)
            loss = float(sol.fun @ sol.fun)
        except (ValueError, np.linalg.LinAlgError):
            best, loss = chosen, math.inf
        start = d.loss(chosen)
        if not loss <= start:
            return start, chosen
        return loss, best

    def _refine_best(self, sets: Iterable[Scored]) -> list[Scored]:
        """The sets, the ``refine_per_level`` lowest-loss ones per number of nonlinear
        constants refined (:meth:`refine`), the others at their loss as given."""
        by_level: dict[int, list[Scored]] = {}
        for item in sorted(sets, key=self._rank):
            by_level.setdefault(sum(len(v) for _, v in item[1]), []).append(item)
        out = []
        for items in by_level.values():
            for i, (loss, chosen) in enumerate(items):
                self.check()
                if i < self.refine_per_level:
                    out.append(self.refine(chosen))
                else:
                    out.append((loss, chosen))
        return out

    def _gain(self, atom: Atom, Q, r) -> float:
        """Decrease of ``|r|²`` from adding one term (columns projected off ``Q``)."""
        X = self.dictionary.set_columns([atom])
        if X is None:
            return -math.inf
        # (a column that overflows gives a non-finite gain: the term is not taken)
        with np.errstate(over="ignore", invalid="ignore"):
            if Q is not None:
                X = X - Q @ (Q.T @ X)
            b = X.T @ r
            G = X.T @ X
            G = G + 1e-10 * max(float(np.trace(G)), 1e-300) * np.eye(G.shape[0])
            if not (np.isfinite(G).all() and np.isfinite(b).all()):
                return -math.inf
            try:
                g = float(b @ np.linalg.solve(G, b))
            except np.linalg.LinAlgError:
                return -math.inf
        return g if math.isfinite(g) else -math.inf

    def _line_refine(self, atom: Atom, gain: float, Q, r) -> tuple[float, dict[str, float]]:
        """A term's gain with its nonlinear constants refined one at a time from the best
        grid point (steps of a third of the grid's spacing in ``log|c|``, halved four
        times)."""
        s, values = atom
        values = dict(values)
        for name in sorted(values):
            v0 = values[name]
            if v0 == 0:
                continue
            step = math.log(LINE_STEP)
            for _ in range(4):
                for direction in (1.0, -1.0):
                    trial = dict(values)
                    trial[name] = values[name] * math.exp(direction * step)
                    g = self._gain((s, trial), Q, r)
                    if g > gain:
                        gain, values = g, trial
                        break
                step /= 2
        return gain, values

    def _rank(self, item: Scored) -> float:
        """Sort key of a set: its loss, those below the rounding floor all equal (a stable
        sort keeps them in the order they were found)."""
        return max(item[0], self.floor)

    def _pareto(self, sets: Iterable[Scored]) -> list[Scored]:
        """A Pareto beam: the ``beam`` lowest-loss sets for each number of nonlinear
        constants."""
        by_level: dict[int, list[Scored]] = {}
        for item in sorted(sets, key=self._rank):
            kept = by_level.setdefault(sum(len(v) for _, v in item[1]), [])
            if len(kept) < self.beam:
                kept.append(item)
        return [c for level in sorted(by_level) for c in by_level[level]]

    def _gram_blocks(self) -> list[tuple[int, np.ndarray, np.ndarray, bool, np.ndarray]]:
        """The atoms grouped by their number of columns ``m``: ``(m, atoms, rows, whole,
        G0)``, the rows of ``XallT`` of each atom (``len(atoms) × m``), whether the group is
        every atom in order, and each atom's Gram matrix of its own columns
        (``len(atoms) × m × m``)."""
        XallT, offsets = self._XallT, self._offsets
        n_atoms = offsets.size - 1
        sizes = np.diff(offsets)
        out = []
        with np.errstate(all="ignore"):
            for m in np.unique(sizes):
                idx = np.nonzero(sizes == m)[0]
                rows = offsets[idx][:, None] + np.arange(m)[None, :]
                whole = idx.size == n_atoms
                Xm = (
                    XallT.reshape(idx.size, m, -1)
                    if whole
                    else XallT[rows.ravel()].reshape(idx.size, m, -1)
                )
                out.append((int(m), idx, rows, whole, np.einsum("bin,bjn->bij", Xm, Xm)))
        return out

    def _gains(self, Q, r: np.ndarray) -> np.ndarray:
        """Decrease of ``|r|²`` from adding each atom's columns projected off ``Q`` (the
        rows of ``XallT``; atom ``a``'s are ``offsets[a]:offsets[a + 1]``).

        The projected Gram matrices are each atom's own (:meth:`_gram_blocks`, made once)
        less the part in the span of ``Q``; an atom that loses more than
        :data:`PROJECTION_CANCEL` of some column's squared norm to ``Q`` (where that
        difference would lose digits) has its columns projected explicitly instead."""
        if not hasattr(self, "_blocks"):
            self._blocks = self._gram_blocks()
        XallT = self._XallT
        n_atoms = self._offsets.size - 1
        gains = np.full(n_atoms, -np.inf)
        with np.errstate(all="ignore"):
            b_all = XallT @ r
            if Q is not None:
                B = XallT @ Q
                b_all -= B @ (Q.T @ r)
            for m, idx, rows, whole, G0 in self._blocks:
                b = (b_all if whole else b_all[rows.ravel()]).reshape(idx.size, m)
                if Q is None:
                    G = G0
                else:
                    Bm = (B if whole else B[rows.ravel()]).reshape(idx.size, m, -1)
                    G = G0 - np.einsum("bik,bjk->bij", Bm, Bm)
                    d0 = np.einsum("bii->bi", G0)
                    close = ~(np.einsum("bii->bi", G) >= PROJECTION_CANCEL * d0).all(axis=1)
                    if close.any():
                        sub = rows[close].ravel()
                        Xp = (XallT[sub] - B[sub] @ Q.T).reshape(-1, m, XallT.shape[1])
                        G[close] = np.einsum("bin,bjn->bij", Xp, Xp)
                scale = np.maximum(np.einsum("bii->b", G), 1e-300)
                G = G + (1e-10 * scale)[:, None, None] * np.eye(m)[None]
                sol = np.linalg.solve(G, b[..., None])[..., 0]
                g = np.einsum("bi,bi->b", b, sol)
                gains[idx] = np.where(np.isfinite(g), g, -np.inf)
        return gains


def _grid_neighbours(atoms: list[Atom]) -> dict[int, list[int]]:
    """For each atom, the atoms of its shape one grid step away along one constant (the
    grid's values of each constant in order; atoms left out of the grid have none)."""
    by_shape: dict[int, list[int]] = {}
    for a, (s, _) in enumerate(atoms):
        by_shape.setdefault(s, []).append(a)
    out: dict[int, list[int]] = {}
    for members in by_shape.values():
        names = sorted(atoms[members[0]][1])
        if not names:
            continue
        axes = [sorted({atoms[a][1][n] for a in members}) for n in names]
        index = {
            tuple(ax.index(atoms[a][1][n]) for ax, n in zip(axes, names, strict=True)): a
            for a in members
        }
        for pos, a in index.items():
            near = []
            for k in range(len(names)):
                for step in (-1, 1):
                    other = (*pos[:k], pos[k] + step, *pos[k + 1 :])
                    if other in index:
                        near.append(index[other])
            out[a] = near
    return out

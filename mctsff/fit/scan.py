"""Starting points of a fit from a scan of the nonlinear constants.

Most constants of a pair potential enter it linearly (amplitudes: charges, C6,
Born–Mayer prefactors); the rest (ranges, exponents, a Morse r0) are few.  For
fixed nonlinear constants the forces are linear in the amplitudes, so the best
amplitudes and the *reduced* loss ρ(β) = min_a L(β, a) come from one linear
least-squares solve (variable projection).  :func:`grid` lays the nonlinear
constants on physical grids (decay lengths log-spaced from a few hundredths of an
Ångström to one and a half cutoffs, distances such as a Morse ``r0`` across the data's
range of ``r``, inverse lengths as their reciprocals, other constants on a signed
logarithmic ladder), and :func:`local_minima` picks the grid points from which a
local solver should start: every local minimum of ρ on the grid, best first.

A narrow basin (a short exponential range, whose loss is a needle in the range
constant) is still found: its grid neighbour is a local minimum of the profile
even when another basin is lower on the grid, and the local solver then slides
into it.  A basin narrower than the grid's step, which no grid point sees, is
looked for between grid points along the grid's lines and traced along its valley
(:func:`needles`): a point whose reduced loss falls to :data:`NEEDLE` times that of
the grid points beside it or below starts a local solve too.
"""

from __future__ import annotations

import ast
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Axis",
    "axes_for",
    "grid",
    "line_minima",
    "local_minima",
    "needles",
    "shift_constants",
    "NEEDLE",
    "REFINE_POINTS",
    "STRIDE",
    "SCAN_POINTS",
]

#: Largest number of grid points of one scan (the product of the axes' sizes is cut
#: to this by thinning every axis alike).
SCAN_POINTS = 150
#: Points of a one-dimensional scan.
POINTS_1D = 40
#: Shortest decay length scanned (Å).
SHORTEST_LENGTH = 0.03
#: Longest decay length scanned, as a multiple of the cutoff (Ewald-like damping
#: ``erfc(a*r)`` has lengths 1/a beyond half the cutoff).
LONGEST = 1.5
#: Span (Å) above the shortest distance of the data over which shifts (``r - r0``) are scanned.
SHIFT_SPAN = 4.0
#: Signed ladder of constants that are neither lengths nor inverse lengths.
OTHER_LADDER = (0.1, 0.3, 1.0, 3.0, 10.0)
#: Largest number of points :func:`needles` tries between grid points (the lowest line
#: minima first), and again to trace the valleys of the needles found (only where one
#: is).  Each costs one solve of the prefactors, like a grid point.
REFINE_POINTS = 64
#: Parabola steps that follow a funnel found between grid points (:func:`needles`).
FOLLOW = 3
#: Where :func:`needles` probes an interval beside a line minimum without a parabola
#: vertex in it: this share of the way to the neighbour.  A funnel whose ``log ρ`` is
#: V-shaped shows below the minimum at a probe closer to its centre than the minimum,
#: so a third of the way sees funnels centred from about a sixth of the interval on
#: (halfway: from a quarter on).
STRIDE = 1.0 / 3.0
#: A point between grid points whose reduced loss is at most this share of the grid
#: points' beside it lies in a basin narrower than the grid's step (a needle), and
#: starts a local solve.
NEEDLE = 0.1


@dataclass(frozen=True)
class Axis:
    """One scanned constant: the parameter indices it sets and its candidate values."""

    name: str
    index: tuple[int, ...]
    kind: str  # "length", "shift", "inverse", "other"

    def values(self, n: int, cutoff: float, r_min: float) -> np.ndarray:
        """``n`` candidate values of this constant."""
        n = max(int(n), 2)
        if self.kind == "length":
            return np.geomspace(SHORTEST_LENGTH, LONGEST * cutoff, n)
        if self.kind == "shift":  # an equilibrium distance: within the data's short range
            return np.linspace(r_min, min(0.8 * cutoff, r_min + SHIFT_SPAN), n)
        if self.kind == "inverse":  # and a few slow growths, exp(+r/L), for L beyond the cutoff
            grow = -1.0 / np.geomspace(0.5 * cutoff, 4.0 * cutoff, max(n // 8, 1))
            decay = 1.0 / np.geomspace(LONGEST * cutoff, SHORTEST_LENGTH, n)
            return np.concatenate([grow, decay])
        ladder = np.array(OTHER_LADDER)
        if n < 2 * len(ladder):
            ladder = ladder[np.round(np.linspace(0, len(ladder) - 1, max(n // 2, 1))).astype(int)]
        return np.concatenate([-ladder[::-1], ladder])


def shift_constants(tree: ast.AST, variable: str = "r") -> set[str]:
    """Constants that shift the variable (``r - r0``, ``r + d``): distances, not decay lengths."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub):
            sides = (node.left, node.right)
            if any(isinstance(s, ast.Name) and s.id == variable for s in sides):
                out.update(s.id for s in sides if isinstance(s, ast.Name) and s.id != variable)
    return out


def axes_for(names: Sequence[str], base_of, mask: np.ndarray, program) -> list[Axis]:
    """Scan axes of a parameterization: one per nonlinear constant (all its per-type values).

    Parameters
    ----------
    names
        Parameter names.
    base_of
        ``name -> constant name`` (``prod_q[O]`` → ``prod_q``).
    mask
        Parameters to scan (the nonlinear ones).
    program
        The :class:`~mctsff.expr.program.Program`, for the kind of each constant.
    """
    shifts = shift_constants(program._tree, program.variables[0]) if program.variables else set()
    groups: dict[str, list[int]] = {}
    for m, name in enumerate(names):
        if mask[m]:
            groups.setdefault(base_of(name), []).append(m)
    axes = []
    for base, idx in groups.items():
        if base in shifts:
            kind = "shift"
        elif base in program.length_constants:
            kind = "length"
        elif base in program.inverse_length_constants:
            kind = "inverse"
        else:
            kind = "other"
        axes.append(Axis(base, tuple(idx), kind))
    return axes


def grid(
    axes: Sequence[Axis],
    x0: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    cutoff: float,
    r_min: float,
) -> list[np.ndarray]:
    """Grid points (full parameter vectors based on ``x0``) over the scanned constants.

    The axes share :data:`SCAN_POINTS` points: a full factorial grid when it fits
    (:data:`POINTS_1D` for one axis, 12 × 12 for two, 5 per axis for three), a
    seeded Latin-hypercube draw on the axes' values beyond that.  ``x0`` itself is
    always the first point.  Values outside ``[lo, hi]`` are clipped into it.
    """
    d = len(axes)
    points = [np.asarray(x0, dtype=float).copy()]
    if d == 0:
        return points
    n = POINTS_1D if d == 1 else max(int(math.floor(SCAN_POINTS ** (1.0 / d))), 2)
    values = [ax.values(n, cutoff, r_min) for ax in axes]
    if d <= 3 and math.prod(len(v) for v in values) <= 2 * SCAN_POINTS:
        combos = itertools.product(*values)
    else:
        rng = np.random.default_rng(d)
        cols = [rng.permutation(np.resize(v, SCAN_POINTS)) for v in values]
        combos = zip(*cols, strict=True)
    for combo in combos:
        x = points[0].copy()
        for ax, val in zip(axes, combo, strict=True):
            x[list(ax.index)] = val
        points.append(np.clip(x, lo, hi))
    return points


def local_minima(
    points: Sequence[np.ndarray], losses: Sequence[float], mask: np.ndarray
) -> list[int]:
    """Indices of the grid points that are local minima of the loss, lowest first.

    A point is a local minimum when no point among its nearest neighbours (in the
    scanned coordinates, log scale for values of one sign) has a lower loss; the
    neighbourhood is the ``2·d`` closest points.  Non-finite losses never qualify.
    """
    loss = np.asarray(losses, dtype=float)
    ok = np.isfinite(loss)
    if not ok.any():
        return []
    X = np.array([p[mask] for p in points], dtype=float)
    if X.shape[1] == 0:
        return [int(np.nanargmin(np.where(ok, loss, np.nan)))]
    Y = np.arcsinh(X / 1e-3)  # log-like in |x|, monotone through 0 for signed constants
    span = Y.max(axis=0) - Y.min(axis=0)
    Y = Y / np.where(span > 0, span, 1.0)
    k = min(2 * X.shape[1], len(points) - 1)
    order = []
    for i in np.flatnonzero(ok):
        dist = np.sum((Y - Y[i]) ** 2, axis=1)
        dist[i] = np.inf
        near = np.argsort(dist)[:k]
        if all(not (loss[j] < loss[i]) for j in near):
            order.append(i)
    order.sort(key=lambda i: loss[i])
    return [int(i) for i in order]


def _lines(points: Sequence[np.ndarray], axes: Sequence[Axis]):
    """The scanned values ``X`` (points × axes), per axis ``k`` the key of each point's
    line along it (its other values), and the grid's lines along it: ``{key: indices by
    the value of axis k}`` (one point per value)."""
    X = np.array([[p[ax.index[0]] for ax in axes] for p in points], dtype=float)
    X = X.reshape(len(points), len(axes))
    keys, lines = [], []
    for k in range(len(axes)):
        rest = np.delete(X, k, axis=1)
        keys.append([row.tobytes() for row in rest])
        by_rest: dict[bytes, dict[float, int]] = {}
        col = X[:, k].tolist()
        for i in range(len(points) - 1, -1, -1):  # the first point of a repeated value
            by_rest.setdefault(keys[k][i], {})[col[i]] = i
        lines.append({key: [v[u] for u in sorted(v)] for key, v in by_rest.items()})
    return X, keys, lines


def _minima(lines, losses) -> list[tuple[int, int, int | None, int | None]]:
    """:func:`line_minima` of the lines of :func:`_lines`."""
    loss = [float(v) for v in losses]
    out = []
    for k, by_rest in enumerate(lines):
        for line in by_rest.values():
            m = len(line)
            if m < 2:
                continue
            vals = [loss[i] for i in line]
            for n, v in enumerate(vals):
                if not math.isfinite(v) or (n > 0 and vals[n - 1] < v):
                    continue
                if n + 1 < m and vals[n + 1] < v:
                    continue
                out.append((line[n], k, line[n - 1] if n > 0 else None,
                            line[n + 1] if n + 1 < m else None))  # fmt: skip
    out.sort(key=lambda t: loss[t[0]])
    return out


def line_minima(
    points: Sequence[np.ndarray], losses: Sequence[float], axes: Sequence[Axis]
) -> list[tuple[int, int, int | None, int | None]]:
    """Minima of the loss along the grid's lines, lowest first.

    A line of axis ``k`` is the set of points that share every other axis's value; a
    point is a minimum on it when neither neighbour on the line (by the value of axis
    ``k``) has a lower loss.  Returns ``(i, k, left, right)`` for each such point ``i``,
    with its neighbours on the line (``None`` at an end of the line), by the loss of
    ``i``.  Points alone on their line (a Latin-hypercube draw) are on none; non-finite
    losses never qualify.
    """
    return _minima(_lines(points, axes)[2], losses)


def _vertex(a, b, c) -> float | None:
    """Abscissa of the minimum of the parabola through three ``(t, y)`` points (``t``
    increasing), or ``None`` where it has none."""
    (t0, y0), (t1, y1), (t2, y2) = a, b, c
    s0, s1 = (y1 - y0) / (t1 - t0), (y2 - y1) / (t2 - t1)
    if not (s1 > s0):
        return None
    return 0.5 * (t0 + t1) - s0 * (t2 - t0) / (2.0 * (s1 - s0))


def _descend(samples, tries, reduced, at, ref, budget):
    """Probes of one line: ``tries`` (values of its axis), then up to :data:`FOLLOW`
    parabola vertices of ``log ρ`` through the lowest probe and its neighbours while the
    lowest probe has at most half of ``ref``.  ``samples``: the line's known ``(value,
    loss)`` (grid points); the axis's scale is logarithmic where all values share a sign.
    Returns the lowest probe ``(value, x, loss)`` (``None``: none) and the calls made."""
    us = [u for u, _ in samples] + list(tries)
    log = all(u > 0 for u in us) or all(u < 0 for u in us)
    sign = math.copysign(1.0, us[0])

    def t_of(u):
        return math.log(sign * u) if log else u

    line = [(t_of(u), math.log(max(loss, 1e-300)), None, loss, u) for u, loss in samples]
    tries = list(tries)
    spent = follow = 0
    while tries and spent < budget:
        u = tries.pop(0)
        x, loss = reduced(at(u))
        spent += 1
        line.append((t_of(u), math.log(max(loss, 1e-300)), x, loss, u))
        line.sort(key=lambda s: s[0])
        b = min(range(len(line)), key=lambda n: line[n][3])
        if follow < FOLLOW and line[b][2] is not None and line[b][3] <= 0.5 * ref:
            if 0 < b < len(line) - 1:
                v = _vertex(*[s[:2] for s in line[b - 1 : b + 2]])
                lo_t, tb, hi_t = line[b - 1][0], line[b][0], line[b + 1][0]
                if v is not None and lo_t < v < hi_t and abs(v - tb) > 0.05 * (hi_t - lo_t):
                    v = min(max(v, lo_t + 0.1 * (tb - lo_t)), hi_t - 0.1 * (hi_t - tb))
                    tries.insert(0, sign * math.exp(v) if log else v)
                    follow += 1
    best = min((s for s in line if s[2] is not None), key=lambda s: s[3], default=None)
    return (None if best is None else (best[4], best[2], best[3])), spent


def needles(
    points: Sequence[np.ndarray],
    losses: Sequence[float],
    axes: Sequence[Axis],
    reduced: Callable[[np.ndarray], tuple[np.ndarray, float]],
    lo: np.ndarray,
    hi: np.ndarray,
    limit: int | None = None,
) -> list[tuple[int, np.ndarray, float]]:
    """Basins narrower than the grid's step, looked for along the grid's lines.

    Near an exact fit the reduced loss is a narrow funnel in a decay constant (ρ ∝ δ²
    at a distance δ from the optimum) that the grid's points straddle.  Along each
    line minimum of :func:`line_minima` (lowest first), in the axis's scale
    (logarithmic for values of one sign), two points are tried: the vertex of the
    parabola of ``log ρ`` through the minimum and its neighbours (held inside the
    interval it falls in), and :data:`STRIDE` of the way into the other interval (the
    funnel can lie beside the higher neighbour); from a point that halves the
    minimum's loss or better, up to :data:`FOLLOW` more vertices follow it down the
    funnel.  A line whose lowest point has at most :data:`NEEDLE` times the minimum's
    loss holds a needle.  Such a funnel is a valley across the grid (the other
    constants move its floor, and the exact optimum lies somewhere along it): from each
    needle, the lines next to it (one grid step in another axis) are probed at the
    needle's value and followed down the same way, a needle there where they fall to
    :data:`NEEDLE` times their grid points beside it, and so on.  ``reduced(x)`` gives
    ``x`` with exact prefactors and ρ there; at most ``limit`` (default
    :data:`REFINE_POINTS`) calls look for needles and as many trace their valleys.
    Returns ``(i, x, loss)`` for each needle (``i``: the grid point beside it).
    """
    limit = REFINE_POINTS if limit is None else max(int(limit), 0)
    if limit == 0 or not axes:
        return []
    X, keys, lines = _lines(points, axes)
    d = len(axes)

    def key(k, i):
        return (k, keys[k][i])

    def at(i, k):
        def point(u):
            x = np.array(points[i], dtype=float)
            x[list(axes[k].index)] = u
            return np.clip(x, lo, hi)

        return point

    found: dict[tuple, tuple[int, np.ndarray, float, float]] = {}
    queue = []
    spent = 0
    for i, k, left, right in _minima(lines, losses):
        if spent >= limit:
            break
        if key(k, i) in found:
            continue
        near = [j for j in (left, i, right) if j is not None]
        samples = [(float(X[j, k]), float(losses[j])) for j in near]
        ui = float(X[i, k])
        tries = []
        if len(near) == 3 and all(math.isfinite(ls) for _, ls in samples):
            log = all(u > 0 for u, _ in samples) or all(u < 0 for u, _ in samples)
            sgn = math.copysign(1.0, ui)
            t = [math.log(sgn * u) if log else u for u, _ in samples]
            y = [math.log(max(ls, 1e-300)) for _, ls in samples]
            v = _vertex((t[0], y[0]), (t[1], y[1]), (t[2], y[2]))
            side = 1 if v is not None and v > t[1] else 0
            a, b = (t[0], t[1]) if side == 0 else (t[1], t[2])
            if v is None:
                v = t[1] + STRIDE * ((a if side == 0 else b) - t[1])
            v = min(max(v, a + 0.1 * (b - a)), b - 0.1 * (b - a))
            other = t[2] if side == 0 else t[0]
            for tv in (v, t[1] + STRIDE * (other - t[1])):
                tries.append(sgn * math.exp(tv) if log else tv)
        else:
            tries = [_between(ui, u, STRIDE) for u, _ in samples if u != ui]
        best, n = _descend(samples, tries, reduced, at(i, k), losses[i], limit - spent)
        spent += n
        if best is not None and best[2] <= NEEDLE * losses[i]:
            found[key(k, i)] = (i, best[1], best[2], best[0])
            queue.append((k, i, best[0]))
    # trace each needle's valley into the lines next to it
    spent = 0
    while queue and spent < limit:
        k, i, u = queue.pop(0)
        for m in range(d):
            if m == k:
                continue
            across = lines[m][keys[m][i]]  # i's line along axis m
            p = across.index(i) if i in across else -1
            for q in (p - 1, p + 1):
                if p < 0 or not 0 <= q < len(across) or spent >= limit:
                    continue
                j = across[q]
                if key(k, j) in found:
                    continue
                line = lines[k][keys[k][j]]
                r = int(np.searchsorted([float(X[g, k]) for g in line], u))
                beside = line[max(r - 1, 0) : r + 1]  # the grid points around u
                ref = min(float(losses[g]) for g in beside)
                samples = [(float(X[g, k]), float(losses[g])) for g in line[max(r - 2, 0) : r + 2]]
                samples = [s for s in samples if math.isfinite(s[1])]
                found[key(k, j)] = (j, points[j], math.inf, u)  # tried (not a needle yet)
                if not samples or not math.isfinite(ref):
                    continue
                best, used = _descend(samples, [u], reduced, at(j, k), ref, limit - spent)
                spent += used
                if best is not None and best[2] <= NEEDLE * ref:
                    found[key(k, j)] = (j, best[1], best[2], best[0])
                    queue.append((k, j, best[0]))
    return [(i, x, loss) for i, x, loss, _ in found.values() if math.isfinite(loss)]


def _between(u: float, v: float, share: float = 0.5) -> float:
    """The value ``share`` of the way from ``u`` to ``v`` in the axis's scale: logarithmic
    where they share a sign, linear otherwise."""
    if u * v > 0:
        return math.copysign(math.exp((1 - share) * math.log(abs(u)) + share * math.log(abs(v))), u)
    return u + share * (v - u)

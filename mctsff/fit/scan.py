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
into it.
"""

from __future__ import annotations

import ast
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Axis", "axes_for", "grid", "local_minima", "shift_constants", "SCAN_POINTS"]

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

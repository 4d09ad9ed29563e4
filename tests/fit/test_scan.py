"""The scan of nonlinear constants: axes, grids, local minima; exact recovery from defaults."""

import math

import numpy as np
import pytest

from mctsff.expr.params import Parameterization, Potential
from mctsff.expr.program import Program
from mctsff.fit import Fitter, scan


def _axes(expr, species=("H", "O")):
    prog = Program.from_string(expr)
    pairs = tuple((a, b) for i, a in enumerate(species) for b in species[i:])
    par = Parameterization(prog, species, pairs)
    mask = ~par.linear_mask()
    return par, scan.axes_for(par.names, par.base_name, mask, prog)


def test_axes_know_lengths_shifts_inverse_lengths_and_others():
    _, axes = _axes("D*(exp(-2*a*(r-r0)) - 2*exp(-a*(r-r0))) + A*exp(-r/b) + c/r**n")
    kinds = {ax.name: ax.kind for ax in axes}
    assert kinds == {"a": "inverse", "r0": "shift", "b": "length", "n": "other"}
    assert "D" not in kinds and "A" not in kinds and "c" not in kinds  # linear: solved


def test_axis_values_are_physical():
    length = scan.Axis("b", (0,), "length").values(24, 9.0, 1.2)
    assert length.min() == pytest.approx(scan.SHORTEST_LENGTH)
    assert length.max() == pytest.approx(scan.LONGEST * 9.0)
    shift = scan.Axis("r0", (0,), "shift").values(8, 9.0, 1.2)
    assert shift.min() == pytest.approx(1.2) and shift.max() <= 1.2 + scan.SHIFT_SPAN
    inv = scan.Axis("a", (0,), "inverse").values(24, 9.0, 1.2)
    assert (inv > 0).sum() == 24 and (inv < 0).any()  # slow growths exp(+r/L) too
    other = scan.Axis("n", (0,), "other").values(10, 9.0, 1.2)
    assert (other < 0).any() and (other > 0).any()


@pytest.mark.parametrize("n_axes", [1, 2, 3, 5])
def test_grid_size_is_bounded_and_starts_with_x0(n_axes):
    axes = [scan.Axis(f"b{i}", (i,), "length") for i in range(n_axes)]
    x0 = np.arange(1.0, n_axes + 1)
    lo, hi = np.full(n_axes, 0.05), np.full(n_axes, np.inf)
    pts = scan.grid(axes, x0, lo, hi, 9.0, 1.0)
    assert np.array_equal(pts[0], x0)
    assert 2 <= len(pts) <= 2 * scan.SCAN_POINTS + 1
    assert all(np.all(p >= lo) for p in pts)


def test_local_minima_finds_a_needle_beside_a_lower_broad_basin():
    """A 1-D profile with a deep broad basin and a separate narrow dip: both are starts."""
    xs = np.geomspace(0.03, 4.5, 24)
    loss = (np.log(xs / 1.3)) ** 2 + 0.1
    loss[4] = 0.5  # a dip whose neighbours are higher: a separate basin
    pts = [np.array([x]) for x in xs]
    picks = scan.local_minima(pts, loss, np.array([True]))
    assert picks[0] == int(np.argmin(loss)) and 4 in picks


def test_local_minima_skips_non_finite():
    pts = [np.array([1.0]), np.array([2.0]), np.array([3.0])]
    assert scan.local_minima(pts, [np.inf, np.nan, np.inf], np.array([True])) == []


FAMILIES = {
    "coulomb_buckingham_product": (
        "14.399645*prod_q/r + prod_c1*exp(-r/c1) - prod_c2/r**6",
        {
            "prod_q[O]": -0.82,
            "prod_q[H]": 0.41,
            "prod_c1[O]": 40.0,
            "prod_c1[H]": 3.0,
            "c1": 0.25,
            "prod_c2[O]": 1.6,
            "prod_c2[H]": 0.4,
        },
    ),
    "buckingham_product_signs": (
        "prod_c1*exp(-r/c1) - prod_c2/r**6",
        {"prod_c1[O]": 40.0, "prod_c1[H]": 3.0, "c1": 0.3, "prod_c2[O]": 1.6, "prod_c2[H]": -0.4},
    ),
    "wolf_lj_geometric": (
        "prod_q*erfc(a*r)/r + geom_e/r**12 - geom_s/r**6",
        {
            "prod_q[O]": -0.8,
            "prod_q[H]": 0.4,
            "a": 0.3,
            "geom_e[O]": 3e4,
            "geom_e[H]": 10.0,
            "geom_s[O]": 30.0,
            "geom_s[H]": 0.5,
        },
    ),
    "morse": ("D*(exp(-2*a*(r-r0)) - 2*exp(-a*(r-r0)))", {"D": 0.2, "a": 1.5, "r0": 2.9}),
    "yukawa_lj": (
        "prod_q*exp(-r/b)/r + c1/r**12 - c2/r**6",
        {"prod_q[O]": -2.0, "prod_q[H]": 1.0, "b": 1.7, "c1": 5e3, "c2": 8.0},
    ),
}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_default_fit_recovers_each_family_exactly(dimers, name):
    """The default fit (no start values, no extra options) reaches the exact constants."""
    expr, params = FAMILIES[name]
    shifted = {"cutoff": dimers.cutoff, "scheme": "shifted-force"}  # the default scheme
    truth = Potential(expr, params, dimers.species, dimers.type_pairs, **shifted)
    train, valid = truth.synthetic(dimers).split(0.2, seed=0)
    rms = float(np.sqrt(np.mean(train.forces**2)))
    res = Fitter(train, valid, wall=None).fit(expr)  # a Buckingham truth has no wall
    assert res.valid and res.rmse_train <= 1e-6 * rms, (res.rmse_train / rms, res.params)
    truth_u = truth.energy(np.linspace(2.0, 8.0, 7), ("O", "O"))
    fitted = Potential(expr, res.params, dimers.species, dimers.type_pairs, **shifted)
    got_u = fitted.energy(np.linspace(2.0, 8.0, 7), ("O", "O"))
    assert got_u == pytest.approx(truth_u, rel=1e-5, abs=1e-9)


def test_line_minima_are_per_line_with_their_neighbours():
    axes = [scan.Axis("a", (0,), "length"), scan.Axis("b", (1,), "length")]
    a, b = [0.1, 0.3, 1.0], [1.0, 2.0]
    pts = [np.array([u, v]) for u in a for v in b]  # rows of a, b varying fastest
    loss = [3.0, 1.0, 2.0, 5.0, 4.0, 0.5]  # along a: b=1 -> (3, 2, 4), b=2 -> (1, 5, 0.5)
    got = scan.line_minima(pts, loss, axes)
    assert [g[0] for g in got] == sorted((g[0] for g in got), key=lambda i: loss[i])
    along_a = {(i, left, right) for i, k, left, right in got if k == 0}
    assert along_a == {(2, 0, 4), (1, None, 3), (5, 3, None)}
    along_b = {(i, left, right) for i, k, left, right in got if k == 1}
    assert along_b == {(1, 0, None), (2, None, 3), (5, 4, None)}


def _funnel_loss(centre: float):
    """A reduced loss over two lengths: a broad basin about (3, 3), lowest on the grid, and
    an exact-fit funnel in the first length at ``centre`` (ρ ∝ δ² near it, on the floor of
    1e-2 a factor 1.5 away), which the grid's points straddle."""

    def loss(x):
        d = math.log(x[0] / centre)
        funnel = 1e-2 * min(1.0, (d / 0.4) ** 2) * (1.0 + 0.1 * math.log(x[1]) ** 2) + 1e-14
        wide = 1e-4 * (1.0 + 10.0 * math.log(x[0] / 3.0) ** 2 + math.log(x[1] / 3.0) ** 2)
        return min(funnel, wide)

    return loss


def test_needles_finds_a_funnel_between_grid_points():
    """A funnel that no grid point sees (its grid neighbours lie above a broad basin
    elsewhere) is found between them, followed down, and traced along its valley."""
    axes = [scan.Axis("b1", (0,), "length"), scan.Axis("b2", (1,), "length")]
    lo, hi = np.full(2, 1e-3), np.full(2, np.inf)
    pts = scan.grid(axes, np.array([1.0, 1.0]), lo, hi, 9.0, 1.0)
    step = np.unique([p[0] for p in pts[1:]])
    centre = math.sqrt(step[4] * step[5]) * 1.15  # between grid values, off the midpoint
    loss = _funnel_loss(centre)
    losses = [loss(p) for p in pts]
    picks = scan.local_minima(pts, losses, np.array([True, True]))
    assert all(abs(math.log(pts[i][0] / centre)) > 0.1 for i in picks)  # the grid misses it
    assert pts[picks[0]][0] == pytest.approx(3.0, rel=0.5)
    calls = []

    def reduced(x):
        calls.append(x)
        return x, loss(x)

    found = scan.needles(pts, losses, axes, reduced, lo, hi)
    assert len(calls) <= 2 * scan.REFINE_POINTS  # looking, then tracing the valley
    assert found, "no needle found"
    best = min(found, key=lambda f: f[2])
    assert abs(math.log(best[1][0] / centre)) < 0.05
    assert best[2] < 0.1 * min(losses)  # far below anything on the grid
    # the valley is traced across the grid: a needle on every line of the first length
    assert len({f[1][1] for f in found}) == len(np.unique([p[1] for p in pts[1:]]))
    assert all(abs(math.log(f[1][0] / centre)) < 0.1 for f in found)
    assert scan.needles(pts, losses, axes, reduced, lo, hi, limit=0) == []


#: A Wolf-type form whose exponential range lies between the scan's grid values (its
#: funnel is narrower than the grid's step); three default starts missed it before
#: the scan looked between grid points.
_Q = {"prod_q[O]": -0.8, "prod_q[H]": 0.4}
BETWEEN_GRID = {
    "c2_0.35": {**_Q, "c1": 0.17, "prod_c1[O]": 65.0, "prod_c1[H]": 10.0, "c2": 0.35, "c3": 33.0},
    "c2_0.33": {**_Q, "c1": 0.25, "prod_c1[O]": 60.0, "prod_c1[H]": 5.0, "c2": 0.33, "c3": 20.0},
}


@pytest.mark.parametrize("name", sorted(BETWEEN_GRID))
def test_default_fit_finds_a_basin_between_grid_points(dimers, name):
    expr = "14.399645*prod_q*erfc(c1*r)/r + prod_c1*exp(-r/c2) - c3/r**6"
    shifted = {"cutoff": dimers.cutoff, "scheme": "shifted-force"}
    truth = Potential(expr, BETWEEN_GRID[name], dimers.species, dimers.type_pairs, **shifted)
    train, valid = truth.synthetic(dimers).split(0.2, seed=0)
    rms = float(np.sqrt(np.mean(train.forces**2)))
    res = Fitter(train, valid, wall=None).fit(expr)
    assert res.valid and res.rmse_train <= 1e-6 * rms, (res.rmse_train / rms, res.params)
    assert res.params["c2"] == pytest.approx(BETWEEN_GRID[name]["c2"], rel=1e-6)

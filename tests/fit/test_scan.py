"""The scan of nonlinear constants: axes, grids, local minima; exact recovery from defaults."""

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

"""Parameterization: combining rules, derivative tensor, linear prefactors, Potential."""

import numpy as np
import pytest

from mctsff.params import Parameterization, Potential
from mctsff.program import Program

SPECIES = ("H", "O")
PAIRS = (("H", "H"), ("H", "O"), ("O", "O"))


def test_names_and_combining_rules():
    prog = Program.from_string("b + prod_q + geom_e + arith_s + pair_k")
    par = Parameterization(prog, SPECIES, PAIRS)
    assert par.names == (
        "b",
        "prod_q[H]",
        "prod_q[O]",
        "geom_e[H]",
        "geom_e[O]",
        "arith_s[H]",
        "arith_s[O]",
        "pair_k[H-H]",
        "pair_k[H-O]",
        "pair_k[O-O]",
    )
    theta = np.array([7.0, 2.0, -3.0, 4.0, 9.0, 1.0, 3.0, 10.0, 20.0, 30.0])
    C, _ = par.table(theta)
    np.testing.assert_allclose(C[:, 0], 7.0)
    np.testing.assert_allclose(C[:, 1], [4.0, -6.0, 9.0])  # product
    np.testing.assert_allclose(C[:, 2], [4.0, 6.0, 9.0])  # geometric mean
    np.testing.assert_allclose(C[:, 3], [1.0, 2.0, 3.0])  # arithmetic mean
    np.testing.assert_allclose(C[:, 4], [10.0, 20.0, 30.0])  # free per pair


def test_derivative_tensor_matches_finite_differences():
    prog = Program.from_string("b + prod_q + geom_e + arith_s + pair_k")
    par = Parameterization(prog, SPECIES, PAIRS)
    theta = np.array([7.0, 2.0, -3.0, 4.0, 9.0, 1.0, 3.0, 10.0, 20.0, 30.0])
    _, T = par.table(theta)
    h = 1e-6
    for m in range(par.n_params):
        tp, tm = theta.copy(), theta.copy()
        tp[m] += h
        tm[m] -= h
        fd = (par.table(tp)[0] - par.table(tm)[0]) / (2 * h)
        np.testing.assert_allclose(T[:, :, m], fd, atol=1e-8)


def test_linear_mask():
    prog = Program.from_string("A*exp(-r/b) + pair_C/r**6 + prod_q/r + D*D/r")
    par = Parameterization(prog, SPECIES, PAIRS)
    lin = dict(zip(par.names, par.linear_mask(), strict=True))
    assert lin["A"] and lin["pair_C[H-O]"]
    assert not lin["b"] and not lin["prod_q[H]"] and not lin["D"]


def test_default_bounds_keep_lengths_positive():
    par = Parameterization(Program.from_string("A*exp(-r/b) + geom_e/r**6"), SPECIES, PAIRS)
    lo, hi = par.default_bounds()
    bounds = dict(zip(par.names, lo, strict=True))
    assert bounds["b"] > 0 and bounds["geom_e[H]"] > 0 and bounds["A"] == -np.inf


def test_potential_energy_derivative_and_errors():
    pot = Potential("prod_q/r", {"prod_q[H]": 0.5, "prod_q[O]": -1.0}, SPECIES)
    assert pot.energy(2.0, ("O", "H"))[0] == pytest.approx(-0.25)
    assert pot.derivative(2.0, ("H", "O"))[0] == pytest.approx(0.125)
    with pytest.raises(KeyError, match="missing parameter"):
        Potential("prod_q/r", {"prod_q[H]": 0.5}, SPECIES)
    with pytest.raises(KeyError, match="unknown type pair"):
        pot.energy(1.0, ("C", "H"))

"""Parameterization: combining rules, derivative tensor, linear prefactors, Potential."""

import numpy as np
import pytest

from mctsff.expr.params import Parameterization, Potential
from mctsff.expr.program import Program

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


def test_typed_prefactors_are_the_linear_per_type_constants():
    prog = Program.from_string(
        "prod_q/r + geom_e*exp(-r/b) + arith_s/r**6 + exp(-prod_k*r) + prod_m*prod_m/r + c/r**2"
    )
    par = Parameterization(prog, SPECIES, PAIRS)
    typed = {prog.constants[k] for k in par.typed_prefactors()}
    # prod_k sits inside exp, prod_m is used twice, c is global
    assert typed == {"prod_q", "geom_e", "arith_s"}


@pytest.mark.parametrize(
    "expr, truth",
    [
        ("prod_q/r", {"prod_q[H]": 1.6, "prod_q[O]": -3.2}),
        ("geom_e/r**6", {"geom_e[H]": 0.02, "geom_e[O]": 0.65}),
        ("arith_s/r**6", {"arith_s[H]": 1.1, "arith_s[O]": 3.2}),
    ],
)
def test_factored_inverts_the_combining_rule(expr, truth):
    par = Parameterization(Program.from_string(expr), SPECIES, PAIRS)
    exact = np.array([truth[n] for n in par.names])
    values = par.table(exact)[0][:, 0]  # per-pair values, type-pair order
    for start in (np.ones(par.n_params), -np.ones(par.n_params)):
        theta = par.factored(start, {0: values})
        np.testing.assert_allclose(par.table(theta)[0][:, 0], values, rtol=1e-12)
        if expr.startswith("prod"):  # q and -q give the same products: start's sign kept
            assert np.sign(theta @ start) == 1
            theta = theta * np.sign(theta[1] / exact[1])
        np.testing.assert_allclose(theta, exact, rtol=1e-12)


def test_factored_takes_the_closest_product_and_refuses_a_negative_one():
    par = Parameterization(Program.from_string("prod_q/r"), SPECIES, PAIRS)
    # not a product: the rank-one matrix nearest [[4, 1], [1, 1]]
    theta = par.factored(np.ones(2), {0: np.array([4.0, 1.0, 1.0])})
    w, v = np.linalg.eigh(np.array([[4.0, 1.0], [1.0, 1.0]]))
    np.testing.assert_allclose(np.outer(theta, theta), w[-1] * np.outer(v[:, -1], v[:, -1]))
    # all pair values negative: q[A]*q[B] cannot give them
    assert par.factored(np.ones(2), {0: np.array([-1.0, -1.0, -1.0])}) is None


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

"""The postfix interpreter: values and all derivatives against sympy and finite differences."""

import numpy as np
import pytest
import sympy

from mctsff import kernels
from mctsff.program import Program

EXPRESSIONS = [
    "A*exp(-r/b) - C/r**6 + q/r",
    "D*(exp(-2*a*(r-r0)) - 2*exp(-a*(r-r0)))",
    "q*erfc(a*r)/r + B*tanh(r*c)",
    "A*r**b + sqrt(c*r) + log(d*r)",
    "A/(r+b)**3 - sin(c*r)*cos(r) + erf(d*r)",
    "square(A*r) - cube(b/r) + inv(c*r) + abs(r - d)",
]


def _reference(p: Program):
    syms = [p.symbols[n] for n in ("r", *p.constants)]
    return sympy.lambdify(syms, p.sympy, ["numpy", "scipy"])


@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_value_and_derivatives(expr):
    p = Program.from_string(expr)
    rng = np.random.default_rng(1)
    r = rng.uniform(1.5, 4.0, 600)  # > BLOCK rows: crosses block boundaries
    c = rng.uniform(0.5, 1.5, (1, p.n_constants))
    v, d, g, h = p.evaluate(r, c, mode=kernels.MODE_ALL)
    f = _reference(p)
    np.testing.assert_allclose(v, f(r, *c[0]), rtol=1e-12, atol=1e-12)
    eps = 1e-6
    np.testing.assert_allclose(
        d, (f(r + eps, *c[0]) - f(r - eps, *c[0])) / (2 * eps), rtol=1e-6, atol=1e-8
    )
    e2 = 1e-4
    for k in range(p.n_constants):
        cp, cm = c[0].copy(), c[0].copy()
        cp[k] += eps
        cm[k] -= eps
        np.testing.assert_allclose(
            g[:, k], (f(r, *cp) - f(r, *cm)) / (2 * eps), rtol=1e-6, atol=1e-8
        )
        cp, cm = c[0].copy(), c[0].copy()
        cp[k] += e2
        cm[k] -= e2
        dp = (f(r + e2, *cp) - f(r - e2, *cp)) / (2 * e2)
        dm = (f(r + e2, *cm) - f(r - e2, *cm)) / (2 * e2)
        np.testing.assert_allclose(h[:, k], (dp - dm) / (2 * e2), rtol=1e-5, atol=1e-6)


def test_modes_agree():
    p = Program.from_string(EXPRESSIONS[0])
    r = np.linspace(1, 5, 300)
    c = np.array([[1.0, 0.4, 2.0, 0.5]])
    v0, *_ = p.evaluate(r, c, mode=0)
    v1, d1, *_ = p.evaluate(r, c, mode=1)
    v2, _, g2, _ = p.evaluate(r, c, mode=2)
    v3, d3, g3, _ = p.evaluate(r, c, mode=3)
    np.testing.assert_array_equal(v0, v3)
    np.testing.assert_array_equal(d1, d3)
    np.testing.assert_array_equal(g2, g3)


def test_per_row_constant_groups():
    p = Program.from_string("q/r")
    r = np.array([1.0, 2.0, 4.0])
    consts = np.array([[1.0], [10.0]])
    v, *_ = p.evaluate(r, consts, np.array([0, 1, 1]), mode=0)
    np.testing.assert_allclose(v, [1.0, 5.0, 2.5])


def test_non_finite_values_propagate_not_crash():
    p = Program.from_string("log(r - a) + sqrt(b - r)")
    v, d, *_ = p.evaluate(np.array([0.5, 2.0]), np.array([[1.0, 1.5]]), mode=1)
    assert np.isnan(v).all()


def test_pair_forces_match_numpy_scatter():
    p = Program.from_string("A*exp(-r/b)")
    rng = np.random.default_rng(0)
    n_atoms, n_pairs = 7, 15
    pi = rng.integers(0, n_atoms, n_pairs)
    pj = (pi + rng.integers(1, n_atoms, n_pairs)) % n_atoms
    u = rng.normal(size=(n_pairs, 3))
    u /= np.linalg.norm(u, axis=1)[:, None]
    r = rng.uniform(1, 3, n_pairs)
    consts = np.array([[2.0, 0.7]])
    grp = np.zeros(n_pairs, dtype=np.int64)
    frames = np.zeros(n_pairs, dtype=np.int64)
    F, E = kernels.pair_forces(
        p.code, p.literals, r, consts, grp, pi, pj, u, frames, n_atoms, 1, p.max_stack
    )
    dU = -2.0 / 0.7 * np.exp(-r / 0.7)
    ref = np.zeros((n_atoms, 3))
    np.add.at(ref, pi, -dU[:, None] * u)
    np.add.at(ref, pj, dU[:, None] * u)
    np.testing.assert_allclose(F, ref, atol=1e-14)
    np.testing.assert_allclose(E, [np.sum(2.0 * np.exp(-r / 0.7))])

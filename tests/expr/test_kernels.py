"""The postfix interpreter: values and all derivatives against sympy and finite differences."""

import numpy as np
import pytest
import sympy

from mctsff.expr import kernels, ops
from mctsff.expr.program import Program

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


# ----------------------------------------------------------------------------- superinstructions
# x: operands whose lanes are all stored (d, g, h ≠ 0), partly zero (no constants,
# no r) or a leaf themselves; leaves: the variable, a constant, a literal
_OPERANDS = ["a*exp(-r/b)", "sin(r)", "exp(c)", "r", "c", "2.5"]
_LEAVES = ["r", "k", "1.7"]
_FUSED = {
    "+": (ops.ADD_L, ops.ADD_L),
    "-": (ops.SUB_L, ops.RSUB_L),
    "*": (ops.MUL_L, ops.MUL_L),
    "/": (ops.DIV_L, ops.RDIV_L),
}


def _fused_and_plain(p, r, consts, group, mode):
    args = (p.code, p.literals, r, consts, group, mode, p.max_stack)
    return kernels.evaluate(*args), kernels.evaluate(*args, fuse=False)


def _assert_lanes_close(fused, plain, rtol=1e-13):
    for x, y in zip(fused, plain, strict=True):
        if y is None:
            assert x is None
            continue
        # relative to each lane's magnitude (a lane may cross zero)
        scale = np.max(np.abs(y), axis=0, initial=0.0) + 1e-300
        np.testing.assert_array_less(np.abs(x - y) / scale, rtol)


@pytest.mark.parametrize("op", list(_FUSED))
@pytest.mark.parametrize("leaf", _LEAVES)
@pytest.mark.parametrize("x", _OPERANDS)
def test_superinstructions_match_plain_code(op, leaf, x):
    rng = np.random.default_rng(7)
    r = rng.uniform(1.5, 4.0, 1100)  # several blocks when BLOCK is small
    for left, right in ((x, leaf), (leaf, x)):
        if left in ("2.5", "1.7") and right in ("2.5", "1.7"):
            continue  # folded into one literal at compile time
        expr = f"({left}) {op} ({right})"
        p = Program.from_string(expr)
        fused = kernels.fuse(p.code)
        # the leaf operand is read by the superinstruction, not pushed; with two
        # leaves the variable stays on the stack
        leaves = _LEAVES + ["c", "2.5"]
        both = left in leaves and right in leaves
        reverse = right not in leaves or (both and right == "r" and left != "r")
        assert _FUSED[op][int(reverse)] in fused[:, 0], expr
        assert len(fused) < len(p.code)
        assert np.array_equal(kernels.fuse(fused), fused)  # idempotent
        for n_groups in (1, 3):  # one constant row (scalar) or a per-row gather
            consts = rng.uniform(0.5, 1.5, (n_groups, p.n_constants))
            group = rng.integers(0, n_groups, r.size)
            for mode in (kernels.MODE_VALUE, kernels.MODE_D, kernels.MODE_G, kernels.MODE_ALL):
                fused_out, plain_out = _fused_and_plain(p, r, consts, group, mode)
                _assert_lanes_close(fused_out, plain_out)


@pytest.mark.parametrize(
    "expr",
    [
        "A*exp(-r/b) - C/r**6 + q/r",  # the benchmark's expression
        "4*e*((s/r)**12 - (s/r)**6) + q/r",
        "c1/r**c2 + r/c3 - c4/(c5*r)",
        "D*(exp(-2*a*(r-r0)) - 2*exp(-a*(r-r0)))",
        "-(c/r) + (-r)*c2 - c3*(1 - r)",
    ],
)
def test_fused_programs_match_sympy(expr):
    """Values, d/dr, d/dc and d²/(dr dc) of fused programs against sympy's derivatives."""
    p = Program.from_string(expr)
    assert len(kernels.fuse(p.code)) < len(p.code)
    rng = np.random.default_rng(2)
    r = rng.uniform(1.5, 4.0, 300)
    c = rng.uniform(0.5, 1.5, (1, p.n_constants))
    v, d, g, h = p.evaluate(r, c, mode=kernels.MODE_ALL)
    rs = p.symbols["r"]
    syms = [rs, *(p.symbols[n] for n in p.constants)]
    args = (r, *c[0])

    def lam(e):
        return np.broadcast_to(sympy.lambdify(syms, e, "numpy")(*args), r.shape)

    np.testing.assert_allclose(v, lam(p.sympy), rtol=1e-12)
    np.testing.assert_allclose(d, lam(sympy.diff(p.sympy, rs)), rtol=1e-12, atol=1e-14)
    for k, name in enumerate(p.constants):
        ck = p.symbols[name]
        np.testing.assert_allclose(g[:, k], lam(sympy.diff(p.sympy, ck)), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(
            h[:, k], lam(sympy.diff(p.sympy, rs, ck)), rtol=1e-11, atol=1e-13
        )


def test_fuse_leaves_plain_postfix_alone():
    p = Program.from_string("r**c")  # POW is not fused
    assert np.array_equal(kernels.fuse(p.code), p.code)
    p = Program.from_string("c1*exp(-r/c2)")
    fused = kernels.fuse(p.code)
    assert fused[:, 0].tolist() == [ops.VAR, ops.NEG, ops.DIV_L, ops.EXP, ops.MUL_L]
    assert fused[2, 1] == ops.leaf_argument(ops.CONST, p.constants.index("c2"))
    assert ops.MUL_L not in p.code[:, 0]  # Program.code itself stays plain


def test_second_variable_as_fused_leaf():
    """A leaf variable other than variable 0 has d = 0 (regression with x, y)."""
    p = Program.from_string("a*x/y + y*exp(x) - b/y", variables=("x", "y"))
    rng = np.random.default_rng(4)
    X = rng.uniform(0.5, 2.0, (2, 500))
    consts = np.array([[1.3, 0.7]])
    for mode in range(4):
        fused_out, plain_out = _fused_and_plain(p, X, consts, None, mode)
        _assert_lanes_close(fused_out, plain_out)
    v, d, _, _ = p.evaluate(X, consts, mode=kernels.MODE_D)
    x, y = X
    np.testing.assert_allclose(v, 1.3 * x / y + y * np.exp(x) - 0.7 / y, rtol=1e-13)
    np.testing.assert_allclose(d, 1.3 / y + y * np.exp(x), rtol=1e-13)


@pytest.mark.parametrize("n", [-7, -2, -1, 0, 1, 2, 3, 6, 12, 13, 32])
def test_integer_powers(n):
    p = Program.from_string(f"c*r**{n}")
    r = np.linspace(0.5, 3.0, 700)
    v, d, g, h = p.evaluate(r, np.array([[1.5]]), mode=kernels.MODE_ALL)
    np.testing.assert_allclose(v, 1.5 * r**n, rtol=1e-14)
    np.testing.assert_allclose(d, 1.5 * n * r ** (n - 1.0), rtol=1e-14, atol=1e-300)
    np.testing.assert_allclose(g[:, 0], r**n, rtol=1e-14)
    np.testing.assert_allclose(h[:, 0], n * r ** (n - 1.0), rtol=1e-14, atol=1e-300)


def test_overflowing_constant_term_poisons_forces():
    """A non-finite r-independent term never reaches d, but must still reject the candidate."""
    p = Program.from_string("q/r + exp(c)")
    r = np.array([1.0, 2.0])
    consts = np.array([[1.0, 1000.0]])
    args = (np.zeros(2, dtype=np.int64), np.zeros(2, dtype=np.int64), np.ones(2, dtype=np.int64))
    u = np.ones((2, 3))
    with np.errstate(all="ignore"):
        F, _ = kernels.pair_forces(
            p.code, p.literals, r, consts, args[0], args[1], args[2], u, args[0], 2, 0, p.max_stack
        )
        F2, J, _, _ = kernels.pair_jacobian(
            p.code,
            p.literals,
            r,
            consts,
            np.ones((1, 2, 2)),
            args[0],
            args[1],
            args[2],
            u,
            args[0],
            2,
            0,
            p.max_stack,
        )
    assert np.isnan(F).any() and np.isnan(F2).any()


def test_evaluate_into_preallocated_outputs():
    p = Program.from_string("A*exp(-r/b) - C/r**6 + q/r")
    r = np.linspace(2.0, 6.0, 1500)
    c = np.array([[1.0, 0.4, 2.0, 0.5]])
    n, K = r.size, p.n_constants
    out = (np.empty(n), np.empty(n), np.empty((n, K)), np.empty((n, K)))
    for mode in range(4):
        ref = p.evaluate(r, c, mode=mode)
        got = p.evaluate(r, c, mode=mode, out=out)
        for x, y, o in zip(got, ref, out, strict=True):
            if y is None:
                assert x is None
            else:
                assert x is o
                np.testing.assert_array_equal(x, y)
    with pytest.raises(ValueError, match="out: d"):
        p.evaluate(r, c, mode=1, out=(out[0], np.empty(n - 1), None, None))


@pytest.mark.parametrize("opcode", [22 + 40, 99])
def test_unknown_opcode_poisons_every_lane(opcode):
    code = np.array([[ops.VAR, 0], [opcode, 0]], dtype=np.int64)
    for mode in range(4):
        out = kernels.evaluate(code, np.zeros(1), np.array([1.0, 2.0]), np.ones((1, 1)), mode=mode)
        assert all(np.isnan(x).all() for x in out if x is not None)

"""Expression compiler: parsing, constants, complexity, sympy, errors."""

import math
import re

import numpy as np
import pytest
import sympy

from mctsff.program import ExpressionError, Program


def test_constants_in_order_of_appearance():
    p = Program.from_string("prod_q/r + A*exp(-r/b) - C/r**6")
    assert p.constants == ("prod_q", "A", "b", "C")
    assert p.length_constants == {"b"}
    assert "prod_q" not in p.length_constants


def test_inverse_length_and_offset_lengths():
    p = Program.from_string("D*(exp(-2*a*(r-r0)) - 2*exp(-a*(r - r0))) + B*exp(-k*r)")
    assert "r0" in p.length_constants
    assert "k" in p.inverse_length_constants


def test_integer_powers_and_inverse_are_special_cased():
    p = Program.from_string("1/r**6")
    ops_used = [int(op) for op, _ in p.code]
    from mctsff import ops

    assert ops.POWI in ops_used and ops.INV in ops_used and ops.POW not in ops_used


def test_literal_folding_and_pi():
    p = Program.from_string("2*pi*r")
    v, *_ = p.evaluate(np.array([1.0, 2.0]), np.zeros((1, 0)), mode=0)
    np.testing.assert_allclose(v, [2 * math.pi, 4 * math.pi])


def test_sympy_round_trip():
    p = Program.from_string("A*exp(-r/b) - C/r^6")
    r, A, b, C = (p.symbols[n] for n in ("r", "A", "b", "C"))
    assert sympy.simplify(p.sympy - (A * sympy.exp(-r / b) - C / r**6)) == 0
    # the string form parses back to the same expression
    again = sympy.sympify(str(p.sympy), locals={n: s for n, s in p.symbols.items()})
    assert sympy.simplify(again - p.sympy) == 0


def test_complexity_counts_nodes_and_honours_weights():
    base = Program.from_string("A*exp(-r/b)")
    heavy = Program.from_string("A*exp(-r/b)", weights={"exp": 10})
    assert heavy.complexity == base.complexity + 8
    assert Program.from_string("r").complexity == 1


@pytest.mark.parametrize(
    "bad, fragment",
    [
        ("A*foo(r)", "unknown function 'foo'"),
        ("A*exp(r, r)", "exactly one argument"),
        ("A*(r", "cannot parse"),
        ("c1/r +", "at its end (is an operand missing?)"),
        ("c1/r ) + 2", "at column 6: unmatched"),
        ("", "empty"),
        ("exp*r", "reserved"),
        ("r[0]", "unsupported syntax"),
    ],
)
def test_errors_name_the_problem(bad, fragment):
    with pytest.raises(ExpressionError, match=re.escape(fragment)):
        Program.from_string(bad)


def test_pickle_round_trip():
    import pickle

    p = Program.from_string("A*exp(-r/b)")
    q = pickle.loads(pickle.dumps(p))
    assert q.expression == p.expression and np.array_equal(q.code, p.code)


def test_code_is_plain_postfix():
    """Superinstructions are a kernel detail: Program.code keeps one opcode per node
    (params._linear_constants and other analyses walk it)."""
    from mctsff import ops

    plain = {op.code for op in ops.OPS.values()} | {ops.VAR, ops.CONST, ops.LIT, ops.POWI}
    for expr in ("A*exp(-r/b) - C/r**6 + q/r", "c/r + r*c - 2/r", "4*e*((s/r)**12 - (s/r)**6)"):
        p = Program.from_string(expr)
        assert set(p.code[:, 0].tolist()) <= plain

"""Expression compiler: parsing, constants, complexity, sympy, errors."""

import math
import re

import numpy as np
import pytest
import sympy

from mctsff.expr.program import ExpressionError, Program


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
    from mctsff.expr import ops

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
    from mctsff.expr import ops

    plain = {op.code for op in ops.OPS.values()} | {ops.VAR, ops.CONST, ops.LIT, ops.POWI}
    for expr in ("A*exp(-r/b) - C/r**6 + q/r", "c/r + r*c - 2/r", "4*e*((s/r)**12 - (s/r)**6)"):
        p = Program.from_string(expr)
        assert set(p.code[:, 0].tolist()) <= plain


@pytest.mark.parametrize(
    "bad, fragment",
    [
        ('A/r #"""; __import__("os").system("touch PWNED"); """', "'#' at column 5"),
        ("A/r\n+ B", "a line break at column 4"),
        ("A/r\r+ B", "a line break at column 4"),
        ("A/r + 'x'", '"\'" at column 7'),
        ("A/r + \\\n1", "'\\\\' at column 7"),
        ("A/r + αr", "'α' at column 7"),
        ("r.__class__", "unsupported syntax Attribute"),
        ("r" + "+r" * 20_000, "longer than"),
        ("+".join(["r"] * 3000), "nested too deeply"),
        ("1" * 400 + "*r", "too large"),
    ],
)
def test_expressions_are_one_line_of_the_allowed_syntax(bad, fragment):
    """A comment, line break, quote or other character would let an expression taken from
    a run folder or grammar carry code into an exported module (issue 36)."""
    with pytest.raises(ExpressionError, match=re.escape(fragment)):
        Program.from_string(bad)


_TOKENS = [
    "r", "A", "b", "prod_q", "exp", "sqrt", "(", ")", "+", "-", "*", "/", "**", "^", " ",
    "1", "2.5", "1e-3", ",", ".", "#", "\n", "'", '"', "\\", "__import__", "os", "[", "]",
    "lambda", ":", "=", ";", "{", "}", "@", "\x00", "é", "9" * 30, "pi", "r.real",
]  # fmt: skip


def test_random_expressions_raise_only_expression_errors_and_run_nothing():
    """Property: any string compiles or raises ExpressionError, and nothing is executed."""
    import builtins
    import contextlib
    import os
    from unittest import mock

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from mctsff.expr.program import ALLOWED_CHARACTERS

    def forbidden(*args, **kwargs):
        raise AssertionError(f"code was executed: {args!r}")

    texts = st.one_of(st.text(max_size=40), st.lists(st.sampled_from(_TOKENS), max_size=12))

    @settings(max_examples=300, deadline=None, database=None)
    @given(texts)
    def check(parts):
        text = parts if isinstance(parts, str) else "".join(parts)
        with contextlib.ExitStack() as stack:
            for obj, name in ((builtins, "exec"), (builtins, "eval"), (os, "system")):
                stack.enter_context(mock.patch.object(obj, name, forbidden))
            try:
                p = Program.from_string(text)
            except ExpressionError:
                return
        assert set(p.expression) <= ALLOWED_CHARACTERS, p.expression

    check()

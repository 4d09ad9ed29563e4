"""Operator table: the one place that says which operators exist.

Every other module (program compiler, numba kernels, exporters, grammar
analysis) refers to operators through this table, so adding an operator means
adding one row here and one case in :mod:`mctsff.expr.kernels`.

Opcodes are small integers understood by the postfix interpreter in
:mod:`mctsff.expr.kernels`.  An instruction is a pair ``(opcode, argument)``; the
argument is the variable index for ``VAR``, the constant slot for ``CONST``,
the literal index for ``LIT`` and the integer exponent for ``POWI``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.special
import sympy

# --- opcodes (kept in sync with kernels.py) ---------------------------------
VAR = 0
CONST = 1
LIT = 2
ADD = 3
SUB = 4
MUL = 5
DIV = 6
POW = 7  # a ** b for a general (possibly fitted) exponent b, a > 0 required
NEG = 8
EXP = 9
LOG = 10
SQRT = 11
INV = 12
POWI = 13  # a ** n for an integer literal n (argument = n)
TANH = 14
ERFC = 15
ERF = 16
SIN = 17
COS = 18
SQUARE = 19
CUBE = 20
ABS = 21

# --- superinstructions (kernel-internal) -------------------------------------
# :func:`mctsff.expr.kernels.fuse` rewrites a binary operator whose operand is a
# single leaf (``VAR``, ``CONST`` or ``LIT``) into one instruction that reads
# the leaf directly instead of pushing it.  The argument packs the leaf as
# ``4 * leaf_argument + leaf_opcode``.  They never appear in
# ``Program.code`` (which stays plain postfix for the code-walking analyses).
ADD_L = 22  # x + leaf
SUB_L = 23  # x - leaf
RSUB_L = 24  # leaf - x
MUL_L = 25  # x * leaf (and leaf * x)
DIV_L = 26  # x / leaf
RDIV_L = 27  # leaf / x
#: Opcodes of the superinstructions, by the binary operator they fuse.
FUSED = {"+": ADD_L, "-": SUB_L, "*": MUL_L, "/": DIV_L}
FUSED_REVERSED = {"+": ADD_L, "-": RSUB_L, "*": MUL_L, "/": RDIV_L}


def leaf_argument(opcode: int, argument: int) -> int:
    """Argument of a superinstruction whose operand is the leaf ``(opcode, argument)``."""
    return 4 * argument + opcode


#: Largest integer exponent compiled to ``POWI``; larger exponents use ``POW``.
MAX_POWI = 32


@dataclass(frozen=True, slots=True)
class Op:
    """One operator.

    Parameters
    ----------
    name
        Name used in expression strings (function name or ``"+"``-style symbol).
    code
        Opcode understood by the kernels.
    arity
        Number of operands.
    complexity
        Default complexity weight (a node of this operator adds this much).
    numpy
        Vectorised reference implementation (used by tests and exporters).
    sympy
        Constructor of the equivalent sympy expression.
    """

    name: str
    code: int
    arity: int
    complexity: int
    numpy: Callable
    sympy: Callable


def _sym_inv(a):
    return 1 / a


OPS: dict[str, Op] = {
    op.name: op
    for op in (
        Op("+", ADD, 2, 1, np.add, lambda a, b: a + b),
        Op("-", SUB, 2, 1, np.subtract, lambda a, b: a - b),
        Op("*", MUL, 2, 1, np.multiply, lambda a, b: a * b),
        Op("/", DIV, 2, 1, np.divide, lambda a, b: a / b),
        Op("**", POW, 2, 2, np.power, lambda a, b: a**b),
        Op("neg", NEG, 1, 1, np.negative, lambda a: -a),
        Op("exp", EXP, 1, 2, np.exp, sympy.exp),
        Op("log", LOG, 1, 2, np.log, sympy.log),
        Op("sqrt", SQRT, 1, 2, np.sqrt, sympy.sqrt),
        Op("inv", INV, 1, 1, np.reciprocal, _sym_inv),
        Op("tanh", TANH, 1, 2, np.tanh, sympy.tanh),
        Op("erfc", ERFC, 1, 2, scipy.special.erfc, sympy.erfc),
        Op("erf", ERF, 1, 2, scipy.special.erf, sympy.erf),
        Op("sin", SIN, 1, 2, np.sin, sympy.sin),
        Op("cos", COS, 1, 2, np.cos, sympy.cos),
        Op("square", SQUARE, 1, 1, np.square, lambda a: a**2),
        Op("cube", CUBE, 1, 1, lambda a: a**3, lambda a: a**3),
        Op("abs", ABS, 1, 1, np.abs, sympy.Abs),
    )
}

#: Functions callable by name in expression strings (``exp(x)``, ...).
FUNCTIONS: dict[str, Op] = {name: op for name, op in OPS.items() if name.isidentifier()}
FUNCTIONS.pop("neg")

BY_CODE: dict[int, Op] = {op.code: op for op in OPS.values()}

#: Complexity of a leaf (variable, constant or literal) and of ``x**n``.
LEAF_COMPLEXITY = 1
POWI_COMPLEXITY = 1

# --- constants: naming convention --------------------------------------------
#: Prefixes that mark a per-atom-type constant and its combining rule.
#: ``prod_q`` stands for q^AB = q^A * q^B (the rule of the originating study),
#: ``geom_e`` for sqrt(e^A * e^B), ``arith_s`` for (s^A + s^B)/2 and
#: ``pair_k`` for a free value per unordered type pair.  Any other name is a
#: single global constant.
TYPE_RULES: dict[str, str] = {
    "prod_": "product",
    "geom_": "geometric",
    "arith_": "arithmetic",
    "pair_": "pair",
}

#: Names that can never be constants.
RESERVED = frozenset(FUNCTIONS) | {"pi", "E", "I", "oo", "nan", "inf"}


def constant_rule(name: str) -> str:
    """Combining rule of constant ``name`` from its prefix ("global" if none).

    Examples
    --------
    >>> constant_rule("prod_q"), constant_rule("b")
    ('product', 'global')
    """
    for prefix, rule in TYPE_RULES.items():
        if name.startswith(prefix) and len(name) > len(prefix):
            return rule
    return "global"


def powi_numpy(a: np.ndarray, n: int) -> np.ndarray:
    """Integer power used by :data:`POWI` (``a ** n`` with float ``a``)."""
    return np.power(a, float(n))


PI = math.pi

"""Expression strings → postfix programs for the kernels, and → sympy.

An expression is written in Python/sympy syntax::

    prod_q/r + A*exp(-r/b) - C/r**6

* variables: ``r`` for pair potentials (``x``, ``y``, … for plain regression);
* operators ``+ - * / **`` (``^`` is accepted as ``**``), unary minus;
* functions from :data:`mctsff.expr.ops.FUNCTIONS` (``exp log sqrt tanh erfc erf sin cos
  inv square cube abs``) and the literal ``pi``;
* every other name is a fitted constant; its prefix sets its kind
  (:func:`mctsff.expr.ops.constant_rule`): ``prod_q`` is a per-atom-type constant
  combined by product (q^AB = q^A·q^B), ``geom_``/``arith_`` use the geometric
  and arithmetic mean, ``pair_`` is free per type pair, anything else is global.

Parsing uses Python's :mod:`ast` (fast, with column numbers for errors); the
same tree gives the bytecode, the complexity and the sympy expression, so no
sympy work happens when a candidate is compiled.  Nothing is ever executed: an
expression is one line of ASCII letters, digits, ``_``, spaces and ``+ - * / ^ ( ) . ,``
(:data:`ALLOWED_CHARACTERS`; no comments, quotes, backslashes or line breaks) and at most
:data:`MAX_LENGTH` characters, checked before parsing, and its parse tree may hold only
the nodes above, so an expression copied from a run folder or a grammar into generated
code (:mod:`mctsff.export`) can only be that expression.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np
import sympy

from mctsff.expr import ops


class ExpressionError(ValueError):
    """An expression string that cannot be compiled (message says where)."""


_BINOPS = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.Pow: "**",
    ast.BitXor: "**",
}
_LITERAL_NAMES = {"pi": math.pi}

#: Characters an expression may contain (one line: no comments, quotes or line breaks).
ALLOWED_CHARACTERS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_ +-*/^().,"
)
#: Longest expression accepted, in characters (searched forms have a few hundred).
MAX_LENGTH = 10_000


def check_syntax(expression: str) -> str:
    """``expression`` stripped, if it is one line of :data:`ALLOWED_CHARACTERS`.

    Raises
    ------
    ExpressionError
        Naming the first character that is not allowed and its column (a ``#`` comment,
        a line break, a quote, a non-ASCII letter, ...), or the length.
    """
    if not isinstance(expression, str):
        raise ExpressionError(f"an expression is a string, not {type(expression).__name__}")
    text = expression.strip()
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"expression of {len(text)} characters is longer than {MAX_LENGTH}")
    for col, ch in enumerate(text, start=1):
        if ch not in ALLOWED_CHARACTERS:
            what = "a line break" if ch in "\r\n\v\f\x85\u2028\u2029" else repr(ch)
            raise ExpressionError(
                f"unsupported syntax: {what} at column {col} of expression {text[:80]!r} "
                "(an expression is one line of names, numbers, spaces and + - * / ^ ( ) . ,)"
            )
    return text


@dataclass(frozen=True, eq=False)
class Program:
    """A compiled expression.

    Attributes
    ----------
    expression
        The source string.
    variables
        Variable names; variable 0 is the one differentiated (``r``).
    code
        ``(n_instructions, 2)`` int64 postfix code ``(opcode, argument)``.
    literals
        float64 literal pool referenced by ``LIT`` instructions.
    constants
        Constant names in slot order (first appearance).
    complexity
        Weighted node count.
    max_stack
        Stack depth the program needs.
    length_constants
        Constants that act as a length scale of ``r`` (``r/b``, ``r - b``, ...).
    inverse_length_constants
        Constants that act as an inverse length (``a*r``).
    """

    expression: str
    variables: tuple[str, ...]
    code: np.ndarray
    literals: np.ndarray
    constants: tuple[str, ...]
    complexity: int
    max_stack: int
    length_constants: frozenset[str]
    inverse_length_constants: frozenset[str]
    _tree: ast.AST

    # ------------------------------------------------------------------ build
    @classmethod
    def from_string(
        cls,
        expression: str,
        variables: Sequence[str] = ("r",),
        weights: Mapping[str, float] | None = None,
    ) -> Program:
        """Compile ``expression``.

        Parameters
        ----------
        expression
            Expression text (see module docstring).
        variables
            Names treated as input variables.
        weights
            Complexity weights overriding :mod:`mctsff.expr.ops` defaults; keys are
            operator names (``"exp"``, ``"+"``, ``"**"``) or ``"var"``, ``"const"``,
            ``"literal"``, ``"powi"``.

        Raises
        ------
        ExpressionError
            With the column of the offending token.

        Examples
        --------
        >>> p = Program.from_string("A*exp(-r/b)")
        >>> p.constants
        ('A', 'b')
        """
        if not isinstance(expression, str) or not expression.strip():
            raise ExpressionError("empty expression")
        w = tuple(sorted(weights.items())) if weights else ()
        return _compile(cls, expression, tuple(variables), w)

    @classmethod
    def _build(cls, expression: str, variables: tuple[str, ...], weights: dict) -> Program:
        text = check_syntax(expression).replace("^", "**")
        try:
            tree = ast.parse(text, mode="eval").body
        except (RecursionError, MemoryError):
            raise ExpressionError(f"expression {text[:80]!r}... is nested too deeply") from None
        except SyntaxError as exc:
            # Python reports an expression that ends too early (``c1/r +``) at offset 0
            where = (
                f"at column {exc.offset}"
                if exc.offset and 0 < exc.offset <= len(text)
                else "at its end (is an operand missing?)"
            )
            raise ExpressionError(f"cannot parse expression {text!r} {where}: {exc.msg}") from None
        compiler = _Compiler(text, variables, weights)
        try:
            compiler.emit(tree)
        except (RecursionError, OverflowError) as exc:
            what = "is nested too deeply" if isinstance(exc, RecursionError) else f"has {exc}"
            raise ExpressionError(f"expression {text[:80]!r} {what}") from None
        code = np.array(compiler.code, dtype=np.int64).reshape(-1, 2)
        return cls(
            expression=text,
            variables=tuple(variables),
            code=code,
            literals=np.array(compiler.literals or [0.0], dtype=np.float64),
            constants=tuple(compiler.constants),
            complexity=int(round(compiler.complexity)),
            max_stack=max(compiler.max_depth, 1),
            length_constants=frozenset(compiler.length),
            inverse_length_constants=frozenset(compiler.inv_length),
            _tree=tree,
        )

    # -------------------------------------------------------------- queries
    @property
    def n_constants(self) -> int:
        """Number of constant slots."""
        return len(self.constants)

    def rule(self, name: str) -> str:
        """Combining rule of constant ``name``."""
        return ops.constant_rule(name)

    @cached_property
    def symbols(self) -> dict[str, sympy.Symbol]:
        """Sympy symbols of variables and constants by name."""
        names = list(self.variables) + list(self.constants)
        return {n: sympy.Symbol(n, real=True) for n in names}

    @cached_property
    def sympy(self) -> sympy.Expr:
        """The expression as a sympy object (built from the parse tree, not re-parsed)."""
        return self.to_sympy(self.symbols)

    def to_sympy(self, symbols: Mapping[str, sympy.Symbol]) -> sympy.Expr:
        """The expression as a sympy object with ``symbols[name]`` for each variable and
        constant (e.g. constants renamed by kind), built directly from the parse tree."""
        return _to_sympy(self._tree, symbols)

    def __str__(self) -> str:
        return self.expression

    def __repr__(self) -> str:
        return f"Program({self.expression!r}, constants={self.constants})"

    def __getstate__(self):
        return {"expression": self.expression, "variables": self.variables}

    def __setstate__(self, state):
        other = Program.from_string(state["expression"], state["variables"])
        for key in other.__dataclass_fields__:
            object.__setattr__(self, key, getattr(other, key))

    def evaluate(
        self,
        X: np.ndarray,
        consts: np.ndarray,
        group: np.ndarray | None = None,
        mode: int = 1,
        out: tuple | None = None,
    ):
        """Evaluate with the kernels; see :func:`mctsff.expr.kernels.evaluate`."""
        return _kernels().evaluate(
            self.code, self.literals, X, consts, group, mode, self.max_stack, out=out
        )


@lru_cache(maxsize=1024)
def _compile(cls, expression: str, variables: tuple[str, ...], weights: tuple) -> Program:
    """Memoised :meth:`Program._build`: a search compiles each candidate several times
    within a few iterations (transposition key, fit, local moves); programs are never
    mutated, so they are shared.  1024 pair-grammar programs take about 8 MB."""
    return cls._build(expression, variables, dict(weights))


def _kernels():
    """:mod:`mctsff.expr.kernels`, imported on first use (numba is slow to import)."""
    global _KERNELS
    if _KERNELS is None:
        from mctsff.expr import kernels

        _KERNELS = kernels
    return _KERNELS


_KERNELS = None


def _to_sympy(node: ast.AST, symbols: Mapping[str, sympy.Symbol]) -> sympy.Expr:
    if isinstance(node, ast.Constant):
        v = node.value
        return sympy.Integer(v) if isinstance(v, int) else sympy.Float(v)
    if isinstance(node, ast.Name):
        if node.id in _LITERAL_NAMES:
            return sympy.pi
        return symbols[node.id]
    if isinstance(node, ast.UnaryOp):
        a = _to_sympy(node.operand, symbols)
        return -a if isinstance(node.op, ast.USub) else a
    if isinstance(node, ast.BinOp):
        name = _BINOPS[type(node.op)]
        a = _to_sympy(node.left, symbols)
        b = _to_sympy(node.right, symbols)
        if name == "/" and isinstance(node.left, ast.Constant) and node.left.value == 1:
            return 1 / b
        return ops.OPS[name].sympy(a, b)
    if isinstance(node, ast.Call):
        return ops.FUNCTIONS[node.func.id].sympy(_to_sympy(node.args[0], symbols))
    raise ExpressionError(f"unsupported node {type(node).__name__}")


def _literal_value(node: ast.AST, memo: dict[int, float | None] | None = None) -> float | None:
    """Value of a literal-only subtree, or None.

    ``memo`` (``id(node) -> value``) makes repeated calls over one tree linear in its size.
    """
    if memo is None:
        return _literal_eval(node, None)
    key = id(node)
    if key not in memo:
        memo[key] = _literal_eval(node, memo)
    return memo[key]


def _literal_eval(node: ast.AST, memo: dict[int, float | None] | None) -> float | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        if isinstance(node.value, bool):
            return None
        return float(node.value)
    if isinstance(node, ast.Name) and node.id in _LITERAL_NAMES:
        return _LITERAL_NAMES[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        v = _literal_value(node.operand, memo)
        if v is None:
            return None
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        a = _literal_value(node.left, memo)
        b = _literal_value(node.right, memo)
        if a is None or b is None:
            return None
        try:
            return float(ops.OPS[_BINOPS[type(node.op)]].numpy(np.float64(a), np.float64(b)))
        except (ZeroDivisionError, OverflowError, FloatingPointError):
            return None
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and len(node.args) == 1:
        op = ops.FUNCTIONS.get(node.func.id)
        a = _literal_value(node.args[0], memo)
        if op is None or a is None:
            return None
        with np.errstate(all="ignore"):
            return float(op.numpy(np.float64(a)))
    return None


class _Compiler:
    def __init__(self, text: str, variables: tuple[str, ...], weights: Mapping[str, float]):
        self.text = text
        self.variables = variables
        self.weights = weights
        self.code: list[int] = []
        self.literals: list[float] = []
        self.constants: list[str] = []
        self.complexity = 0.0
        self.depth = 0
        self.max_depth = 0
        self.length: set[str] = set()
        self.inv_length: set[str] = set()
        self.fn_depth = 0  # > 0 inside a function argument or an exponent
        self._lit: dict[int, float | None] = {}  # literal value of each subtree (by id)

    def _err(self, node: ast.AST, msg: str) -> ExpressionError:
        col = getattr(node, "col_offset", 0) + 1
        return ExpressionError(f"{msg} at column {col} of expression {self.text!r}")

    def _w(self, key: str, default: float) -> float:
        return float(self.weights.get(key, default))

    def _push(self, opcode: int, arg: int = 0) -> None:
        self.code += [opcode, arg]
        self.depth += 1
        self.max_depth = max(self.max_depth, self.depth)

    def _op(self, opcode: int, arity: int, arg: int = 0) -> None:
        self.code += [opcode, arg]
        self.depth -= arity - 1

    def _literal(self, value: float) -> None:
        if not math.isfinite(value):
            raise ExpressionError(f"non-finite literal in expression {self.text!r}")
        try:
            idx = self.literals.index(value)
        except ValueError:
            idx = len(self.literals)
            self.literals.append(value)
        self._push(ops.LIT, idx)
        self.complexity += self._w("literal", ops.LEAF_COMPLEXITY)

    def emit(self, node: ast.AST) -> None:
        value = _literal_value(node, self._lit)
        if value is not None:
            self._literal(value)
            return
        if isinstance(node, ast.Name):
            name = node.id
            if name in self.variables:
                self._push(ops.VAR, self.variables.index(name))
                self.complexity += self._w("var", ops.LEAF_COMPLEXITY)
                return
            if name in ops.RESERVED:
                raise self._err(node, f"name {name!r} is reserved and cannot be a constant")
            if name not in self.constants:
                self.constants.append(name)
            self._push(ops.CONST, self.constants.index(name))
            self.complexity += self._w("const", ops.LEAF_COMPLEXITY)
            return
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.UAdd):
                self.emit(node.operand)
                return
            if isinstance(node.op, ast.USub):
                self.emit(node.operand)
                self._op(ops.NEG, 1)
                self.complexity += self._w("neg", ops.OPS["neg"].complexity)
                return
            raise self._err(node, f"unsupported unary operator {type(node.op).__name__}")
        if isinstance(node, ast.BinOp):
            if type(node.op) not in _BINOPS:
                raise self._err(node, f"unsupported operator {type(node.op).__name__}")
            name = _BINOPS[type(node.op)]
            self._note_length(node, name)
            if name == "**":
                n = _literal_value(node.right, self._lit)
                if n is not None and float(n).is_integer() and abs(n) <= ops.MAX_POWI:
                    nonlinear = abs(n) >= 2
                    self.fn_depth += nonlinear
                    self.emit(node.left)
                    self.fn_depth -= nonlinear
                    self._op(ops.POWI, 1, int(n))
                    self.complexity += self._w("powi", ops.POWI_COMPLEXITY) + self._w(
                        "literal", ops.LEAF_COMPLEXITY
                    )
                    return
            if name == "/" and _literal_value(node.left, self._lit) == 1.0:
                self.emit(node.right)
                self._op(ops.INV, 1)
                self.complexity += self._w("/", ops.OPS["/"].complexity) + self._w(
                    "literal", ops.LEAF_COMPLEXITY
                )
                return
            nonlinear = name == "**"
            self.fn_depth += nonlinear
            self.emit(node.left)
            self.emit(node.right)
            self.fn_depth -= nonlinear
            op = ops.OPS[name]
            self._op(op.code, 2)
            self.complexity += self._w(name, op.complexity)
            return
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name):
                raise self._err(node, "only plain function names can be called")
            fname = node.func.id
            op = ops.FUNCTIONS.get(fname)
            if op is None:
                known = ", ".join(sorted(ops.FUNCTIONS))
                raise self._err(node, f"unknown function {fname!r} (known: {known})")
            if len(node.args) != 1 or node.keywords:
                raise self._err(node, f"{fname}() takes exactly one argument")
            self.fn_depth += 1
            self.emit(node.args[0])
            self.fn_depth -= 1
            self._op(op.code, 1)
            self.complexity += self._w(fname, op.complexity)
            return
        if isinstance(node, ast.Constant):
            raise self._err(node, f"unsupported literal {node.value!r}")
        raise self._err(node, f"unsupported syntax {type(node).__name__}")

    def _note_length(self, node: ast.BinOp, name: str) -> None:
        """Record constants used as a length (r/b, r-b) or inverse length (a*r) of r."""
        if not self.variables:
            return
        var0 = self.variables[0]

        def strip(n):
            while isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.USub | ast.UAdd):
                n = n.operand
            return n

        def is_var(n):
            n = strip(n)
            return isinstance(n, ast.Name) and n.id == var0

        def const_name(n):
            n = strip(n)
            if isinstance(n, ast.Name) and n.id not in self.variables and n.id not in ops.RESERVED:
                return n.id
            return None

        def is_shifted_var(n):  # r - r0, r + d: still a length
            n = strip(n)
            return (
                isinstance(n, ast.BinOp)
                and isinstance(n.op, ast.Add | ast.Sub)
                and (is_var(n.left) or is_var(n.right))
            )

        for a, b in ((node.left, node.right), (node.right, node.left)):
            c = const_name(b)
            # a*r or r/b only set a length scale inside a nonlinear function
            # (exp(-a*r), erfc(r/b)); outside one they are plain prefactors
            scaled = self.fn_depth > 0
            if name == "*" and c is not None and scaled and is_shifted_var(a):
                self.inv_length.add(c)
            if is_var(a) and c is not None:
                if name in ("+", "-") or (name == "/" and scaled):
                    self.length.add(c)
                elif name == "*" and scaled:
                    self.inv_length.add(c)


def signed_terms(expression: str) -> list[tuple[int, ast.AST]]:
    """Top-level additive terms of an expression as ``(sign, node)`` pairs.

    ``a - b + c`` gives ``[(1, a), (-1, b), (1, c)]``; a unary minus flips the sign.
    Used by the search's local moves and the surrogate (:mod:`mctsff.fit.surrogate`).
    """
    tree = ast.parse(expression.replace("^", "**"), mode="eval").body
    terms: list[tuple[int, ast.AST]] = []

    def walk(node, sign):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub):
            walk(node.left, sign)
            walk(node.right, sign if isinstance(node.op, ast.Add) else -sign)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            walk(node.operand, -sign)
        else:
            terms.append((sign, node))

    walk(tree, 1)
    return terms

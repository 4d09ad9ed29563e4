"""The expression printer: sympy expressions of a program, printed for Lepton (OpenMM,
LAMMPS) or numpy (Python)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import sympy

if TYPE_CHECKING:  # pragma: no cover
    pass

from mctsff.export.base import ExportError

_FUNCS = {
    "lepton": {
        sympy.exp: "exp",
        sympy.log: "log",
        sympy.tanh: "tanh",
        sympy.erf: "erf",
        sympy.erfc: "erfc",
        sympy.sin: "sin",
        sympy.cos: "cos",
        sympy.Abs: "abs",
    },
    "numpy": {
        sympy.exp: "np.exp",
        sympy.log: "np.log",
        sympy.tanh: "np.tanh",
        sympy.erf: "_erf",
        sympy.erfc: "_erfc",
        sympy.sin: "np.sin",
        sympy.cos: "np.cos",
        sympy.Abs: "np.abs",
        sympy.sign: "np.sign",
    },
}


def _number(value: Any) -> str:
    if isinstance(value, sympy.Integer | int):
        v = int(value)
        return str(v) if v >= 0 else f"({v})"
    try:
        x = float(value)
    except TypeError:
        raise ExportError(f"cannot export the non-real number {value}") from None
    if not math.isfinite(x):
        raise ExportError(f"the expression contains the non-finite number {value}")
    s = repr(x)
    return f"({s})" if x < 0 else s


def _print(expr: sympy.Expr, names: Mapping[str, str], flavor: str) -> str:
    """Text of a sympy expression in Lepton (``^``) or numpy (``**``) syntax.

    Numbers are printed with ``repr(float)`` (round-trip precision); symbols are renamed by
    ``names``; every compound sub-expression is parenthesised.
    """
    pw = "^" if flavor == "lepton" else "**"
    sqrt = "sqrt" if flavor == "lepton" else "np.sqrt"

    def go(e: sympy.Expr) -> str:
        if not e.free_symbols:
            return _number(e)
        if e.is_Symbol:
            return names.get(e.name, e.name)
        if e.is_Add:
            text = ""
            for a in e.as_ordered_terms():
                neg = a.could_extract_minus_sign()
                t = go(-a) if neg else go(a)
                text += (" - " if neg else " + ") + t if text else ("-" if neg else "") + t
            return f"({text})"
        if e.is_Mul:
            coeff, _ = e.as_coeff_Mul()
            if coeff.is_negative:
                return f"(-{go(-e)})"
            num, den = [], []
            for a in e.args:
                if a.is_Pow and a.exp.is_Number and a.exp.is_negative:
                    den.append(a.base ** (-a.exp))
                else:
                    num.append(a)
            text = "*".join(go(a) for a in num) if num else "1"
            if den:
                text += "/" + (go(den[0]) if len(den) == 1 else "(" + "*".join(map(go, den)) + ")")
            return f"({text})"
        if e.is_Pow:
            base, ex = e.args
            if ex == sympy.S.Half:
                return f"{sqrt}({go(base)})"
            if ex == -sympy.S.Half:
                return f"(1/{sqrt}({go(base)}))"
            if ex == -1:
                return f"(1/{go(base)})"
            return f"({go(base)}{pw}{go(ex)})"
        fname = _FUNCS[flavor].get(e.func)
        if fname is not None and len(e.args) == 1:
            return f"{fname}({go(e.args[0])})"
        raise ExportError(f"cannot export {e.func.__name__}(...) to {flavor} syntax")

    return go(expr)

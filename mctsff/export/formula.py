"""Exports as formulas: sympy, LaTeX and Python source (and the callable it defines)."""

from __future__ import annotations

import builtins
import keyword
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import sympy

from mctsff import __version__
from mctsff.expr.params import SHIFTED_SCHEMES, Potential

if TYPE_CHECKING:  # pragma: no cover
    pass

from mctsff.export.front import _default_pair, _pair_label, is_universal
from mctsff.export.printer import _print
from mctsff.expr.params import sympy_expression


def to_sympy(
    pot: Potential, pair: tuple[str, str] | None = None, *, symbolic: bool = False
) -> sympy.Expr:
    """The potential as a sympy expression in ``r`` (Å → eV).

    Parameters
    ----------
    pot
        Fitted potential.
    pair
        Type pair, e.g. ``("H", "O")``; may be omitted when the potential has one type pair or
        is universal.
    symbolic
        Keep the constants as symbols, with per-type constants written through their rule
        (type as a superscript, as in q^A·q^B): ``prod_q`` → ``q^A*q^B`` (``q^H*q^O`` when
        ``pair`` is given), ``geom_e`` → ``sqrt(e^A*e^B)``, ``arith_s`` → ``(s^A + s^B)/2``,
        ``pair_k`` → ``k^AB``; where constants of several per-type rules share a stem, the
        geometric and arithmetic ones are accented (``prod_c1``, ``geom_c1`` → ``c1^A*c1^B``,
        ``sqrt(ctilde1^A*ctilde1^B)``), so distinct constants stay distinct.  A shifted
        potential gets its shift terms with the cutoff as the symbol ``r_c``:
        ``u(r) − u(r_c) − (r − r_c)·u'(r_c)`` (shifted-force) or ``u(r) − u(r_c)``
        (shifted-energy), ``u`` the expression as written.

    Returns
    -------
    sympy.Expr
        Without ``symbolic``, the potential as fitted: shifted by its cutoff scheme
        (:meth:`~mctsff.expr.params.Potential.expanded`).
    """
    if symbolic:
        expr = sympy_expression(pot.program, None if pair is None else tuple(pair))
        if pot.scheme not in SHIFTED_SCHEMES:
            return expr
        r = pot.program.symbols["r"]
        rc = sympy.Symbol("r_c", positive=True)
        shifted = expr - expr.subs(r, rc)
        if pot.scheme == "shifted-force":
            shifted -= (r - rc) * sympy.diff(expr, r).subs(r, rc)
        return shifted
    return pot.expanded(_default_pair(pot, pair))


def to_latex(
    pot: Potential,
    pair: tuple[str, str] | None = None,
    *,
    symbolic: bool = False,
    digits: int = 6,
) -> str:
    """LaTeX of the potential.

    Parameters
    ----------
    pot
        Fitted potential.
    pair
        One type pair; ``None`` gives an ``aligned`` block with one line per type pair (one
        line for a universal potential).
    symbolic
        The generic formula ``U_{AB}(r) = …`` with symbolic constants (see :func:`to_sympy`);
        for a shifted potential ``U_{AB}(r) = u(r) - u(r_c) - (r - r_c)\\,u'(r_c)``
        followed by ``u(r) = …`` and the value of ``r_c``.
    digits
        Significant digits of the numbers.

    Returns
    -------
    str
    """
    if symbolic:
        lhs = "U_{AB}(r)" if pair is None else f"U_{{\\mathrm{{{_pair_label(pair)}}}}}(r)"
        u = sympy.latex(sympy_expression(pot.program, None if pair is None else tuple(pair)))
        if pot.scheme == "shifted-force":
            return (
                f"{lhs} = u(r) - u(r_c) - (r - r_c)\\,u'(r_c), \\quad u(r) = {u}, "
                f"\\quad r_c = {pot.cutoff:g}\\,\\mathrm{{\\AA}}"
            )
        if pot.scheme == "shifted-energy":
            return (
                f"{lhs} = u(r) - u(r_c), \\quad u(r) = {u}, "
                f"\\quad r_c = {pot.cutoff:g}\\,\\mathrm{{\\AA}}"
            )
        return f"{lhs} = {u}"

    def line(p: tuple[str, str]) -> tuple[str, str]:
        expr = sympy.N(pot.expanded(p), digits)
        lab = "U(r)" if is_universal(pot) else f"U_{{\\mathrm{{{_pair_label(p)}}}}}(r)"
        return lab, sympy.latex(expr)

    if pair is not None or len(pot.type_pairs) == 1 or is_universal(pot):
        lab, tex = line(_default_pair(pot, pair))
        return f"{lab} = {tex}"
    rows = [" &= ".join(line(p)) for p in pot.type_pairs]
    return "\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}"


_PY_RESERVED = {"np", "r", "pair", "c", "_erf", "_erfc", "U", "dU_dr", "CONSTANTS", "CUTOFF"}


#: Keys of a shifted potential's ``U(rc)`` and ``U'(rc)`` in a Python export's ``CONSTANTS``
#: (no constant can have these names: they are not identifiers).
PY_SHIFT_KEYS: tuple[str, str] = ("U(rc)", "U'(rc)")


def to_python(pot: Potential, *, name: str = "U") -> str:
    """Source of a plain numpy module defining ``U(r, pair)`` and ``dU_dr(r, pair)``.

    The constants of every type pair are tabulated in ``CONSTANTS``; ``pair`` is a tuple of
    chemical symbols in any order (optional and ignored for a universal potential).  ``r`` in
    Å, ``U`` in eV, ``dU_dr`` in eV/Å (the pair force on the first atom is ``-dU_dr`` along
    the unit vector from the second atom to the first).

    A shifted-force potential is the fitted ``U(r) − U(rc) − (r − rc)·U'(rc)``: the module
    defines ``CUTOFF`` and ``CUTOFF_SCHEME``, each type pair's entry of ``CONSTANTS`` holds
    ``"U(rc)"`` and ``"U'(rc)"`` (:data:`PY_SHIFT_KEYS`), and ``U``/``dU_dr`` subtract them
    (shifted-energy: ``U(rc)`` only).  As :meth:`~mctsff.expr.params.Potential.energy`, the
    functions do not cut off: pairs beyond ``CUTOFF`` are the caller's to drop.

    Parameters
    ----------
    pot
        Fitted potential.
    name
        Name of the energy function (the derivative is ``d{name}_dr``).

    Returns
    -------
    str
        Python source; ``exec`` it or save it as a ``.py`` file (needs numpy, and scipy when
        the expression uses ``erf``/``erfc``).
    """
    program = pot.program
    r = program.symbols["r"]
    rename = _python_names(program.constants, {name, f"d{name}_dr"})
    names = {"r": "r", **rename}
    expr = program.sympy
    energy = _print(expr, names, "numpy")
    deriv = _print(sympy.diff(expr, r), names, "numpy")
    needs_scipy = "_erf" in energy + deriv
    universal = is_universal(pot)
    consts = {
        p: {c: float(pot.consts[k, j]) for j, c in enumerate(program.constants)}
        for k, p in enumerate(pot.type_pairs)
    }
    shifted = pot.scheme in SHIFTED_SCHEMES
    key_a, key_b = PY_SHIFT_KEYS
    if shifted:
        energy = f"{energy} - c[{key_a!r}] - (r - CUTOFF) * c[{key_b!r}]"
        deriv = f"{deriv} - c[{key_b!r}]"
        for k, p in enumerate(pot.type_pairs):
            consts[p][key_a] = float(pot.shift_a[k])
            consts[p][key_b] = float(pot.shift_b[k])
    lines = [
        f'"""Pair potential exported by mctsff {__version__} (the expression is EXPRESSION).',
        "",
        "r in Å, U in eV, dU_dr in eV/Å."
        + (" Shifted at CUTOFF as CUTOFF_SCHEME says." if shifted else ""),
        '"""',
        "",
        "import numpy as np",
    ]
    if needs_scipy:
        lines.append("from scipy.special import erf as _erf, erfc as _erfc")
    lines += [
        "",
        f"EXPRESSION = {program.expression!r}",
        f"PARAMS = {pot.params!r}",
    ]
    if shifted:
        lines += [
            f"CUTOFF = {pot.cutoff!r}",
            f"CUTOFF_SCHEME = {pot.scheme!r}  # U(r) - U(rc) - (r - rc) U'(rc) (U'(rc) = 0 for "
            "shifted-energy)",
        ]
    lines.append("CONSTANTS = {")
    lines += [f"    {p!r}: {v!r}," for p, v in consts.items()]
    lines += ["}", "", ""]
    lookup = (
        "    c = next(iter(CONSTANTS.values()))"
        if universal
        else "    c = CONSTANTS.get((pair[0], pair[1])) or CONSTANTS[(pair[1], pair[0])]"
    )
    unpack = [f"    {rename[c]} = c[{c!r}]" for c in program.constants]
    for fname, body, doc in (
        (name, energy, "Pair energy U(r) in eV for a type pair; r in Å."),
        (f"d{name}_dr", deriv, "dU/dr in eV/Å for a type pair; r in Å."),
    ):
        lines += [
            f"def {fname}(r, pair{'=None' if universal else ''}):",
            f'    """{doc}"""',
            "    r = np.asarray(r, dtype=float)",
            lookup,
            *unpack,
            f"    return {body} + 0.0 * r",
            "",
            "",
        ]
    return "\n".join(lines).rstrip() + "\n"


def _python_names(constants: Sequence[str], own: set[str]) -> dict[str, str]:
    """A Python name per constant that shadows nothing the module uses and no other constant.

    A constant whose name the module uses (``np``, ``c``, ``U``, a builtin such as ``float``,
    a keyword) gets ``_`` appended, more than one where that name is taken too (``c`` →
    ``c__`` when ``c_`` is also a constant).
    """
    taken = _PY_RESERVED | set(dir(builtins)) | own
    used = set(constants)
    out = {}
    for c in constants:
        new = c
        if new in taken or keyword.iskeyword(new) or keyword.issoftkeyword(new):
            while new in taken or new in used:
                new += "_"
        used.add(new)
        out[c] = new
    return out


def to_function(pot: Potential) -> Callable[..., np.ndarray]:
    """The numpy function ``U(r, pair)`` of :func:`to_python`, compiled.

    The returned function has attributes ``derivative`` (``dU_dr``) and ``source``.
    """
    source = to_python(pot)
    namespace: dict[str, Any] = {}
    exec(compile(source, f"<mctsff export {pot.program.expression}>", "exec"), namespace)
    fn = namespace["U"]
    fn.derivative = namespace["dU_dr"]
    fn.source = source
    return fn

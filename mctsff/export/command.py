"""The one entry :func:`export` (any format, from a potential, fit result or front point)
and the body of ``mctsff export``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mctsff import __version__
from mctsff.expr.params import SHIFTED_SCHEMES, Potential
from mctsff.runio import write_error

if TYPE_CHECKING:  # pragma: no cover
    pass

from mctsff.export.base import DEFAULT_RLO, ExportError
from mctsff.export.formula import to_latex, to_python, to_sympy
from mctsff.export.front import (
    FrontPoint,
    _check_cutoff,
    _check_species,
    _one_line,
    _pair_label,
    is_universal,
    load_front_point,
    resolve_potential,
)
from mctsff.export.lammps import (
    DEFAULT_POINTS,
    _lammps_factor,
    lammps_commands,
    to_lammps_lepton,
    to_lammps_table,
)
from mctsff.export.openmm import to_openmm, to_openmm_xml

#: Formats understood by :func:`export` and ``mctsff export --format``.
FORMATS: tuple[str, ...] = (
    "sympy",
    "latex",
    "python",
    "lammps",
    "lammps-lepton",
    "openmm",
    "openmm-xml",
    "ase",
)


def export(
    obj: Potential | FrontPoint | Any,
    fmt: str,
    path: str | os.PathLike[str] | None = None,
    *,
    units: str = "metal",
    cutoff: float | None = None,
    species: Sequence[str] | None = None,
    points: int = DEFAULT_POINTS,
    rlo: float | None = None,
    shift: bool = False,
    pair: tuple[str, str] | None = None,
    table_style: str = "linear",
    allow_no_wall: bool = False,
    bond_cutoff: int = 3,
) -> str:
    """Export a potential (or front point) to one format and return the text.

    Parameters
    ----------
    obj
        :class:`~mctsff.expr.params.Potential`, :class:`FrontPoint` or a fit result (``expression``
        and ``params``; ``extra["cutoff"]`` and ``extra["cutoff_scheme"]`` when it has them).
        The export is the potential as fitted: shifted by its cutoff scheme.
    fmt
        One of :data:`FORMATS`.
    path
        When given, the text is also written to this file.  For ``lammps`` the table is
        written and the returned text is the LAMMPS input lines referring to it.
    units
        LAMMPS units, ``"metal"`` (eV, Å) or ``"real"`` (kcal/mol, Å).
    cutoff
        Cutoff in Å (default: the front point's or potential's); needed by lammps, openmm
        and ase.  A shifted potential given another cutoff is shifted at that one.
    species
        Atom types.  For a front point without ``run.json`` they name the types; for LAMMPS
        their order gives the type ids (default: sorted).
    points, rlo
        LAMMPS table points and inner radius (Å; default: the run's wall radius, else
        :data:`DEFAULT_RLO`).  ``rlo`` is also where the wall check starts.
    shift
        Subtract U(cutoff) per pair (lammps, lammps-lepton, openmm, ase): a no-op for a
        shifted-force or shifted-energy potential, which is already zero there.
    pair
        One type pair for ``sympy``/``latex`` (default: all).
    table_style
        ``pair_style table`` style of the LAMMPS input lines: ``"linear"`` or ``"spline"``.
    allow_no_wall
        Export a front point or fit result without a repulsive wall (:func:`wall_problem`),
        which is refused otherwise.  A :class:`~mctsff.expr.params.Potential` is exported as
        given.
    bond_cutoff
        ``openmm-xml``: atoms at most this many bonds apart do not interact
        (:func:`to_openmm_xml`).

    Returns
    -------
    str

    Raises
    ------
    ExportError
        Unknown format or units, missing cutoff or species, non-exportable expression, or a
        point without a repulsive wall.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    _lammps_factor(units)
    if rlo is None:
        rlo = obj.wall if isinstance(obj, FrontPoint) and obj.wall is not None else DEFAULT_RLO
    pot, rc = resolve_potential(obj, species, cutoff, allow_no_wall=allow_no_wall, rlo=rlo)
    order = list(species) if species is not None else None
    if order is not None and is_universal(pot):
        order = None
    if fmt == "sympy":
        if pair is not None or len(pot.type_pairs) == 1 or is_universal(pot):
            text = str(to_sympy(pot, pair))
        else:
            text = "\n".join(f"{_pair_label(p)}: {to_sympy(pot, p)}" for p in pot.type_pairs)
    elif fmt == "latex":
        text = to_latex(pot, pair)
    elif fmt == "python":
        text = to_python(pot)
    elif fmt == "lammps":
        rc = _check_cutoff(rc, "LAMMPS export")
        name = os.fspath(path) if path is not None else "mctsff.table"
        opts = dict(n=points, units=units, file_name=name, type_order=order, style=table_style)
        text = to_lammps_table(pot, rc, rlo=rlo, shift=shift, **opts)
        if path is not None:
            _write_text(path, text)
            return lammps_commands(pot, rc, **opts) + "\n"
    elif fmt == "lammps-lepton":
        rc = _check_cutoff(rc, "LAMMPS export")
        text = to_lammps_lepton(pot, rc, units=units, shift=shift, type_order=order)
    elif fmt == "openmm":
        text = to_openmm(pot, rc, shift=shift).script()
    elif fmt == "openmm-xml":
        text = to_openmm_xml(pot, rc, shift=shift, bond_cutoff=bond_cutoff)
    else:  # ase
        rc = _check_cutoff(rc, "the ASE calculator")
        text = _ase_snippet(pot, rc, shift)
    if not text.endswith("\n"):
        text += "\n"
    if path is not None:
        _write_text(path, text)
    return text


def _write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write an exported file; one clear error when it cannot be written."""
    try:
        Path(path).write_text(text)
    except OSError as exc:
        raise ExportError(write_error(exc, path)) from None


def _ase_snippet(pot: Potential, cutoff: float, shift: bool) -> str:
    tp = None if pot.type_pairs == _all_pairs(pot.species) else [list(p) for p in pot.type_pairs]
    scheme = (
        [] if pot.scheme == "none" else [f"    cutoff={cutoff!r},", f"    scheme={pot.scheme!r},"]
    )
    return "\n".join(
        [
            f"# ASE calculator for the mctsff {__version__} potential U(r) = "
            f"{_one_line(pot.program.expression)}",
            "from mctsff.export import MctsffCalculator",
            "from mctsff.expr.params import Potential",
            "",
            "potential = Potential(",
            f"    {pot.program.expression!r},",
            f"    {pot.params!r},",
            f"    species={list(pot.species)!r},",
            *([f"    type_pairs={tp!r},"] if tp is not None else []),
            *scheme,
            ")",
            "# mol=atoms.arrays['mol'] (or mol='mol') keeps intermolecular pairs only, as fitted",
            f"calc = MctsffCalculator(potential, cutoff={cutoff!r}"
            + (", shift=True" if shift and pot.scheme not in SHIFTED_SCHEMES else "")
            + ")",
            "# atoms.calc = calc",
        ]
    )


def _all_pairs(species: Sequence[str]) -> tuple[tuple[str, str], ...]:
    return tuple((a, b) for i, a in enumerate(species) for b in species[i:])


def run_cli(args) -> int:
    """``mctsff export``: the body of the subcommand (see :mod:`mctsff.cli`)."""
    allow = bool(getattr(args, "allow_no_wall", False))
    point = load_front_point(
        args.run_dir, args.index, species=args.species, cutoff=args.cutoff, allow_no_wall=allow
    )
    pair = None
    if args.pair:
        a, sep, b = args.pair.partition("-")
        if not sep or not a or not b:
            raise ExportError(f"--pair expects A-B, got {args.pair!r}")
        _check_species((a, b), "--pair")
        pair = (a, b)
    out = args.out
    text = export(
        point,
        args.format,
        out,
        units=args.units,
        species=args.species,
        points=args.points,
        rlo=args.rlo,
        shift=args.shift,
        pair=pair,
        table_style=args.table_style,
        allow_no_wall=allow,
        bond_cutoff=getattr(args, "bond_cutoff", 3),
    )
    rmse = point.rmse_valid if point.rmse_valid is not None else point.rmse_train
    info = (
        f"# front point {point.index} of {point.source}: {point.expression}"
        + (f" (complexity {point.complexity}" if point.complexity is not None else " (")
        + (f", rmse_valid {rmse:.5g} eV/Å" if rmse is not None else "")
        + (f", rmse_test {point.rmse_test:.5g} eV/Å" if point.rmse_test is not None else "")
        + ")"
        + (
            f"; {point.cutoff_scheme} at rc = {point.cutoff:g} Å"
            if point.cutoff_scheme in SHIFTED_SCHEMES and point.cutoff is not None
            else ""
        )
    )
    if out is None:
        print(text, end="")
    elif args.format == "lammps":
        print(info)
        print(f"# wrote {out}; LAMMPS input:")
        print(text, end="")
    else:
        print(info)
        print(f"# wrote {out}")
    return 0

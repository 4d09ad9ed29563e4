"""A member of a search front as a potential: read from a run folder, resolved, checked.

:func:`load_front_point` reads one member of ``pareto.json`` (or the checkpoint) of a run
folder (the knee-rule pick, ``best``, or ``index``), with the species, cutoff and cutoff
scheme the fit used; :func:`resolve_potential` turns a front point, fit result or potential
into a :class:`~mctsff.expr.params.Potential`; :func:`wall_problem` says whether it has a
repulsive wall.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mctsff.engines.pareto import WALL_FLAG, WALL_TOL, knee_index, wall_failed
from mctsff.expr import ops
from mctsff.expr.params import CUTOFF_SCHEMES, SHIFTED_SCHEMES, Potential
from mctsff.expr.program import Program
from mctsff.fit.constraints import repulsive_wall
from mctsff.fit.forces import WALL_CHECK, WALL_FORCE, WALL_REACH
from mctsff.runfolder import (
    CHECKPOINT,
    PARETO_JSON,
    read_checkpoint,
    read_front_points,
    read_run_info,
)
from mctsff.runio import RunFolderError

if TYPE_CHECKING:  # pragma: no cover
    pass

from mctsff.export.base import DEFAULT_RLO, ExportError

#: Outer radius (Å) of the numerical wall check (:func:`wall_problem`) for points whose fit
#: recorded no wall or no shortest distances: the stand-in for every type pair's shortest
#: distance, as the fit's wall has it (:func:`~mctsff.fit.constraints.repulsive_wall`):
#: ``dU/dr`` ≤ −:data:`~mctsff.fit.forces.WALL_FORCE` from the table's inner radius up to
#: :data:`~mctsff.fit.forces.WALL_REACH` × this, ≤ :data:`WALL_TOL` from there to here
#: (:data:`mctsff.engines.pareto.WALL_TOL`, the fit's own tolerance).  Intermolecular
#: contacts in condensed phases lie beyond it.
WALL_CHECK_RADIUS: float = 1.5


#: Type label used for universal potentials loaded without species.
UNIVERSAL_TYPE = "*"


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
        :data:`mctsff.expr.params.CUTOFF_SCHEMES`): the point's own record, else ``run.json``'s
        ``cutoff_scheme``; ``"none"`` (the expression as written) for runs that record
        neither.  With ``"shifted-force"`` or ``"shifted-energy"`` every export writes the
        shifted potential ``U(r) − U(rc) − (r − rc)·U'(rc)`` (``U'(rc)`` term only for
        shifted-force).
    wall
        Radius (Å) of the repulsive wall the fit imposed (``run.json``'s ``wall``), or
        ``None``; exported LAMMPS tables start there by default.
    constraints
        The fit's constraint residuals (``{"wall": …}`` when the fit imposed a wall).
    wall_shortest
        Shortest distance (Å) of each type pair (sorted names) in the fit's training data,
        where its wall ended (``run.json``'s ``wall_shortest``; ``None`` for a pair the data
        never showed), or ``None`` when unknown.
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
    wall_shortest: dict[tuple[str, str], float | None] | None = None

    def potential(self) -> Potential:
        """The :class:`~mctsff.expr.params.Potential` of this point (shifted by its cutoff scheme).

        Raises
        ------
        ExportError
            When the species are unknown and the expression has per-type constants, or a
            shifted cutoff scheme lacks the cutoff.
        """
        program = compile_expression(self.expression)
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
        takes the point the knee rule selects (:func:`mctsff.engines.pareto.knee_index` on the
        validation RMSEs, training RMSEs where there are none, starting from U = 0 when
        ``run.json`` gives its RMSE), the member the search reported as selected: members
        whose fit records a failed repulsive wall (:func:`mctsff.engines.pareto.wall_failed`) are
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
        while k is not None and not allow_no_wall:
            try:  # the wall check decides (a point that cannot be built is chosen, and
                ok = wall_problem(point(k)) is None  # its error then says why)
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
    shortest = _wall_shortest(info.get("wall_shortest"), info.get("type_pairs"), run_json)
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
        wall_shortest=shortest,
    )


def _wall_shortest(
    values: Any, pairs: Any, where: Any
) -> dict[tuple[str, str], float | None] | None:
    """``wall_shortest`` (one distance or ``None`` per type pair) by sorted type pair;
    ``None`` when not given, one error naming ``where`` when malformed."""
    if values is None:
        return None
    if not (
        isinstance(values, list | tuple)
        and isinstance(pairs, list | tuple)
        and len(values) == len(pairs)
        and all(isinstance(p, list | tuple) and len(p) == 2 for p in pairs)
    ):
        raise ExportError(f"{where}: 'wall_shortest' is not one distance per type pair")
    return {
        tuple(sorted(map(str, p))): None if v is None else _positive(v, f"{where}: 'wall_shortest'")
        for p, v in zip(pairs, values, strict=True)
    }


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
    pareto = folder / PARETO_JSON
    if pareto.is_file():
        return _read_front_file(pareto), str(pareto)
    ckpt = folder / CHECKPOINT
    if ckpt.is_file():
        try:  # an allow-list unpickler: a crafted checkpoint runs no code
            front = read_checkpoint(ckpt).get("front")
        except RunFolderError as exc:
            raise ExportError(str(exc)) from None
        if not isinstance(front, list):
            raise ExportError(f"{ckpt}: cannot read the front (no list of points)")
        return _checked_points(front, ckpt), str(ckpt)
    raise ExportError(f"{folder}: no pareto.json or checkpoint.pkl (not a search run folder?)")


def _read_front_file(path: Path) -> list[dict]:
    """The members of a ``pareto.json`` (:func:`mctsff.runfolder.read_front_points`),
    checked as the exporters need them."""
    try:
        data = read_front_points(path)
    except RunFolderError as exc:
        raise ExportError(str(exc)) from None
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
        flags = p.get("flags")
        if flags is not None and not (
            isinstance(flags, list) and all(isinstance(f, str) for f in flags)
        ):
            raise ExportError(f"{source}: point {k}: 'flags' is not a list of strings")
        if p.get("constraints") is not None and not isinstance(p["constraints"], dict):
            raise ExportError(f"{source}: point {k}: 'constraints' is not an object")
        numbers = [(f, p.get(f)) for f in ("complexity", "rmse_train", "rmse_valid", "rmse_test")]
        numbers += [(f"params[{n!r}]", v) for n, v in (p.get("params") or {}).items()]
        numbers += [(f"constraints[{n!r}]", v) for n, v in (p.get("constraints") or {}).items()]
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
    """``run.json`` of ``folder`` (:func:`mctsff.runfolder.read_run_info`)."""
    try:
        return read_run_info(folder)
    except RunFolderError as exc:
        raise ExportError(str(exc)) from None


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


def compile_expression(expression: str) -> Program:
    return Program.from_string(expression)


def _all_global(program: Program) -> bool:
    return all(ops.constant_rule(c) == "global" for c in program.constants)


def is_universal(pot: Potential) -> bool:
    """Whether every constant is global, i.e. the same function acts between any two atoms."""
    return _all_global(pot.program)


def _pair_label(pair: tuple[str, str]) -> str:
    return f"{pair[0]}-{pair[1]}"


def resolve_potential(
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
    """A :class:`FrontPoint` of a fit result (its ``extra``, else its own ``cutoff`` and
    ``cutoff_scheme``, give the cutoff and scheme)."""
    extra = getattr(result, "extra", None)
    extra = extra if isinstance(extra, dict) else {}
    rc = extra.get("cutoff", getattr(result, "cutoff", None))
    rc = None if isinstance(rc, float) and math.isnan(rc) else rc
    scheme = extra.get("cutoff_scheme") or getattr(result, "cutoff_scheme", None) or "none"
    if scheme not in CUTOFF_SCHEMES:
        raise ExportError(
            f"the fit's cutoff scheme {scheme!r} is not one of {', '.join(CUTOFF_SCHEMES)}"
        )
    pairs = [list(p) for p in getattr(result, "type_pairs", None) or ()]
    return FrontPoint(
        str(result.expression),
        dict(result.params),
        cutoff=None if rc is None else _positive(rc, "the fit's extra['cutoff']"),
        complexity=getattr(result, "complexity", None),
        flags=tuple(str(f) for f in getattr(result, "flags", None) or ()),
        cutoff_scheme=str(scheme),
        constraints=dict(getattr(result, "constraints", None) or {}),
        wall_shortest=_wall_shortest(extra.get("wall_shortest"), pairs, "the fit's extra"),
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
    """Why a potential, front point or fit result has no strictly repulsive wall; ``None``
    if it has.  The one wall check of ``export``, ``md-check`` and ``--md-rerank``.

    A wall is the fit's (:func:`~mctsff.fit.constraints.repulsive_wall`): for every type
    pair ``dU/dr ≤ −``:data:`~mctsff.fit.forces.WALL_FORCE` from the wall radius up to
    :data:`~mctsff.fit.forces.WALL_REACH` × the pair's shortest distance in the data, and
    ``dU/dr ≤ 0`` from there to that distance (each up to
    :data:`mctsff.engines.pareto.WALL_TOL`): a barrier of at least WALL_FORCE × (WALL_REACH
    × r_shortest − r_wall).  A flat potential (zero charges on a Coulomb term) or a steep
    term of negligible height (c/r⁸ with U'(0.5 Å) = −1 eV/Å) is no wall.

    - A front point or fit result whose fit imposed the wall (``constraints["wall"]`` or a
      ``constraint wall not satisfied`` flag, :func:`mctsff.engines.pareto.wall_failed`) is
      judged by that record (a failed record fails) and checked from the run's wall radius
      (``wall``; else ``rlo``, else :data:`DEFAULT_RLO`) at the fit's dense check
      (:data:`~mctsff.fit.forces.WALL_CHECK` points per pair) where
      the run recorded its shortest distances (``run.json``'s ``wall_shortest``; a fit
      result's ``extra["wall_shortest"]``), so that a member its fit calls wall-held
      passes; without them (a record of an older fit, whose wall was strict at its radius
      only) at the strict points of the rule with :data:`WALL_CHECK_RADIUS` as every
      pair's shortest distance, so that such a record does not pass a shallow wall.
    - Otherwise (older runs, fits with the wall switched off, a :class:`Potential`) the
      same rule with :data:`WALL_CHECK_RADIUS` as every pair's shortest distance, on 100
      points spaced geometrically from the table's inner radius (``rlo``; default the
      run's wall radius, else :data:`DEFAULT_RLO`).

    Returns
    -------
    str or None
        One line: the failed record, or the type pair, radius and ``dU/dr`` where the
        potential is attractive, too flat or not finite.
    """
    if isinstance(obj, Potential):
        return _wall_reason(None, obj, rlo)
    point = obj if isinstance(obj, FrontPoint) else _fit_result_point(obj)
    pot, _ = resolve_potential(point, allow_no_wall=True)
    return _wall_reason(point, pot, rlo)


def _wall_reason(point: FrontPoint | None, pot: Potential, rlo: float | None) -> str | None:
    r_in = float(rlo) if rlo is not None else None
    if r_in is None:
        r_in = point.wall if point is not None and point.wall is not None else DEFAULT_RLO
    if point is not None:
        record = {"flags": point.flags, "constraints": point.constraints}
        if _has_wall_record(record):
            if wall_failed(point.flags, point.constraints):
                flag = next((f for f in point.flags if f.startswith(WALL_FLAG)), None)
                return (
                    f"its fit reports '{_one_line(flag)}'"
                    if flag is not None
                    else f"its fit's wall residual is {point.constraints.get('wall')!r}"
                )
            r_wall = point.wall if point.wall is not None else r_in
            if point.wall_shortest is not None:  # the fit's own rule and dense check
                return _slope_problem(pot, r_wall, point.wall_shortest, WALL_CHECK)
            return _slope_problem(pot, r_wall, {}, 100, strict_only=True)
    return _slope_problem(pot, r_in, {}, 100)


def _slope_problem(
    pot: Potential,
    r_wall: float,
    shortest: Mapping[tuple[str, str], float | None],
    n: int,
    strict_only: bool = False,
) -> str | None:
    """Where ``dU/dr`` of a type pair breaks the wall of
    :func:`~mctsff.fit.constraints.repulsive_wall` with ``n`` points from ``r_wall`` to its
    ``shortest`` distance (no points where that is ``None``; a pair not in ``shortest``
    takes :data:`WALL_CHECK_RADIUS`, and is checked at ``r_wall`` at least); only at its
    strict points with ``strict_only`` (a record of an older fit, which imposed
    ``dU/dr ≤ 0`` to the data's shortest distance, unknown here); ``None`` if nowhere."""
    pairs = pot.type_pairs
    unknown = [tuple(sorted(p)) not in shortest for p in pairs]
    rs = [
        WALL_CHECK_RADIUS if u else math.nan if (x := shortest[tuple(sorted(p))]) is None else x
        for p, u in zip(pairs, unknown, strict=True)
    ]
    wall = repulsive_wall(r_wall, rs, WALL_FORCE, WALL_REACH, n)
    offsets = np.split(wall.offset, np.cumsum([p.size for p in wall.pair_points])[:-1])
    for pair, u, r, off in zip(pairs, unknown, wall.pair_points, offsets, strict=True):
        if r.size == 0 and u:  # the inner radius at or beyond the check radius
            r, off = np.array([r_wall]), np.array([WALL_FORCE])
        if strict_only:
            r, off = r[off > 0], off[off > 0]
        if r.size == 0:
            continue
        with np.errstate(all="ignore"):
            d = pot.derivative(r, pair)
        bad = ~(d + off <= WALL_TOL)
        if bad.any():
            k = int(np.argmax(bad))
            label = "" if is_universal(pot) else f" for {_pair_label(pair)}"
            edge = float(r[off > 0].max())
            span = f"at {r[0]:g} Å" if r.size == 1 else f"from {r[0]:g} to {r[-1]:g} Å"
            kind = (
                "not finite"
                if not np.isfinite(d[k])
                else "attractive"
                if d[k] > WALL_TOL
                else f"too flat: a wall needs ≤ −{WALL_FORCE:g} eV/Å up to {edge:.3g} Å"
            )
            return f"dU/dr = {d[k]:.3g} eV/Å ({kind}){label} at r = {r[k]:.3g} Å (checked {span})"
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

"""Distribution matching after a search: the liquid-water MD check of the best front members.

``mctsff search ... --md-rerank N`` (``search(..., md_rerank=N)``) calls :func:`md_rerank`
once the search has stopped (after its time limit and budget: the checks are not part of
them).  It runs :func:`mctsff.water.mdcheck.run_water` on up to ``N`` front members that pass
the wall check, in this order: the member the knee rule selects first, then the others by
validation RMSE, lowest first.  Each checked member gets ``extra["md_check"]``, a flat
dictionary of the distribution scores (:data:`SCORE_KEYS`), which the search writes as
``md_check`` in ``pareto.json``, as ``md_*`` columns in ``pareto.csv`` and as a second panel
of ``pareto.png``.  A member whose run crashes or leaves the physical regime is recorded as
unstable with the reason; the others still run.

Only force-matching searches on water data (atom types exactly H and O) can be checked:
:func:`check_md_rerank` says why not before the search starts.  Each member costs minutes
with the default :class:`~mctsff.water.mdcheck.WaterProtocol` (docs/md-check.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from typing import Any

import numpy as np

from mctsff.water.mdcheck import (
    RDF_PAIRS,
    MDCheckError,
    WaterProtocol,
    dft_rdf,
    experimental_rdf,
    rdf_distance,
    run_water,
)
from mctsff.water.mdcheck.base import _openmm

__all__ = [
    "SCORE_KEYS",
    "check_md_rerank",
    "md_rerank",
    "protocol_from_options",
    "rerank_order",
    "rerank_summary",
]

#: Keys of ``extra["md_check"]`` (``md_<key>`` columns of ``pareto.csv``): stability,
#: density (g/cm³, mean and block standard error), O–O first peak (Å, height), RMS distances
#: of the O–O / O–H / H–H RDFs to experiment (Soper 2013) and of the O–O RDF to the shipped
#: DFT frames, NVE drift (kT/ps per molecule), waters, seconds, why unstable.
SCORE_KEYS: tuple[str, ...] = (
    "order",
    "stable",
    "liquid",
    "density",
    "density_stderr",
    "oo_peak_r",
    "oo_peak_g",
    "rms_exp_OO",
    "rms_exp_OH",
    "rms_exp_HH",
    "rms_dft_OO",
    "nve_drift",
    "n_molecules",
    "seconds",
    "failure",
)

_PROTOCOL_FIELDS = {f.name: f.type for f in fields(WaterProtocol)}


def protocol_from_options(options: Mapping[str, Any] | None) -> WaterProtocol:
    """A :class:`WaterProtocol` with ``options`` (field name -> value) over its defaults.

    Raises
    ------
    MDCheckError
        For a name that is not a protocol field or a value it cannot take.
    """
    values: dict[str, Any] = {}
    for name, value in dict(options or {}).items():
        kind = _PROTOCOL_FIELDS.get(name)
        if kind is None:
            raise MDCheckError(
                f"unknown water-protocol setting {name!r}; choose from "
                f"{', '.join(sorted(_PROTOCOL_FIELDS))}"
            )
        try:
            if kind == "str":
                values[name] = str(value)
            elif kind == "int":
                if float(value) != int(float(value)):
                    raise ValueError
                values[name] = int(float(value))
            else:
                values[name] = float(value)
        except (TypeError, ValueError):
            raise MDCheckError(f"water-protocol setting {name}: bad value {value!r}") from None
    return WaterProtocol(**values)


def check_md_rerank(fitter: Any, options: Mapping[str, Any] | None = None) -> WaterProtocol:
    """The protocol of a search's MD rerank, or one error saying why it cannot run.

    The search must match forces (``fitter.species``) on atom types exactly H and O, OpenMM
    must import, and the protocol (``options`` over the defaults) must be valid with its
    platform available.

    Raises
    ------
    MDCheckError
        One line: not force matching, not water, no OpenMM, a bad protocol setting.
    """
    species = getattr(fitter, "species", None)
    if species is None:
        raise MDCheckError(
            "the MD check needs a force-matching search (liquid water), not regression"
        )
    if set(species) != {"H", "O"}:
        raise MDCheckError(
            f"the MD check runs liquid water: the data's atom types are {list(species)}, "
            "not H and O"
        )
    protocol = protocol_from_options(options)
    openmm, _ = _openmm()
    try:
        openmm.Platform.getPlatformByName(protocol.platform)
    except Exception:
        raise MDCheckError(f"OpenMM platform {protocol.platform!r} is not available") from None
    return protocol


def _wall_reason(point: Any) -> str | None:
    """Why a front member fails the wall check (:func:`mctsff.export.wall_problem`: its
    fit's record and the strict bound at the wall radius), ``None`` when it passes."""
    from mctsff.export import ExportError, wall_problem

    try:
        return wall_problem(point)
    except ExportError as exc:
        return str(exc)


def rerank_order(front: Any) -> list[Any]:
    """Front members that pass the wall check, in checking order: the knee-rule member
    (:meth:`~mctsff.engines.pareto.ParetoFront.selected`) first, then the others by
    validation RMSE (:attr:`~mctsff.fit.result.FitResult.score_loss`), lowest first."""
    chosen = front.selected()
    rest = sorted(
        (p for p in front.points if p is not chosen and p.valid),
        key=lambda p: (p.score_loss, p.complexity),
    )
    ordered = ([chosen] if chosen is not None else []) + rest
    return [p for p in ordered if _wall_reason(p) is None]


def _round(x: Any, digits: int) -> float | None:
    return round(float(x), digits) if x is not None and math.isfinite(float(x)) else None


def _scores(res: Mapping[str, Any], references: Sequence[Any], order: int) -> dict[str, Any]:
    """The flat ``md_check`` record of one :func:`run_water` result."""
    (r_exp, g_exp), (r_dft, g_dft) = references
    out: dict[str, Any] = dict.fromkeys(SCORE_KEYS)
    out.update(
        order=order,
        stable=bool(res.get("stable")),
        liquid=bool(res.get("liquid")),
        failure=res.get("failure"),
        n_molecules=res.get("n_molecules"),
        seconds=res.get("seconds"),
    )
    if not out["stable"]:  # numbers of a run that stopped early would mislead
        return out
    out.update(
        density=res.get("density"),
        density_stderr=res.get("density_stderr"),
        nve_drift=res.get("nve_drift_kT_ps_per_molecule"),
    )
    if "rdf" in res:
        r = np.asarray(res["rdf"]["r"])
        for pair in RDF_PAIRS:
            d = rdf_distance(r, np.asarray(res["rdf"][pair]), r_exp, g_exp[pair])
            out[f"rms_exp_{pair.replace('-', '')}"] = _round(d["rms"], 4)
        d = rdf_distance(r, np.asarray(res["rdf"]["O-O"]), r_dft, g_dft["O-O"])
        out["rms_dft_OO"] = _round(d["rms"], 4)
        peak = res.get("peaks", {}).get("O-O", {})
        out.update(oo_peak_r=peak.get("r"), oo_peak_g=peak.get("g"))
    return out


def md_rerank(
    front: Any,
    n: int,
    protocol: WaterProtocol | None = None,
    *,
    log: Callable[[str], None] | None = None,
) -> list[Any]:
    """Run the liquid-water check on up to ``n`` front members (:func:`rerank_order`).

    Each checked member's ``extra["md_check"]`` receives the scores (:data:`SCORE_KEYS`;
    ``order`` is its place in the checking order, 0 first).  A run that raises records
    ``stable: false`` with the error as ``failure``; the next member still runs.

    Parameters
    ----------
    front
        A :class:`~mctsff.engines.pareto.ParetoFront` of a force-matching search on water.
    n
        Members to check (at most).
    protocol
        Sizes and lengths (default :class:`WaterProtocol`'s).
    log
        Receives one progress line per member and segment.

    Returns
    -------
    list of FitResult
        The members checked, in checking order.
    """
    protocol = protocol or WaterProtocol()
    say = log or (lambda _msg: None)
    references = (experimental_rdf(), dft_rdf(protocol.rdf_bin))
    members = rerank_order(front)[: max(int(n), 0)]
    for k, point in enumerate(members):
        label = f"md-check {k + 1}/{len(members)} (complexity {point.complexity})"
        say(f"{label}: {point.expression}")
        try:
            pot = point.potential()
            res = run_water(pot, protocol, cutoff=pot.cutoff, label=label, log=say)
        except Exception as exc:  # a crash of one member is its result, not the command's
            detail = " ".join(str(exc).split())[:200]
            res = {"stable": False, "failure": f"crashed: {type(exc).__name__}: {detail}"}
            say(f"{label}: {res['failure']}")
        point.extra["md_check"] = _scores(res, references, k)
    return members


def rerank_summary(front: Any) -> str:
    """One line per checked member: stability, density, O–O RDF distances, drift."""
    lines = []
    checked = [p for p in front.points if isinstance(p.extra.get("md_check"), dict)]
    for p in sorted(checked, key=lambda p: p.extra["md_check"]["order"]):
        s = p.extra["md_check"]
        if s["stable"]:
            what = (
                f"stable, density {_fmt(s['density'])} g/cm³, RMS O-O RDF to experiment "
                f"{_fmt(s['rms_exp_OO'])}, to DFT {_fmt(s['rms_dft_OO'])}, NVE drift "
                f"{_fmt(s['nve_drift'])} kT/ps/molecule"
            )
        else:
            what = f"UNSTABLE: {s['failure']}"
        lines.append(f"md-check (complexity {p.complexity}) {p.expression}: {what}")
    return "\n".join(lines)


def _fmt(x: Any) -> str:
    return "-" if x is None else f"{x:.3g}"

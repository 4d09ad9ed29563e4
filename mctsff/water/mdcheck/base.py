"""What every part of md-check shares: its error, OpenMM on demand, a run's instability.

Imports nothing else of :mod:`mctsff.water.mdcheck`; every other module of it imports from here.
"""

from __future__ import annotations

import math


class MDCheckError(RuntimeError):
    """OpenMM is missing, or a check cannot be set up (the message says why)."""


def _openmm():
    try:
        import openmm
        from openmm import unit
    except ImportError:  # pragma: no cover - depends on the environment
        raise MDCheckError("md-check needs OpenMM: pip install openmm (or 'mctsff[md]')") from None
    return openmm, unit


class _Unstable(Exception):
    """The run left the physical regime (message: why)."""


def _finite_or_none(x: float, digits: int) -> float | None:
    return round(float(x), digits) if math.isfinite(x) else None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]

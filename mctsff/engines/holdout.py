"""Errors of fitted results on held-out data: per-frame force errors and test RMSEs.

The search uses :class:`FrameErrors` on the validation frames for the front's resolution
rule (:mod:`mctsff.engines.pareto`) and :func:`holdout_scorer` on the test frames, which only the
report sees.  Both evaluate a result with its fitted parameters through the fitter's
:meth:`~mctsff.fit.Fitter.potential`, so they give the forces the fit's RMSEs measure.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from mctsff.fit.result import FitResult

__all__ = ["FrameErrors", "frame_errors_for", "holdout_scorer"]


class FrameErrors:
    """Per-frame sums of squared force errors of fitted results on one dataset.

    Parameters
    ----------
    fitter
        The :class:`~mctsff.fit.Fitter` whose results are evaluated (species, type pairs,
        :meth:`~mctsff.fit.Fitter.potential`).
    dataset
        A :class:`~mctsff.data.Dataset` with the fitter's type pairs.

    Attributes
    ----------
    null
        Per-frame error sums of U = 0 (the squared reference forces).
    null_rmse
        Force RMSE per component of U = 0.
    """

    def __init__(self, fitter, dataset) -> None:
        self.fitter = fitter
        self.dataset = dataset
        self._frame = np.asarray(dataset.atom_frame, dtype=np.int64)
        self._forces = np.asarray(dataset.forces, dtype=np.float64)
        self.n_frames = int(dataset.n_frames)
        self.n_components = 3 * int(dataset.n_atoms)
        self.null = self._per_frame(np.sum(self._forces**2, axis=1))
        self.null_rmse = math.sqrt(float(self.null.sum()) / max(self.n_components, 1))

    def _per_frame(self, per_atom: np.ndarray) -> np.ndarray:
        return np.bincount(self._frame, weights=per_atom, minlength=self.n_frames)

    def __call__(self, result: FitResult) -> np.ndarray | None:
        """Per-frame error sums of ``result``; ``None`` when it cannot be evaluated here."""
        if not result.valid:
            return None
        try:
            pot = self.fitter.potential(result.expression, result.params)
            forces, _ = pot.forces(self.dataset)
        except (KeyError, ValueError, TypeError, SyntaxError):
            return None
        with np.errstate(all="ignore"):
            err = self._per_frame(np.sum((np.asarray(forces) - self._forces) ** 2, axis=1))
        return err if np.all(np.isfinite(err)) else None

    def rmse(self, result: FitResult) -> float:
        """Force RMSE per component of ``result`` (``nan`` when it cannot be evaluated)."""
        err = self(result)
        if err is None:
            return math.nan
        return math.sqrt(float(err.sum()) / max(self.n_components, 1))


def _in_memory(data) -> bool:
    return data is not None and hasattr(data, "atom_frame") and int(data.n_frames) > 0


def frame_errors_for(fitter) -> FrameErrors | None:
    """:class:`FrameErrors` on the frames that rank the front: validation, else training.

    ``None`` for a regression objective or data held only as a projection.
    """
    if not hasattr(fitter, "potential"):
        return None
    data = fitter.valid if fitter.valid is not None else fitter.train
    return FrameErrors(fitter, data) if _in_memory(data) else None


class _Potentials:
    """What :class:`FrameErrors` needs of a fitter when there is none (a reference model)."""

    def __init__(self, data) -> None:
        self.species = tuple(data.species)
        self.type_pairs = tuple(tuple(p) for p in data.type_pairs)

    def potential(self, expression: str, params):
        from mctsff.expr.params import Potential

        return Potential(expression, params, self.species, self.type_pairs)


def holdout_scorer(fitter, test) -> Callable[[FitResult], float] | None:
    """``result -> RMSE on the test data`` for force matching or regression; ``None``
    without test data.  ``fitter=None`` evaluates a force-matching result as a plain
    :class:`~mctsff.expr.params.Potential` on the test data's types."""
    if test is None:
        return None
    if fitter is None:
        fitter = _Potentials(test)
    if _in_memory(test) and hasattr(fitter, "potential"):
        return FrameErrors(fitter, test).rmse
    if hasattr(fitter, "evaluate") and hasattr(test, "y"):

        def regression_rmse(result: FitResult) -> float:
            try:
                pred = fitter.evaluate(result.expression, result.params, test)
            except (KeyError, ValueError, TypeError, SyntaxError):
                return math.nan
            with np.errstate(all="ignore"):
                val = float(np.sqrt(np.mean((pred - test.y) ** 2)))
            return val if math.isfinite(val) else math.inf

        return regression_rmse
    raise TypeError(f"test data of type {type(test).__name__} do not fit this objective")

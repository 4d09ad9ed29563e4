"""Errors of fitted results on data frames: per-frame force errors, idle terms, test RMSEs.

The search uses :class:`FrameErrors` on the validation frames for the front's resolution
rule (:mod:`mctsff.engines.pareto`), :class:`IdleTerms` to keep off the front a result
with a term that has a parameter at a bound and no effect (training frames) or an effect
the validation frames do not resolve (its form without the term is fitted instead), and
:func:`holdout_scorer` on the test frames, which only the report sees.  All evaluate a
result with its fitted parameters through the fitter's
:meth:`~mctsff.fit.Fitter.potential`, so they give the forces the fit's RMSEs measure.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Callable, Iterable

import numpy as np

from mctsff.data.rigid import rigid_basis
from mctsff.engines.pareto import RESOLUTION_LEVEL, resolved
from mctsff.expr.program import signed_terms
from mctsff.fit.constraints import CONSTRAINT_TOL, MET, constraint_values
from mctsff.fit.result import FitResult

__all__ = [
    "FrameErrors",
    "IdleTerms",
    "bound_parameters",
    "frame_errors_for",
    "holdout_scorer",
    "idle_terms_for",
]

#: ``NAME at its lower bound B`` / ``... upper bound B``: the fitter's bound flags.
_BOUND_FLAG = re.compile(
    r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(\[[^\]]*\])? at its (lower|upper) bound "
)


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

    With the fitter's ``match="rigid"`` the errors are those of the molecules' net forces
    and torques, as the fit compares them (:mod:`mctsff.data.rigid`).
    """

    def __init__(self, fitter, dataset) -> None:
        self.fitter = fitter
        self.dataset = dataset
        match = getattr(getattr(fitter, "options", None), "match", "atoms")
        self._rigid = rigid_basis(dataset) if match == "rigid" else None
        self._frame = np.asarray(dataset.atom_frame, dtype=np.int64)
        self._forces = np.asarray(dataset.forces, dtype=np.float64)
        self.n_frames = int(dataset.n_frames)
        self.n_components = 3 * int(dataset.n_atoms)
        self.null = self._per_frame(self._forces)
        self.null_rmse = math.sqrt(float(self.null.sum()) / max(self.n_components, 1))

    def _per_frame(self, d: np.ndarray) -> np.ndarray:
        """Per-frame sums of squares of force errors ``d`` (n_atoms, 3), as compared."""
        if self._rigid is not None:
            c = self._rigid(np.ravel(d))
            return np.bincount(self._rigid.row_frame, weights=c * c, minlength=self.n_frames)
        per_atom = np.sum(d * d, axis=1)
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
            err = self._per_frame(np.asarray(forces) - self._forces)
        return err if np.all(np.isfinite(err)) else None

    def rmse(self, result: FitResult) -> float:
        """Force RMSE per component of ``result`` (``nan`` when it cannot be evaluated)."""
        err = self(result)
        if err is None:
            return math.nan
        return math.sqrt(float(err.sum()) / max(self.n_components, 1))


def bound_parameters(flags: Iterable[str]) -> set[str]:
    """Constants (base names: ``geom_c1`` for ``geom_c1[O]``) that a fit left at a bound.

    Read from the fitter's flags (``"geom_c1[O] at its lower bound 1e-08"``).

    Examples
    --------
    >>> sorted(bound_parameters(["geom_c1[O] at its lower bound 1e-08", "b at its upper bound 9"]))
    ['b', 'geom_c1']
    """
    out = set()
    for flag in flags:
        m = _BOUND_FLAG.match(flag)
        if m:
            out.add(m.group("name"))
    return out


class IdleTerms:
    """Top-level terms of a fitted result that do nothing: a parameter at a bound and no
    effect, or (with ``negligible``) an effect the validation frames do not resolve.

    A term is *idle* when one of its constants ended at a bound (:func:`bound_parameters`)
    and removing the term, every other parameter kept, changes the force error on the
    frames by less than they resolve (neither beats the other by the front's rule,
    :func:`~mctsff.engines.pareto.resolved`, a paired bootstrap over the frames) and
    breaks none of the fit's constraints that the result meets (a term that holds the
    repulsive wall has an effect); for a result of one term, "without it" is U = 0.
    The search keeps such a result off the front and fits the expression without its idle
    terms in its place (``geom_c1/r`` with both amplitudes at their lower bound: no
    replacement, it is U = 0).

    **Negligible terms** (with ``negligible``, the frames that rank the front): a term of
    a signed sum of two or more terms, its constants anywhere inside their bounds, is
    idle too when the result does not beat itself without the term (every other
    parameter kept) by more than those frames resolve (:func:`~mctsff.engines.pareto.resolved`
    in that one direction: the front's rule for a member against a simpler one), the
    reduced form breaks none of the fit's constraints that the result meets, and
    ``replaceable`` says the reduced form will be fitted in its place (the grammar derives
    it and the local moves run): a ~1e-6 r⁻² term on a water potential.  Where several
    terms are negligible one by one, they go together if the result does not beat the
    form without all of them either, else only the one whose removal changes the
    frames' total error least.  The refit of the rest (a local move) then enters the
    front or not by the front's own rule.  Terms at a bound are judged first; a result
    with such a term is not judged for negligible ones.

    Calling an instance returns the indices of the idle terms in
    :func:`~mctsff.expr.program.signed_terms` of ``result.expression`` and records them in
    ``result.extra["idle_terms"]`` (so each result is evaluated once).

    Parameters
    ----------
    fitter
        The force-matching :class:`~mctsff.fit.Fitter` whose results are judged.
    dataset
        The frames to judge on (the training frames, which the fit saw).
    level
        Bootstrap level of :func:`~mctsff.engines.pareto.resolved`.
    negligible
        The frames that judge negligible terms (the validation frames, as
        :func:`frame_errors_for` gives them), or ``None``: only terms at a bound are idle.
    replaceable
        ``(result, kept) -> bool``: whether the sum of the signed terms ``kept`` (indices)
        of ``result`` will be fitted in its place; ``None``: never (no negligible terms).
    """

    def __init__(
        self,
        fitter,
        dataset,
        level: float = RESOLUTION_LEVEL,
        negligible: FrameErrors | None = None,
        replaceable: Callable[[FitResult, list[int]], bool] | None = None,
    ) -> None:
        self.errors = FrameErrors(fitter, dataset)
        self.level = float(level)
        self.negligible = negligible if replaceable is not None else None
        self.replaceable = replaceable

    def __call__(self, result: FitResult) -> list[int]:
        cached = result.extra.get("idle_terms")
        if isinstance(cached, list):
            return [int(i) for i in cached]
        idle = self._idle(result)
        result.extra["idle_terms"] = idle
        return idle

    def _idle(self, result: FitResult) -> list[int]:
        at_bound = bound_parameters(result.flags) if result.valid else set()
        if not at_bound:
            return self._negligible(result) if result.valid else []
        try:
            terms = signed_terms(result.expression)
        except (SyntaxError, ValueError):
            return []
        full = self.errors(result)
        if full is None:
            return []
        idle = []
        for i, (_, node) in enumerate(terms):
            if at_bound.isdisjoint(n.id for n in ast.walk(node) if isinstance(n, ast.Name)):
                continue
            rest = terms[:i] + terms[i + 1 :]
            if rest:
                reduced = FitResult(_joined(rest), params=dict(result.params), valid=True)
                without = self.errors(reduced)
                if without is None or self._breaks_constraints(reduced, result):
                    continue
            else:
                without = self.errors.null  # U = 0 meets the wall, force0 and energy0
            if not (resolved(full, without, self.level) or resolved(without, full, self.level)):
                idle.append(i)
        return idle

    def _negligible(self, result: FitResult) -> list[int]:
        """The negligible terms of ``result`` (class docstring); ``[]`` without
        ``negligible`` frames or for a result of one term."""
        judge = self.negligible
        if judge is None:
            return []
        try:
            terms = signed_terms(result.expression)
        except (SyntaxError, ValueError):
            return []
        if len(terms) < 2:
            return []
        full = judge(result)
        if full is None:
            return []

        def without(drop: list[int]) -> np.ndarray | None:
            """Frame errors of ``result`` without the terms ``drop``, ``None`` when the
            result beats that form, it breaks a constraint or cannot be fitted instead."""
            kept = [i for i in range(len(terms)) if i not in drop]
            reduced = FitResult(
                _joined([terms[i] for i in kept]), params=dict(result.params), valid=True
            )
            err = judge(reduced)
            if (
                err is None
                or resolved(full, err, self.level)
                or self._breaks_constraints(reduced, result)
                or not self.replaceable(result, kept)
            ):
                return None
            return err

        found = {}
        for i in range(len(terms)):
            err = without([i])
            if err is not None:
                found[i] = float(err.sum())
        if len(found) > 1 and len(found) < len(terms) and without(sorted(found)) is not None:
            return sorted(found)
        if not found:
            return []
        total = float(full.sum())
        return [min(found, key=lambda i: abs(found[i] - total))]

    def _breaks_constraints(self, reduced: FitResult, result: FitResult) -> bool:
        """Whether ``reduced`` violates a constraint of the fit that ``result`` meets (the
        term then has an effect: it holds the repulsive wall, say)."""
        fitter = self.errors.fitter
        constraints = getattr(fitter, "constraints", ())
        if not constraints:
            return False
        tol = MET * float(
            getattr(getattr(fitter, "options", None), "constraint_tol", CONSTRAINT_TOL)
        )
        try:
            pot = fitter.potential(reduced.expression, reduced.params)
        except (KeyError, ValueError, TypeError, SyntaxError):
            return True
        for c in constraints:
            met = result.constraints.get(c.name)
            if not (isinstance(met, int | float) and met <= tol):
                continue  # not met with the term either: the term does not hold it
            with np.errstate(all="ignore"):
                val = np.asarray(constraint_values(c, pot, pot.parameterization, pot.theta)[0])
            resid = np.max(np.abs(val)) if c.kind == "eq" else np.max(np.maximum(val, 0.0))
            if not float(resid) <= tol:
                return True
        return False


def _joined(terms: list[tuple[int, ast.AST]]) -> str:
    """The sum of signed terms as one expression (for evaluation, not for the grammar)."""
    return " + ".join(("-" if s < 0 else "") + "(" + ast.unparse(n) + ")" for s, n in terms)


def idle_terms_for(
    fitter, replaceable: Callable[[FitResult, list[int]], bool] | None = None
) -> IdleTerms | None:
    """:class:`IdleTerms` on the training frames, judging negligible terms on the frames
    that rank the front (:func:`frame_errors_for`) where ``replaceable`` is given; ``None``
    for a regression objective or training data held only as a projection."""
    if not hasattr(fitter, "potential") or not _in_memory(getattr(fitter, "train", None)):
        return None
    judge = frame_errors_for(fitter) if replaceable is not None else None
    return IdleTerms(fitter, fitter.train, negligible=judge, replaceable=replaceable)


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


def _projected_scorer(fitter, test) -> Callable[[FitResult], float]:
    """``result -> force RMSE`` on test frames held as a projection
    (:meth:`~mctsff.data.projection.ForceProjection.holdout_file`): projected, as the
    fit's own RMSEs on projections are."""

    def projected_rmse(result: FitResult) -> float:
        if not result.valid:
            return math.nan
        try:
            pot = fitter.potential(result.expression, result.params)
            par = pot.parameterization
            return float(fitter.rmse(par.program, par, pot.theta, test))
        except (KeyError, ValueError, TypeError, SyntaxError):
            return math.nan

    return projected_rmse


def holdout_scorer(fitter, test) -> Callable[[FitResult], float] | None:
    """``result -> RMSE on the test data`` for force matching (frames in memory, or a
    projection of streamed frames) or regression; ``None`` without test data.
    ``fitter=None`` evaluates a force-matching result as a plain
    :class:`~mctsff.expr.params.Potential` on the test data's types (frames in memory)."""
    if test is None:
        return None
    if fitter is None:
        fitter = _Potentials(test)
    if _in_memory(test) and hasattr(fitter, "potential"):
        return FrameErrors(fitter, test).rmse
    if hasattr(test, "grid") and hasattr(fitter, "rmse") and hasattr(fitter, "potential"):
        return _projected_scorer(fitter, test)
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

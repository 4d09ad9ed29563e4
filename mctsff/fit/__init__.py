"""Fitting the constants of one expression: force matching, plain regression, the surrogate.

The package, in the order its modules import each other:

- :mod:`~mctsff.fit.optim`: the numerical core, bound-constrained Levenberg–Marquardt
  (plain, and with constraints linearised in each step: a small convex QP per step, solved
  by DAQP) and the augmented-Lagrangian rows; nothing of mctsff.
- :mod:`~mctsff.fit.scan`: physical grids of nonlinear constants for the scan of starts.
- :mod:`~mctsff.fit.constraints`: :class:`Constraint` (force0, energy0, the repulsive wall,
  neutral molecules, user functions) and the cutoff scheme's shift.
- :mod:`~mctsff.fit.target`: the arrays of a dataset that the residual needs.
- :mod:`~mctsff.fit.problem`: residuals and Jacobians of one expression, its scan of
  starts and its constrained solves.
- :mod:`~mctsff.fit.forces`: :class:`Fitter` (force matching) and :class:`FitOptions`.
- :mod:`~mctsff.fit.regression`: :class:`~mctsff.fit.regression.RegressionFitter` for
  y = f(x) data (Nguyen and the user's CSV).
- :mod:`~mctsff.fit.surrogate`: the fit-free surrogate that ranks candidates before a fit.

``from mctsff.fit import Fitter`` is the usual entry point.
"""

from mctsff.expr.program import ExpressionError
from mctsff.fit.constraints import (
    Constraint,
    FitConfigError,
    energy_zero_at,
    force_zero_at,
    neutrality,
    parse_constraint,
    repulsive_core,
    repulsive_wall,
)
from mctsff.fit.forces import (
    WALL_CHECK,
    WALL_FORCE,
    WALL_RADIUS,
    WALL_REACH,
    FitOptions,
    Fitter,
    bound_flags,
    overfit_flags,
)
from mctsff.fit.optim import constrained_levenberg_marquardt, levenberg_marquardt
from mctsff.fit.target import potfit_weights

__all__ = [
    "WALL_CHECK",
    "WALL_FORCE",
    "WALL_RADIUS",
    "WALL_REACH",
    "Constraint",
    "ExpressionError",
    "FitConfigError",
    "FitOptions",
    "Fitter",
    "bound_flags",
    "constrained_levenberg_marquardt",
    "energy_zero_at",
    "force_zero_at",
    "levenberg_marquardt",
    "neutrality",
    "overfit_flags",
    "parse_constraint",
    "potfit_weights",
    "repulsive_core",
    "repulsive_wall",
]

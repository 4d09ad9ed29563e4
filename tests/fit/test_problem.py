"""One expression's problem: the augmented Lagrangian gives up on a constraint it cannot meet."""

import numpy as np

import mctsff.fit.problem as problem_module
from mctsff.expr.params import Parameterization
from mctsff.fit import Constraint, Fitter
from mctsff.fit.problem import Problem


def test_augmented_lagrangian_stops_when_growing_mu_does_not_shrink_the_violation(
    dimers, monkeypatch
):
    """``1 + c2² ≤ 0`` holds nowhere: the violation stays ≥ 1 however large μ grows, so the
    outer loop stops at its fourth inner solve (a multiplier update, two growths of μ, and
    a third growth refused) instead of climbing to ``MU_MAX`` (eight from ``mu0`` = 1e4)."""
    impossible = Constraint("impossible", "ineq", lambda pot: 1.0 + pot.params["c2"] ** 2)
    fitter = Fitter(dimers, constraints=(impossible,), scan=False)
    prog = fitter.compile("c1*exp(-r/c2)")
    par = Parameterization(prog, dimers.species, dimers.type_pairs)
    problem = Problem(fitter, prog, par)
    lo, hi = par.default_bounds()
    solves = []
    inner = problem_module.levenberg_marquardt

    def counted(*args, **kwargs):
        solves.append(1)
        return inner(*args, **kwargs)

    monkeypatch.setattr(problem_module, "levenberg_marquardt", counted)
    x, loss, viol, _ = problem._solve(np.array([1.0, 0.3]), lo, hi, [], 1e-9, 60)
    assert viol >= 1.0 and np.isfinite(loss)
    assert len(solves) == 4
    monkeypatch.setattr(problem_module, "AL_STALL", np.inf)
    solves.clear()
    problem._solve(np.array([1.0, 0.3]), lo, hi, [], 1e-9, 60)
    assert len(solves) == 8

"""The Objective protocol: what the search asks of forces and regression objectives."""

import numpy as np

from mctsff.expr.grammar import Grammar
from mctsff.fit.objective import (
    ForceObjective,
    Objective,
    RegressionObjective,
    as_objective,
    signature_difference,
)
from mctsff.fit.regression import RegressionFitter, nguyen


def test_regression_objective_answers_for_its_fitter():
    data, _ = nguyen(1)
    scaled, plain = RegressionFitter(data), RegressionFitter(data, linear_scaling=False)
    objective = as_objective(scaled)
    assert isinstance(objective, RegressionObjective) and isinstance(objective, Objective)
    assert as_objective(objective) is objective
    assert objective.kind == "regression" and objective.variables == ("x",)
    assert objective.surrogate() is None and objective.defaults()["transplant"] is True
    rms = float(np.sqrt(np.mean(data.y**2)))
    assert np.isclose(objective.reward_scale(), 0.1 * rms)
    assert np.isclose(objective.loss_floor(), 1e-8 * rms)
    assert objective.description() == {"linear_scaling": True}
    grammar = Grammar.load("nguyen")
    a, b = objective.signature(grammar), as_objective(plain).signature(grammar)
    assert a["linear_scaling"] is True and "linear_scaling" not in b
    assert signature_difference(a, b) == ["linear_scaling"]
    res = objective.fit("sin(x)")
    assert res.expression != "sin(x)" and objective.searched(res) == "sin(x)"


def test_an_object_with_species_is_force_matching():
    from types import SimpleNamespace

    assert isinstance(as_objective(SimpleNamespace(species=("H", "O"))), ForceObjective)
    assert as_objective(None).kind == "regression"

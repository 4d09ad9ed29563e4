"""Tests of the rule against parameters at a bound with no effect (mctsff.engines.holdout)."""

from __future__ import annotations

import dataclasses

import pytest

from mctsff.data import dataset_path, load_dataset
from mctsff.engines.holdout import (
    IdleTerms,
    bound_parameters,
    frame_errors_for,
    idle_terms_for,
)
from mctsff.engines.local import replaceable_by
from mctsff.engines.pareto import ParetoFront
from mctsff.expr.program import signed_terms
from mctsff.fit import Fitter
from mctsff.fit.result import FitResult


@pytest.fixture(scope="module")
def fitter():
    """The 200 shipped MP2 dimers: 120 training frames resolve what a term does."""
    data = load_dataset(dataset_path("water-dimers"), cutoff=9.0)
    train, valid, _ = data.split_holdout(0.2, 0.2, seed=0)
    return Fitter(train, valid)


@pytest.fixture(scope="module")
def coulomb(fitter):
    """A fitted ``prod_q/r``: the term the results below share (no parameter at a bound)."""
    res = fitter.fit("prod_q/r")
    assert res.valid and not bound_parameters(res.flags)
    return res


@pytest.fixture(scope="module")
def born(fitter):
    """A fitted ``prod_q/r + A*exp(-r/b)``; its exponential holds the wall."""
    return fitter.fit("prod_q/r + A*exp(-r/b)")


def _result(expression: str, params: dict, flags: list[str], constraints=None) -> FitResult:
    return FitResult(
        expression, valid=True, params=params, flags=flags, constraints=constraints or {}
    )


def test_bound_parameters_reads_the_fitters_flags():
    flags = [
        "geom_c1[O] at its lower bound 1e-08",
        "b at its upper bound 9",
        "range parameter c2 = 8.5 is comparable to the cutoff 9",
        "charges prod_q all have one sign",
    ]
    assert bound_parameters(flags) == {"geom_c1", "b"}


def test_a_term_at_its_bound_with_no_effect_is_idle(fitter, coulomb):
    idle = IdleTerms(fitter, fitter.train)
    # exp(-r/0.01) vanishes at every intermolecular distance: the term does nothing
    res = _result(
        "prod_q/r + A*exp(-r/b)",
        {**coulomb.params, "A": 1.0, "b": 0.01},
        ["b at its lower bound 0.01"],
    )
    assert idle(res) == [1]
    assert res.extra["idle_terms"] == [1]
    # one term at its bound and without effect: the result is U = 0
    null = _result(
        "geom_c1/r",
        {"geom_c1[H]": 1e-8, "geom_c1[O]": 1e-8},
        [
            "geom_c1[H] at its lower bound 1e-08",
            "geom_c1[O] at its lower bound 1e-08",
        ],
    )
    assert idle(null) == [0]


def test_a_term_with_an_effect_or_without_a_bound_is_not_idle(fitter, coulomb):
    idle = IdleTerms(fitter, fitter.train)
    fitted = fitter.fit("prod_q/r + A*exp(-r/b)")
    assert fitted.valid and fitted.rmse_train < 0.98 * coulomb.rmse_train  # the term matters
    at_bound = dataclasses.replace(fitted, flags=["b at its lower bound 0.01"], extra={})
    assert idle(at_bound) == []
    # the same idle term, but no parameter at a bound: the rule does not apply
    free = _result("prod_q/r + A*exp(-r/b)", {**coulomb.params, "A": 1.0, "b": 0.01}, [])
    assert idle(free) == []
    # the term that matters, flagged through its amplitude
    amplitude = dataclasses.replace(fitted, flags=["A at its upper bound 1e+06"], extra={})
    assert idle(amplitude) == []


def test_a_term_that_holds_the_wall_is_not_idle(fitter):
    """A repulsive core beyond the data's reach has no effect on the forces, but without
    it the potential falls in below the shortest distance: it holds the wall."""
    idle = IdleTerms(fitter, fitter.train)
    params = {"C": 1e-3, "A": 3e3, "b": 0.1}
    res = _result("A*exp(-r/b) - C/r**6", params, ["b at its lower bound 0.1"], {"wall": 0.0})
    assert idle(res) == []
    # the same without the wall: nothing else the term does is resolved
    no_wall = Fitter(fitter.train, fitter.valid, wall=None)
    assert IdleTerms(no_wall, no_wall.train)(dataclasses.replace(res, extra={})) == [0]


def test_the_front_admits_no_idle_result(fitter, coulomb):
    idle = IdleTerms(fitter, fitter.train)
    front = ParetoFront(admit=lambda r: not idle(r))
    res = _result(
        "prod_q/r + A*exp(-r/b)",
        {**coulomb.params, "A": 1.0, "b": 0.01},
        ["b at its lower bound 0.01"],
    )
    res.complexity, res.rmse_train = 7, coulomb.rmse_train * 0.999
    assert not front.update(res) and len(front) == 0
    assert front.update(coulomb)


@pytest.mark.slow
def test_a_search_front_holds_no_idle_member(dimers):
    """A seeded search meets results with idle terms, fits their pruned forms, and its
    front holds none (judged afresh, not from the search's own record)."""
    from mctsff.search import search

    train, valid, _ = dimers.split_holdout(0.2, 0.2, seed=0)
    fitter = Fitter(train, valid)
    out = search(fitter, "pair", budget=40, seed=0, progress=False, workers=1)
    results = out.mcts.results
    idle_results = [r for r in results if r.extra.get("idle_terms")]
    assert idle_results, "the rule never fired: pick another seed"
    replaced = {r.extra["local_move_from"] for r in results if r.extra.get("local_move") == "idle"}
    assert replaced and replaced <= {r.expression for r in idle_results}
    for r in results:
        if r.extra.get("local_move") == "idle":
            origin = next(o for o in idle_results if o.expression == r.extra["local_move_from"])
            assert len(signed_terms(r.expression)) < len(signed_terms(origin.expression))
            assert out.mcts.grammar.derivation_of(r.expression) is not None
    judge = idle_terms_for(fitter)
    negligible = idle_terms_for(fitter, replaceable_by(out.mcts.grammar))
    for p in out.front.points:
        assert judge(dataclasses.replace(p, extra={})) == [], p.expression
        assert negligible(dataclasses.replace(p, extra={})) == [], p.expression


def _negligible(fitter, replaceable=lambda res, kept: True) -> IdleTerms:
    """IdleTerms that judge negligible terms on the validation frames, as the search's."""
    return IdleTerms(
        fitter, fitter.train, negligible=frame_errors_for(fitter), replaceable=replaceable
    )


def test_a_negligible_term_inside_its_bounds_is_idle_where_its_rest_is_fitted(
    fitter, coulomb, born
):
    """A ~1e-6 r**-2 term (member 11 of an earlier demo run), no constant at a
    bound: the rule at a bound leaves it, the negligible-term rule takes it off."""
    tiny = {"prod_c2[H]": -7e-7, "prod_c2[O]": -6e-6}
    res = _result("prod_q/r - prod_c2/r**2", {**coulomb.params, **tiny}, [])
    assert IdleTerms(fitter, fitter.train)(dataclasses.replace(res, extra={})) == []
    asked = []
    judge = _negligible(fitter, lambda r, kept: asked.append(kept) or True)
    assert judge(dataclasses.replace(res, extra={})) == [1] and [0] in asked
    # not where the rest would not be fitted in its place (grammar, --no-local-moves)
    assert _negligible(fitter, lambda r, kept: False)(dataclasses.replace(res, extra={})) == []
    # a term that only harms goes too: the same r**-2 term made large, not refitted
    harm = _result("prod_q/r - prod_c2/r**2", {**coulomb.params, "prod_c2[H]": 0.3,
                                                "prod_c2[O]": -0.6}, [])  # fmt: skip
    assert judge(harm) == [1]
    # terms with an effect stay: a fitted Coulomb term and Born-Mayer repulsion
    assert not bound_parameters(born.flags) and judge(dataclasses.replace(born, extra={})) == []


def test_negligible_terms_go_together_only_when_their_sum_is_negligible(fitter, born):
    tiny = {"prod_c2[H]": 1e-6, "prod_c2[O]": 2e-6, "c1": 1e-9}
    expr = "prod_q/r + A*exp(-r/b) + prod_c2/r**2 + c1/r**6"
    res = _result(expr, {**born.params, **tiny}, [], born.constraints)
    assert _negligible(fitter)(res) == [2, 3]
    # where the form without both cannot be fitted instead, the one whose removal changes
    # the error least goes alone
    alone = _negligible(fitter, lambda r, kept: kept != [0, 1])(dataclasses.replace(res, extra={}))
    assert len(alone) == 1 and alone[0] in (2, 3)
    # the front keeps the result off: its form without them enters instead
    judge = _negligible(fitter)
    front = ParetoFront(admit=lambda r: not judge(r))
    res = dataclasses.replace(res, extra={}, complexity=20, rmse_train=born.rmse_train)
    assert not front.update(res) and front.update(born)

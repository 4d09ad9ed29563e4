"""Local moves (mctsff.engines.local): the variant functions and the moves around front
members, fitted through a transposition table within the budget."""

import os

import numpy as np

from mctsff.engines.local import (
    LocalMoves,
    demoted_variants,
    pruned_variants,
    replaceable_by,
    substituted_variants,
    wrapped_variants,
)
from mctsff.engines.pareto import ParetoFront
from mctsff.expr.canonical import canonical_key
from mctsff.expr.grammar import Grammar
from mctsff.expr.params import Potential
from mctsff.fit import Fitter
from mctsff.fit.result import FitResult


class _Table:
    """The slice of a search engine the local moves use: a transposition table."""

    def __init__(self):
        self.seen = {}
        self.n_evaluations = 1000
        self.results = []

    def _key(self, expr):
        return canonical_key(expr)

    def lookup(self, expr):
        return self.seen.get(canonical_key(expr))

    def record(self, expr, res):
        key = canonical_key(expr)
        if key in self.seen:
            return False
        self.seen[key] = res
        return True


def test_local_moves_of_a_batch_are_fitted_in_one_call():

    calls = []

    def evaluate(exprs):  # fewer terms fit better here, so prunes keep entering the front
        calls.append(list(exprs))
        return [FitResult(e, complexity=len(e), rmse_train=0.1 / len(e)) for e in exprs]

    front = ParetoFront()
    table = _Table()
    local = LocalMoves(table, evaluate, front, None, ("r",), prune=True, grow=False)
    a = FitResult("c1/r + c2/r**6 + c3/r**12", complexity=20, rmse_train=1e-3)
    b = FitResult("c1*exp(-r/c2) + c3/r**8", complexity=18, rmse_train=2e-3)
    dominated = FitResult("c1/r**2 + c2/r**4", complexity=30, rmse_train=1.0)
    for res in (a, b, dominated):
        table.record(res.expression, res)
        local.queue(res if front.update(res) else None, [])
    local.flush()
    first = {canonical_key(e) for e in calls[0]}
    # every prune of a and b in the first call; nothing around the dominated point
    for parent in (a, b):
        for v in pruned_variants(parent.expression):
            assert canonical_key(v) in first
    assert not any("r**2" in e for call in calls for e in call)
    assert len(calls) <= 3  # one evaluator call per level (3, 2 and 1 terms), not per point
    assert local.n_fits == sum(len(c) for c in calls)
    assert all(table.lookup(e).extra["local_move_from"] for c in calls for e in c)


def test_prune_chains_run_past_the_grow_depth():
    """A result with four spare terms is pruned down to a single term (five levels)."""

    def evaluate(exprs):  # every shorter form enters the front
        return [FitResult(e, complexity=len(e), rmse_train=0.1 / len(e)) for e in exprs]

    front = ParetoFront()
    table = _Table()
    local = LocalMoves(table, evaluate, front, None, ("r",), prune=True, grow=True)
    a = FitResult("c1/r + c2/r**2 + c3/r**4 + c4/r**6 + c5/r**12", complexity=60, rmse_train=1e-3)
    table.record(a.expression, a)
    local.queue(a if front.update(a) else None, [])
    local.flush()
    assert local.max_depth < 4
    singles = ("c1/r", "c1/r**2", "c1/r**4", "c1/r**6", "c1/r**12")
    assert any(table.lookup(single) is not None for single in singles)


def test_pruned_variants_drop_terms_and_saturating_factors():
    got = {canonical_key(v) for v in pruned_variants("c1*erf(c2*r)/r**6 + c3*exp(-r/c4)")}
    want = [
        "c3*exp(-r/c4)",  # a term removed
        "c1*erf(c2*r)/r**6",
        "c1/r**6 + c3*exp(-r/c4)",  # a factor of a term removed
        "c1*erf(c2*r) + c3*exp(-r/c4)",
    ]
    assert got == {canonical_key(w) for w in want}
    # a factor is only dropped when another factor still depends on r
    assert pruned_variants("c1/r") == []
    assert {canonical_key(v) for v in pruned_variants("c4/r**6 - c1*exp(-r/c2)*exp(-r/c3)")} == {
        canonical_key(w)
        # the lone negative term's free constant takes the sign (one unary minus simpler)
        for w in ("c4/r**6", "c1*exp(-r/c2)*exp(-r/c3)", "c4/r**6 - c1*exp(-r/c2)")
    }


def test_pruned_factor_that_carried_the_sign_offers_both_signs():
    # erf(c2*r) with c2 < 0 made -geom_c1*erf(c2*r)/r**12 repulsive; geom_c1 >= 0 cannot
    got = {canonical_key(v) for v in pruned_variants("c1/r**6 - geom_c1*erf(c2*r)/r**12")}
    assert canonical_key("c1/r**6 + geom_c1/r**12") in got
    assert canonical_key("c1/r**6 - geom_c1/r**12") in got
    # a free global amplitude takes either sign; a factor without constants carries none
    assert len(pruned_variants("c1/r**6 - c2*erf(c3*r)/r**12")) == 4
    assert len(pruned_variants("c1/r**6 - geom_c1*erf(c2*r)/r**12")) == 5
    assert len(pruned_variants("c1/r**6 - geom_c1*r/r**12")) == 4
    # function names are not fitted constants: sin(x) carries no fitted sign
    assert len(pruned_variants("sin(x)*cos(y) - exp(x)*x", ("x", "y"))) == 6


def test_pruned_variants_start_with_a_positive_term():
    grammar = Grammar.load("pair")
    # dropping the first term leaves "-(c1*exp(-r/c3)) + c2/r": written "c2/r - ...",
    # as the grammar derives it, not one unary minus more complex
    got = pruned_variants("prod_c1/r**12 - c1*exp(-r/c3) + c2/r")
    assert "(c2 / r)-(c1 * exp(-r / c3))" in got
    assert grammar.complexity("(c2 / r)-(c1 * exp(-r / c3))") == grammar.complexity(
        "c2/r-c1*exp(-r/c3)"
    )
    # a sign is only absorbed by a global constant used once: geom_c1 >= 0, a_morse is tied
    assert pruned_variants("c2/r - geom_c1/r**6") == ["-(geom_c1 / r ** 6)", "(c2 / r)"]
    morse = "c1*(exp(-2*a*(r-r0))-2*exp(-a*(r-r0)))"
    assert f"-(a * {morse[3:]})" not in pruned_variants(f"c2/r - a*{morse[3:]}")


def test_demoted_variants_replace_one_type_constant_by_a_global_one():
    got = demoted_variants("prod_c1*exp(-r/c1)/r + geom_c1/r**12 - c2/r**6")
    assert {canonical_key(v) for v in got} == {
        canonical_key("k1*exp(-r/c1)/r + geom_c1/r**12 - c2/r**6"),
        canonical_key("prod_c1*exp(-r/c1)/r + k1/r**12 - c2/r**6"),
    }
    # a negated geometric-mean amplitude becomes a free-signed global one
    assert demoted_variants("-(geom_c1*(1-exp(-c1*r))**6/r**6)") == [
        "(k1 * (1 - exp(-c1 * r)) ** 6 / r ** 6)"
    ]
    assert demoted_variants("c1/r**6 - c2/r**12") == []


def test_demoted_variants_come_in_order_of_appearance_whatever_the_hash_seed():
    """The order decides which of two equivalent forms is fitted (and how): it must not
    follow a set of strings, whose order changes with PYTHONHASHSEED between processes."""
    import subprocess
    import sys

    expr = "prod_c1/r + geom_c1/r**12 - prod_c2*exp(-r/c1) + geom_c2/r**6"
    got = demoted_variants(expr)
    assert [v.index("k1") for v in got] == sorted(v.index("k1") for v in got)
    code = f"from mctsff.engines.local import demoted_variants; print(demoted_variants({expr!r}))"
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": str(h)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for h in (1, 2, 3)
    }
    assert outs == {f"{got}\n"}


def test_local_moves_demote_a_type_constant_the_data_do_not_need(dimers):
    """A front member -(geom_c1*f) on data made by a global c1*f (c1 < 0) leads to c1*f."""
    from mctsff.fit.objective import as_objective

    truth = "c1*(1-exp(-c2*r))**6/r**6"
    data = Potential(truth, {"c1": -30.0, "c2": 1.2}, dimers.species, dimers.type_pairs)
    train, valid = data.synthetic(dimers).split(0.2, seed=0)
    # the truth is unshifted and attractive at short range: no cutoff shift, no wall
    fitter = Fitter(
        train, valid, constraints=(), n_starts=3, seed=0, cutoff_scheme="none", wall=None
    )
    # the front as search() makes it (without the floor, which of two exact forms stays
    # on it depends on the last digit of their fits)
    front = ParetoFront(loss_floor=as_objective(fitter).loss_floor())
    table = _Table()
    local = LocalMoves(
        table, lambda es: [fitter.fit(e) for e in es], front, None, ("r",), prune=True, grow=False
    )
    found = fitter.fit("-(geom_c1*(1-exp(-c1*r))**6/r**6)")
    rms = float(np.sqrt(np.mean(valid.forces**2)))
    assert found.rmse_valid < 1e-6 * rms  # exact, but one unary minus more complex than needed
    table.record(found.expression, found)
    local.queue(found if front.update(found) else None, [])
    local.flush()
    best = table.lookup(truth)
    assert best is not None and best.rmse_valid < 1e-6 * rms
    assert Grammar.load("pair").complexity(best.expression) == Grammar.load("pair").complexity(
        truth
    )
    # the simpler exact form replaces the one with the sign on the front
    assert any(p is best for p in front.points)
    assert not any(p is found for p in front.points)


def test_wrapped_variants_put_the_expression_and_its_terms_inside_each_function():
    XY = ("x", "y")
    assert wrapped_variants("y*log(x)", ("exp", "sin"), XY) == ["exp(y*log(x))", "sin(y*log(x))"]
    got = [v.replace(" ", "") for v in wrapped_variants("x - y*log(x)", ("exp",), XY)]
    assert got == ["exp(x-y*log(x))", "exp(x)", "exp(y*log(x))"]  # the term without its sign
    assert wrapped_variants("x + y", (), XY) == []
    assert wrapped_variants("c1 + x", ("sin",), XY) == ["sin(c1 + x)", "sin(x)"]  # not sin(c1)


def test_substituted_variants_make_one_variable_a_function_inside_each_function():
    XY = ("x", "y")
    got = [v.replace(" ", "") for v in substituted_variants("x*y", ("exp", "log"), XY)]
    # 2 occurrences x 2 inner functions x 2 outer functions
    assert got == [
        "exp(exp(x)*y)", "log(exp(x)*y)", "exp(log(x)*y)", "log(log(x)*y)",
        "exp(x*exp(y))", "log(x*exp(y))", "exp(x*log(y))", "log(x*log(y))",
    ]  # fmt: skip
    # a sum: the whole expression and each term holding a variable (sign dropped)
    got = {v.replace(" ", "") for v in substituted_variants("c1 - x", ("sin",), XY)}
    assert got == {"sin(c1-sin(x))", "sin(sin(x))"}
    assert substituted_variants("x*y", (), XY) == []


def test_wrap_moves_fit_a_function_around_a_front_member_only_with_grow():
    """``exp(y*log(x))`` is fitted once ``y*log(x)`` (or a sum holding it) is on the front."""

    def evaluate(exprs):
        return [FitResult(e, complexity=len(e), rmse_train=1.0) for e in exprs]

    for grow, wanted in ((True, True), (False, False)):
        table, front = _Table(), ParetoFront()
        local = LocalMoves(
            table,
            evaluate,
            front,
            None,
            ("x", "y"),
            prune=True,
            grow=grow,
            wrap=Grammar.load("nguyen2").wrapping_functions,
        )
        a = FitResult("x - y + y*log(x)", complexity=13, rmse_train=0.04)
        table.record(a.expression, a)
        local.queue(a if front.update(a) else None, [])
        local.flush()
        assert (table.lookup("exp(y*log(x))") is not None) is wanted
        assert (table.lookup("sin(x - y + y*log(x))") is not None) is wanted


def test_replaceable_by_asks_the_grammar_for_the_form_without_the_dropped_terms():
    """What the negligible-term rule asks before it drops a term (holdout.IdleTerms): the
    'idle' move's form of the kept terms, derivable by the grammar."""
    can = replaceable_by(Grammar.load("pair"))
    res = FitResult("prod_c1/r**8 - prod_c2/r**2")
    assert can(res, [0])  # prod_c1/r**8
    assert not can(res, [1])  # -(prod_c2/r**2): no sign-absorbing constant, not derivable
    assert not can(FitResult("c1*r + prod_c1/r"), [0])  # c1*r alone: not in the grammar
    assert replaceable_by(None)(res, [1]) and not can(res, [5])

"""Tests of mctsff.engines.gp: grammar-guided genetic programming behind the search façade."""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import sympy

from mctsff.engines.gp import GP, find_derivation
from mctsff.expr.grammar import Grammar
from mctsff.expr.program import Program
from mctsff.expr.tree import Derivation, subtree_end
from mctsff.fit import Fitter
from mctsff.fit.regression import RegressionFitter, nguyen
from mctsff.fit.result import FitResult
from mctsff.search import SearchError, canonical_key, search

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_mcts import (  # noqa: E402
    NGUYEN,
    Counting,
    evaluate_by_length,
    evaluate_nguyen1,
    prefers_r12,
    solved,
)

PAIR = Grammar.load("pair")


def _population(g: Grammar, n: int, max_length: int, seed: int) -> list[tuple[int, ...]]:
    rng = np.random.default_rng(seed)
    root = Derivation.initial(g)
    lo = int(root.min_remaining)
    return [root.rollout(rng, lo + i % (max_length - lo + 1)).actions for i in range(n)]


def _check_valid(g: Grammar, actions: tuple[int, ...], max_length: int) -> str:
    assert all(0 <= a < len(g.productions) for a in actions)
    d = Derivation.initial(g)
    for a in actions:  # only grammar productions, each expanding the leftmost nonterminal
        assert g.productions[a].lhs == d.leftmost
        d = d.apply(a)
    assert d.is_complete and d.n_productions == len(actions) <= max_length
    expr = d.expression()
    Program.from_string(expr, g.variables)  # the yield parses
    return expr


def _mock_evaluate(expressions):
    return [FitResult(e, complexity=0, rmse_train=float(len(e) % 7)) for e in expressions]


# ----------------------------------------------------------------------------- variation
@pytest.mark.parametrize("name,max_length", [("pair", 16), ("nguyen", 20), ("nguyen_c", 12)])
def test_crossover_and_mutation_keep_derivations_valid(name, max_length):
    g = Grammar.load(name)
    gp = GP(g, _mock_evaluate, max_length=max_length, seed=3)
    parents = _population(g, 40, max_length, seed=1)
    n_cross = 0
    for k in range(300):
        a, b = parents[k % 40], parents[(7 * k + 3) % 40]
        child = gp.crossover(a, b)
        if child is not None:
            n_cross += 1
            _check_valid(g, child, max_length)
        _check_valid(g, gp.mutate(a), max_length)
    assert n_cross > 100


def test_crossover_swaps_subtrees_of_the_same_nonterminal():
    g = PAIR
    gp = GP(g, _mock_evaluate, max_length=16, seed=0)
    a = find_derivation(g, "c1/r**6").actions
    b = find_derivation(g, "c1*exp(-r/c2)").actions
    children = {gp.crossover(a, b) for _ in range(200)} - {None}
    exprs = {_check_valid(g, c, 16) for c in children}
    # swapping the coef, the term or the whole potential are the only options
    assert "c1*exp(-r/c2)" in exprs
    assert exprs <= {"c1*exp(-r/c2)", "c1/r**6"}


def test_subtree_end_slices_are_complete_expansions():
    g = PAIR
    for actions in _population(g, 30, 16, seed=2):
        for i in range(len(actions)):
            j = subtree_end(g, actions, i)
            nt = g._tables.prod_lhs[actions[i]]
            sub = Derivation(g, (), (nt,), 0, g._tables.nt_min[nt], ()).apply_all(actions[i:j])
            assert sub.is_complete
        assert subtree_end(g, actions, 0) == len(actions)
    with pytest.raises(ValueError, match="incomplete"):
        subtree_end(g, actions[:-1], 0)


@pytest.mark.parametrize(
    "expr",
    [
        "prod_c1/r+c1/r**12-c2/r**6",
        "c1*exp(-r/c2)-c3/r**6",
        "c1*(exp(-2*a_morse*(r-r0_morse))-2*exp(-a_morse*(r-r0_morse)))",
        "prod_c1*exp(-r/c1)/r",
        "c1/r**12",
        "c1*(1-exp(-c2*r))**6/r**6",
    ],
)
def test_find_derivation_of_benchmark_potentials(expr):
    d = find_derivation(PAIR, expr)
    assert d is not None and d.expression() == expr
    assert find_derivation(PAIR, expr + "+c9/r**5", max_length=20) is None


def test_find_derivation_round_trip():
    for actions in _population(NGUYEN, 20, 12, seed=4):
        expr = Derivation.initial(NGUYEN).apply_all(actions).expression()
        d = find_derivation(NGUYEN, expr, max_length=12)
        assert d is not None and d.expression() == expr and d.n_productions <= len(actions)


# ----------------------------------------------------------------------------- the search
def test_reproducible_for_a_seed():
    def run(seed):
        gp = GP(NGUYEN, evaluate_nguyen1, max_length=20, population_size=30, seed=seed)
        gp.run(budget=200)
        return gp.evaluated

    a, b, c = run(5), run(5), run(6)
    assert a == b and a != c and len(a) >= 200


def test_no_expression_fitted_twice():
    counting = Counting(evaluate_nguyen1)

    def key(e):
        return canonical_key(e, ("x",))

    gp = GP(NGUYEN, counting, max_length=20, population_size=30, seed=0, canonical=key)
    gp.run(budget=400)
    keys = [key(e) for e in counting.seen]
    assert len(keys) == len(set(keys)) == gp.n_evaluations == len(gp.evaluated)
    assert len(gp.results) == gp.n_evaluations
    assert gp.generation >= 5
    assert gp.n_evaluations - 400 < gp.batch_size  # budget overshoot < one batch
    for res in gp.results:
        assert gp.lookup(res.expression) is res
    # every generation holds distinct individuals
    pop_keys = [ind[2] for ind in gp.population]
    assert len(pop_keys) == len(set(pop_keys)) == gp.population_size


def test_elites_survive():
    gp = GP(NGUYEN, evaluate_nguyen1, max_length=20, population_size=20, elitism=3, seed=1)
    best = []
    while gp.generation < 8:
        gp.step()
        if gp.population:
            best.append(max(gp._fitness(ind) for ind in gp.population))
    assert best == sorted(best)  # the best reward in the population never decreases


def test_resume_equals_uninterrupted():
    full = GP(NGUYEN, evaluate_nguyen1, max_length=20, population_size=25, seed=7)
    full.run(budget=300)

    part = GP(NGUYEN, evaluate_nguyen1, max_length=20, population_size=25, seed=7)
    part.run(budget=110)
    resumed = pickle.loads(pickle.dumps(part))
    resumed.run(budget=300)
    assert resumed.evaluated == full.evaluated

    part = GP(NGUYEN, evaluate_nguyen1, max_length=20, population_size=25, seed=7)
    part.run(budget=170)
    state = pickle.loads(pickle.dumps(part.state_dict()))
    del part
    resumed = GP.from_state(state, evaluate_nguyen1)
    resumed.run(budget=300)
    assert resumed.evaluated == full.evaluated
    assert resumed.best_reward == full.best_reward


def test_record_counts_and_is_never_refitted():
    counting = Counting(evaluate_nguyen1)
    gp = GP(NGUYEN, counting, max_length=20, population_size=20, seed=0)
    (res,) = evaluate_nguyen1(["x*x*x+x*x+x"])
    assert gp.record("x*x*x+x*x+x", res)
    assert not gp.record("x*x*x+x*x+x", res)
    assert gp.n_evaluations == 1 and gp.lookup("x*x*x+x*x+x") is res
    assert gp.best_result is res
    gp.run(budget=300)
    assert "x*x*x+x*x+x" not in counting.seen
    assert len(gp.evaluated) == gp.n_evaluations == len(counting.seen) + 1


def test_callbacks_see_the_whole_batch_cached():
    counting = Counting(evaluate_nguyen1)
    gp = GP(NGUYEN, counting, max_length=20, population_size=20, seed=3)
    refitted = []

    def callback(res):  # a local move that tries to record the other members of the batch
        last = counting.seen[-counting.batch :]
        refitted.extend(e for e in last if gp.record(e, FitResult(e, rmse_train=0.0)))

    def wrapped(expressions):
        counting.batch = len(expressions)
        return counting(expressions)

    gp.evaluate = wrapped
    gp.run(budget=100, callback=callback)
    assert refitted == []
    assert len(gp.evaluated) == len(set(gp.evaluated)) == gp.n_evaluations


def test_from_state_rejects_other_states():
    from mctsff.engines.mcts import MCTS

    mcts = MCTS(NGUYEN, evaluate_nguyen1, max_length=12)
    with pytest.raises(ValueError, match="not a GP state"):
        GP.from_state(mcts.state_dict(), evaluate_nguyen1)


def test_small_space_is_exhausted_after_fitting_everything():
    g = Grammar.from_text('start: "x" | "x+x" | "x*x" | start "-" "x"', name="tiny")
    counting = Counting(_mock_evaluate)
    gp = GP(g, counting, max_length=3, population_size=10, seed=0, stale_limit=500)
    progress = gp.run(budget=1000)
    assert progress.exhausted and gp.exhausted
    assert sorted(gp.evaluated) == sorted(
        ["x", "x+x", "x*x", "x-x", "x+x-x", "x*x-x", "x-x-x", "x+x-x-x", "x*x-x-x"]
    )
    assert gp.step() == []


def test_finds_nguyen1_with_mock_free_objective():
    gp = GP(NGUYEN, evaluate_nguyen1, max_length=20, seed=0)
    progress = gp.run(budget=3000, should_stop=lambda: solved(gp.best_result))
    assert solved(progress.best_result), progress.best_expression


@pytest.mark.parametrize(
    "kw",
    [
        {"population_size": 1},
        {"tournament_size": 0},
        {"p_crossover": 0.8, "p_mutation": 0.3},
        {"elitism": 100},
        {"batch_size": 0},
        {"max_length": 2},
        {"screen": 0},
    ],
)
def test_bad_settings(kw):
    with pytest.raises(ValueError):
        GP(NGUYEN, _mock_evaluate, **kw)


# ----------------------------------------------------------------------------- surrogate
def share_with_r12(gp: GP) -> float:
    return float(np.mean(["r**12" in e for e in gp.evaluated]))


def test_surrogate_screens_the_offspring():
    counting = Counting(evaluate_by_length)
    kw = dict(max_length=16, population_size=20, seed=3)
    plain = GP(PAIR, evaluate_by_length, **kw)
    guided = GP(PAIR, counting, surrogate=prefers_r12, **kw)
    plain.run(budget=150)
    guided.run(budget=150)
    assert guided.use_surrogate and not plain.use_surrogate
    assert share_with_r12(guided) > max(5 * share_with_r12(plain), 0.3)  # 0.55 vs 0.05
    # screening only chooses what is fitted: still never the same expression twice
    assert len(counting.seen) == len(set(counting.seen)) == guided.n_evaluations
    # with one draw per offspring there is nothing to choose among: not asked
    asked = []
    one = GP(PAIR, evaluate_by_length, screen=1, surrogate=lambda e: asked.append(e) or 0.0, **kw)
    one.run(budget=40)
    ref = GP(PAIR, evaluate_by_length, **kw)
    ref.run(budget=40)
    assert asked == [] and one.evaluated == ref.evaluated


def test_surrogate_is_not_saved_and_a_resumed_gp_takes_it_again():
    kw = dict(max_length=16, population_size=20, seed=4, surrogate=prefers_r12)
    full = GP(PAIR, evaluate_by_length, **kw)
    full.run(budget=150)
    part = GP(PAIR, evaluate_by_length, **kw)
    part.run(budget=60)
    state = pickle.loads(pickle.dumps(part.state_dict()))
    assert "surrogate" not in state and state["use_surrogate"] is True
    resumed = GP.from_state(state, evaluate_by_length, surrogate=prefers_r12)
    resumed.run(budget=150)
    assert resumed.evaluated == full.evaluated
    # a state of an earlier format is refused, not patched
    state = part.state_dict()
    state["_version"] -= 1
    with pytest.raises(ValueError, match="version"):
        GP.from_state(pickle.loads(pickle.dumps(state)), evaluate_by_length)


# ----------------------------------------------------------------------------- façade
def test_recovers_nguyen1_in_regression_mode():
    data, truth = nguyen(1, seed=0)
    fitter = RegressionFitter(data, n_starts=1)
    res = search(fitter, "nguyen", method="gp", budget=1500, seed=0, max_length=20)
    assert isinstance(res.mcts, GP)
    best = res.best
    assert best.rmse_train < 1e-10
    x = sympy.Symbol("x")
    model = sympy.sympify(best.expression, locals={"x": x})  # scale/offset if scaled
    model = model.subs({sympy.Symbol(k): round(v, 9) for k, v in best.params.items()})
    assert sympy.simplify(model - sympy.sympify(truth, locals={"x": x})) == 0


def test_search_gp_writes_the_same_outputs(screened, tmp_path):
    train, valid = screened
    # the fixture's screened Coulomb is attractive between H and O at every distance: no
    # form under the repulsive wall beats U = 0 on it, so the wall is off here
    fitter = Fitter(train, valid, constraints=(), n_starts=2, wall=None)
    names = {}
    for method in ("mcts", "gp"):
        out = tmp_path / method
        res = search(fitter, "pair", budget=30, seed=0, out=out, method=method)
        assert res.n_evaluations >= 30 and len(res.front)
        names[method] = sorted(p.name for p in out.iterdir())
        pts = json.loads((out / "pareto.json").read_text())
        assert len(pts) == len(res.front)
        cx = [p["complexity"] for p in pts]
        assert cx == sorted(cx)
        for name in names[method]:
            assert (out / name).stat().st_size > 0
    assert names["gp"] == names["mcts"]
    assert {"pareto.json", "pareto.csv", "pareto.png", "checkpoint.pkl"} <= set(names["gp"])
    run = tmp_path / "gp" / "run.json"
    if run.exists():
        assert json.loads(run.read_text()).get("method", "gp") == "gp"


def test_search_gp_resume_equals_uninterrupted(tmp_path):
    data, _ = nguyen(1, seed=0)
    fitter = RegressionFitter(data, n_starts=1)
    opts = {"population_size": 20}
    full = search(fitter, "nguyen", method="gp", budget=120, seed=2, max_length=16, gp_options=opts)
    search(fitter, "nguyen", method="gp", budget=50, seed=2, max_length=16, out=tmp_path,
           gp_options=opts)  # fmt: skip
    with pytest.raises(SearchError, match="method='gp'"):
        search(fitter, "nguyen", method="mcts", budget=120, out=tmp_path, resume=True)
    resumed = search(fitter, "nguyen", method="gp", budget=120, out=tmp_path, resume=True)
    assert resumed.mcts.evaluated == full.mcts.evaluated
    with pytest.raises(SearchError, match="unknown search method"):
        search(fitter, "nguyen", method="annealing", budget=10)


def test_cli_method_gp(tmp_path, capsys):
    from mctsff.cli import main

    data, _ = nguyen(1, seed=0)
    csv = tmp_path / "n1.csv"
    data.to_csv(csv)
    argv = ["search", str(csv), "--objective", "regression", "--grammar", "nguyen"]
    out = tmp_path / "run"  # a new folder: the data's folder is not empty
    argv += ["--method", "gp", "--budget", "60", "--max-length", "16", "--out", str(out)]
    assert main([*argv, "--no-progress"]) == 0
    assert "expressions fitted" in capsys.readouterr().out
    with open(out / "checkpoint.pkl", "rb") as fh:
        assert pickle.load(fh)["method"] == "gp"

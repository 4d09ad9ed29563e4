"""Tests of mctsff.engines.mcts with a real (cheap) objective: RMSE on a 1-D table."""

from __future__ import annotations

import math
import pickle
import re

import numpy as np
import pytest
import scipy.optimize

from mctsff.engines.mcts import MCTS
from mctsff.engines.pareto import ParetoFront
from mctsff.engines.reward import SPLReward, TradeoffReward
from mctsff.expr.grammar import Grammar
from mctsff.expr.tree import Derivation, complete_subtrees, derive
from mctsff.fit.result import FitResult

X = np.random.default_rng(123).uniform(-1.0, 1.0, 20)
Y_NGUYEN1 = X**3 + X**2 + X
NS = {"sin": np.sin, "cos": np.cos, "exp": np.exp, "log": np.log, "__builtins__": {}}


def fit_expression(expr: str, y: np.ndarray, grammar: Grammar) -> FitResult:
    """Least-squares fit of the constants c1, c2, ... of ``expr`` (from 1), RMSE loss."""
    names = sorted(set(re.findall(r"\bc\d+\b", expr)), key=lambda c: int(c[1:]))
    code = compile(expr, "<expr>", "eval")
    complexity = grammar.complexity(expr)

    def model(theta):
        env = {"x": X, **dict(zip(names, theta, strict=True))}
        with np.errstate(all="ignore"):
            return np.broadcast_to(eval(code, NS, env), X.shape).astype(float)

    theta = np.ones(len(names))
    if names:
        with np.errstate(all="ignore"):
            try:
                sol = scipy.optimize.least_squares(lambda t: model(t) - y, theta, max_nfev=50)
                theta = sol.x
            except ValueError:
                pass
    resid = model(theta) - y
    rmse = float(np.sqrt(np.mean(resid**2)))
    if not math.isfinite(rmse):
        return FitResult.invalid(expr, "non-finite prediction", complexity)
    params = dict(zip(names, map(float, theta), strict=True))
    return FitResult(expr, complexity, rmse_train=rmse, loss=rmse**2, params=params)


NGUYEN = Grammar.load("nguyen")


def evaluate_nguyen1(expressions: list[str]) -> list[FitResult]:
    """Module-level (picklable) evaluator of Nguyen-1."""
    return [fit_expression(e, Y_NGUYEN1, NGUYEN) for e in expressions]


class Counting:
    """Evaluator wrapper recording every expression it is asked to fit."""

    def __init__(self, evaluate):
        self.evaluate = evaluate
        self.seen: list[str] = []
        self.calls = 0

    def __call__(self, expressions):
        self.calls += 1
        self.seen.extend(expressions)
        return self.evaluate(expressions)


def solved(result: FitResult) -> bool:
    return result is not None and result.valid and result.rmse_train < 1e-10


def test_finds_nguyen1_within_small_budget():
    hits: list[int] = []
    front = ParetoFront()
    search = MCTS(NGUYEN, evaluate_nguyen1, max_length=20, seed=0)

    def callback(result):
        front.update(result)
        if solved(result) and not hits:
            hits.append(search.n_evaluations)

    progress = search.run(budget=3000, callback=callback, should_stop=lambda: bool(hits))
    assert hits, progress.best_expression
    assert progress.best_reward > 0.998
    assert solved(progress.best_result)
    assert front.best().score_loss < 1e-10
    assert progress.n_evaluations == len(search.evaluated) == len(search.results)
    assert all(p in search.results for p in front.points)


def test_finds_nguyen1_with_transplantation():
    search = MCTS(NGUYEN, evaluate_nguyen1, max_length=30, seed=0, transplant=True)
    search.transplant_every = 100
    search._next_transplant = 100
    progress = search.run(budget=3000, should_stop=lambda: solved(search.best_result))
    assert solved(progress.best_result)
    assert search.macros  # transplantation added macro-actions
    g = search.grammar
    for lhs, actions in search.macros:
        # a macro is a complete sub-derivation of its left-hand side
        assert g.productions[actions[0]].lhs == g.nonterminals[lhs]
        assert 2 <= len(actions) <= search.transplant_max_length


def run_sequence(seed: int, budget: int, **kw) -> list[str]:
    search = MCTS(NGUYEN, evaluate_nguyen1, max_length=20, seed=seed, **kw)
    search.run(budget=budget)
    return search.evaluated


def test_same_seed_same_sequence():
    a = run_sequence(3, 300)
    b = run_sequence(3, 300)
    c = run_sequence(4, 300)
    assert a == b
    assert a != c
    assert len(a) >= 300


def test_pickle_resume_equals_uninterrupted():
    full = MCTS(NGUYEN, evaluate_nguyen1, max_length=20, seed=7, transplant=True)
    full.transplant_every = 50
    full._next_transplant = 50
    full.run(budget=400)

    part = MCTS(NGUYEN, evaluate_nguyen1, max_length=20, seed=7, transplant=True)
    part.transplant_every = 50
    part._next_transplant = 50
    part.run(budget=150)
    n_before = part.n_evaluations
    resumed = pickle.loads(pickle.dumps(part))
    del part
    resumed.run(budget=400)
    assert resumed.evaluated == full.evaluated
    assert resumed.evaluated[:n_before] == full.evaluated[:n_before]
    assert resumed.progress.best_expression == full.progress.best_expression
    assert resumed.n_nodes == full.n_nodes and resumed.macros == full.macros


def test_save_load_resume_equals_uninterrupted(tmp_path):
    full = MCTS(NGUYEN, evaluate_nguyen1, max_length=20, seed=11)
    full.run(budget=300)

    part = MCTS(NGUYEN, Counting(evaluate_nguyen1), max_length=20, seed=11)
    part.run(budget=120)
    path = tmp_path / "search.pkl"
    part.save(path)
    counting = Counting(evaluate_nguyen1)
    resumed = MCTS.load(path, counting)
    resumed.run(budget=300)
    assert resumed.evaluated == full.evaluated
    # the resumed search re-fits nothing it had already fitted
    assert set(counting.seen).isdisjoint(resumed.evaluated[: part.n_evaluations])


def test_custom_reward_changes_search():
    base = MCTS(NGUYEN, evaluate_nguyen1, max_length=20, seed=2)
    base.run(budget=300)

    def accuracy_only(result: FitResult) -> float:  # no parsimony, steep in the loss
        return 0.0 if not result.valid else math.exp(-10.0 * result.score_loss)

    custom = MCTS(NGUYEN, evaluate_nguyen1, reward=accuracy_only, max_length=20, seed=2)
    custom.run(budget=300)
    tradeoff = MCTS(
        NGUYEN, evaluate_nguyen1, reward=TradeoffReward(alpha=0.05), max_length=20, seed=2
    )
    tradeoff.run(budget=300)
    assert custom.evaluated != base.evaluated
    assert tradeoff.evaluated != base.evaluated
    # the rewards recorded are the custom ones
    assert custom.best_reward == pytest.approx(accuracy_only(custom.best_result))
    with pytest.raises(ValueError, match="custom reward"):
        MCTS.from_state(custom.state_dict(), evaluate_nguyen1)
    restored = MCTS.from_state(custom.state_dict(), evaluate_nguyen1, reward=accuracy_only)
    assert restored.reward is accuracy_only


def test_transposition_no_expression_evaluated_twice():
    counting = Counting(evaluate_nguyen1)
    new: list[FitResult] = []
    search = MCTS(NGUYEN, counting, max_length=12, n_rollouts=20, seed=0)
    search.run(budget=500, callback=new.append)
    assert len(counting.seen) == len(set(counting.seen)) == search.n_evaluations
    assert [r.expression for r in new] == counting.seen == search.evaluated
    assert search.n_iterations > counting.calls  # some iterations found only known expressions
    assert search.lookup(counting.seen[0]) is new[0]


def test_canonical_key_merges_equivalent_expressions():
    counting = Counting(evaluate_nguyen1)

    def canonical(expr: str) -> str:  # x*x and x*x with reordered factors count once
        return "".join(sorted(expr))

    search = MCTS(NGUYEN, counting, max_length=10, seed=0, canonical=canonical)
    search.run(budget=200)
    keys = [canonical(e) for e in counting.seen]
    assert len(keys) == len(set(keys))


def test_exhausts_finite_space_and_enumerates_it_once():
    lj = Grammar.load("lj")

    def enumerate_all(d: Derivation, max_length: int) -> set[str]:
        if d.is_complete:
            return {d.expression()}
        out: set[str] = set()
        for a in d.legal_actions(max_length):
            out |= enumerate_all(d.apply(a), max_length)
        return out

    everything = enumerate_all(Derivation.initial(lj), 6)

    def evaluate(expressions):
        return [
            FitResult(e, complexity=lj.complexity(e), rmse_train=len(e) / 100) for e in expressions
        ]

    search = MCTS(lj, evaluate, max_length=6, n_rollouts=3, seed=0)
    progress = search.run(budget=10**6)
    assert progress.exhausted and search.exhausted
    assert sorted(search.evaluated) == sorted(everything)
    assert search.step() == []  # nothing left to do
    best = max(search.reward(r) for r in evaluate(sorted(everything)))
    assert progress.best_reward == best


def test_constants_fitted_by_evaluator():
    g = Grammar.load("nguyen_c")
    y = 2.5 * X**2 - 0.5

    def evaluate(expressions):
        return [fit_expression(e, y, g) for e in expressions]

    search = MCTS(g, evaluate, reward=SPLReward(eta=0.99), max_length=12, seed=1)
    progress = search.run(budget=600, should_stop=lambda: search.best_reward > 0.9)
    assert progress.best_result.rmse_train < 1e-6, progress.best_expression


def test_stops_on_time_and_validates_arguments():
    search = MCTS(NGUYEN, evaluate_nguyen1, max_length=20, seed=0)
    progress = search.run(time_limit=0.05)
    assert progress.n_iterations >= 1 and progress.elapsed < 1.0
    with pytest.raises(ValueError):
        search.run()
    with pytest.raises(ValueError, match="max_length"):
        MCTS(NGUYEN, evaluate_nguyen1, max_length=2)

    def broken(expressions):
        return []

    with pytest.raises(RuntimeError, match="returned 0 results"):
        MCTS(NGUYEN, broken, max_length=10).run(budget=5)


def test_rollout_policies():
    lengths = {}
    for policy in ("uniform", "ramped", "mixed"):
        search = MCTS(NGUYEN, evaluate_nguyen1, max_length=20, seed=0, rollout=policy, mast=0)
        root = search.root.state
        lengths[policy] = np.mean([search._rollout(root).n_productions for _ in range(400)])
    # ramped caps spread the lengths down to the shortest; mixed is half ramped, half uniform
    assert lengths["ramped"] < lengths["mixed"] < lengths["uniform"]
    with pytest.raises(ValueError, match="rollout"):
        MCTS(NGUYEN, evaluate_nguyen1, rollout="greedy")
    with pytest.raises(ValueError, match="mast"):
        MCTS(NGUYEN, evaluate_nguyen1, mast=-1.0)


def test_mast_rollouts_favour_rewarded_productions():
    pair = Grammar.load("pair")
    r12 = next(p.index for p in pair.productions if p.alias == "r12")

    def evaluate(expressions):  # reward 1 with r**12, 1/11 without
        return [
            FitResult(e, complexity=1, rmse_train=0.0 if "r**12" in e else 10.0)
            for e in expressions
        ]

    def share_r12(mast: float) -> float:
        search = MCTS(pair, evaluate, SPLReward(eta=1.0), max_length=16, seed=0, mast=mast)
        assert search._rollout_weights() is None  # nothing learnt yet
        search.run(budget=150)
        if mast:
            weights = search._rollout_weights()
            assert weights[r12] == max(weights) == 1.0
        return np.mean(["r**12" in e for e in search.evaluated])

    assert share_r12(0.2) > share_r12(0.0) + 0.1


def test_a_state_of_an_earlier_format_is_refused():
    search = MCTS(NGUYEN, evaluate_nguyen1, max_length=20, seed=5)
    search.run(budget=20)
    state = search.state_dict()
    state["_version"] -= 1  # a state saved before the current format: refused, not patched
    with pytest.raises(ValueError, match="version"):
        MCTS.from_state(pickle.loads(pickle.dumps(state)), evaluate_nguyen1)


def assert_visit_counts(search: MCTS) -> None:
    """Every node's count is its own expansion plus its children's (no virtual visit left)."""

    def check(node):
        own = 0 if node is search.root else 1
        assert node.n == own + sum(ch.n for ch in node.children.values())
        for ch in node.children.values():
            check(ch)

    check(search.root)


def test_several_leaves_per_iteration_batch_their_rollouts():
    counting = Counting(evaluate_nguyen1)
    search = MCTS(NGUYEN, counting, max_length=20, seed=3, leaves=4, n_rollouts=3)
    search.step()  # the start symbol has one production: one leaf only
    assert search.n_iterations == 1 and counting.calls == 1
    search.step()
    search.step()
    assert search.n_iterations == 8 and search.n_nodes == 9
    assert counting.calls == 3 and len(counting.seen) <= 1 * 3 + 8 * 3
    assert search._pending == {}

    assert search.root.n == 8
    assert_visit_counts(search)
    # reproducible, resumable, and it still solves Nguyen-1
    assert run_sequence(3, 200, leaves=4) == run_sequence(3, 200, leaves=4)
    assert run_sequence(3, 200, leaves=4) != run_sequence(3, 200)
    part = MCTS(NGUYEN, evaluate_nguyen1, max_length=20, seed=2, leaves=3)
    part.run(budget=100)
    resumed = pickle.loads(pickle.dumps(part))
    resumed.run(budget=300)
    assert resumed.evaluated == run_sequence(2, 300, leaves=3)
    search = MCTS(NGUYEN, evaluate_nguyen1, max_length=20, seed=0, leaves=4)
    search.run(budget=3000, should_stop=lambda: solved(search.best_result))
    assert solved(search.best_result)
    with pytest.raises(ValueError, match="leaves"):
        MCTS(NGUYEN, evaluate_nguyen1, leaves=0)


def test_failed_batch_of_leaves_commits_nothing():
    calls = {"n": 0}

    def flaky(expressions):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return evaluate_nguyen1(expressions)

    search = MCTS(NGUYEN, flaky, max_length=20, seed=4, leaves=3)
    search.step()
    search.step()

    def snapshot(node, out, where=()):
        out[where] = (node.n, list(node.untried), node.w)
        for a, c in node.children.items():
            snapshot(c, out, (*where, a))
        return out

    before = snapshot(search.root, {})
    with pytest.raises(KeyboardInterrupt):
        search.step()
    after = snapshot(search.root, {})
    assert after.keys() == before.keys() and search._pending == {}
    for where, (n, untried, w) in after.items():
        # visits and untried actions restored exactly; the value sums up to rounding
        # (adding then removing a virtual loss, w + l - l, may differ from w in the last bit)
        assert (n, untried) == before[where][:2], where
        assert w == pytest.approx(before[where][2], rel=1e-12, abs=1e-12), where
    n = search.n_iterations
    search.step()  # and it goes on
    assert search.n_iterations > n


def test_canonical_keys_are_computed_once_per_expression():
    calls: list[str] = []

    def canonical(expression):
        calls.append(expression)
        return expression.replace(" ", "")

    search = MCTS(NGUYEN, evaluate_nguyen1, max_length=20, seed=0, canonical=canonical)
    search.run(budget=150)
    assert len(calls) == len(set(calls)) and len(calls) >= search.n_evaluations
    assert "_key_memo" not in search.state_dict()  # rebuilt, not checkpointed
    resumed = MCTS.from_state(search.state_dict(), evaluate_nguyen1, canonical=canonical)
    assert resumed._key_memo == {} and resumed.lookup(search.evaluated[0]) is not None


class Deferred(Counting):
    """Evaluator with ``submit``: fits only when the result is asked for (like workers)."""

    def submit(self, expressions):
        exprs = list(expressions)
        box: dict = {}
        outer = self

        class Handle:
            def result(self):
                if "out" not in box:
                    box["out"] = outer(exprs)
                return box["out"]

        return Handle()


def test_pipelined_iterations_are_reproducible_resumable_and_complete():
    def run(budget, pipeline, evaluate=None, seed=6):
        search = MCTS(
            NGUYEN,
            evaluate or Deferred(evaluate_nguyen1),
            max_length=20,
            seed=seed,
            pipeline=pipeline,
        )
        search.run(budget=budget)
        return search

    a, b = run(300, 1), run(300, 1)
    assert a.evaluated == b.evaluated and a.evaluated != run(300, 0).evaluated
    # an evaluator without submit gives the same sequence (fitted at commit time)
    assert run(300, 1, evaluate=evaluate_nguyen1).evaluated == a.evaluated
    assert len(set(a.evaluated)) == len(a.evaluated)
    # pickled with an iteration in flight, resumed: the same sequence
    part = run(120, 2)
    assert part._inflight
    resumed = pickle.loads(pickle.dumps(part))
    assert all(p.handle is None for p in resumed._inflight)
    resumed.evaluate = Deferred(evaluate_nguyen1)
    resumed.run(budget=300)
    assert resumed.evaluated == run(300, 2).evaluated
    # virtual losses are all removed once nothing is in flight
    search = run(200, 1)
    while search._inflight:
        search._commit(search._inflight.pop(0), None)
    assert search._pending == {}

    assert_visit_counts(search)
    solver = MCTS(NGUYEN, Deferred(evaluate_nguyen1), max_length=20, seed=0, pipeline=1)
    solver.run(budget=3000, should_stop=lambda: solved(solver.best_result))
    assert solved(solver.best_result)
    with pytest.raises(ValueError, match="pipeline"):
        MCTS(NGUYEN, evaluate_nguyen1, pipeline=-1)


@pytest.mark.parametrize("leaves, pipeline", [(5, 0), (1, 2), (3, 2)])
def test_virtual_losses_still_enumerate_a_finite_space_exactly_once(leaves, pipeline):
    lj = Grammar.load("lj")

    def evaluate(expressions):
        return [FitResult(e, complexity=1, rmse_train=len(e) / 100) for e in expressions]

    one = MCTS(lj, evaluate, max_length=6, n_rollouts=3, seed=0)
    one.run(budget=10**6)
    deferred = Deferred(evaluate)
    many = MCTS(lj, deferred, max_length=6, n_rollouts=3, seed=0, pipeline=pipeline, leaves=leaves)
    assert many.run(budget=10**6).exhausted
    assert sorted(many.evaluated) == sorted(one.evaluated)
    assert len(deferred.seen) == len(set(deferred.seen))  # nothing fitted twice


def test_elite_rollouts_copy_sub_derivations_of_the_best_expressions():
    search = MCTS(NGUYEN, evaluate_nguyen1, max_length=20, seed=2, elite=1.0, elite_top=5)
    search.run(budget=200)
    top = sorted(search._rewards, key=search._rewards.get, reverse=True)[:5]
    best = {search._key(search._cache[k].expression) for k in top}
    subs = search._elite_subtrees()
    g = search.grammar
    for nt, options in subs.items():
        for actions in options:
            assert g.productions[actions[0]].lhs == g.nonterminals[nt]  # rooted at nt
            assert 1 <= len(actions) < search.max_length
    # from the start symbol, a rollout that copies whenever it can often rebuilds a best one
    # (uniform rollouts: the length cap admits every best expression)
    search.rollout = "uniform"
    start = search.root.state
    rollouts = [search._rollout(start) for _ in range(200)]
    assert all(d.is_complete and d.n_productions <= search.max_length for d in rollouts)
    share = np.mean([search._key(d.expression()) in best for d in rollouts])
    plain = MCTS(NGUYEN, evaluate_nguyen1, max_length=20, seed=2)
    plain.run(budget=200)
    plain.rollout = "uniform"
    share_plain = np.mean([plain._key(plain._rollout(start).expression()) in best
                           for _ in range(200)])  # fmt: skip
    assert share > 0.3 and share > 3 * share_plain
    with pytest.raises(ValueError, match="elite"):
        MCTS(NGUYEN, evaluate_nguyen1, elite=1.5)
    with pytest.raises(ValueError, match="elite_top"):
        MCTS(NGUYEN, evaluate_nguyen1, elite=0.3, elite_top=0)


def test_elite_search_solves_and_resumes_identically():
    full = MCTS(NGUYEN, evaluate_nguyen1, max_length=20, seed=4, elite=0.3, transplant=True)
    full.run(budget=400)
    part = MCTS(NGUYEN, evaluate_nguyen1, max_length=20, seed=4, elite=0.3, transplant=True)
    part.run(budget=150)
    resumed = MCTS.from_state(pickle.loads(pickle.dumps(part.state_dict())), evaluate_nguyen1)
    resumed.run(budget=400)
    assert resumed.evaluated == full.evaluated
    solver = MCTS(NGUYEN, evaluate_nguyen1, max_length=20, seed=0, elite=0.3)
    solver.run(budget=3000, should_stop=lambda: solved(solver.best_result))
    assert solved(solver.best_result)


def test_best_keys_kept_incrementally_rank_like_a_full_sort():
    import heapq

    def tied(exprs):  # few distinct rewards: many ties, broken by evaluation order
        return [FitResult(e, complexity=1, rmse_train=float(len(e) % 5)) for e in exprs]

    search = MCTS(NGUYEN, tied, max_length=20, seed=3, elite=0.3, elite_top=7)
    for budget in (1, 30, 400):
        search.run(budget=budget)
        for n in (1, 5, 7):
            want = heapq.nlargest(n, search._rewards, key=search._rewards.__getitem__)
            assert search._best_keys(n) == want
    resumed = MCTS.from_state(pickle.loads(pickle.dumps(search.state_dict())), tied)
    assert resumed._best_keys(7) == search._best_keys(7)
    resumed.run(budget=600)
    want = heapq.nlargest(7, resumed._rewards, key=resumed._rewards.__getitem__)
    assert resumed._best_keys(7) == want


PAIR = Grammar.load("pair")


def evaluate_by_length(expressions: list[str]) -> list[FitResult]:
    """A cheap deterministic stand-in objective (longer text: lower loss)."""
    return [FitResult(e, complexity=1, rmse_train=1.0 / len(e)) for e in expressions]


def distinct_terms(search: MCTS) -> int:
    """Distinct complete ``term`` sub-derivations among the expressions fitted."""
    term = PAIR.nonterminals.index("term")
    blocks = set()
    for actions in search._actions.values():
        blocks |= {b for b in complete_subtrees(PAIR, actions) if b[0] == term}
    return len(blocks)


def test_novelty_rollouts_cover_more_terms_of_a_sum():
    plain, novel = [], []
    for seed in range(3):
        for novelty, out in ((1, plain), (8, novel)):
            search = MCTS(PAIR, evaluate_by_length, max_length=16, seed=seed, novelty=novelty)
            search.run(budget=200)
            assert search.n_evaluations >= 200
            out.append(distinct_terms(search))
    assert all(n > p for n, p in zip(novel, plain, strict=True))
    assert sum(novel) > 1.25 * sum(plain)
    # every block of every rollout kept is remembered, and nothing else
    seen = set()
    for actions in search._actions.values():
        seen |= search._block_set(derive(PAIR, actions))
    assert seen <= search._blocks
    with pytest.raises(ValueError, match="novelty"):
        MCTS(PAIR, evaluate_by_length, novelty=0)


def test_novelty_leaves_grammars_without_blocks_unchanged():
    # every nonterminal of nguyen is recursive: no blocks, the same draws and fits
    assert MCTS(NGUYEN, evaluate_nguyen1)._block_nts == frozenset()
    runs = []
    for novelty in (1, 8):
        search = MCTS(NGUYEN, evaluate_nguyen1, max_length=20, seed=3, novelty=novelty)
        search.run(budget=150)
        runs.append(search.evaluated)
    assert runs[0] == runs[1]


def test_novelty_search_resumes_identically():
    full = MCTS(PAIR, evaluate_by_length, max_length=16, seed=9)
    full.run(budget=250)
    part = MCTS(PAIR, evaluate_by_length, max_length=16, seed=9)
    part.run(budget=100)
    resumed = MCTS.from_state(pickle.loads(pickle.dumps(part.state_dict())), evaluate_by_length)
    resumed.run(budget=250)
    assert resumed.evaluated == full.evaluated
    assert "_block_nts" not in part.state_dict()  # derived from the grammar on restore


def test_covering_rollouts_propose_every_term_once_before_repeating_one():
    # 'term' is the only top block of pair: a sum's terms, derived by the recursive potential
    search = MCTS(PAIR, evaluate_by_length, max_length=16, seed=4)
    assert [PAIR.nonterminals[i] for i in search._top_nts] == ["term"]
    assert search.cover and search.n_rollouts == 3
    search.run(budget=60)
    # rollouts from nodes with no complete term share one context: no term twice in it
    root = search._covered[frozenset()]
    terms = [b for b in root if b[0] == PAIR.nonterminals.index("term")]
    assert len(terms) >= 100
    assert distinct_terms(search) >= 100
    # the same budget without covering resamples the likeliest terms
    plain = MCTS(PAIR, evaluate_by_length, max_length=16, seed=4, cover=False)
    plain.run(budget=60)
    assert distinct_terms(search) > 1.15 * distinct_terms(plain)
    # every expression proposed is still a derivation of the grammar within max_length
    assert all(len(a) <= 16 for a in search._actions.values())


def test_covering_is_off_for_plain_rollouts_and_grammars_without_blocks():
    a = MCTS(PAIR, evaluate_by_length, max_length=16, seed=2, novelty=1)
    b = MCTS(PAIR, evaluate_by_length, max_length=16, seed=2, novelty=1, cover=False)
    a.run(budget=80)
    b.run(budget=80)
    assert a.evaluated == b.evaluated and not a._covered
    assert MCTS(NGUYEN, evaluate_nguyen1)._top_nts == frozenset()


def test_a_covering_search_resumes_identically():
    ref = MCTS(PAIR, evaluate_by_length, max_length=16, seed=5)
    ref.run(budget=60)
    state = pickle.loads(pickle.dumps(ref.state_dict()))
    assert "_top_nts" not in state  # derived from the grammar on restore
    resumed = MCTS.from_state(state, evaluate_by_length)
    ref.run(budget=150)
    resumed.run(budget=150)
    assert resumed.evaluated == ref.evaluated and resumed._covered == ref._covered


def prefers_r12(expression: str) -> float:
    """A surrogate that likes every expression holding an inverse 12th power."""
    return 0.0 if "r**12" in expression else 1.0


def share_with_r12(search: MCTS) -> float:
    return float(np.mean(["r**12" in e for e in search.evaluated]))


def test_surrogate_chooses_among_the_novel_rollouts():
    # averaged over seeds: with the damped monomials in pair (issue 32) more rollouts
    # bring a new term, and one seed's share moves a lot (measured over seeds 6-13:
    # 0.17 without the surrogate, 0.24 with it, higher with it for 6 of the 8)
    plain_shares, guided_shares = [], []
    for seed in range(6, 14):
        plain = MCTS(PAIR, evaluate_by_length, max_length=16, seed=seed)
        guided = MCTS(PAIR, evaluate_by_length, max_length=16, seed=seed, surrogate=prefers_r12)
        plain.run(budget=120)
        guided.run(budget=120)
        assert guided.use_surrogate and not plain.use_surrogate
        plain_shares.append(share_with_r12(plain))
        guided_shares.append(share_with_r12(guided))
    assert np.mean(guided_shares) > 1.25 * np.mean(plain_shares)
    # coverage goes on: the rollouts kept still bring new terms
    assert distinct_terms(guided) >= 100
    # without novelty there is nothing to choose among: the surrogate is not asked
    asked = []
    one = MCTS(
        PAIR,
        evaluate_by_length,
        max_length=16,
        seed=6,
        novelty=1,
        surrogate=lambda e: asked.append(e) or 0.0,
    )
    one.run(budget=40)
    assert asked == []


def test_surrogate_is_not_saved_and_a_resumed_search_takes_it_again():
    full = MCTS(PAIR, evaluate_by_length, max_length=16, seed=8, surrogate=prefers_r12)
    full.run(budget=150)
    part = MCTS(PAIR, evaluate_by_length, max_length=16, seed=8, surrogate=prefers_r12)
    part.run(budget=60)
    state = pickle.loads(pickle.dumps(part.state_dict()))  # a lambda would not pickle
    assert "surrogate" not in state and state["use_surrogate"] is True
    resumed = MCTS.from_state(state, evaluate_by_length, surrogate=prefers_r12)
    resumed.run(budget=150)
    assert resumed.evaluated == full.evaluated


@pytest.mark.parametrize("credit", [False, True])
def test_credit_backs_an_outside_result_up_its_derivation(credit):
    search = MCTS(PAIR, evaluate_by_length, max_length=16, seed=3, credit=credit)
    search.run(budget=30)
    expr = "c1/r**12-c2/r**6+prod_c1/r"  # fitted outside the tree, like a proposal
    assert search.lookup(expr) is None
    assert search.record(expr, FitResult(expr, complexity=0, rmse_train=0.0))
    actions = search._actions[search._key(expr)]
    path = [search.root]
    for a in actions:
        if a not in path[-1].children:
            break
        path.append(path[-1].children[a])
    assert len(path) >= 2  # the tree has expanded at least its first production
    before = [(node.n, node.w) for node in path]
    prod = (search._prod_n[actions[0]], search._prod_w[actions[0]])
    assert search.credit(expr) is credit
    r = search._rewards[search._key(expr)]
    for node, (n, w) in zip(path, before, strict=True):
        assert (node.n, node.w) == ((n + 1, w + r) if credit else (n, w))
    grown = (prod[0] + 1, prod[1] + r) if credit else prod
    assert (search._prod_n[actions[0]], search._prod_w[actions[0]]) == grown
    assert search.credit("c1/r**4") is False  # not recorded: nothing to back up

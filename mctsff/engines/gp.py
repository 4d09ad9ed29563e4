"""Grammar-guided genetic programming (GP) over complete derivations of a grammar.

An alternative search engine to :class:`mctsff.engines.mcts.MCTS` with the same
interface (``step``, ``run``, ``state_dict``/``from_state``, ``record``,
``lookup``, ``n_evaluations``, ``evaluated``, ``results``, ``exhausted``,
``progress``), so :func:`mctsff.search.search` (``method="gp"``) drives either
with the same fitter, reward, transposition cache, local moves, Pareto
archive, budget and checkpoint.

Individuals are complete leftmost derivations, stored as their production
sequences.  A leftmost derivation lists the derivation tree in pre-order, so
every sub-derivation (the productions that expand one nonterminal occurrence)
is a contiguous slice of the sequence; swapping or regrowing such a slice gives
another valid leftmost derivation.

* **Initial population**: ramped random derivations: rollouts
  (:meth:`~mctsff.expr.tree.Derivation.rollout`) whose length cap cycles through
  ``min_length(start) … max_length``.
* **Selection**: tournaments of ``tournament_size`` on the reward.
* **Crossover** (probability ``p_crossover``): a random sub-derivation of one
  parent is replaced by a sub-derivation of the other parent rooted at the same
  nonterminal, provided the child has at most ``max_length`` productions (a
  parent pair without such a point falls back to mutation).
* **Mutation** (probability ``p_mutation``): a random sub-derivation is
  regrown by a rollout from its nonterminal, capped at a random length that
  keeps the child within ``max_length``.
* **Reproduction** (the remaining probability): a copy of a selected parent.
* **Elitism**: the ``elitism`` best distinct individuals survive unchanged.
* **Surrogate screening** (optional): with a ``surrogate`` (a fit-free error
  estimate such as :class:`~mctsff.fit.surrogate.ForceSurrogate`), each offspring
  is the one, of ``screen`` drawn as above, with the lowest estimate among those
  never fitted and not yet in the next generation (the first drawn when none
  is), as MCTS chooses its rollouts; without one GP is unchanged.

The next generation holds distinct individuals only (by transposition key), so
it is built in several :meth:`GP.step` calls: each step draws offspring until
it has ``batch_size`` never-fitted expressions (fitted together in one
``evaluate`` call, as MCTS fits the rollouts of one iteration) or the next
generation is complete.  Offspring already fitted earlier join the next
generation at no cost (their cached result is reused); the budget counts
distinct fitted expressions, checked between steps, so :meth:`GP.run`
overshoots it by at most ``batch_size - 1`` (plus whatever a callback adds
with :meth:`GP.record`, as the local moves of :func:`~mctsff.search.search`
do).  After ``population_size`` consecutive draws without a never-fitted
expression, draws are random immigrants (fresh ramped rollouts) until one is
found; after ``stale_limit`` such draws the search is
*exhausted* (a heuristic, unlike MCTS's complete enumeration: in a small space
it means every reachable expression has been fitted).

All randomness comes from one ``numpy.random.Generator`` seeded by ``seed``,
and the population, pool and counters change only once a step's evaluation has
returned, so a search saved with :meth:`GP.state_dict` (or pickled) between
steps and resumed produces exactly the evaluations of an uninterrupted one.

Examples
--------
from mctsff.fit.result import FitResult
>>> def evaluate(exprs):
...     return [FitResult(e, complexity=len(e), rmse_train=0.0) for e in exprs]
>>> gp = GP("nguyen", evaluate, max_length=12, population_size=20, seed=1)
>>> gp.run(budget=30).n_evaluations >= 30
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mctsff.config import DEFAULTS
from mctsff.engines.engine import SearchEngine
from mctsff.engines.mcts import Progress
from mctsff.engines.reward import Reward, get_reward
from mctsff.expr.grammar import Grammar
from mctsff.expr.tree import Derivation, derive, subtree_end
from mctsff.fit.result import FitResult

__all__ = ["GP", "find_derivation"]

Evaluate = Callable[[list[str]], Sequence[FitResult]]

_MEMO_SIZE = 100_000  # entries of the (not checkpointed) yield memo

#: An individual: (production indices, expression, transposition key).
Individual = tuple[tuple[int, ...], str, Any]


def find_derivation(
    grammar: Grammar | str | Path, expression: str, max_length: int = 40
) -> Derivation | None:
    """A shortest derivation of the grammar whose yield is ``expression``, or ``None``.

    ``expression`` must be written as the grammar emits it (placeholder
    constants numbered by order of appearance, ``c1``, ``prod_c1``, ...; no
    extra spaces), e.g. ``"prod_c1/r+c1/r**12-c2/r**6"`` for ``pair``.  The
    search is an iterative-deepening depth-first search over leftmost
    derivations, pruned by the emitted prefix and by the pending symbols (their
    terminals must occur in order in the rest of the target, with room for the
    fewest characters the pending nonterminals can emit).

    Parameters
    ----------
    grammar
        Grammar or anything :meth:`Grammar.load` accepts.
    expression
        Target yield.
    max_length
        Longest derivation tried (productions).

    Returns
    -------
    Derivation or None
        The complete derivation (``.actions``, ``.n_productions``).
    """
    g = Grammar.load(grammar)
    target = expression.strip()
    root = Derivation.initial(g)
    tab = g._tables
    # fewest characters each symbol can emit (placeholders emit at least "c1")
    term_chars = [2 if t is None else len(t) for t in tab.term_text]
    nt_chars = [math.inf] * len(g.nonterminals)
    changed = True
    while changed:
        changed = False
        for p, push in enumerate(tab.prod_push):
            c = sum(nt_chars[s] if s >= 0 else term_chars[-1 - s] for s in push)
            if c < nt_chars[tab.prod_lhs[p]]:
                nt_chars[tab.prod_lhs[p]] = c
                changed = True

    text = tab.term_text

    def fits(d: Derivation) -> bool:
        # the emitted prefix matches, and the pending terminals occur in order in the
        # rest of the target with room for what the pending nonterminals must emit
        prefix = d.prefix()
        if not target.startswith(prefix):
            return False
        pos = len(prefix)
        for s in reversed(d._stack):
            if s >= 0:
                pos += nt_chars[s]
            elif text[-1 - s]:
                pos = target.find(text[-1 - s], pos)
                if pos < 0:
                    return False
                pos += term_chars[-1 - s]
            else:
                pos += term_chars[-1 - s]
        return pos <= len(target)

    dead: dict[Any, int] = {}  # state key -> largest remaining budget known to fail

    def dfs(d: Derivation, limit: int) -> Derivation | None:
        if d.is_complete:
            return d if d.expression() == target else None
        remaining = limit - d.n_productions
        if dead.get(d.key, -1) >= remaining:
            return None
        for a in d.legal_actions(limit):
            nxt = d.apply(a)
            if fits(nxt):
                found = dfs(nxt, limit)
                if found is not None:
                    return found
        dead[d.key] = remaining
        return None

    for limit in range(int(root.min_remaining), int(max_length) + 1):
        found = dfs(root, limit)
        if found is not None:
            return found
    return None


#: the defaults of the settings (mctsff.config)
_G = DEFAULTS.gp


class GP(SearchEngine):
    """Grammar-guided GP for the expression of a grammar that maximises a reward.

    Parameters
    ----------
    grammar
        A :class:`~mctsff.expr.grammar.Grammar` or anything :meth:`Grammar.load` accepts.
    evaluate
        ``evaluate(expressions) -> list[FitResult]``, results in the same order
        (called with the new distinct expressions of one step).  A result whose
        ``complexity`` is ``<= 0`` gets :meth:`Grammar.complexity` of its expression.
    reward
        Reward name or callable (:func:`mctsff.engines.reward.get_reward`).
    population_size
        Individuals per generation (distinct by transposition key).
    tournament_size
        Contestants per tournament (selection pressure).
    p_crossover, p_mutation
        Probabilities of crossover and mutation per offspring; the rest is
        reproduction (a copy of the selected parent).
    elitism
        Best distinct individuals copied unchanged into the next generation.
    max_length
        Maximum number of productions of a derivation.
    batch_size
        Never-fitted offspring fitted per step (one ``evaluate`` call).
    seed
        Seed of the search's ``numpy.random.Generator`` (the only randomness).
    canonical
        Optional ``canonical(expression) -> hashable`` transposition key (default:
        the expression string).  Must be deterministic.
    stale_limit
        Consecutive draws without a never-fitted expression after which the
        search counts as exhausted (default ``max(2000, 20 * population_size)``).
    crossover_tries
        Crossover points tried in the first parent before falling back to mutation.
    surrogate
        Optional ``surrogate(expression) -> float``, an estimate of the
        expression's error before fitting (lower is better; ``inf`` for unknown).
        Each offspring is then the best-estimated new one of ``screen`` draws.
        Not saved with the state: pass it again to :meth:`from_state` (a state
        saved with one has :attr:`use_surrogate` set).
    screen
        Draws per offspring compared by the surrogate (ignored without one).

    Attributes
    ----------
    n_evaluations
        Distinct expressions fitted (the budget unit).
    n_iterations
        Steps done.
    generation
        Completed generations (0 while the initial population is being built).
    n_draws
        Offspring and immigrants drawn (including rejected duplicates).
    evaluated
        Expressions fitted, in order of evaluation.
    population
        Current generation: ``(actions, expression, key)`` tuples.
    best_reward, best_result
        Best reward seen and the result that earned it.
    use_surrogate
        Whether the search was started with a surrogate (saved in the state).
    method
        ``"gp"`` (class attribute; :mod:`mctsff.search` stores it in checkpoints).
    """

    method = "gp"

    def __init__(
        self,
        grammar: Grammar | str | Path,
        evaluate: Evaluate,
        reward: str | Reward | None = "spl",
        *,
        population_size: int = _G.population_size,
        tournament_size: int = _G.tournament_size,
        p_crossover: float = _G.p_crossover,
        p_mutation: float = _G.p_mutation,
        elitism: int = _G.elitism,
        max_length: int = DEFAULTS.max_length,
        batch_size: int = _G.batch_size,
        seed: int | None = 0,
        canonical: Callable[[str], Any] | None = None,
        stale_limit: int | None = _G.stale_limit,
        crossover_tries: int = _G.crossover_tries,
        surrogate: Callable[[str], float] | None = None,
        screen: int = _G.screen,
    ) -> None:
        self.grammar = Grammar.load(grammar)
        self.evaluate = evaluate
        self.reward = get_reward(reward)
        self.canonical = canonical
        start_min = self.grammar.min_length(self.grammar.start)
        if max_length < start_min:
            raise ValueError(
                f"max_length={max_length} is below the shortest derivation ({start_min})"
            )
        if population_size < 2:
            raise ValueError("population_size must be >= 2")
        if tournament_size < 1:
            raise ValueError("tournament_size must be >= 1")
        if not (0 <= p_crossover <= 1 and 0 <= p_mutation <= 1):
            raise ValueError("p_crossover and p_mutation must be in [0, 1]")
        if p_crossover + p_mutation > 1 + 1e-12:
            raise ValueError("p_crossover + p_mutation must be <= 1")
        if not 0 <= elitism < population_size:
            raise ValueError("elitism must be in [0, population_size)")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if crossover_tries < 1:
            raise ValueError("crossover_tries must be >= 1")
        if screen < 1:
            raise ValueError("screen must be >= 1")
        self.population_size = int(population_size)
        self.tournament_size = int(tournament_size)
        self.p_crossover = float(p_crossover)
        self.p_mutation = float(p_mutation)
        self.elitism = int(elitism)
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)
        self.seed = seed
        self.stale_limit = (
            max(2000, 20 * self.population_size) if stale_limit is None else int(stale_limit)
        )
        self.crossover_tries = int(crossover_tries)
        self.surrogate = surrogate
        self.use_surrogate = surrogate is not None  # saved: a resumed run rebuilds it
        self.screen = int(screen)

        self._rng = np.random.default_rng(seed)
        self._cache: dict[Any, FitResult] = {}
        self._rewards: dict[Any, float] = {}
        self._actions: dict[Any, tuple[int, ...]] = {}
        self._key_memo: dict[str, Any] = {}  # see SearchEngine._key
        self._expr_memo: dict[tuple[int, ...], str] = {}
        self.evaluated: list[str] = []
        self.population: list[Individual] = []
        self._elite: list[Individual] = []
        self._pool: list[Individual] = []
        self._stale = 0
        self._exhausted = False
        self._n_immigrants = 0
        self.n_evaluations = 0
        self.n_iterations = 0
        self.n_draws = 0
        #: drawn offspring of the current step the budget left unfitted (fitted first next)
        self._unfitted: list[Individual] = []
        self.generation = 0
        self.elapsed = 0.0
        self.best_reward = -math.inf
        self.best_result: FitResult | None = None

    # ------------------------------------------------------------------ public
    @property
    def exhausted(self) -> bool:
        """True after ``stale_limit`` consecutive draws without a never-fitted expression."""
        return self._exhausted and not self._unfitted

    @property
    def progress(self) -> Progress:
        """Counters and the best result so far (``n_nodes`` is the population size)."""
        best = self.best_result
        return Progress(
            n_evaluations=self.n_evaluations,
            n_iterations=self.n_iterations,
            n_nodes=len(self.population),
            best_reward=self.best_reward if best is not None else math.nan,
            best_expression=None if best is None else best.expression,
            best_result=best,
            exhausted=self._exhausted,
            elapsed=self.elapsed,
        )

    # ------------------------------------------------------------------ checkpoint
    _transient = (*SearchEngine._transient, "_expr_memo")

    def _restore(self) -> None:
        super()._restore()
        self._expr_memo = {}

    # ------------------------------------------------------------------ variation

    def _expression(self, actions: tuple[int, ...]) -> str:
        """Yield of a complete derivation (checked: grammar productions, ≤ ``max_length``)."""
        expr = self._expr_memo.get(actions)
        if expr is None:
            d = derive(self.grammar, actions)
            if not d.is_complete or d.n_productions > self.max_length:  # pragma: no cover
                raise RuntimeError(f"invalid offspring {d!r}")
            expr = d.expression()
            if len(self._expr_memo) >= _MEMO_SIZE:
                self._expr_memo.clear()
            self._expr_memo[actions] = expr
        return expr

    def _fitness(self, ind: Individual) -> float:
        return self._rewards[ind[2]]

    def _select(self) -> Individual:
        pop = self.population
        idx = self._rng.integers(len(pop), size=self.tournament_size)
        best = pop[int(idx[0])]
        best_r = self._fitness(best)
        for i in idx[1:]:
            cand = pop[int(i)]
            r = self._fitness(cand)
            if r > best_r:
                best, best_r = cand, r
        return best

    def _regrow(self, nt: int, cap: int) -> tuple[int, ...]:
        """Productions of a random complete expansion of nonterminal ``nt`` (≤ ``cap``)."""
        tab = self.grammar._tables
        sub = Derivation(self.grammar, (), (nt,), 0, tab.nt_min[nt], ())
        return sub.rollout(self._rng, cap).actions

    def mutate(self, actions: tuple[int, ...]) -> tuple[int, ...]:
        """Subtree mutation: regrow a random sub-derivation within ``max_length``."""
        tab = self.grammar._tables
        rng = self._rng
        i = int(rng.integers(len(actions)))
        j = subtree_end(self.grammar, actions, i)
        nt = tab.prod_lhs[actions[i]]
        room = self.max_length - (len(actions) - (j - i))
        lo = int(tab.nt_min[nt])
        cap = int(rng.integers(lo, room + 1))
        return actions[:i] + self._regrow(nt, cap) + actions[j:]

    def crossover(self, a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...] | None:
        """Subtree crossover: a sub-derivation of ``a`` replaced by one of ``b``.

        The replacement is rooted at the same nonterminal and the child has at
        most ``max_length`` productions; ``None`` when no such pair of points
        was found in ``crossover_tries`` tries.
        """
        g = self.grammar
        lhs = g._tables.prod_lhs
        rng = self._rng
        ends_b: list[int] | None = None
        for _ in range(self.crossover_tries):
            i = int(rng.integers(len(a)))
            j = subtree_end(g, a, i)
            nt = lhs[a[i]]
            rest = len(a) - (j - i)
            if ends_b is None:
                ends_b = [subtree_end(g, b, k) for k in range(len(b))]
            cands = [
                k
                for k in range(len(b))
                if lhs[b[k]] == nt
                and rest + ends_b[k] - k <= self.max_length
                and b[k : ends_b[k]] != a[i:j]
            ]
            if cands:
                k = cands[int(rng.integers(len(cands)))]
                return a[:i] + b[k : ends_b[k]] + a[j:]
        return None

    def _immigrant(self) -> tuple[int, ...]:
        """A ramped random derivation: the length cap cycles over min..max_length."""
        root = Derivation.initial(self.grammar)
        lo = int(root.min_remaining)
        cap = lo + self._n_immigrants % (self.max_length - lo + 1)
        self._n_immigrants += 1
        return root.rollout(self._rng, cap).actions

    def _draw(self, stale: int) -> tuple[int, ...]:
        if not self.population or stale >= self.population_size:
            return self._immigrant()
        u = self._rng.random()
        if u < self.p_crossover:
            a, b = self._select(), self._select()
            child = self.crossover(a[0], b[0])
            return child if child is not None else self.mutate(a[0])
        if u < self.p_crossover + self.p_mutation:
            return self.mutate(self._select()[0])
        return self._select()[0]

    def _individual(self, actions: tuple[int, ...]) -> Individual:
        """``(actions, expression, key)`` of a drawn derivation."""
        expr = self._expression(actions)
        try:
            key = self._key(expr)
        except Exception:  # an unparsable yield is still a (failing) candidate
            key = expr
        return actions, expr, key

    def _offspring(self, stale: int, taken: set[Any]) -> Individual:
        """One draw; with a surrogate, the best-estimated new one of ``screen`` draws."""
        if self.surrogate is None or self.screen == 1:
            return self._individual(self._draw(stale))
        first = None
        best: tuple[float, Individual] | None = None
        for _ in range(self.screen):
            if first is not None and self.out_of_time():
                break  # the step is dropped (_step checks the deadline next)
            ind = self._individual(self._draw(stale))
            if first is None:
                first = ind
            if ind[2] in taken or ind[2] in self._cache:
                continue
            score = float(self.surrogate(ind[1]))
            if math.isnan(score):
                score = math.inf
            if best is None or score < best[0]:
                best = (score, ind)
        return first if best is None else best[1]

    # ------------------------------------------------------------------ the step
    def _step(self, callback: Callable[[FitResult], Any] | None) -> list[FitResult]:
        if self._unfitted:  # a batch the budget cut short: fit the rest first
            return self._fit_batch(self._unfitted, callback)
        if self._exhausted:
            return []
        target = self.population_size - len(self._elite)
        pool = list(self._pool)
        taken = {ind[2] for ind in self._elite} | {ind[2] for ind in pool}
        fresh: list[Individual] = []
        stale = self._stale
        n_draws = 0
        exhausted = False
        n_immigrants0 = self._n_immigrants
        while len(fresh) < self.batch_size and len(pool) < target:
            if stale >= self.stale_limit:
                exhausted = True
                break
            if self.out_of_time():  # nothing of this step is fitted or kept
                self._n_immigrants = n_immigrants0
                return []
            ind = self._offspring(stale, taken)
            n_draws += 1
            key = ind[2]
            if key in taken:
                stale += 1
                continue
            taken.add(key)
            pool.append(ind)
            if key in self._cache:
                stale += 1
            else:
                fresh.append(ind)
                stale = 0
        saved = self._stale, self._exhausted, self.n_draws, self._pool
        self._stale = stale
        self._exhausted = exhausted
        self.n_draws += n_draws
        self._pool = pool
        try:
            return self._fit_batch(fresh, callback)
        except BaseException:  # a failed batch commits nothing
            self._stale, self._exhausted, self.n_draws, self._pool = saved
            self._n_immigrants = n_immigrants0
            raise

    def _fit_batch(
        self, fresh: list[Individual], callback: Callable[[FitResult], Any] | None
    ) -> list[FitResult]:
        """Fit the step's new offspring, as many as :meth:`fits_left` and the deadline
        (:meth:`_fit_in_time`) allow; the rest wait in ``_unfitted`` for the next step
        (so a search stopped by its budget and resumed draws and fits what an
        uninterrupted one does).  Once all are fitted, a full pool becomes the next
        generation."""
        room = self.fits_left()
        now = fresh[: int(min(len(fresh), room))]
        results = self._evaluate(now, callback)  # under a deadline maybe the leading ones
        self._unfitted = list(fresh[len(results) :])
        if not self._unfitted:
            if len(self._pool) >= self.population_size - len(self._elite):
                self._next_generation()
            self.n_iterations += 1
        return results

    def _next_generation(self) -> None:
        population = self._elite + self._pool
        self.population = population
        self._pool = []
        self.generation += 1
        if self.elitism:
            order = sorted(range(len(population)), key=lambda i: (-self._fitness(population[i]), i))
            self._elite = [population[i] for i in order[: self.elitism]]
        else:
            self._elite = []

    def _evaluate(
        self, fresh: list[Individual], callback: Callable[[FitResult], Any] | None
    ) -> list[FitResult]:
        if not fresh:
            return []
        results = self._fit_in_time([ind[1] for ind in fresh])
        out: list[FitResult] = []
        for (actions, expr, key), res in zip(fresh[: len(results)], results, strict=True):
            self._store(key, expr, res, actions)
            out.append(res)
        # callbacks only once the whole batch is in the cache: a callback that fits
        # more expressions (local moves, :meth:`record`) then never refits one of them
        if callback is not None:
            for res in out:
                callback(res)
        return out

"""What every search engine (MCTS, GP) shares: transposition table access, the run loop, files.

A subclass keeps ``self._cache`` (key -> FitResult), ``self._rewards`` (key -> reward),
``self._actions`` (key -> production indices), ``self.evaluated``, ``self.n_evaluations``,
``self.best_reward``/``self.best_result``, ``self.grammar``, ``self.reward``,
``self.canonical``, ``self._key_memo`` (a dict), ``self.surrogate`` (an optional
fit-free error estimate ``surrogate(expression) -> float``, never saved) and
``self.use_surrogate`` (saved, so a resumed search knows to get it back) and
implements ``_step(callback)``, ``exhausted`` and ``progress``.  ``fit_limit`` and
``deadline`` (set by :meth:`SearchEngine.run` and :func:`mctsff.search.search`, never
saved) bound a step from inside: a step never starts more fits than
:meth:`SearchEngine.fits_left` allows, one that is still drawing candidates when
the deadline passes ends without fitting them (:meth:`SearchEngine.out_of_time`), and
one fitting its batch when it passes fits no further group of one fit per worker
(:func:`fit_in_time`; the rest waits like a batch the budget cut).  Checkpoints
(:meth:`SearchEngine.state_dict` / :meth:`SearchEngine.from_state`) are shared, with
``_transient`` naming attributes left out and ``_restore()`` rebuilding them.
"""

from __future__ import annotations

import math
import pickle
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mctsff.engines.reward import Reward, SPLReward, TradeoffReward, get_reward
from mctsff.fit.result import FitResult

#: Version of the checkpoint dictionaries written by :meth:`SearchEngine.state_dict`.
STATE_VERSION = 2

#: Entries of the (not checkpointed) expression -> transposition key memo.
KEY_MEMO_SIZE = 100_000


class OutOfTime(Exception):
    """Raised inside a step whose deadline passed while it drew candidates."""


def checked_results(results, exprs: Sequence[str]) -> list[FitResult]:
    """``results`` as a list, after checking there is one FitResult per expression."""
    results = list(results)
    if len(results) != len(exprs):
        raise RuntimeError(f"evaluate returned {len(results)} results for {len(exprs)} expressions")
    for res in results:
        if not isinstance(res, FitResult):
            raise TypeError(f"evaluate must return FitResult, got {type(res).__name__}")
    return results


def fit_in_time(
    evaluate: Callable[[list[str]], Any],
    expressions: Sequence[str],
    out_of_time: Callable[[], bool] | None = None,
    starts: Mapping[str, Mapping[str, float]] | None = None,
) -> list[FitResult]:
    """Fit ``expressions`` with ``evaluate``: in one call, or, given ``out_of_time`` (whether
    a deadline has passed), in groups of one per worker (``evaluate.workers``; 1 for a
    callable without it) while it has not.  Returns the results of the leading expressions
    fitted, in order: all of them without ``out_of_time``, none when the deadline has passed
    already; a group started before it ends is waited for, so a batch overruns the deadline
    by at most one fit per worker.  The engines' steps (:meth:`SearchEngine._fit_in_time`)
    and the local moves (:class:`~mctsff.engines.local.LocalMoves`) fit through it.
    ``starts`` (constants to start from, by expression) go to ``evaluate`` with each group
    that has some (``evaluate(group, starts=...)``, as :class:`~mctsff.engines.parallel.
    Evaluator` takes them); without any, ``evaluate(group)``."""

    def fit(group: list[str]) -> list[FitResult]:
        mine = {e: starts[e] for e in group if e in starts} if starts else None
        return checked_results(evaluate(group, starts=mine) if mine else evaluate(group), group)

    if out_of_time is None:
        return fit(list(expressions))
    size = max(1, int(getattr(evaluate, "workers", 1) or 1))
    out: list[FitResult] = []
    for i in range(0, len(expressions), size):
        if out_of_time():
            break
        out += fit(list(expressions[i : i + size]))
    return out


class SearchEngine:
    """Base class of :class:`~mctsff.engines.mcts.MCTS` and :class:`~mctsff.engines.gp.GP`."""

    #: Whether the engine ranks candidates with a fit-free surrogate (saved; an engine
    #: built without one keeps this class default).
    use_surrogate: bool = False
    #: Total distinct fitted expressions a step may reach (``None``: no limit).
    fit_limit: int | None = None
    #: ``time.perf_counter()`` after which a step starts no new fit (``None``: none).
    deadline: float | None = None

    def fits_left(self) -> float:
        """Fits that may still start under :attr:`fit_limit` (``inf`` without one),
        counting those already sent and not yet recorded (:meth:`_pending_fits`)."""
        if self.fit_limit is None:
            return math.inf
        return max(0, self.fit_limit - self.n_evaluations - self._pending_fits())

    def _pending_fits(self) -> int:
        """Expressions sent to the evaluator and not yet recorded (an engine that
        pipelines its batches overrides it)."""
        return 0

    def out_of_time(self) -> bool:
        """True once :attr:`deadline` has passed."""
        return self.deadline is not None and time.perf_counter() >= self.deadline

    def _check_time(self) -> None:
        """Raise :class:`OutOfTime` once :attr:`deadline` has passed."""
        if self.deadline is not None and time.perf_counter() >= self.deadline:
            raise OutOfTime

    def _fit_in_time(self, expressions: list[str]) -> list[FitResult]:
        """:func:`fit_in_time` with :attr:`evaluate` under :attr:`deadline` (if any)."""
        return fit_in_time(
            self.evaluate, expressions, None if self.deadline is None else self.out_of_time
        )

    _checked = staticmethod(checked_results)

    @property
    def results(self) -> list[FitResult]:
        """Fitted results in order of evaluation."""
        return list(self._cache.values())

    def _key(self, expression: str) -> Any:
        """Transposition key of an expression: ``canonical(expression)``, memoised.

        Rollouts and offspring repeat expressions often, and a canonical (sympy) key
        costs about a millisecond, so keys are kept per expression string.
        """
        if self.canonical is None:
            return expression
        memo = self._key_memo
        key = memo.get(expression)
        if key is None:
            key = self.canonical(expression)
            if len(memo) >= KEY_MEMO_SIZE:
                memo.clear()
            memo[expression] = key
        return key

    def lookup(self, expression: str) -> FitResult | None:
        """Cached result of an expression (``None`` if never fitted)."""
        return self._cache.get(self._key(expression))

    def record(self, expression: str, result: FitResult) -> bool:
        """Add a result fitted outside the engine (local moves) to the transposition table.

        It counts as an evaluation (budgets stay "distinct fitted expressions") and is
        never fitted again by the engine.  Where the grammar derives it
        (:meth:`~mctsff.expr.grammar.Grammar.derivation_of`), its derivation is kept like
        the engine's own, so building-block reuse can copy its parts.  Returns False if
        the expression was known.
        """
        key = self._key(expression)
        if key in self._cache:
            return False
        self._store(key, expression, result, self.grammar.derivation_of(expression) or ())
        return True

    def _store(
        self, key: Any, expression: str, result: FitResult, actions: tuple[int, ...]
    ) -> float:
        """Put a new result in the transposition table and the counters; return its reward.

        A result without a complexity (``<= 0``) gets the grammar's; a non-finite reward
        counts as 0.
        """
        if result.complexity <= 0:
            try:
                result.complexity = self.grammar.complexity(expression)
            except ValueError:
                pass
        r = float(self.reward(result))
        if not math.isfinite(r):
            r = 0.0
        self._cache[key] = result
        self._rewards[key] = r
        self._actions[key] = actions
        self.evaluated.append(expression)
        self.n_evaluations += 1
        if r > self.best_reward:
            self.best_reward, self.best_result = r, result
        return r

    def run(
        self,
        budget: int | None = None,
        time_limit: float | None = None,
        callback: Callable[[FitResult], Any] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ):
        """Step until the budget or time is spent, ``should_stop()`` or exhaustion.

        Parameters
        ----------
        budget
            Total number of distinct fitted expressions to reach (cumulative over
            the life of the search, so resuming with the same budget continues to
            the same end).  A step never fits more than the budget leaves
            (:attr:`fit_limit`).
        time_limit
            Wall-clock seconds for this call; a step still drawing candidates when
            they run out ends without fitting them (:attr:`deadline`).
        callback
            Called with every newly fitted :class:`FitResult` (e.g. to update a
            :class:`~mctsff.engines.pareto.ParetoFront`).
        should_stop
            Polled between steps; return True to stop.

        Returns
        -------
        Progress
        """
        if budget is None and time_limit is None and should_stop is None:
            raise ValueError("give a budget, a time_limit or should_stop")
        t0 = time.perf_counter()
        saved = self.fit_limit, self.deadline
        self.fit_limit = budget
        self.deadline = None if time_limit is None else t0 + time_limit
        try:
            while not self.exhausted:
                if budget is not None and self.n_evaluations >= budget:
                    break
                if time_limit is not None and time.perf_counter() - t0 >= time_limit:
                    break
                if should_stop is not None and should_stop():
                    break
                self.step(callback)
        finally:
            self.fit_limit, self.deadline = saved
        return self.progress

    def step(self, callback: Callable[[FitResult], Any] | None = None) -> list[FitResult]:
        """One iteration (``_step``), timed into ``elapsed``; returns the new results."""
        t0 = time.perf_counter()
        try:
            return self._step(callback)
        finally:
            self.elapsed += time.perf_counter() - t0

    #: attributes :meth:`state_dict` leaves out (callables, memos rebuilt by :meth:`_restore`)
    _transient: tuple[str, ...] = (
        "evaluate",
        "canonical",
        "_key_memo",
        "surrogate",
        "fit_limit",
        "deadline",
    )

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume, except the ``evaluate`` and ``canonical`` callables.

        The dictionary holds live references (the tree or population, the RNG); pickle it
        (or use :meth:`save`) to persist.  A built-in reward is included; a custom one must
        be passed again to :meth:`from_state`.
        """
        state = {k: v for k, v in self.__dict__.items() if k not in self._transient}
        if not isinstance(self.reward, SPLReward | TradeoffReward):
            state["reward"] = None
        state["_version"] = STATE_VERSION
        state["_method"] = self.method
        return state

    @classmethod
    def from_state(
        cls,
        state: dict[str, Any],
        evaluate: Callable,
        reward: str | Reward | None = None,
        canonical: Callable[[str], Any] | None = None,
        surrogate: Callable[[str], float] | None = None,
    ):
        """Rebuild a search from :meth:`state_dict` (``reward`` overrides the stored one).

        ``surrogate`` is the engine's fit-free estimate (not saved; a state saved
        with one has ``use_surrogate`` set, so the caller knows to pass it again).
        """
        method = state.get("_method", "mcts")  # MCTS states written before GP had none
        if method != cls.method or state.get("_version") != STATE_VERSION:
            raise ValueError(
                f"not a {cls.method.upper()} state (method {method!r}, "
                f"version {state.get('_version')!r})"
            )
        obj = cls.__new__(cls)
        obj.__dict__.update({k: v for k, v in state.items() if k not in ("_version", "_method")})
        obj._restore()
        obj.evaluate = evaluate
        obj.canonical = canonical
        obj.surrogate = surrogate
        if reward is not None:
            obj.reward = get_reward(reward)
        if obj.reward is None:
            raise ValueError("the saved search used a custom reward: pass reward=")
        return obj

    def _restore(self) -> None:
        """Rebuild what :meth:`state_dict` leaves out (the transient attributes).

        Subclasses extend it (calling ``super()._restore()``).  A state of an earlier
        :data:`STATE_VERSION` is refused by :meth:`from_state`, not patched here.  The
        transposition table's parts of the wrong type (a damaged state) are a
        ``TypeError`` naming the part, before anything reads them.
        """
        for name, kind in (("_cache", dict), ("_rewards", dict), ("_actions", dict)):
            if not isinstance(getattr(self, name, None), kind):
                raise TypeError(f"{name} is not a {kind.__name__}")
        if not isinstance(getattr(self, "evaluated", None), list):
            raise TypeError("evaluated is not a list")
        self._key_memo = {}
        self.surrogate = None  # not saved: from_state(surrogate=) gives it back

    def save(self, path: str | Path) -> None:
        """Pickle :meth:`state_dict` to ``path`` (atomically: :func:`mctsff.runio.atomic_write`)."""
        from mctsff.runio import atomic_write

        atomic_write(path, pickle.dumps(self.state_dict(), protocol=pickle.HIGHEST_PROTOCOL))

    @classmethod
    def load(cls, path: str | Path, evaluate, reward=None, canonical=None):
        """Inverse of :meth:`save`; the file is read without running code from it
        (:func:`mctsff.runio.load_checkpoint`: only mctsff's own classes, NumPy and plain
        containers are built; anything else is a :class:`~mctsff.runio.RunFolderError`)."""
        from mctsff.runio import load_checkpoint

        state = load_checkpoint(path)
        return cls.from_state(state, evaluate, reward=reward, canonical=canonical)

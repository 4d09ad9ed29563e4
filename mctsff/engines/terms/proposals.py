"""Term-library proposals fitted inside a search, interleaved with its steps, within a
share of its fits, its budget and its deadline, and faithfully across a resume."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .library import TermLibrary

__all__ = ["FIRST_PROPOSALS", "PROPOSAL_BATCH", "TermProposals"]

#: Proposals that may be fitted before the share rule applies (the first ones are the
#: selection's best sets, fitted while the tree has little to go on).
FIRST_PROPOSALS = 8
#: Proposals fitted per step, whatever the number of workers, so a seeded search fits the
#: same expressions in the same order with 1 or 2 workers (4: both of 2 workers busy).
PROPOSAL_BATCH = 4


class TermProposals:
    """Fits a :class:`~.library.TermLibrary`'s proposals inside a search, interleaved with
    its steps.

    Each call of :meth:`step` fits the next :data:`PROPOSAL_BATCH` proposals not fitted
    yet while the proposals' fits stay within
    ``max(FIRST_PROPOSALS, share × all fits)``, the budget (:meth:`~mctsff.engines.engine.
    SearchEngine.fits_left`) and the deadline allow.  Results carry
    ``extra["term_library"] = True`` and are recorded in the engine's transposition table
    (:meth:`~mctsff.engines.engine.SearchEngine.record`, with their derivations), so they
    count as evaluations, are never fitted twice and reach the front, the local moves
    and the callback like the engine's own (``on_result``).

    Each proposal is fitted from the selection's constants too
    (:attr:`~.library.Proposal.start`, the fitter's ``start``: one more start, so the fit
    is at least as good as a loose solve from there).

    A batch is chosen whole (``PROPOSAL_BATCH`` proposals, fewer only by the share); the
    budget or the deadline may cut it, and the rest waits (:attr:`waiting`): the search
    then neither steps its engine nor fits local moves until the next :meth:`step` has
    finished the batch, as an uninterrupted search does.  On a resumed search the
    library is rebuilt (the same proposals), those already fitted are skipped (so walking
    them from the first again takes the same ones), and the rest of a cut batch comes
    back from the checkpoint with their starts (:meth:`pending_state`,
    :meth:`restore_pending`).

    With ``after > 0`` the first :meth:`step` starts the selection on the evaluator's
    workers (:meth:`~.library.TermLibrary.start`; in process, or with ``after = 0``, it is
    made here when first needed), and
    no proposal is fitted before the search has made ``after`` fits (the search's
    ``terms_after``): the search's own
    candidates are fitted while the selection runs, and the proposals join at that fixed
    point (waiting there for a selection not finished yet), so the fits are the same, in
    the same order, whatever the evaluator and however long the selection takes.
    """

    def __init__(
        self, library: TermLibrary, engine, evaluator, share: float, after: int = 0
    ) -> None:
        self.library = library
        self.engine = engine
        self.evaluator = evaluator
        self.share = float(share)
        self.after = int(after)
        self._started = False
        #: proposals fitted (by this search and the runs it resumes)
        self.n_fits = sum(1 for r in getattr(engine, "results", []) if r.extra.get("term_library"))
        self._next = 0
        #: the rest of a batch the budget or the deadline cut short (fitted first)
        self._cut: list[str] = []
        #: the selection's constants of the proposals chosen, by expression
        self._starts: dict[str, dict[str, float]] = {}

    @property
    def n_underivable(self) -> int:
        """Proposals dropped because the grammar cannot derive them."""
        return self.library.n_underivable

    def _allowed(self) -> float:
        return max(FIRST_PROPOSALS, self.share * self.engine.n_evaluations) - self.n_fits

    @property
    def waiting(self) -> bool:
        """The rest of a batch cut short by the budget or the deadline waits to be fitted
        (while the engine has no fits in flight: a pipelined engine's batch, whose results
        free the budget, is collected first)."""
        return bool(self._cut) and not self.engine._pending_fits()

    def pending_state(self) -> dict[str, Any]:
        """The rest of a batch cut short, as plain data (expressions and their starts), for
        a checkpoint."""
        starts = {e: dict(self._starts[e]) for e in self._cut if e in self._starts}
        return {"cut": list(self._cut), "starts": starts}

    def restore_pending(self, state: Mapping[str, Any] | None) -> None:
        """Take back :meth:`pending_state`; ``ValueError`` for a state that is not one (a
        damaged checkpoint)."""
        if not state:
            return
        if not isinstance(state, Mapping):
            raise ValueError(f"expected a mapping, not {state!r:.60}")
        cut = state.get("cut", [])
        if not isinstance(cut, list | tuple) or not all(isinstance(e, str) for e in cut):
            raise ValueError(f"expected a list of expressions, not {cut!r:.60}")
        starts = state.get("starts") or {}  # none in checkpoints written before them
        if not isinstance(starts, Mapping) or not all(
            isinstance(e, str)
            and isinstance(v, Mapping)
            and all(
                isinstance(n, str) and isinstance(x, float) and math.isfinite(x)
                for n, x in v.items()
            )
            for e, v in starts.items()
        ):
            raise ValueError(f"expected starts by expression, not {starts!r:.60}")
        self._cut = list(cut)
        self._starts = {e: dict(v) for e, v in starts.items()}

    def _choose(self) -> list[str]:
        """The next batch: proposals not fitted yet (none sharing a transposition key),
        at most :data:`PROPOSAL_BATCH` and what the share allows."""
        engine = self.engine
        props = self.library.proposals(None if engine.deadline is None else engine.out_of_time)
        n = int(min(self._allowed(), PROPOSAL_BATCH))
        todo: list[str] = []
        keys: set = set()
        while len(todo) < n and self._next < len(props):
            expr = props[self._next].expression
            start = props[self._next].start
            self._next += 1
            key = engine._key(expr)
            if key not in keys and engine.lookup(expr) is None:
                todo.append(expr)
                keys.add(key)
                if start:
                    self._starts[expr] = dict(start)
        return todo

    def step(self, on_result) -> int:
        """Fit the rest of a cut batch, or else the next proposals the share allows, as
        far as the budget and the deadline allow; return how many were recorded."""
        from mctsff.engines.engine import fit_in_time

        engine = self.engine
        if not self._started:
            self._started = True
            # the selection starts on a worker, if there is one, when the search has
            # fits to make meanwhile; joined at once, it is made here (all of this
            # process's BLAS threads, no process to start)
            if self.share > 0 and self.after > 0:
                self.library.start(getattr(self.evaluator, "evaluator", self.evaluator))
        if self._cut:
            todo = [e for e in self._cut if engine.lookup(e) is None]
        else:
            if engine.n_evaluations < self.after:
                return 0  # the selection runs on meanwhile
            if self.share <= 0 or self._allowed() < 1 or engine.fits_left() < 1:
                return 0
            if getattr(engine, "_partial", False) or getattr(engine, "_unfitted", None):
                return 0  # the engine's batch cut short by the budget is finished first
            if engine.out_of_time():
                return 0
            todo = self._choose()
        self._cut = todo
        if not todo or engine.out_of_time():
            return 0
        k = int(min(len(todo), engine.fits_left()))
        results = fit_in_time(
            self.evaluator,
            todo[:k],
            None if engine.deadline is None else engine.out_of_time,
            starts={e: self._starts[e] for e in todo[:k] if e in self._starts},
        )
        self._cut = todo[len(results) :]
        for e in todo[: len(results)]:
            self._starts.pop(e, None)
        recorded = 0
        for expr, res in zip(todo, results, strict=False):
            res.extra["term_library"] = True
            if engine.record(expr, res):
                recorded += 1
                self.n_fits += 1
                if hasattr(engine, "credit"):  # MCTS made with credit=True: up the tree
                    engine.credit(expr)
                on_result(res)
        return recorded

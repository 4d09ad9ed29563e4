"""Monte Carlo tree search (UCT) over leftmost derivations of a grammar.

One iteration (:meth:`MCTS.step`):

1. **Selection** from the root by UCT, ``Q/N + c*sqrt(ln N_parent / N_child)``,
   skipping exhausted subtrees, down to a node with an untried action;
2. **Expansion** of one untried action (drawn uniformly with the search's RNG);
3. **Simulation**: a complete new node is evaluated directly, otherwise
   ``n_rollouts`` random rollouts complete it (at most ``max_length``
   productions in total).  The rollout policy has two parts: a length cap per
   rollout (``rollout="ramped"``, the default: a cap drawn uniformly between the
   node's shortest completion and ``max_length``, so short forms such as
   ``c1/r**12`` are drawn early; ``"mixed"``: half the rollouts so capped, the
   other half capped at ``max_length`` only; ``"uniform"``: no cap below
   ``max_length``) and the choice of productions: uniform, or with ``mast > 0``
   weighted by the Move-Average Sampling Technique (Finnsson & Björnsson 2008):
   every production keeps the mean reward of the evaluated expressions that use
   it, and a rollout draws among the legal productions with probability
   ``exp(q / mast)``, ``q`` being that mean rescaled to [0, 1] over all
   productions (shrunk towards the overall mean by one pseudo-observation).
   With ``novelty=k > 1`` (default 8) each rollout is the one of ``k`` so drawn
   with the most *blocks* (complete sub-derivations of non-recursive
   nonterminals, such as one term of a sum of terms) never proposed before, so
   the finite space of terms is covered instead of resampled.  With
   ``cover=True`` (the default) each of those rollouts also draws every *top
   block* (a block derived directly by a recursive nonterminal: a term of a sum)
   among the ones not yet proposed *in its context*, by rejection from the same
   policy: the context is the set of top blocks already complete in the expanded
   node, so rollouts below the root cover every term once before repeating one,
   and rollouts below a node whose first terms are fixed cover the companions of
   those terms.  A sum that holds the true term fits it exactly and the search's
   pruning moves then isolate it, so covering the terms is what finds
   single-term potentials (benchmarks/README.md).  With a ``surrogate`` (an
   estimate of an expression's error that costs no fit: for force matching
   :class:`~mctsff.fit.surrogate.ForceSurrogate`, the forces' least-squares residual
   with the amplitudes solved and the range constants on a grid) the rollout kept
   is the one with the lowest estimate among those drawn with at least one new
   block, so coverage goes on while the fits go to the promising sums;
4. **Evaluation** of the *distinct, never seen* expressions in one batched call
   of the user's ``evaluate(expressions) -> list[FitResult]``; a transposition
   table (expression key -> FitResult) guarantees each distinct expression is
   fitted once;
5. **Backup** of the best reward of the rollouts along the path.  With
   ``normalise=True`` the mean rewards are rescaled by the minimum and maximum
   reward seen so far before UCT compares them (adaptive normalisation).

With ``leaves=k > 1`` an iteration selects and expands ``k`` leaves before
evaluating: after each selection the path counts one extra visit with the lowest
reward seen so far (a *virtual loss*), so the next selection prefers another
branch; the rollouts of all ``k`` leaves are evaluated in one batch (which keeps
parallel workers busy), then the virtual losses are removed and each leaf's
reward is backed up.  The result depends on the seed and ``k``, never on the
number of workers.

Nodes whose subtree has been enumerated completely are marked exhausted; the
search ends when the root is.  The budget counts distinct fitted expressions
and is checked between iterations, so a run may overshoot it by at most
``leaves * n_rollouts - 1``; stopping only between whole iterations makes a search that
is pickled (or saved with :meth:`MCTS.state_dict`) and resumed produce exactly
the same sequence of evaluations as an uninterrupted one.

Building blocks of the best expressions can be reused in two ways.  *Elite
rollouts* (``elite=p``): a rollout copies, with probability ``p`` at each
nonterminal, a complete sub-derivation of that nonterminal from one of the
``elite_top`` best expressions so far (a recombination of good parts inside the
simulation, in the spirit of GP's subtree crossover).
Module transplantation (SPL, Sun et al. 2023) is available with
``transplant=True``: every ``transplant_every`` evaluations the complete
sub-derivations (2 to ``transplant_max_length`` productions) of the best
``transplant_top`` expressions become macro-actions, offered wherever their
left-hand side is the leftmost nonterminal.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mctsff.config import DEFAULTS, OBJECTIVE_DEFAULTS
from mctsff.engines.engine import OutOfTime, SearchEngine
from mctsff.engines.reward import Reward, get_reward
from mctsff.expr.grammar import Grammar
from mctsff.expr.tree import Derivation, complete_subtrees
from mctsff.fit.result import FitResult

__all__ = ["MCTS", "Progress", "ROLLOUTS"]

#: Rollout policies (see :class:`MCTS`).
ROLLOUTS = ("mixed", "ramped", "uniform")

Evaluate = Callable[[list[str]], Sequence[FitResult]]


@dataclass(slots=True)
class Progress:
    """Snapshot of a search.

    Attributes
    ----------
    n_evaluations
        Distinct expressions fitted so far (the budget unit).
    n_iterations
        MCTS iterations done.
    n_nodes
        Nodes in the search tree.
    best_reward, best_expression, best_result
        Best reward seen and the result that earned it.
    exhausted
        True when the whole space (within ``max_length``) has been enumerated.
    elapsed
        Seconds spent in :meth:`MCTS.run` / :meth:`MCTS.step` so far.
    """

    n_evaluations: int
    n_iterations: int
    n_nodes: int
    best_reward: float
    best_expression: str | None
    best_result: FitResult | None
    exhausted: bool
    elapsed: float


class _Node:
    """A search-tree node (internal)."""

    __slots__ = ("state", "action", "parent", "children", "untried", "n", "w", "exhausted", "seen")

    def __init__(self, state: Derivation, action: int | None, parent: _Node | None) -> None:
        self.state = state
        self.action = action
        self.parent = parent
        self.children: dict[int, _Node] = {}
        self.untried: list[int] = []
        self.n = 0
        self.w = 0.0
        self.exhausted = False
        self.seen = 0  # number of macros already considered for this node

    def __getstate__(self):
        return tuple(getattr(self, s) for s in self.__slots__)

    def __setstate__(self, state) -> None:
        for name, value in zip(self.__slots__, state, strict=True):
            setattr(self, name, value)


class _Proposal:
    """Leaves expanded and rolled out whose expressions are being fitted (internal)."""

    __slots__ = ("expansions", "completions", "new", "virtual_loss", "handle")

    def __init__(self, virtual_loss: float | None) -> None:
        self.expansions: list[tuple[list[_Node], int, int, Derivation, list[Derivation]]] = []
        self.completions: list[tuple[Any, str, Derivation]] = []  # key, expression, state
        self.new: list[tuple[Any, str, Derivation]] = []  # those this proposal sends to fit
        self.virtual_loss = virtual_loss  # on every path while in flight (None: not applied)
        self.handle: Any = None  # the evaluator's batch (not checkpointed: refitted)

    def __getstate__(self):
        return tuple(None if s == "handle" else getattr(self, s) for s in self.__slots__)

    def __setstate__(self, state) -> None:
        for name, value in zip(self.__slots__, state, strict=True):
            setattr(self, name, value)


#: the defaults of the settings (mctsff.config); an engine built directly takes the
#: force-matching ones of the settings that follow the objective
_M = DEFAULTS.mcts
_ENGINE = OBJECTIVE_DEFAULTS["forces"]


class MCTS(SearchEngine):
    """UCT search for the expression of a grammar that maximises a reward.

    Parameters
    ----------
    grammar
        A :class:`~mctsff.expr.grammar.Grammar` or anything :meth:`Grammar.load` accepts.
    evaluate
        ``evaluate(expressions) -> list[FitResult]``, results in the same order
        (called with the new distinct expressions of one iteration).  A result
        whose ``complexity`` is ``<= 0`` gets :meth:`Grammar.complexity` of its
        expression.
    reward
        Reward name or callable (:func:`mctsff.engines.reward.get_reward`).
    exploration
        UCT constant ``c`` (default ``1/sqrt(2)``).
    max_length
        Maximum number of productions of a complete derivation (default 16).  Every
        default here is :class:`mctsff.config.SearchConfig`'s.
    n_rollouts
        Random rollouts per expansion (default 3; the node's reward is their maximum).
    rollout
        Length caps of the rollouts: ``"ramped"`` (default), ``"mixed"`` or
        ``"uniform"`` (see the module docstring).
    mast
        Temperature of the MAST rollout weights (default 0.2; ``0`` draws
        productions uniformly).
    novelty
        Rollouts drawn per rollout kept (default 8; ``1``: plain rollouts).
        The one kept has the most *blocks* never proposed before, a block being a
        complete sub-derivation of a non-recursive nonterminal
        (:attr:`~mctsff.expr.grammar.Grammar.recursive`: in ``pair`` a term, its
        coefficient, its factors); see the module docstring.  Grammars without
        such nonterminals (``nguyen``) are unaffected.
    surrogate
        Optional ``surrogate(expression) -> float``, an estimate of the expression's
        error that costs no fit (lower is better, ``inf`` unknown; e.g.
        :class:`~mctsff.fit.surrogate.ForceSurrogate`).  With ``novelty > 1`` the rollout
        kept is then, among those drawn with at least one block never proposed
        before, the one with the lowest estimate (see the module docstring).  Not
        saved by :meth:`state_dict`; pass it again to :meth:`from_state`.
    cover
        With ``novelty > 1``, draw each top block of a rollout (a term of a sum)
        among those never proposed in the rollout's context (default True; see
        the module docstring).
    credit
        Whether results fitted outside the tree that its caller hands to :meth:`credit`
        (the term library's proposals) are backed up the tree (default False).
    elite, elite_top
        Building-block reuse in the rollouts (default ``elite=0``: off).  At each
        nonterminal a rollout copies, with probability ``elite``, a complete
        sub-derivation of that nonterminal taken from one of the ``elite_top``
        best expressions so far (when one fits the rollout's length cap), and
        otherwise draws one production as usual.  Meant for sums of repeated
        blocks (such as the Nguyen polynomials); ``benchmarks/ablation.py`` and
        ``benchmarks/nguyen.py`` measure what it is worth.
    pipeline
        Iterations kept in flight (default 0).  With ``pipeline=p`` an iteration
        proposes its leaves and sends their rollouts to ``evaluate.submit`` (when
        the evaluator has it, as :class:`~mctsff.engines.parallel.Evaluator` does), then
        commits the iteration proposed ``p`` steps earlier; pending leaves count
        as virtual losses meanwhile.  Workers then fit the next batch while the
        tree waits for the previous one; the sequence of evaluations depends on
        the seed and ``p``, never on the number or speed of workers.
    leaves
        Leaves expanded per iteration (default 1).  With ``leaves > 1`` each
        selection after the first sees the pending ones as visits with the lowest
        reward so far (virtual loss) and the rollouts of all of them go to
        ``evaluate`` in one batch, so parallel workers get larger batches; the
        sequence of evaluations still depends only on the seed.
    seed
        Seed of the search's ``numpy.random.Generator`` (the only randomness).
    normalise
        Rescale mean rewards to [0, 1] by the min/max reward seen, for UCT.
    transplant
        Enable SPL module transplantation (macro-actions); see module docstring.
    canonical
        Optional ``canonical(expression) -> hashable`` key for the transposition
        table (default: the expression string itself).  Must be deterministic.
    transplant_every, transplant_top, transplant_max_length, max_macros
        Transplantation schedule: every ``transplant_every`` evaluations, take
        the best ``transplant_top`` expressions' sub-derivations of
        ``2..transplant_max_length`` productions, keeping at most ``max_macros``.

    Attributes
    ----------
    n_evaluations, n_iterations
        Counters (see :class:`Progress`).
    evaluated
        Expressions fitted, in order of evaluation.
    macros
        Macro-actions ``(lhs nonterminal, production indices)`` (transplantation).

    Examples
    --------
    >>> from mctsff.fit.result import FitResult
    >>> def evaluate(exprs):
    ...     return [FitResult(e, complexity=len(e), rmse_train=0.0) for e in exprs]
    >>> search = MCTS("nguyen", evaluate, max_length=12, seed=1)
    >>> progress = search.run(budget=20)
    >>> progress.n_evaluations >= 20
    True
    """

    method = "mcts"
    #: draws of a top block per position before a covering rollout keeps a covered one
    cover_tries = 30
    _transient = (
        *SearchEngine._transient,
        "_pending",
        "_elite_subs",
        "_elite_at",
        "_top",
        "_top_version",
        "_block_nts",
        "_top_nts",
    )

    def __init__(
        self,
        grammar: Grammar | str | Path,
        evaluate: Evaluate,
        reward: str | Reward | None = "spl",
        *,
        exploration: float = _M.exploration,
        max_length: int = DEFAULTS.max_length,
        n_rollouts: int = _ENGINE["n_rollouts"],
        seed: int | None = 0,
        normalise: bool = _M.normalise,
        transplant: bool = _ENGINE["transplant"],
        canonical: Callable[[str], Any] | None = None,
        transplant_every: int = _M.transplant_every,
        transplant_top: int = _M.transplant_top,
        transplant_max_length: int = _M.transplant_max_length,
        max_macros: int = _M.max_macros,
        rollout: str = _M.rollout,
        mast: float = _M.mast,
        leaves: int = _M.leaves,
        pipeline: int = _M.pipeline,
        elite: float = _ENGINE["elite"],
        elite_top: int = _M.elite_top,
        novelty: int = _M.novelty,
        cover: bool = _M.cover,
        surrogate: Callable[[str], float] | None = None,
        credit: bool = _M.credit,
    ) -> None:
        self.grammar = Grammar.load(grammar)
        self.evaluate = evaluate
        self.reward = get_reward(reward)
        self.canonical = canonical
        self._key_memo: dict[str, Any] = {}  # see SearchEngine._key
        if n_rollouts < 1:
            raise ValueError("n_rollouts must be >= 1")
        if leaves < 1:
            raise ValueError("leaves must be >= 1")
        if pipeline < 0:
            raise ValueError("pipeline must be >= 0")
        if exploration < 0:
            raise ValueError("exploration must be >= 0")
        if rollout not in ROLLOUTS:
            raise ValueError(f"unknown rollout {rollout!r}; choose from {ROLLOUTS}")
        start_min = self.grammar.min_length(self.grammar.start)
        if max_length < start_min:
            raise ValueError(
                f"max_length={max_length} is below the shortest derivation ({start_min})"
            )
        self.exploration = float(exploration)
        self.max_length = int(max_length)
        self.n_rollouts = int(n_rollouts)
        self.leaves = int(leaves)
        self.pipeline = int(pipeline)
        self._pending: dict[int, int] = {}  # id(node) -> expansions in flight through it
        self._inflight: list[_Proposal] = []
        self._partial = False  # _inflight[0] is a batch the budget cut short
        self.rollout = rollout
        if mast < 0:
            raise ValueError("mast must be >= 0")
        self.mast = float(mast)
        if not 0 <= elite <= 1:
            raise ValueError("elite must be in [0, 1]")
        if elite_top < 1:
            raise ValueError("elite_top must be >= 1")
        self.elite = float(elite)
        self.elite_top = int(elite_top)
        if novelty < 1:
            raise ValueError("novelty must be >= 1")
        self.novelty = int(novelty)
        self._blocks: set[tuple[int, tuple[int, ...]]] = set()  # see _novel_rollout
        self._block_nts = self._nonterminal_ids(self.grammar.block_nonterminals)
        self._top_nts = self._nonterminal_ids(self.grammar.top_blocks)
        self.cover = bool(cover)
        self.credit_results = bool(credit)
        self.surrogate = surrogate
        self.use_surrogate = surrogate is not None  # saved: a resumed run rebuilds it
        # context (top blocks complete in the expanded node) -> top blocks proposed in it
        self._covered: dict[frozenset, set[tuple[int, tuple[int, ...]]]] = {}
        self._elite_at = -1  # _top_version when the elite subtrees were last collected
        self._elite_subs: dict[int, list[tuple[int, ...]]] = {}
        self.seed = seed
        self.normalise = bool(normalise)
        self.transplant = bool(transplant)
        self.transplant_every = int(transplant_every)
        self.transplant_top = int(transplant_top)
        self.transplant_max_length = int(transplant_max_length)
        self.max_macros = int(max_macros)

        self._rng = np.random.default_rng(seed)
        self._cache: dict[Any, FitResult] = {}
        self._rewards: dict[Any, float] = {}
        self._actions: dict[Any, tuple[int, ...]] = {}
        self._top: list[tuple[float, int, Any]] = []  # see _note_top
        self._top_version = 0
        self.evaluated: list[str] = []
        self.macros: list[tuple[int, tuple[int, ...]]] = []
        self._macro_keys: set[tuple[int, tuple[int, ...]]] = set()
        self._next_transplant = self.transplant_every
        self.n_evaluations = 0
        self.n_iterations = 0
        self.n_nodes = 1
        self.elapsed = 0.0
        self._rmin = math.inf
        self._rmax = -math.inf
        self.best_reward = -math.inf
        self.best_result: FitResult | None = None
        self.root = _Node(Derivation.initial(self.grammar), None, None)
        self.root.untried = self._legal(self.root)
        n_prod = len(self.grammar.productions)
        self._prod_n = [0] * n_prod  # expressions evaluated that use each production
        self._prod_w = [0.0] * n_prod  # and the sum of their rewards

    # ------------------------------------------------------------------ public
    @property
    def exhausted(self) -> bool:
        """True when every derivation within ``max_length`` has been enumerated."""
        return self.root.exhausted and not self._inflight

    @property
    def progress(self) -> Progress:
        """Counters and the best result so far."""
        best = self.best_result
        return Progress(
            n_evaluations=self.n_evaluations,
            n_iterations=self.n_iterations,
            n_nodes=self.n_nodes,
            best_reward=self.best_reward if best is not None else math.nan,
            best_expression=None if best is None else best.expression,
            best_result=best,
            exhausted=self.root.exhausted,
            elapsed=self.elapsed,
        )

    # ------------------------------------------------------------------ checkpoint
    def _restore(self) -> None:
        super()._restore()
        self._block_nts = self._nonterminal_ids(self.grammar.block_nonterminals)
        self._top_nts = self._nonterminal_ids(self.grammar.top_blocks)
        self._elite_at, self._elite_subs = -1, {}
        ranked = ((-r, i, k) for i, (k, r) in enumerate(self._rewards.items()))
        self._top, self._top_version = heapq.nsmallest(self._n_top(), ranked), 0
        self._pending = {}
        for prop in self._inflight:  # their virtual losses are in the saved tree already
            if prop.virtual_loss is not None:
                for path, *_ in prop.expansions:
                    for node in path:
                        self._pending[id(node)] = self._pending.get(id(node), 0) + 1

    # ------------------------------------------------------------------ internals
    def _n_base(self) -> int:
        return len(self.grammar.productions)

    def _apply(self, state: Derivation, action: int) -> Derivation:
        n_base = self._n_base()
        if action < n_base:
            return state.apply(action)
        return state.apply_all(self.macros[action - n_base][1])

    def _legal(self, node: _Node) -> list[int]:
        state = node.state
        legal = list(state.legal_actions(self.max_length))
        node.seen = len(self.macros)
        if self.macros and not state.is_complete:
            legal.extend(self._legal_macros(state, 0))
        return legal

    def _legal_macros(self, state: Derivation, first: int) -> list[int]:
        tab = self.grammar._tables
        nt = state._stack[-1]
        rest = state.n_productions + state.min_remaining - tab.nt_min[nt]
        n_base = self._n_base()
        return [
            n_base + i
            for i in range(first, len(self.macros))
            if self.macros[i][0] == nt and rest + len(self.macros[i][1]) <= self.max_length
        ]

    def _refresh_macros(self, node: _Node) -> None:
        if node.seen < len(self.macros) and not node.state.is_complete:
            node.untried.extend(self._legal_macros(node.state, node.seen))
            node.seen = len(self.macros)

    def _uct_child(self, node: _Node) -> _Node | None:
        best, best_score = None, -math.inf
        log_n = math.log(max(node.n, 1))
        c = self.exploration
        lo, hi = self._rmin, self._rmax
        span = hi - lo if self.normalise and hi > lo else 0.0
        for child in node.children.values():
            if child.exhausted:
                continue
            q = child.w / child.n
            if span:
                q = (q - lo) / span
            score = q + c * math.sqrt(log_n / child.n)
            if score > best_score:
                best, best_score = child, score
        return best

    def _mark_exhausted(self, node: _Node | None) -> None:
        while node is not None and not node.exhausted:
            if (
                node.untried
                or id(node) in self._pending
                or any(not ch.exhausted for ch in node.children.values())
            ):
                return
            node.exhausted = True
            node = node.parent

    def _select(self) -> list[_Node] | None:
        while not self.root.exhausted:
            node = self.root
            path = [node]
            while True:
                self._refresh_macros(node)
                if node.untried:
                    return path
                child = self._uct_child(node)
                if child is None:
                    if id(node) in self._pending:
                        return None  # only pending expansions below: end this step's batch
                    self._mark_exhausted(node)
                    break
                node = child
                path.append(node)
        return None

    def _record(self, key: Any, expr: str, state: Derivation, res: FitResult) -> bool:
        """Add one fitted completion to the transposition table (False if already there)."""
        if not isinstance(res, FitResult):
            raise TypeError(f"evaluate must return FitResult, got {type(res).__name__}")
        if key in self._cache:  # fitted meanwhile (a local move of the caller)
            return False
        r = self._store(key, expr, res, state.actions)
        for a in set(state.actions):
            self._prod_n[a] += 1
            self._prod_w[a] += r
        return True

    def credit(self, expression: str) -> bool:
        """Back the reward of a result recorded from outside the tree (:meth:`record`) up
        the nodes of its derivation that the tree has (from the root, until the first
        production the tree has not expanded) and into the rollouts' production statistics
        (MAST), as if a rollout had reached it.  Does nothing (returns False) unless the
        engine was made with ``credit=True`` and the result is recorded with a derivation.
        """
        if not getattr(self, "credit_results", False):
            return False
        key = self._key(expression)
        actions = self._actions.get(key)
        if not actions or key not in self._rewards:
            return False
        r = self._rewards[key]
        for a in set(actions):
            self._prod_n[a] += 1
            self._prod_w[a] += r
        node = self.root
        path = [node]
        for a in actions:
            node = node.children.get(a)
            if node is None:
                break
            path.append(node)
        for node in path:
            node.n += 1
            node.w += r
        self._rmin = min(self._rmin, r)
        self._rmax = max(self._rmax, r)
        return True

    def _rollout_weights(self) -> list[float] | None:
        """MAST weights: softmax of each production's mean reward (normalised, / ``mast``)."""
        total = sum(self._prod_n)
        if not self.mast or not total:
            return None
        mean = sum(self._prod_w) / total
        q = [(w + mean) / (n + 1) for n, w in zip(self._prod_n, self._prod_w, strict=True)]
        lo, hi = min(q), max(q)
        if hi <= lo:
            return None
        return [math.exp((x - hi) / ((hi - lo) * self.mast)) for x in q]

    def _rollout(
        self,
        state: Derivation,
        weights: list[float] | None = None,
        covered: set[tuple[int, tuple[int, ...]]] | None = None,
    ) -> Derivation:
        cap = self.max_length
        lo = state.n_productions + state.min_remaining
        if self.rollout == "ramped":
            cap = int(self._rng.integers(lo, cap + 1))
        elif self.rollout == "mixed":
            cap = min(int(self._rng.integers(lo, 2 * cap - lo + 2)), cap)
        if self.elite > 0:
            return self._elite_rollout(state, cap, weights)
        if covered is not None:
            return self._cover_rollout(state, cap, weights, covered)
        return state.rollout(self._rng, cap, weights)

    def _draw(self, state: Derivation, cap: int, weights: list[float] | None) -> Derivation:
        """``state`` with its leftmost nonterminal expanded by one drawn production."""
        rng = self._rng
        legal = state.legal_actions(cap)
        if weights is None:
            return state.apply(legal[int(rng.integers(len(legal)))])
        w = np.array([weights[a] for a in legal])
        return state.apply(legal[int(rng.choice(len(legal), p=w / w.sum()))])

    def _cover_rollout(
        self,
        state: Derivation,
        cap: int,
        weights: list[float] | None,
        covered: set[tuple[int, tuple[int, ...]]],
    ) -> Derivation:
        """A rollout whose top blocks are drawn among those not in ``covered``.

        At a top-block nonterminal the whole sub-derivation is drawn by the usual
        policy, again (at most :attr:`cover_tries` times) while it is in
        ``covered`` or already in this rollout; elsewhere one production is drawn.
        """
        rng = self._rng
        mine: set[tuple[int, tuple[int, ...]]] = set()
        while not state.is_complete:
            nt = state._stack[-1]
            if nt not in self._top_nts:
                state = self._draw(state, cap, weights)
                continue
            room = state._budget(cap)
            sub = Derivation.initial(self.grammar, nt)
            for _ in range(self.cover_tries):
                block = (nt, sub.rollout(rng, room, weights).actions)
                if block not in covered and block not in mine:
                    break
            mine.add(block)
            state = state.apply_all(block[1])
        return state

    def _nonterminal_ids(self, names: frozenset[str]) -> frozenset[int]:
        return frozenset(i for i, nt in enumerate(self.grammar.nonterminals) if nt in names)

    def _block_set(self, state: Derivation) -> set[tuple[int, tuple[int, ...]]]:
        """Complete sub-derivations of the non-recursive nonterminals in ``state``."""
        nts = self._block_nts
        return {b for b in complete_subtrees(self.grammar, state.actions) if b[0] in nts}

    def _covered_set(self, state: Derivation) -> set[tuple[int, tuple[int, ...]]] | None:
        """The top blocks already proposed beside ``state``'s complete top blocks.

        ``None`` when rollouts do not cover (``cover=False``, ``novelty=1`` or a
        grammar without top blocks).
        """
        if not (self.cover and self._top_nts and self.novelty > 1 and self._block_nts):
            return None
        context = frozenset(
            b for b in complete_subtrees(self.grammar, state.actions) if b[0] in self._top_nts
        )
        return self._covered.setdefault(context, set())

    def _novel_rollout(
        self,
        state: Derivation,
        weights: list[float] | None,
        covered: set[tuple[int, tuple[int, ...]]] | None = None,
    ) -> Derivation:
        """The rollout, of ``novelty`` drawn, with the most blocks never proposed before.

        A block is a complete sub-derivation of a non-recursive nonterminal
        (:attr:`Grammar.block_nonterminals`), e.g. one term of a sum; ties go to the
        first drawn.  With a :attr:`surrogate`, the rollout kept is instead the one
        with the lowest estimate among those with at least one new block (all of the
        most novel ones when none has; ties to the first drawn).  The chosen
        rollout's blocks count as proposed from then on.  ``covered``
        (:meth:`_covered_set` of ``state``, computed once for all of an expansion's
        rollouts) makes the rollout draw uncovered top blocks.
        """
        if self.novelty == 1 or not self._block_nts:
            return self._rollout(state, weights)
        seen = self._blocks if covered is None else covered
        drawn = []
        for _ in range(self.novelty):
            self._check_time()
            cand = self._rollout(state, weights, covered)
            blocks = self._block_set(cand)
            drawn.append((cand, blocks, len(blocks - seen)))
        most = max(new for *_, new in drawn)
        if self.surrogate is None:
            best = next(d for d in drawn if d[2] == most)
        else:
            pool = [d for d in drawn if d[2] >= min(most, 1)]
            scores = [self.surrogate(cand.expression()) for cand, *_ in pool]
            best = pool[min(range(len(pool)), key=scores.__getitem__)]
        self._blocks |= best[1]
        if covered is not None:
            covered |= best[1]
        return best[0]

    def _store(self, key: Any, expression: str, result: FitResult, actions: tuple[int, ...]):
        r = super()._store(key, expression, result, actions)
        self._note_top(key, r)
        return r

    def _n_top(self) -> int:
        return max(self.elite_top, self.transplant_top)

    def _note_top(self, key: Any, reward: float) -> None:
        """Keep ``_top``, the best results as ``(-reward, evaluation index, key)``, sorted.

        Updated with each new result (O(log k) instead of ranking every reward each
        iteration), so reuse stays cheap over long runs; ``_top_version`` counts changes.
        """
        top, k = self._top, self._n_top()
        entry = (-reward, len(self._rewards) - 1, key)
        if len(top) < k or entry < top[-1]:
            bisect.insort(top, entry)
            del top[k:]
            self._top_version += 1

    def _best_keys(self, n: int) -> list[Any]:
        """Keys of the ``n`` highest rewards (ties in order of evaluation)."""
        if n <= len(self._top) or len(self._top) == len(self._rewards):
            return [key for *_, key in self._top[:n]]
        return heapq.nlargest(n, self._rewards, key=self._rewards.__getitem__)

    def _elite_subtrees(self) -> dict[int, list[tuple[int, ...]]]:
        """Complete sub-derivations of the ``elite_top`` best expressions, by nonterminal."""
        if self._elite_at != self._top_version:
            self._elite_at = self._top_version
            subs: dict[int, list[tuple[int, ...]]] = {}
            seen = set()
            for key in self._best_keys(self.elite_top):
                if self._rewards[key] <= 0:
                    continue
                for nt, actions in complete_subtrees(self.grammar, self._actions.get(key, ())):
                    if (nt, actions) not in seen:
                        seen.add((nt, actions))
                        subs.setdefault(nt, []).append(actions)
            self._elite_subs = subs
        return self._elite_subs

    def _elite_rollout(
        self, state: Derivation, cap: int, weights: list[float] | None
    ) -> Derivation:
        """A rollout that, at each nonterminal, copies with probability ``elite`` a complete
        sub-derivation of one of the best expressions found (when it fits within ``cap``)."""
        subs = self._elite_subtrees()
        rng = self._rng
        while not state.is_complete:
            nt = state._stack[-1]
            room = state._budget(cap)
            options = subs.get(nt)
            if options and rng.random() < self.elite:
                fits = [a for a in options if len(a) <= room]
                if fits:
                    state = state.apply_all(fits[int(rng.integers(len(fits)))])
                    continue
            state = self._draw(state, cap, weights)
        return state

    def _step(self, callback: Callable[[FitResult], Any] | None) -> list[FitResult]:
        if self._partial:  # a batch the budget cut short: finish it before anything else
            proposal: _Proposal | None | bool = True
        else:
            proposal = self._propose()
            if proposal is not None:
                self._inflight.append(proposal)
        fresh: list[FitResult] = []
        # commit the oldest proposals; with pipeline=p the newest p stay in flight
        while self._inflight and (
            len(self._inflight) > self.pipeline or proposal is None or self._partial
        ):
            out, done = self._commit(self._inflight[0], callback)
            fresh += out
            if not done:  # the budget is spent: the rest of the batch waits for a next run
                self._partial = True
                return fresh
            self._partial = False
            self._inflight.pop(0)
            if proposal is None:
                break  # selection was blocked by pending expansions: one commit frees it
        if self.transplant and self.n_evaluations >= self._next_transplant:
            self._transplant()
            while self._next_transplant <= self.n_evaluations:
                self._next_transplant += self.transplant_every
        return fresh

    def _propose(self) -> _Proposal | None:
        """Select and expand ``leaves`` leaves, roll them out and send the new expressions."""
        weights = None
        loss = self._rmin if math.isfinite(self._rmin) else 0.0
        prop = _Proposal(loss if self.leaves > 1 or self.pipeline > 0 else None)
        try:
            for _ in range(self.leaves):
                path = self._select()
                if path is None:
                    break
                leaf = path[-1]
                j = int(self._rng.integers(len(leaf.untried)))
                action = leaf.untried[j]
                state = self._apply(leaf.state, action)
                if state.is_complete:
                    completions = [state]
                else:
                    if weights is None:
                        weights = self._rollout_weights()
                    covered = self._covered_set(state)
                    completions = []
                    for _ in range(self.n_rollouts):
                        self._check_time()
                        completions.append(self._novel_rollout(state, weights, covered))
                leaf.untried.pop(j)
                prop.expansions.append((path, j, action, state, completions))
                if prop.virtual_loss is not None:
                    self._virtual_loss(path, +1, prop.virtual_loss)
            if not prop.expansions:
                return None
            self._fill(prop)
            submit = getattr(self.evaluate, "submit", None)
            if (
                prop.new
                and submit is not None
                and self.pipeline > 0
                and len(prop.new) <= self.fits_left()  # else fitted at commit, to the budget
            ):
                prop.handle = submit([expr for _, expr, _ in prop.new])
        except OutOfTime:  # the deadline passed while drawing: nothing of it is fitted
            self._withdraw(prop)
            return None
        except BaseException:
            self._withdraw(prop)
            raise
        return prop

    def _fill(self, prop: _Proposal) -> None:
        """Fill ``prop.completions`` and ``prop.new`` (the completions neither fitted nor
        in flight, each once)."""
        waiting = {key for p in self._inflight for key, _, _ in p.new}
        for *_, completions in prop.expansions:
            for state in completions:
                expr = state.expression()
                key = self._key(expr)
                prop.completions.append((key, expr, state))
                if key not in self._cache and key not in waiting:
                    waiting.add(key)
                    prop.new.append((key, expr, state))

    def _pending_fits(self) -> int:
        return sum(key not in self._rewards for p in self._inflight for key, _, _ in p.new)

    def _withdraw(self, prop: _Proposal) -> None:
        """Undo a proposal that will not be committed: actions back, virtual losses off."""
        for path, j, action, *_ in reversed(prop.expansions):
            path[-1].untried.insert(min(j, len(path[-1].untried)), action)
            if prop.virtual_loss is not None:
                self._virtual_loss(path, -1, prop.virtual_loss)

    def _commit(self, prop: _Proposal, callback) -> tuple[list[FitResult], bool]:
        """Collect a proposal's fits, record them, back the rewards up the tree.

        At most :attr:`fit_limit` evaluations are reached: a batch larger than the fits
        left is recorded in part and stays first in flight (returns ``(fresh, False)``;
        the next step fits the rest, as many as the budget then allows, and backs it up),
        so a search stopped by its budget and resumed fits what an uninterrupted one does.
        A batch the :attr:`deadline` cuts (:meth:`_fit_in_time`) waits the same way.
        """
        fresh: list[FitResult] = []
        try:
            # prop.new in order, then anything still unknown (an earlier proposal that was
            # withdrawn): fitted now, those a budget-cut commit has not recorded yet
            todo: dict[Any, tuple[str, Derivation]] = {}
            for key, expr, state in (*prop.new, *prop.completions):
                if key not in self._rewards and key not in todo:
                    todo[key] = (expr, state)
            room = math.inf if self.fit_limit is None else self.fit_limit - self.n_evaluations
            room = max(0, room)
            items = list(todo.items())[: int(min(len(todo), room))]
            by_key: dict[Any, FitResult] = {}
            if prop.handle is not None:  # the batch sent to the workers when proposed
                exprs = [expr for _, expr, _ in prop.new]
                results = self._checked(prop.handle.result(), exprs)
                by_key = dict(zip((k for k, _, _ in prop.new), results, strict=True))
                prop.handle = None
            need = [(k, e) for k, (e, _) in items if k not in by_key]
            if need:  # under a deadline possibly only the leading ones
                results = self._fit_in_time([e for _, e in need])
                by_key.update(zip((k for k, _ in need), results, strict=False))
            items = [item for item in items if item[0] in by_key]
            results = [by_key[k] for k, _ in items]
            for (key, (expr, state)), res in zip(items, results, strict=True):
                if self._record(key, expr, state, res):
                    fresh.append(res)
        except BaseException:
            self._inflight.remove(prop)
            self._partial = False
            self._withdraw(prop)
            raise
        # callbacks only once the whole batch is cached: a callback that fits more
        # expressions (local moves) then never refits one of this batch
        if callback is not None:
            for res in fresh:
                callback(res)
        if len(items) < len(todo):
            return fresh, False
        rewards = [self._rewards[k] for k, _, _ in prop.completions]
        if prop.virtual_loss is not None:
            for path, *_ in prop.expansions:
                self._virtual_loss(path, -1, prop.virtual_loss)
        k = 0
        for path, _j, action, state, completions in prop.expansions:
            reward = max(rewards[k : k + len(completions)])
            k += len(completions)
            leaf = path[-1]
            child = _Node(state, action, leaf)
            leaf.children[action] = child
            self.n_nodes += 1
            if state.is_complete:
                child.exhausted = True
            else:
                child.untried = self._legal(child)
            for node in path:
                node.n += 1
                node.w += reward
            child.n += 1
            child.w += reward
            self._rmin = min(self._rmin, reward)
            self._rmax = max(self._rmax, reward)
            if child.exhausted:
                self._mark_exhausted(leaf)
            self.n_iterations += 1
        return fresh, True

    def _virtual_loss(self, path: list[_Node], sign: int, loss: float) -> None:
        """Count a pending expansion as a visit with reward ``loss`` (or undo it).

        Later selections then prefer other paths (tree parallelism with virtual loss);
        nodes with pending expansions are never marked exhausted.
        """
        for node in path:
            node.n += sign
            node.w += sign * loss
            key = id(node)
            self._pending[key] = self._pending.get(key, 0) + sign
            if not self._pending[key]:
                del self._pending[key]

    # ------------------------------------------------------------------ transplantation
    def _subtrees(self, actions: tuple[int, ...]) -> list[tuple[int, tuple[int, ...]]]:
        return [
            (nt, sub)
            for nt, sub in complete_subtrees(self.grammar, actions)
            if 2 <= len(sub) <= self.transplant_max_length
        ]

    def _transplant(self) -> None:
        if len(self.macros) >= self.max_macros:
            return
        for key in self._best_keys(self.transplant_top):
            for macro in self._subtrees(self._actions[key]):
                if macro not in self._macro_keys and len(self.macros) < self.max_macros:
                    self._macro_keys.add(macro)
                    self.macros.append(macro)

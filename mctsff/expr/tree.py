"""Immutable partial leftmost derivations: the states of the tree search.

A :class:`Derivation` is the emitted terminal prefix plus the stack of pending
symbols; its leftmost pending symbol is always a nonterminal (terminals are
shifted to the prefix as soon as they become leftmost).  Applying a production
(an *action*, identified by its index in :attr:`mctsff.expr.grammar.Grammar.productions`)
replaces that nonterminal by the production's right-hand side.  A derivation is
complete when nothing is pending; its yield is :meth:`Derivation.expression`.

Everything here works on the integer tables the grammar precomputes, so
:meth:`Derivation.apply` and :meth:`Derivation.rollout` stay in plain Python
without sympy (a 50-production rollout takes a few tens of microseconds).
"""

from __future__ import annotations

from bisect import bisect_right
from typing import TYPE_CHECKING

import numpy as np

from mctsff.expr.grammar import Grammar, Production

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

__all__ = ["Derivation", "complete_subtrees", "derive", "subtree_end"]


class Derivation:
    """A partial leftmost derivation (immutable, hashable).

    Parameters are internal; start with :meth:`initial`.

    Attributes
    ----------
    grammar
        The grammar.
    n_productions
        Number of productions applied so far.
    actions
        The production indices applied, in order.
    min_remaining
        Minimum number of productions still needed to complete it.

    Notes
    -----
    Equality and hashing use :attr:`key` (emitted prefix and pending stack) and
    :attr:`n_productions`; two derivations with equal ``key`` have the same
    completions.
    """

    __slots__ = ("grammar", "_emitted", "_stack", "n_productions", "min_remaining", "actions")

    def __init__(
        self,
        grammar: Grammar,
        emitted: tuple[int, ...],
        stack: tuple[int, ...],
        n_productions: int,
        min_remaining: int,
        actions: tuple[int, ...],
    ) -> None:
        self.grammar = grammar
        self._emitted = emitted
        self._stack = stack
        self.n_productions = n_productions
        self.min_remaining = min_remaining
        self.actions = actions

    @classmethod
    def initial(cls, grammar: Grammar, symbol: int | None = None) -> Derivation:
        """The derivation holding only the start symbol (or nonterminal id ``symbol``).

        A derivation from another nonterminal derives one of its sub-derivations
        (MCTS's covering rollouts draw the terms of a sum this way).
        """
        tab = grammar._tables
        nt = tab.start if symbol is None else int(symbol)
        return cls(grammar, (), (nt,), 0, tab.nt_min[nt], ())

    # ------------------------------------------------------------------ state
    @property
    def is_complete(self) -> bool:
        """True when no symbol is pending."""
        return not self._stack

    @property
    def key(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Canonical key: (emitted terminal ids, pending stack)."""
        return (self._emitted, self._stack)

    @property
    def leftmost(self) -> str | None:
        """Name of the leftmost pending nonterminal (``None`` when complete)."""
        if not self._stack:
            return None
        return self.grammar.nonterminals[self._stack[-1]]

    @property
    def pending(self) -> tuple[str, ...]:
        """Pending symbols, leftmost first."""
        g = self.grammar
        return tuple(
            g.nonterminals[s] if s >= 0 else g.terminals[-1 - s] for s in reversed(self._stack)
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Derivation):
            return NotImplemented
        return (
            self._emitted == other._emitted
            and self._stack == other._stack
            and self.n_productions == other.n_productions
            and self.grammar is other.grammar
        )

    def __hash__(self) -> int:
        return hash((self._emitted, self._stack, self.n_productions))

    def __repr__(self) -> str:
        return f"Derivation({self.partial_string()!r}, n={self.n_productions})"

    # ------------------------------------------------------------------ actions
    def _budget(self, max_length: int) -> int:
        tab = self.grammar._tables
        nt = self._stack[-1]
        return max_length - self.n_productions - self.min_remaining + tab.nt_min[nt]

    def legal_actions(self, max_length: int) -> tuple[int, ...]:
        """Productions of the leftmost nonterminal still completable in ``max_length``.

        Returns production indices in grammar order; empty when complete or when
        the derivation cannot be completed within ``max_length`` productions.
        """
        if not self._stack:
            return ()
        tab = self.grammar._tables
        nt = self._stack[-1]
        k = bisect_right(tab.by_nt_min[nt], self._budget(max_length))
        return tuple(sorted(tab.by_nt[nt][:k]))

    def apply(self, action: int | Production) -> Derivation:
        """The derivation after expanding the leftmost nonterminal with ``action``."""
        p = action.index if isinstance(action, Production) else int(action)
        tab = self.grammar._tables
        stack = self._stack
        if not stack:
            raise ValueError("derivation is complete")
        nt = stack[-1]
        if tab.prod_lhs[p] != nt:
            raise ValueError(
                f"production {self.grammar.productions[p]} does not expand {self.leftmost!r}"
            )
        new = stack[:-1] + tab.prod_push[p]
        emitted = self._emitted
        if new and new[-1] < 0:
            lst = list(new)
            em = list(emitted)
            while lst and lst[-1] < 0:
                em.append(lst.pop())
            new, emitted = tuple(lst), tuple(em)
        return Derivation(
            self.grammar,
            emitted,
            new,
            self.n_productions + 1,
            self.min_remaining - tab.nt_min[nt] + tab.prod_min[p] - 1,
            (*self.actions, p),
        )

    def apply_all(self, actions: Iterable[int | Production]) -> Derivation:
        """Apply a sequence of actions."""
        d = self
        for a in actions:
            d = d.apply(a)
        return d

    def rollout(
        self,
        rng: np.random.Generator,
        max_length: int,
        weights: Sequence[float] | None = None,
    ) -> Derivation:
        """Complete the derivation with random legal productions.

        Parameters
        ----------
        rng
            Random generator (one ``rng.random`` call per rollout).
        max_length
            Bound on the total number of productions of the completed derivation.
        weights
            Optional positive weight per production (indexed like
            :attr:`Grammar.productions`): each legal production of the leftmost
            nonterminal is drawn with probability proportional to its weight.
            ``None`` draws them uniformly.

        Raises
        ------
        ValueError
            When the derivation cannot be completed within ``max_length``.
        """
        n = self.n_productions
        rem = self.min_remaining
        if n + rem > max_length:
            raise ValueError(f"cannot complete within {max_length} productions")
        if not self._stack:
            return self
        tab = self.grammar._tables
        nt_min, by_nt, by_nt_min = tab.nt_min, tab.by_nt, tab.by_nt_min
        prod_min, push = tab.prod_min, tab.prod_push
        stack = list(self._stack)
        em = list(self._emitted)
        acts = list(self.actions)
        u = rng.random(max_length - n).tolist()
        i = 0
        pop, extend, emit, act = stack.pop, stack.extend, em.append, acts.append
        while stack:
            nt = pop()
            m = nt_min[nt]
            k = bisect_right(by_nt_min[nt], max_length - n - rem + m)
            if weights is None:
                p = by_nt[nt][int(u[i] * k)]
            else:
                cands = by_nt[nt]
                x = u[i] * sum(weights[c] for c in cands[:k])
                for p in cands[:k]:
                    x -= weights[p]
                    if x < 0:
                        break
            i += 1
            act(p)
            rem += prod_min[p] - 1 - m
            n += 1
            extend(push[p])
            while stack and stack[-1] < 0:
                emit(pop())
        return Derivation(self.grammar, tuple(em), (), n, 0, tuple(acts))

    # ------------------------------------------------------------------ output
    def _parts(self) -> list[str]:
        tab = self.grammar._tables
        text, prefix = tab.term_text, tab.term_prefix
        ws, we, os_, oe = tab.term_word_start, tab.term_word_end, tab.term_op_start, tab.term_op_end
        counts: dict[str, int] = {}
        parts: list[str] = []
        prev = -1
        for t in self._emitted:
            t = -1 - t
            s = text[t]
            if s is None:
                pre = prefix[t]
                c = counts.get(pre, 0) + 1
                counts[pre] = c
                s = f"{pre}{c}"
            if prev >= 0 and ((we[prev] and ws[t]) or (oe[prev] and os_[t])):
                parts.append(" ")
            parts.append(s)
            if s:
                prev = t
        return parts

    def expression(self) -> str:
        """The yield: an expression string with placeholder constants numbered.

        Raises
        ------
        ValueError
            When the derivation is not complete.
        """
        if self._stack:
            raise ValueError(f"incomplete derivation {self.partial_string()!r}")
        return "".join(self._parts())

    def prefix(self) -> str:
        """Text emitted so far (placeholders numbered); the expression when complete."""
        return "".join(self._parts())

    def partial_string(self) -> str:
        """Emitted prefix followed by the pending symbols in angle brackets."""
        pending = " ".join(
            f"<{s}>" if not self.grammar.is_terminal(s) else repr(self.grammar.terminal_text[s])
            for s in self.pending
        )
        return f"{self.prefix()} {pending}".strip()

    def complexity(self) -> float:
        """Complexity of the complete expression (:meth:`Grammar.complexity`)."""
        return self.grammar.complexity(self.expression())

    def __reduce__(self):
        return (
            Derivation,
            (
                self.grammar,
                self._emitted,
                self._stack,
                self.n_productions,
                self.min_remaining,
                self.actions,
            ),
        )


def derive(grammar: Grammar, actions: Iterable[int | Production]) -> Derivation:
    """Derivation obtained by applying ``actions`` from the start symbol."""
    return Derivation.initial(grammar).apply_all(actions)


def subtree_end(grammar: Grammar, actions: Sequence[int], i: int) -> int:
    """End (exclusive) of the sub-derivation that starts at position ``i``.

    Parameters
    ----------
    grammar
        The grammar of the derivation.
    actions
        Production indices of a leftmost derivation (complete or not).
    i
        Position of the production expanding the nonterminal occurrence.

    Returns
    -------
    int
        ``j`` such that ``actions[i:j]`` expands that occurrence completely.

    Raises
    ------
    ValueError
        When the sub-derivation is incomplete.
    """
    nnt = grammar._tables.prod_nnt
    count, j = 1, i
    n = len(actions)
    while count > 0:
        if j >= n:
            raise ValueError(f"sub-derivation at {i} is incomplete")
        count += nnt[actions[j]] - 1
        j += 1
    return j


def complete_subtrees(
    grammar: Grammar, actions: Sequence[int]
) -> Iterator[tuple[int, tuple[int, ...]]]:
    """Every complete sub-derivation below the root of a derivation.

    Yields
    ------
    tuple[int, tuple[int, ...]]
        ``(left-hand side nonterminal index, production indices)`` for each
        position ``i >= 1`` whose expansion is complete within ``actions``.
    """
    for i in range(1, len(actions)):
        try:
            j = subtree_end(grammar, actions, i)
        except ValueError:
            continue
        yield grammar._tables.prod_lhs[actions[i]], tuple(actions[i:j])

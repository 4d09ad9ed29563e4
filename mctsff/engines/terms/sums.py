"""The grammar side of the term library: where a grammar writes a signed sum of terms, its
single terms, and sums of them written and parsed back as the grammar derives them."""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from mctsff.expr.grammar import PLACEHOLDERS, Grammar
from mctsff.expr.tree import Derivation

__all__ = [
    "CONST_RE",
    "MAX_SINGLE_TERMS",
    "SumStructure",
    "compose",
    "composed",
    "renumber",
    "single_terms",
    "sum_structure",
]

#: Most complete sub-derivations of the term nonterminals enumerated (``pair``: 273).
MAX_SINGLE_TERMS = 5000

#: A placeholder constant (``c1``, ``prod_c2``): its kind and its number.
CONST_RE = re.compile(
    r"\b("
    + "|".join(sorted((re.escape(p) for p in PLACEHOLDERS.values()), key=len, reverse=True))
    + r")(\d+)\b"
)


# ----------------------------------------------------------------------------- grammar side
@dataclass(frozen=True)
class SumStructure:
    """Where a grammar writes a signed sum of terms.

    Attributes
    ----------
    sum_nonterminal
        The recursive nonterminal of the sum (``potential`` in ``pair``).
    term_nonterminals
        Nonterminals of its terms (``term``), in grammar order.
    operators
        Texts of the sum's operators the grammar has (``("+", "-")``).
    """

    sum_nonterminal: str
    term_nonterminals: tuple[str, ...]
    operators: tuple[str, ...]


def sum_structure(grammar: Grammar) -> SumStructure | None:
    """The grammar's sum of terms, or ``None`` where it has none.

    A sum is a recursive nonterminal ``S`` with binary productions ``S: S op T`` or
    ``S: T op S`` where ``op`` is the terminal ``"+"`` or ``"-"`` and ``T`` is one of the
    grammar's top blocks (finitely many complete sub-derivations).  The first such ``S``
    in grammar order is taken.
    """
    blocks = grammar.top_blocks
    for nt in grammar.nonterminals:
        if nt not in grammar.recursive:
            continue
        terms: list[str] = []
        operators: list[str] = []
        for p in grammar.productions_for(nt):
            if len(p.rhs) != 3:
                continue
            a, op, b = p.rhs
            text = grammar.terminal_text.get(op)
            if text is None or text.strip() not in ("+", "-"):
                continue
            other = b if a == nt else a if b == nt else None
            if other is None or other not in blocks:
                continue
            if other not in terms:
                terms.append(other)
            if text.strip() not in operators:
                operators.append(text.strip())
        if terms:
            return SumStructure(nt, tuple(terms), tuple(operators))
    return None


def _expansions(grammar: Grammar, nt: str, limit: int, memo: dict) -> list[tuple[int, ...]]:
    """Every complete leftmost sub-derivation of the non-recursive ``nt`` (at most ``limit``)."""
    if nt in memo:
        return memo[nt]
    out: list[tuple[int, ...]] = []
    for p in grammar.productions_for(nt):
        if not math.isfinite(p.min_length):
            continue
        parts = [[()]]
        for s in p.rhs:
            if not grammar.is_terminal(s):
                parts.append(_expansions(grammar, s, limit, memo))
        for combo in itertools.product(*parts):
            out.append((p.index, *itertools.chain.from_iterable(combo)))
            if len(out) >= limit:
                memo[nt] = out
                return out
    memo[nt] = out
    return out


def single_terms(grammar: Grammar, structure: SumStructure | None = None) -> list[str]:
    """The expressions of every complete sub-derivation of the sum's term nonterminals.

    In grammar order, at most :data:`MAX_SINGLE_TERMS`; empty without a sum structure.
    Each is numbered as the grammar numbers it on its own (``c1*exp(-r/c2)``).
    """
    structure = structure if structure is not None else sum_structure(grammar)
    if structure is None:
        return []
    ids = {nt: i for i, nt in enumerate(grammar.nonterminals)}
    out: list[str] = []
    memo: dict = {}
    for nt in structure.term_nonterminals:
        for actions in _expansions(grammar, nt, MAX_SINGLE_TERMS - len(out), memo):
            d = Derivation.initial(grammar, ids[nt]).apply_all(actions)
            if d.is_complete:
                out.append(d.expression())
        if len(out) >= MAX_SINGLE_TERMS:
            break
    return list(dict.fromkeys(out))


def renumber(expression: str) -> str:
    """Placeholder constants renumbered in order of appearance, one counter per kind (as
    the grammar numbers them); each occurrence is a new constant."""
    counters: dict[str, int] = {}

    def sub(m: re.Match) -> str:
        counters[m.group(1)] = counters.get(m.group(1), 0) + 1
        return f"{m.group(1)}{counters[m.group(1)]}"

    return CONST_RE.sub(sub, expression)


def compose(
    terms: Sequence[tuple[str, str]], grammar: Grammar, max_length: int | None = None
) -> str | None:
    """One expression of ``terms`` (``(sign, term)`` pairs, sign ``"+"`` or ``"-"``), as the
    grammar writes it, or ``None`` where the grammar cannot derive it (in at most
    ``max_length`` productions).

    The first term is written without its sign when that is ``"+"``; constants are
    renumbered in order of appearance (:func:`renumber`).  The text is parsed back with
    the grammar (:meth:`~mctsff.expr.grammar.Grammar.derivation_of`): nothing the
    grammar does not derive is ever returned.
    """
    found = composed(terms, grammar)
    if found is None or (max_length is not None and found[1] > max_length):
        return None
    return found[0]


def composed(terms: Sequence[tuple[str, str]], grammar: Grammar) -> tuple[str, int] | None:
    """:func:`compose` without a length limit: the text and its number of productions."""
    parts = []
    for i, (sign, term) in enumerate(terms):
        if i == 0:
            parts.append(term if sign == "+" else f"-{term}")
        else:
            parts.append(f"{sign}{term}")
    text = renumber("".join(parts))
    actions = grammar.derivation_of(text)
    return None if actions is None else (text, len(actions))

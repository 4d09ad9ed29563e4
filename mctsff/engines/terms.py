"""Term library: sums of the grammar's own terms chosen by sparse selection on the forces.

A pair potential is mostly a signed sum of a few terms, each an amplitude times a basis
function with one or two nonlinear constants.  Where the grammar writes potentials that
way, this module proposes which terms belong together, in the spirit of FFX and
orthogonal matching pursuit:

1. :func:`sum_structure` finds the sum in the grammar: a recursive nonterminal ``S`` with
   a production ``S: S "+" T`` (or ``S "-" T``, or ``T "+" S``) whose ``T`` is a
   :attr:`~mctsff.expr.grammar.Grammar.top_blocks` nonterminal, one with finitely many
   complete sub-derivations (``potential`` and ``term`` in ``pair``).  A grammar without
   one (``nguyen``: ``expr: expr "+" expr``) has no library and the proposals are off.
2. :func:`single_terms` enumerates every complete sub-derivation of those ``T`` (273
   terms in ``pair``); terms that differ only in how their amplitudes combine over atom
   types (``c1/r``, ``prod_c1/r``, ``geom_c1/r``) are one *shape* with several *kinds*.
3. :class:`TermLibrary` evaluates every shape's force columns on a subset of the
   training frames, its nonlinear constants on grids (the fitter's scan axes,
   :mod:`mctsff.fit.scan`) and one column per type pair for each amplitude that some
   kind lets vary with the types.  A beam of forward selections (orthogonal matching
   pursuit) grows sets of 1 to ``max_terms`` shapes: the candidates added to a set are
   the shapes whose best grid point lowers its residual most, their constants refined on
   a line; the new sets with the lowest loss at those constants (``refine_per_level`` per
   number of nonlinear constants) have their nonlinear constants refined with all
   amplitudes solved by least squares at each step (variable projection); the beam keeps
   the best sets for
   each number of nonlinear constants (a Pareto beam, so simple sets are not crowded out
   by flexible ones), and each final set is also tried without each of its terms
   (backward elimination).  Sets are ranked by Schwarz's criterion (misfit against
   constants).  For each set the kinds are chosen by refitting the amplitudes under each
   combining rule (global, product, geometric, arithmetic, per pair), the simplest
   within ``kind_tol`` first, then the lowest loss.
4. Each chosen set is written as one expression, its terms joined by the grammar's
   ``+``/``-`` and its constants renumbered as the grammar numbers them; the selection's
   constants go with it under those names (:attr:`Proposal.start`).  **Every
   proposal is parsed back with the grammar in use**
   (:meth:`~mctsff.expr.grammar.Grammar.derivation_of`) and dropped if the grammar
   cannot derive it or needs more than ``max_length`` productions for it; the dropped
   ones are counted in :attr:`TermLibrary.n_underivable`.

The search (:func:`mctsff.search.search` with ``terms=True``, the default; ``terms=False``
and ``--no-terms`` turn it off) fits the proposals through its evaluator, as candidates
that count against the budget, and records them in the engine's transposition table with
their derivations (a state jump: MCTS's building-block reuse and the local moves take them
up like the engine's own); at most ``terms_share`` of all fits go to them.  Each is fitted
from the selection's constants too (the fitter's ``start``), so its fit does not have to
find again the optimum the selection found.  A batch of
them cut short by the budget or the time limit is finished first on resume, so a resumed
search fits what an uninterrupted one does.  The dictionary and the selection cost no
fits, but CPU time before the first proposal, which grows with the grammar's terms and
the selection's pairs (``max_pairs``); a selection is kept per process by its grammar,
data and settings (:data:`CACHE_SIZE` of them), so searches on the same data select once,
and a search's time limit ends it.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mctsff.expr import ops
from mctsff.expr.grammar import PLACEHOLDERS, Grammar
from mctsff.expr.tree import Derivation
from mctsff.fit.forces import SCAN_PAIRS

__all__ = [
    "SumStructure",
    "TermLibrary",
    "TermProposals",
    "Proposal",
    "compose",
    "single_terms",
    "sum_structure",
]

#: Most grid points of a shape with two or three scanned constants (8 × 8, 4 × 4 × 4).
GRID_POINTS = 64

#: First step (a factor) of the line search on a term's nonlinear constants.
LINE_STEP = 1.1

#: Most complete sub-derivations of the term nonterminals enumerated (``pair``: 273).
MAX_SINGLE_TERMS = 5000

#: Selections kept per process (:meth:`TermLibrary.proposals`).
CACHE_SIZE = 8

#: digest of a selection's inputs -> (its proposals, proposals the grammar could not derive)
_SELECTIONS: dict[bytes, tuple[tuple[Proposal, ...], int]] = {}

_CONST_RE = re.compile(
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

    return _CONST_RE.sub(sub, expression)


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
    found = _composed(terms, grammar)
    if found is None or (max_length is not None and found[1] > max_length):
        return None
    return found[0]


def _composed(terms: Sequence[tuple[str, str]], grammar: Grammar) -> tuple[str, int] | None:
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


# ----------------------------------------------------------------------------- data side
def _fingerprint(X: np.ndarray) -> bytes:
    """Columns rounded to 8 significant digits, scaled by their largest entry."""
    scale = float(np.abs(X).max()) or 1.0
    return np.round(X / scale, 8).tobytes()


def _lstsq(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares coefficients of ``y`` on the columns ``X``, each column scaled to unit
    norm for the solve: a term's columns can be many orders of magnitude apart from
    another's (``exp(c*r**2)`` near the cutoff), and unscaled the small ones fall under
    the solver's rank cut and get no amplitude."""
    norms = np.linalg.norm(X, axis=0)
    norms[~(norms > 0) | ~np.isfinite(norms)] = 1.0
    a, *_ = np.linalg.lstsq(X / norms, y, rcond=None)
    return a / norms


class _Stopped(Exception):
    """The selection was ended by its ``stop`` callable."""


@dataclass
class _Shape:
    """Terms equal up to the combining rules of their amplitudes."""

    key: str
    kinds: dict[tuple[str, ...], str] = field(default_factory=dict)  # amplitude rules -> term
    program: object = None  # the first kind's Program
    text: str = ""  # the first kind's term (the program's text)
    slots: tuple[int, ...] = ()  # constant indices of the amplitudes
    split: tuple[bool, ...] = ()  # per amplitude: one column per type pair
    nonlinear: tuple[str, ...] = ()  # names of the scanned constants


@dataclass
class Proposal:
    """One proposed sum: its expression and what the selection saw of it.

    ``rel_loss`` is the selected set's loss, its amplitudes free per type pair;
    ``written_loss`` that of the expression with the combining rules it is written with
    (up to ``kind_tol`` more, or the set's own where a rule is simplified), both relative
    to U = 0.  ``start`` holds the selection's constants by the expression's parameter
    names (:meth:`~mctsff.fit.forces.Fitter.fit`'s ``start``): the refined nonlinear
    constants, and the amplitudes solved with them (per type for a product or geometric
    rule, from the rank-one factor of the per-pair amplitudes).
    """

    expression: str
    n_terms: int
    rel_loss: float  # the dictionary's loss relative to U = 0
    length: int = 0  # productions of its derivation in the grammar
    start: dict[str, float] = field(default_factory=dict)
    written_loss: float = math.nan


class TermLibrary:
    """Sparse selection of sums of the grammar's terms on force-matching data.

    Parameters
    ----------
    grammar
        The grammar in use; its sum structure (:func:`sum_structure`) gives the terms.
    fitter
        A :class:`~mctsff.fit.forces.Fitter` on a :class:`~mctsff.data.Dataset` (a
        projection or a regression objective gives an empty library).
    max_terms
        Largest number of terms in a proposal.
    beam
        Sets kept per number of terms and number of nonlinear constants.
    max_length
        Largest derivation of a proposal (the search's ``max_length``).
    max_pairs
        Pairs of the training frames the dictionary is evaluated on (frames spread evenly;
        as many as the fitter's scan uses, :data:`~mctsff.fit.forces.SCAN_PAIRS`).
    points
        Grid values of a shape with one scanned constant (with two or three, at most
        :data:`GRID_POINTS` points in all).
    candidates
        Shapes added to each set per number of nonlinear constants (twice as many to the
        empty set).
    refine_nfev
        Residual evaluations of each set's refinement (0: grid values only).
    refine_per_level
        New sets refined per number of terms and number of nonlinear constants (the
        lowest-loss ones at their line-refined constants); the others keep that loss.
    kind_tol
        Relative loss (to U = 0) within which a simpler combining rule of an amplitude
        is preferred to a more flexible one.
    """

    def __init__(
        self,
        grammar: Grammar,
        fitter,
        *,
        max_terms: int = 3,
        beam: int = 3,
        max_length: int | None = None,
        max_pairs: int = SCAN_PAIRS,
        points: int = 32,
        kind_tol: float = 1e-3,
        candidates: int = 4,
        refine_nfev: int = 20,
        refine_per_level: int = 12,
    ) -> None:
        self.grammar = grammar
        self.fitter = fitter
        self.max_terms = int(max_terms)
        self.beam = int(beam)
        self.max_length = max_length
        self.max_pairs = int(max_pairs)
        self.points = int(points)
        self.kind_tol = float(kind_tol)
        self.candidates = int(candidates)
        self.refine_nfev = int(refine_nfev)
        self.refine_per_level = int(refine_per_level)
        self.structure = sum_structure(grammar)
        #: proposals the grammar could not derive (dropped, never fitted)
        self.n_underivable = 0
        #: whether the selection was ended by ``stop`` (:meth:`proposals`)
        self.stopped = False
        self._stop: Callable[[], bool] | None = None
        self._proposals: list[Proposal] | None = None

    @property
    def applies(self) -> bool:
        """Whether the grammar has a sum of terms and the fitter force-matching data."""
        train = getattr(self.fitter, "train", None)
        return (
            self.structure is not None
            and hasattr(self.fitter, "type_pairs")
            and hasattr(train, "subset")
            and hasattr(train, "pair_offsets")
        )

    def proposals(self, stop: Callable[[], bool] | None = None) -> list[Proposal]:
        """The proposed sums, most promising first (built on first use).

        The last :data:`CACHE_SIZE` selections of the process are kept by everything they
        depend on (the grammar's text, the settings, the fitter's types, cutoff, shift
        scheme, variables and complexity weights, the selection's data and row weights),
        so searches on the same data and grammar select once (with any ``max_length``:
        the proposals with longer derivations are dropped afterwards).  A selection that
        ``stop()`` ends (checked between its steps: a search's time limit) gives no
        proposals, is not kept, and sets :attr:`stopped`."""
        if self._proposals is None:
            if not self.applies:
                self._proposals = []
                return self._proposals
            target, w = self._data()
            key = self._key(target, w)
            hit = _SELECTIONS.pop(key, None)
            if hit is None:
                self._stop = stop
                try:
                    hit = (tuple(self._build(target, w)), self.n_underivable)
                except _Stopped:
                    self.stopped = True
                    self._proposals = []
                    return self._proposals
                finally:
                    self._stop = None
            _SELECTIONS[key] = hit  # the most recent last
            while len(_SELECTIONS) > CACHE_SIZE:
                del _SELECTIONS[next(iter(_SELECTIONS))]
            props, n_none = hit
            limit = self.max_length
            self._proposals = [p for p in props if limit is None or p.length <= limit]
            self.n_underivable = n_none + len(props) - len(self._proposals)
        return self._proposals

    def _key(self, target, w) -> bytes:
        """Digest of everything the selection depends on."""
        f = self.fitter
        o = f.options
        settings = (
            self.grammar.text,
            self.max_terms,
            self.beam,
            self.max_pairs,
            self.points,
            self.kind_tol,
            self.candidates,
            self.refine_nfev,
            self.refine_per_level,
            tuple(f.species),
            tuple(f.type_pairs),
            float(f.cutoff),
            str(f.scheme),
            str(getattr(f.options, "match", "atoms")),
            float(getattr(f, "r_min", 1.0)),
            repr(o.variables),
            repr(o.complexity_weights),
            int(target.n_atoms),
        )
        h = hashlib.blake2b(repr(settings).encode(), digest_size=20)
        for a in (
            target.r,
            target.u,
            target.pair_i,
            target.pair_j,
            target.pair_type,
            target.pair_frame,
            target.forces,
            w,
        ):
            a = np.ascontiguousarray(a)
            h.update(f"{a.dtype}{a.shape}".encode())
            h.update(a.tobytes())
        return h.digest()

    def _check(self) -> None:
        if self._stop is not None and self._stop():
            raise _Stopped

    # ------------------------------------------------------------------ dictionary
    def _shapes(self) -> list[_Shape]:
        from mctsff.expr.params import Parameterization
        from mctsff.expr.program import ExpressionError

        fitter = self.fitter
        shapes: dict[str, _Shape] = {}
        for term in single_terms(self.grammar, self.structure):
            try:
                prog = fitter.compile(term)
            except (ExpressionError, ValueError, SyntaxError):
                continue
            par = Parameterization(prog, fitter.species, fitter.type_pairs)
            lin_mask = par.linear_mask()
            linear = {par.base_name(n) for n, m in zip(par.names, lin_mask, strict=True) if m}
            linear |= {prog.constants[k] for k in par.typed_prefactors()}
            if not linear:
                continue  # no amplitude: nothing to select it with
            slots = tuple(k for k, c in enumerate(prog.constants) if c in linear)
            nonlinear = tuple(c for c in prog.constants if c not in linear)
            if any(ops.constant_rule(c) != "global" for c in nonlinear):
                continue  # per-type nonlinear constants: not on a grid here
            rules = tuple(ops.constant_rule(prog.constants[k]) for k in slots)
            key = _CONST_RE.sub(
                lambda m, lin=linear: "\x00A" if m.group(0) in lin else "\x00N", term
            )
            shape = shapes.get(key)
            if shape is None:
                shape = shapes[key] = _Shape(
                    key, program=prog, text=term, slots=slots, nonlinear=nonlinear
                )
            shape.kinds.setdefault(rules, term)
        for shape in shapes.values():
            shape.split = tuple(
                any(rules[i] != "global" for rules in shape.kinds) for i in range(len(shape.slots))
            )
        return list(shapes.values())

    def _data(self):
        """Target of the dictionary: frames spread evenly, at most ``max_pairs`` pairs;
        weighted forces and the row weights."""
        from mctsff.fit.target import Target, potfit_weights

        train = self.fitter.train
        po = np.asarray(train.pair_offsets)
        n = train.n_frames
        n_pairs = int(po[-1]) if po.size else 0
        frames = np.arange(n)
        if n_pairs > self.max_pairs:
            k = max(1, min(n, int(round(n * self.max_pairs / n_pairs))))
            frames = np.unique(np.linspace(0, n - 1, k).round().astype(np.int64))
        sub = train.subset(frames) if frames.size < n else train
        # (with the fit's match="rigid", what is compared is each molecule's net force and
        # torque: Target.compared of the forces and of every column)
        target = Target.from_dataset(sub, getattr(self.fitter.options, "match", "atoms"))
        # the fitter's row weights multiply the residual (its loss is |w (F - F0)|²)
        weights = self.fitter.options.weights
        if isinstance(weights, str):
            w = potfit_weights(target.forces)
        elif weights is None or frames.size < n:
            w = np.ones_like(target.forces)
        else:
            w = np.asarray(weights, dtype=np.float64).ravel()
        return target, w

    def _columns(self, shape: _Shape, values: dict[str, float], target, w) -> np.ndarray | None:
        """Weighted force columns of one shape at one grid point (``n_rows × m``)."""
        from mctsff.fit.constraints import scheme_shift

        prog = shape.program
        P = len(self.fitter.type_pairs)
        base = np.zeros((P, prog.n_constants))
        for k, c in enumerate(prog.constants):
            if c in values:
                base[:, k] = values[c]
        cols = []
        with np.errstate(all="ignore"):
            for slot, split in zip(shape.slots, shape.split, strict=True):
                for p in range(P) if split else (None,):
                    C = base.copy()
                    if p is None:
                        C[:, slot] = 1.0
                    else:
                        C[p, slot] = 1.0
                    f, _ = target.predict(prog, C)
                    shift = scheme_shift(prog, C, None, self.fitter.cutoff, self.fitter.scheme)
                    f = target.shifted(shift, f)[0]
                    cols.append(target.compared(f * w))
        X = np.stack(cols, axis=1)
        if not np.all(np.isfinite(X)):
            return None
        return X

    def _grid(self, shape: _Shape) -> list[dict[str, float]]:
        from mctsff.expr.params import Parameterization
        from mctsff.fit.scan import axes_for

        if not shape.nonlinear:
            return [{}]
        prog = shape.program
        par = Parameterization(prog, self.fitter.species, self.fitter.type_pairs)
        mask = np.array([par.base_name(n) in shape.nonlinear for n in par.names])
        axes = axes_for(par.names, par.base_name, mask, prog)
        d = len(axes)
        if d > 3:
            return []
        n = self.points if d == 1 else max(2, int(math.floor(GRID_POINTS ** (1.0 / d) + 1e-9)))
        r_min = float(getattr(self.fitter, "r_min", 1.0))
        values = [ax.values(n, self.fitter.cutoff, r_min) for ax in axes]
        return [
            {ax.name: float(v) for ax, v in zip(axes, combo, strict=True)}
            for combo in itertools.product(*values)
        ]

    # ------------------------------------------------------------------ selection
    def _build(self, target, w) -> list[Proposal]:
        y = target.compared(target.forces * w)
        loss0 = float(y @ y)
        if not (loss0 > 0 and math.isfinite(loss0)):
            return []
        self._target, self._w = target, w
        self._cache: dict = {}
        # losses below this are rounding: equal for the beam (the first found kept first)
        self._floor = 1e-14 * loss0
        shapes = self._shapes()
        atoms: list[tuple[int, dict[str, float]]] = []
        blocks: list[np.ndarray] = []
        seen_shapes: set[frozenset] = set()
        for s, shape in enumerate(shapes):
            self._check()
            mine, prints = [], set()
            for values in self._grid(shape):
                X = self._columns(shape, values, target, w)
                if X is None or not np.any(X):
                    continue
                mine.append(((s, values), X))
                prints.add(_fingerprint(X))
            # one of the shapes with the same columns on the grid (erf*tanh, tanh*erf)
            if not mine or frozenset(prints) in seen_shapes:
                continue
            seen_shapes.add(frozenset(prints))
            for atom, X in mine:
                atoms.append(atom)
                blocks.append(X)
        if not atoms:
            return []
        beams = self._beam(y, shapes, atoms, blocks)
        n = y.size
        floor = 1e-14 * loss0

        def score(size: int, loss: float, chosen: list) -> float:
            """Schwarz's criterion of a set: misfit against its constants."""
            k = size + sum(len(v) for _, v in chosen)
            return n * math.log((loss + floor) / n) + k * math.log(n)

        ranked = sorted(
            (
                (score(size, loss, chosen), size, loss, chosen)
                for size, states in beams.items()
                for loss, chosen in states
            ),
            key=lambda t: (t[0], t[1]),
        )
        # each set's expressions, ranked by the criterion of the loss they are written with
        # (a set whose amplitudes only fit per type pair is no better than its rules allow)
        found: list[tuple[float, int, Proposal]] = []
        seen: set[str] = set()
        for _, size, loss, chosen in ranked:
            for expr, length, start, written in self._expressions(chosen, shapes, y, loss0):
                if expr not in seen:
                    seen.add(expr)
                    proposal = Proposal(expr, size, loss / loss0, length, start, written / loss0)
                    found.append((score(size, written, chosen), size, proposal))
        found.sort(key=lambda t: (t[0], t[1]))  # stable: ties keep the sets' order
        return [p for _, _, p in found]

    def _set_columns(self, shapes, chosen) -> np.ndarray | None:
        """The columns of a set of terms side by side (each term's kept while the
        selection runs, by its shape and constants)."""
        cache = self._cache
        blocks = []
        for s, v in chosen:
            key = (s, tuple(sorted(v.items())))
            X = cache.get(key, False)
            if X is False:
                if len(cache) >= 20_000:
                    cache.clear()
                X = cache[key] = self._columns(shapes[s], v, self._target, self._w)
            if X is None:
                return None
            blocks.append(X)
        return np.concatenate(blocks, axis=1)

    def _refine(self, y, shapes, chosen: list[tuple[int, dict[str, float]]]):
        """The set's nonlinear constants refined from their grid values (variable
        projection: the amplitudes solved by least squares at every step); its loss."""
        from scipy.optimize import least_squares

        names = [(i, c) for i, (_, v) in enumerate(chosen) for c in sorted(v)]
        if not names or self.refine_nfev <= 0:
            return self._loss(y, self._set_columns(shapes, chosen)), chosen
        x0 = np.array([chosen[i][1][c] for i, c in names])
        sign = np.where(x0 < 0, -1.0, 1.0)
        z0 = np.log(np.maximum(np.abs(x0), 1e-12))
        # each term's columns at its last few constants (a difference step moves one term)
        memo: list[dict] = [{} for _ in chosen]

        def at(z):
            vals = [dict(v) for _, v in chosen]
            for (i, c), zi, si in zip(names, z, sign, strict=True):
                vals[i][c] = float(si * math.exp(min(max(zi, -30.0), 30.0)))
            return [(s, v) for (s, _), v in zip(chosen, vals, strict=True)]

        def fun(z):
            blocks = []
            for i, (s, v) in enumerate(at(z)):
                key = tuple(sorted(v.items()))
                X = memo[i].get(key, False)
                if X is False:
                    if len(memo[i]) >= 8:
                        memo[i].clear()
                    X = memo[i][key] = self._columns(shapes[s], v, self._target, self._w)
                if X is None:
                    return np.full(y.size, 1e6)
                blocks.append(X)
            X = np.concatenate(blocks, axis=1)
            a = _lstsq(X, y)
            return y - X @ a

        try:
            with np.errstate(all="ignore"):
                if getattr(self, "_method", "trf") == "lm":
                    sol = least_squares(
                        fun,
                        z0,
                        method="lm",
                        diff_step=1e-4,
                        max_nfev=self.refine_nfev * (len(names) + 1),
                    )
                else:
                    sol = least_squares(
                        fun, z0, method="trf", diff_step=1e-4, max_nfev=self.refine_nfev
                    )
            best = at(sol.x)
            loss = float(sol.fun @ sol.fun)
        except (ValueError, np.linalg.LinAlgError):
            best, loss = chosen, math.inf
        start = self._loss(y, self._set_columns(shapes, chosen))
        if not loss <= start:
            return start, chosen
        return loss, best

    def _beam(self, y, shapes, atoms, blocks):
        """Forward selection with a beam: for each number of terms the best sets of terms
        (distinct shapes), by the loss of all their amplitudes solved together after their
        nonlinear constants are refined; the candidates added to a set are the shapes whose
        best grid point lowers its residual most (orthogonal matching pursuit).  Of the new
        sets, only the ``refine_per_level`` lowest-loss ones per number of nonlinear
        constants (at the line-refined constants) are refined."""
        sizes = [b.shape[1] for b in blocks]
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        # the dictionary with one row per column (projections and Gram blocks read rows),
        # each atom scaled to a largest entry of 1 (its gains do not change) and entries
        # below 1e-100 of that set to 0: subnormal numbers slow every product down
        XallT = np.concatenate(blocks, axis=1).T.copy()
        amax = np.maximum.reduceat(np.abs(XallT).max(axis=1), offsets[:-1])
        overflow = ~(amax < 1e150)  # its Gram matrix would overflow: no candidate
        amax[overflow | (amax == 0)] = 1.0
        XallT /= np.repeat(amax, sizes)[:, None]
        XallT[np.abs(XallT) < 1e-100] = 0.0
        shape_of = np.array([s for s, _ in atoms])
        states: list[tuple[float, list]] = [(float(y @ y), [])]
        out: dict[int, list[tuple[float, list]]] = {}
        for size in range(1, self.max_terms + 1):
            children: dict[frozenset, tuple[float, list]] = {}
            for _, chosen in states:
                self._check()
                if chosen:
                    Xc = self._set_columns(shapes, chosen)
                    Q, _ = np.linalg.qr(Xc)
                    r = y - Q @ (Q.T @ y)
                    XpT = (XallT @ Q) @ Q.T
                    np.subtract(XallT, XpT, out=XpT)
                else:
                    Q, r, XpT = None, y, XallT
                gains = self._gains(XpT, r, offsets)
                gains[overflow] = -np.inf
                rr = float(r @ r)
                used = {s for s, _ in chosen}
                cap = self.candidates * (2 if not chosen else 1)
                # per level of nonlinear constants, twice ``cap`` shapes by their best grid
                # point, then ``cap`` by their gain with the constants refined on a line
                pool: dict[int, list[int]] = {}
                order = np.argsort(-gains, kind="stable")
                order = order[np.isfinite(gains[order])]
                _, first = np.unique(shape_of[order], return_index=True)
                for a in order[np.sort(first)]:  # each shape's best grid point, best first
                    s = int(shape_of[a])
                    if s in used:
                        continue
                    level = pool.setdefault(len(shapes[s].nonlinear), [])
                    if len(level) < 2 * cap:
                        level.append(int(a))
                for level in pool.values():
                    scored = []
                    for a in level:
                        g, values = self._line_refine(shapes, atoms[a], float(gains[a]), Q, r)
                        scored.append((g, atoms[a][0], values))
                    scored.sort(key=lambda t: -t[0])
                    for g, s, values in scored[:cap]:
                        # the set's loss with all amplitudes solved: the residual less the gain
                        key = frozenset((*used, s))
                        loss = max(rr - g, 0.0)
                        if key not in children or loss < children[key][0]:
                            children[key] = (loss, [*chosen, (s, values)])
            states = self._pareto(self._refine_best(y, shapes, children.values()))
            if not states:
                break
            out[size] = states
        # backward elimination: each set without each of its terms, refitted
        for size in range(max(out, default=0), 1, -1):
            kept = {frozenset(s for s, _ in chosen) for _, chosen in out[size - 1]}
            subsets: dict[frozenset, tuple[float, list]] = {}
            for _, chosen in out[size]:
                for i in range(len(chosen)):
                    rest = chosen[:i] + chosen[i + 1 :]
                    key = frozenset(s for s, _ in rest)
                    if key not in kept and key not in subsets:
                        subsets[key] = (self._loss(y, self._set_columns(shapes, rest)), rest)
            refined = self._refine_best(y, shapes, subsets.values())
            out[size - 1] = self._pareto([*out[size - 1], *refined])
        return out

    def _refine_best(self, y, shapes, sets) -> list[tuple[float, list]]:
        """The sets, the ``refine_per_level`` lowest-loss ones per number of nonlinear
        constants refined (:meth:`_refine`), the others at their loss as given."""
        by_level: dict[int, list[tuple[float, list]]] = {}
        for item in sorted(sets, key=self._rank):
            by_level.setdefault(sum(len(v) for _, v in item[1]), []).append(item)
        out = []
        for items in by_level.values():
            for i, (loss, chosen) in enumerate(items):
                self._check()
                if i < self.refine_per_level:
                    out.append(self._refine(y, shapes, chosen))
                else:
                    out.append((loss, chosen))
        return out

    @staticmethod
    def _loss(y, X) -> float:
        """Least-squares loss of ``y`` on the columns ``X`` (``inf`` for ``None``)."""
        if X is None:
            return math.inf
        a = _lstsq(X, y)
        r = y - X @ a
        return float(r @ r)

    def _gain(self, shapes, atom, Q, r) -> float:
        """Decrease of ``|r|²`` from adding one term (columns projected off ``Q``)."""
        X = self._set_columns(shapes, [atom])
        if X is None:
            return -math.inf
        # (a column that overflows gives a non-finite gain: the term is not taken)
        with np.errstate(over="ignore", invalid="ignore"):
            if Q is not None:
                X = X - Q @ (Q.T @ X)
            b = X.T @ r
            G = X.T @ X
            G = G + 1e-10 * max(float(np.trace(G)), 1e-300) * np.eye(G.shape[0])
            if not (np.isfinite(G).all() and np.isfinite(b).all()):
                return -math.inf
            try:
                g = float(b @ np.linalg.solve(G, b))
            except np.linalg.LinAlgError:
                return -math.inf
        return g if math.isfinite(g) else -math.inf

    def _line_refine(self, shapes, atom, gain, Q, r) -> tuple[float, dict[str, float]]:
        """A term's gain with its nonlinear constants refined one at a time from the best
        grid point (steps of a third of the grid's spacing in ``log|c|``, halved four
        times)."""
        s, values = atom
        values = dict(values)
        for name in sorted(values):
            v0 = values[name]
            if v0 == 0:
                continue
            step = math.log(LINE_STEP)
            for _ in range(4):
                for direction in (1.0, -1.0):
                    trial = dict(values)
                    trial[name] = values[name] * math.exp(direction * step)
                    g = self._gain(shapes, (s, trial), Q, r)
                    if g > gain:
                        gain, values = g, trial
                        break
                step /= 2
        return gain, values

    def _rank(self, item: tuple[float, list]) -> float:
        """Sort key of a set: its loss, those below the rounding floor all equal (a stable
        sort keeps them in the order they were found)."""
        return max(item[0], getattr(self, "_floor", 0.0))

    def _pareto(self, sets) -> list[tuple[float, list]]:
        """A Pareto beam: the ``beam`` lowest-loss sets for each number of nonlinear
        constants."""
        by_level: dict[int, list[tuple[float, list]]] = {}
        for item in sorted(sets, key=self._rank):
            kept = by_level.setdefault(sum(len(v) for _, v in item[1]), [])
            if len(kept) < self.beam:
                kept.append(item)
        return [c for level in sorted(by_level) for c in by_level[level]]

    @staticmethod
    def _gains(XpT: np.ndarray, r: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """Decrease of ``|r|²`` from adding each atom's (projected) columns, the rows of
        ``XpT`` (atom ``a``'s are ``offsets[a]:offsets[a + 1]``)."""
        n_atoms = offsets.size - 1
        gains = np.full(n_atoms, -np.inf)
        with np.errstate(all="ignore"):
            b_all = XpT @ r
            sizes = np.diff(offsets)
            for m in np.unique(sizes):
                idx = np.nonzero(sizes == m)[0]
                if idx.size == n_atoms:  # one size: every row, in order
                    Xm, b = XpT.reshape(idx.size, m, -1), b_all.reshape(idx.size, m)
                else:
                    rows = (offsets[idx][:, None] + np.arange(m)[None, :]).ravel()
                    Xm = XpT[rows].reshape(idx.size, m, -1)
                    b = b_all[rows].reshape(idx.size, m)
                G = np.einsum("bin,bjn->bij", Xm, Xm)
                scale = np.maximum(np.einsum("bii->b", G), 1e-300)
                G = G + (1e-10 * scale)[:, None, None] * np.eye(m)[None]
                sol = np.linalg.solve(G, b[..., None])[..., 0]
                g = np.einsum("bi,bi->b", b, sol)
                gains[idx] = np.where(np.isfinite(g), g, -np.inf)
        return gains

    # ------------------------------------------------------------------ kinds and text
    def _expressions(
        self, chosen, shapes, y, loss0
    ) -> list[tuple[str, int, dict[str, float], float]]:
        """The grammar's expressions of one selected set: each term's combining rule chosen
        by refitting the amplitudes under it (the simplest within ``kind_tol`` first, then
        the lowest loss); at most two, each parsed back with the grammar.  Each comes with
        its number of productions, its constants (:attr:`Proposal.start`) and its loss."""
        P = len(self.fitter.type_pairs)
        n_species = len(self.fitter.species)
        pair_idx = [
            (self.fitter.species.index(a), self.fitter.species.index(b))
            for a, b in self.fitter.type_pairs
        ]
        # relaxed joint amplitudes, for the rank-one directions of product/geometric rules
        blocks = [self._set_columns(shapes, [c]) for c in chosen]
        if any(b is None for b in blocks):
            return []
        coef = _lstsq(np.concatenate(blocks, axis=1), y)
        # per rule: (name, columns, parameters, needs a sign, rank-one direction or None)
        options: list[list[tuple[tuple[str, ...], list[np.ndarray], int, list, list]]] = []
        pos = 0
        for (s_idx, _), X in zip(chosen, blocks, strict=True):
            shape = shapes[s_idx]
            per_slot: list[list[tuple[str, np.ndarray, int, float, Any]]] = []
            col = 0
            for split in shape.split:
                m = P if split else 1
                Xs, amp = X[:, col : col + m], coef[pos + col : pos + col + m]
                col += m
                rules: list[tuple[str, np.ndarray, int, float, Any]] = []
                if not split:
                    rules.append(("global", Xs, 1, 0.0, None))
                else:
                    rules.append(("global", Xs.sum(axis=1, keepdims=True), 1, 0.0, None))
                    A = np.zeros((n_species, n_species))
                    for p, (i, j) in enumerate(pair_idx):
                        A[i, j] = A[j, i] = amp[p]
                    vals, vecs = np.linalg.eigh(A)
                    v = vecs[:, int(np.argmax(np.abs(vals)))]
                    d = np.array([v[i] * v[j] for i, j in pair_idx])
                    rules.append(("product", (Xs @ d)[:, None], n_species, 1.0, v))
                    da = np.abs(v)
                    dg = np.array([da[i] * da[j] for i, j in pair_idx])
                    rules.append(("geometric", (Xs @ dg)[:, None], n_species, 1.0, v))
                    M = np.zeros((P, n_species))
                    for p, (i, j) in enumerate(pair_idx):
                        M[p, i] += 0.5
                        M[p, j] += 0.5
                    rules.append(("arithmetic", Xs @ M, n_species, 0.0, None))
                    rules.append(("pair", Xs, P, 0.0, None))
                per_slot.append(rules)
            pos += X.shape[1]
            term_opts = []
            for combo in itertools.product(*per_slot):
                kind = tuple(r[0] for r in combo)
                if kind not in shape.kinds:
                    continue
                term_opts.append(
                    (
                        kind,
                        [r[1] for r in combo],
                        sum(r[2] for r in combo),
                        [r[3] for r in combo],
                        [r[4] for r in combo],
                    )
                )
            if not term_opts:
                return []
            options.append(term_opts)
        scored = []
        for combo in itertools.product(*options):
            X = np.concatenate([c for opt in combo for c in opt[1]], axis=1)
            c = _lstsq(X, y)
            res = y - X @ c
            loss = float(res @ res)
            n_params = sum(opt[2] for opt in combo)
            # the sign a rank-one rule needs: that of its fitted scale
            signs, k = [], 0
            for opt in combo:
                sign = "+"
                for block, needs in zip(opt[1], opt[3], strict=True):
                    if needs and c[k] < 0:
                        sign = "-"
                    k += block.shape[1]
                signs.append(sign)
            scored.append((loss, n_params, combo, signs, c))
        best = min(s[0] for s in scored)
        tol = best + self.kind_tol * loss0
        simplest = min(scored, key=lambda s: (s[0] > tol, s[1], s[0]))
        lowest = min(scored, key=lambda s: (s[0], s[1]))
        out: list[tuple[str, int, dict[str, float], float]] = []
        for written, _, combo, signs, c in (simplest, lowest):
            terms = []
            k = 0
            for (s_idx, values), opt, sign in zip(chosen, combo, signs, strict=True):
                text = shapes[s_idx].kinds[opt[0]]
                start, k = self._term_start(shapes[s_idx], text, values, opt, sign, c, k)
                terms.append((sign, text, start))
            # a term that must be subtracted goes after one that need not
            terms.sort(key=lambda t: t[0] == "-")
            found = _composed([(sign, text) for sign, text, _ in terms], self.grammar)
            if found is None:
                self.n_underivable += 1
            elif all(found[0] != o[0] for o in out):
                out.append((*found, _renumbered_start(terms), written))
        return out

    def _term_start(self, shape: _Shape, text: str, values, opt, sign: str, c, k: int):
        """One term's constants by the names ``text`` (its kind) gives them, from the
        nonlinear ``values`` and the amplitudes ``c[k:]`` solved under the rules of ``opt``;
        and the index of the next term's amplitudes."""
        # the kind's names of the first kind's constants (the same places in the text)
        local: dict[str, str] = {}
        for a, b in zip(_CONST_RE.finditer(shape.text), _CONST_RE.finditer(text), strict=True):
            local.setdefault(a.group(0), b.group(0))
        # (a named constant, ``a_morse``, keeps its name: the grammar does not number it)
        start = {local.get(name, name): float(v) for name, v in values.items()}
        flip = -1.0 if sign == "-" else 1.0
        species, pairs = self.fitter.species, self.fitter.type_pairs
        for slot, rule, block, v in zip(shape.slots, opt[0], opt[1], opt[4], strict=True):
            name = shape.program.constants[slot]
            name = local.get(name, name)
            width = block.shape[1]
            amp = np.asarray(c[k : k + width], dtype=float)
            k += width
            if rule == "global":
                start[name] = flip * float(amp[0])
            elif rule in ("product", "geometric"):
                scale = abs(float(amp[0]))
                per_type = np.sqrt(scale) * v if rule == "product" else scale * v**2
                named = zip(species, per_type, strict=True)
                start.update({f"{name}[{s}]": float(x) for s, x in named})
            elif rule == "arithmetic":
                named = zip(species, amp, strict=True)
                start.update({f"{name}[{s}]": flip * float(x) for s, x in named})
            else:  # per pair
                named = zip(pairs, amp, strict=True)
                start.update({f"{name}[{a}-{b}]": flip * float(x) for (a, b), x in named})
        return {n: x for n, x in start.items() if math.isfinite(x)}, k


def _renumbered_start(terms: Sequence[tuple[str, str, Mapping[str, float]]]) -> dict[str, float]:
    """The constants of ``(sign, term, constants)`` by the names of the terms' sum
    (:func:`renumber`: every occurrence of a constant is a new one, and takes its value)."""
    counters: dict[str, int] = {}
    out: dict[str, float] = {}
    for _, text, start in terms:
        new: dict[str, list[str]] = {}
        for m in _CONST_RE.finditer(text):
            counters[m.group(1)] = counters.get(m.group(1), 0) + 1
            new.setdefault(m.group(0), []).append(f"{m.group(1)}{counters[m.group(1)]}")
        for name, value in start.items():
            base, bracket, rest = name.partition("[")
            for renamed in new.get(base, (base,)):  # a named constant keeps its name
                out[f"{renamed}{bracket}{rest}"] = value
    return out


# ----------------------------------------------------------------------------- in the search
#: Proposals that may be fitted before the share rule applies (the first ones are the
#: selection's best sets, fitted while the tree has little to go on).
FIRST_PROPOSALS = 8
#: Proposals fitted per step, whatever the number of workers, so a seeded search fits the
#: same expressions in the same order with 1 or 2 workers (4: both of 2 workers busy).
PROPOSAL_BATCH = 4


class TermProposals:
    """Fits a :class:`TermLibrary`'s proposals inside a search, interleaved with its steps.

    Each call of :meth:`step` fits the next :data:`PROPOSAL_BATCH` proposals not fitted
    yet while the proposals' fits stay within
    ``max(FIRST_PROPOSALS, share × all fits)``, the budget (:meth:`~mctsff.engines.engine.
    SearchEngine.fits_left`) and the deadline allow.  Results carry
    ``extra["term_library"] = True`` and are recorded in the engine's transposition table
    (:meth:`~mctsff.engines.engine.SearchEngine.record`, with their derivations), so they
    count as evaluations, are never fitted twice and reach the front, the local moves
    and the callback like the engine's own (``on_result``).

    Each proposal is fitted from the selection's constants too (:attr:`Proposal.start`, the
    fitter's ``start``: one more start, so the fit is at least as good as a loose solve
    from there).

    A batch is chosen whole (``PROPOSAL_BATCH`` proposals, fewer only by the share); the
    budget or the deadline may cut it, and the rest waits (:attr:`waiting`): the search
    then neither steps its engine nor fits local moves until the next :meth:`step` has
    finished the batch, as an uninterrupted search does.  On a resumed search the
    library is rebuilt (the same proposals), those already fitted are skipped (so walking
    them from the first again takes the same ones), and the rest of a cut batch comes
    back from the checkpoint with their starts (:meth:`pending_state`,
    :meth:`restore_pending`).
    """

    def __init__(self, library: TermLibrary, engine, evaluator, share: float) -> None:
        self.library = library
        self.engine = engine
        self.evaluator = evaluator
        self.share = float(share)
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
        if self._cut:
            todo = [e for e in self._cut if engine.lookup(e) is None]
        else:
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

"""The term library: sparse selection of sums of the grammar's terms on force-matching
data, kept per process, written as the grammar's expressions with their constants."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mctsff.expr.grammar import Grammar
from mctsff.fit.forces import SCAN_PAIRS

from .columns import Dictionary, selection_data, term_shapes
from .selection import Selection
from .sums import sum_structure
from .written import written_expressions

__all__ = ["CACHE_SIZE", "Proposal", "TermLibrary", "forget_selections", "select_in_worker"]

#: Selections kept per process (:meth:`TermLibrary.proposals`).
CACHE_SIZE = 8

#: digest of a selection's inputs -> (its proposals, proposals the grammar could not derive)
_SELECTIONS: dict[bytes, tuple[tuple[Proposal, ...], int]] = {}


def forget_selections() -> None:
    """Drop the selections this process keeps (:meth:`TermLibrary.proposals`), so the next
    search selects anew, as one in a fresh process does (what benchmarks of a search's
    time need)."""
    _SELECTIONS.clear()


class _Stopped(Exception):
    """The selection was ended by its ``stop`` callable."""


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
    exchanges
        Best sets per number of terms improved by exchanging one term at a time
        (:meth:`~.selection.Selection.exchange`; 0: none).
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
        exchanges: int = 2,
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
        self.exchanges = int(exchanges)
        self.structure = sum_structure(grammar)
        #: proposals the grammar could not derive (dropped, never fitted)
        self.n_underivable = 0
        #: whether the selection was ended by ``stop`` (:meth:`proposals`)
        self.stopped = False
        self._stop: Callable[[], bool] | None = None
        self._proposals: list[Proposal] | None = None
        #: whether this library ran the selection (not taken from the process's kept ones)
        self.selected = False
        #: the selection running on a worker (:meth:`start`): its key and future
        self._running: tuple[bytes, Any] | None = None
        #: whether the proposals came from a selection run on a worker (:meth:`start`)
        self.selected_on_worker = False

    def settings(self) -> dict[str, Any]:
        """The selection's settings as keywords of this class (``max_length`` aside: a
        selection is made for every length, :meth:`proposals` drops the longer ones)."""
        return {
            "max_terms": self.max_terms,
            "beam": self.beam,
            "max_pairs": self.max_pairs,
            "points": self.points,
            "kind_tol": self.kind_tol,
            "candidates": self.candidates,
            "refine_nfev": self.refine_nfev,
            "refine_per_level": self.refine_per_level,
            "exchanges": self.exchanges,
        }

    def start(self, evaluator) -> bool:
        """Start the selection on the evaluator's workers (``evaluator.background``:
        a process of its own beside a local pool's, or a Dask task), so the search fits
        its candidates meanwhile; :meth:`proposals` then waits for it.  Nothing is started
        (False) where the library does not apply, the process keeps the selection
        already, or the evaluator fits in this process (``background`` gives ``None``:
        :meth:`proposals` selects here when called).  The proposals are the same either
        way: the selection depends only on its inputs."""
        if self._proposals is not None or self._running is not None or not self.applies:
            return False
        background = getattr(evaluator, "background", None)
        if background is None:
            return False
        target, w = selection_data(self.fitter, self.max_pairs)
        key = self._key(target, w)
        if key in _SELECTIONS:
            return False
        future = background(select_in_worker, self.grammar.text, self.settings())
        if future is None:
            return False
        self._running = (key, future)
        return True

    def _join(self, stop: Callable[[], bool] | None) -> tuple[tuple[Proposal, ...], int] | None:
        """Wait for the selection :meth:`start` began; ``None`` if ``stop()`` came first
        (it is then abandoned) or the worker failed (then selected here instead)."""
        key, future = self._running
        self._running = None
        while not future.done():
            if stop is not None and stop():
                future.cancel()
                self.stopped = True
                return None
            time.sleep(0.02)
        try:
            found, n_none = future.result()
        except Exception:  # a worker that died: select in this process instead
            return None
        self.selected_on_worker = True
        return tuple(Proposal(**p) for p in found), int(n_none)

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
        proposals, is not kept, and sets :attr:`stopped`; so does one started on a worker
        (:meth:`start`) that ``stop()`` ends while this waits for it."""
        if self._proposals is None:
            if not self.applies:
                self._proposals = []
                return self._proposals
            target, w = selection_data(self.fitter, self.max_pairs)
            key = self._key(target, w)
            hit = _SELECTIONS.pop(key, None)
            if hit is None and self._running is not None:
                hit = self._join(stop)
                if hit is None and self.stopped:
                    self._proposals = []
                    return self._proposals
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
            tuple(sorted(self.settings().items())),
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

    def _build(self, target, w) -> list[Proposal]:
        self.selected = True
        shapes = term_shapes(self.grammar, self.structure, self.fitter)
        d = Dictionary(self.fitter, shapes, target, w, self.points)
        y = d.y
        loss0 = float(y @ y)
        if not (loss0 > 0 and math.isfinite(loss0)):
            return []
        atoms, blocks = d.atoms(self._check)
        if not atoms:
            return []
        selection = Selection(
            d,
            max_terms=self.max_terms,
            beam=self.beam,
            candidates=self.candidates,
            refine_nfev=self.refine_nfev,
            refine_per_level=self.refine_per_level,
            exchanges=self.exchanges,
            check=self._check,
        )
        beams = selection.run(atoms, blocks)

        def score(size: int, loss: float, chosen: list) -> float:
            """Schwarz's criterion of a set: misfit against its constants."""
            return selection.criterion((loss, chosen))

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
            for expr, length, start, written in self._written(d, chosen, loss0):
                if expr not in seen:
                    seen.add(expr)
                    proposal = Proposal(expr, size, loss / loss0, length, start, written / loss0)
                    found.append((score(size, written, chosen), size, proposal))
        found.sort(key=lambda t: (t[0], t[1]))  # stable: ties keep the sets' order
        return [p for _, _, p in found]

    def _written(self, d: Dictionary, chosen, loss0: float):
        """:func:`~.written.written_expressions` of a set, counting those the grammar could
        not derive in :attr:`n_underivable`."""
        out, n_none = written_expressions(d, self.grammar, chosen, self.kind_tol, loss0)
        self.n_underivable += n_none
        return out


def select_in_worker(fitter, grammar_text: str, settings: dict[str, Any]) -> tuple[list, int]:
    """A worker's task (:meth:`TermLibrary.start`): the selection of the grammar written
    ``grammar_text`` with ``settings`` on ``fitter``'s data, as plain data (each proposal's
    fields, and the number the grammar could not derive)."""
    library = TermLibrary(Grammar.from_text(grammar_text), fitter, **settings)
    found = library.proposals()
    return [dataclasses.asdict(p) for p in found], library.n_underivable

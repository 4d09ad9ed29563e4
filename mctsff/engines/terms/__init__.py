"""Term library: sums of the grammar's own terms chosen by sparse selection on the forces.

A pair potential is mostly a signed sum of a few terms, each an amplitude times a basis
function with one or two nonlinear constants.  Where the grammar writes potentials that
way, this package proposes which terms belong together, in the spirit of FFX and
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
   constants); the best ``exchanges`` sets of each size, and the lowest-loss ones with
   no and with one nonlinear constant, have one term at a time exchanged for another
   with at most as many nonlinear constants (those with fewer drawn from every shape,
   each from its best local optima on the grid) while that lowers the criterion, so an
   exact sum whose flexible term stands in for a simpler one (a Morse term for an
   exponential) gives way to the simpler sum.  For each set
   the kinds are chosen by refitting the amplitudes under each combining rule
   (global, product, geometric, arithmetic, per pair), the simplest within
   ``kind_tol`` first, then the lowest loss.
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


The package has one module per concern: :mod:`~mctsff.engines.terms.sums` (the grammar
side: the sum, its single terms, compose and renumber), :mod:`~mctsff.engines.terms.columns`
(the dictionary: shapes, the selection's data, columns and grids),
:mod:`~mctsff.engines.terms.selection` (the beam, refinement, Pareto beam, backward
elimination), :mod:`~mctsff.engines.terms.written` (combining rules, the written
expressions and their constants), :mod:`~mctsff.engines.terms.library` (:class:`TermLibrary`,
:class:`Proposal`, the kept selections) and :mod:`~mctsff.engines.terms.proposals`
(:class:`TermProposals`, in the search).
"""

from .columns import GRID_POINTS, lstsq
from .library import CACHE_SIZE, Proposal, TermLibrary, forget_selections
from .proposals import FIRST_PROPOSALS, PROPOSAL_BATCH, TermProposals
from .selection import LINE_STEP
from .sums import MAX_SINGLE_TERMS, SumStructure, compose, renumber, single_terms, sum_structure

__all__ = [
    "CACHE_SIZE",
    "FIRST_PROPOSALS",
    "GRID_POINTS",
    "LINE_STEP",
    "MAX_SINGLE_TERMS",
    "PROPOSAL_BATCH",
    "Proposal",
    "SumStructure",
    "TermLibrary",
    "TermProposals",
    "compose",
    "forget_selections",
    "lstsq",
    "renumber",
    "single_terms",
    "sum_structure",
]

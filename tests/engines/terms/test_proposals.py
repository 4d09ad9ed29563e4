"""Term-library proposals in the search (mctsff.engines.terms.proposals): fitted from the
selection's constants, cut by the budget and resumed as if uninterrupted, the setting and
the flag."""

import pytest

from mctsff.engines.terms import PROPOSAL_BATCH
from mctsff.expr.grammar import Grammar
from mctsff.expr.params import Potential
from mctsff.fit import Fitter

from .conftest import synthetic_fitter as _fitter

#: Dispersion, a screened charge product and a second exponential, and their constants.
THREE_TERMS = (
    "c1/r**6+prod_c1*exp(-r/c2)/r+c3*exp(-r/c4)",
    {"c1": -5.2, "prod_c1[O]": -1.04, "prod_c1[H]": 0.6, "c2": 0.6, "c3": 0.6, "c4": 2.15},
)


def _three_terms(dimers):
    """:data:`THREE_TERMS`'s exact forces on the dimers, split (train, valid)."""
    pot = Potential(*THREE_TERMS, dimers.species, dimers.type_pairs)
    return pot.synthetic(dimers).split(0.2, seed=0)


def test_a_proposal_is_fitted_from_the_selections_constants(dimers, small, tmp_path):
    """Dispersion, a screened charge product and a second exponential: the selection
    proposes the true sum first, with its constants, and the search's fit of it, started
    from them too, is exact (from scratch, with one start, it stopped at 3e-2 of the
    forces' RMS).  Cut by the budget after the first proposal, the other three wait in the
    checkpoint with their constants: the resumed search fits the same, to the same
    constants (the fourth's differ when fitted without its start)."""
    from mctsff.search import search

    truth = THREE_TERMS[0]
    train, valid = _three_terms(dimers)
    rms = float((valid.forces**2).mean() ** 0.5)

    def run(budget, **kw):
        fitter = Fitter(train, valid, constraints=(), cutoff_scheme="none", wall=None, n_starts=1)
        return search(
            fitter, small, budget=budget, seed=0, terms=True, terms_after=0, progress=False, **kw
        )

    full = run(PROPOSAL_BATCH)
    assert full.mcts.evaluated[0] == truth
    fitted = full.mcts.lookup(truth)
    assert fitted.extra.get("term_library") and fitted.rmse_valid < 1e-9 * rms
    part = run(1, out=tmp_path / "cut")
    assert part.mcts.evaluated == full.mcts.evaluated[:1]
    resumed = run(PROPOSAL_BATCH, out=tmp_path / "cut", resume=True)
    assert resumed.mcts.evaluated == full.mcts.evaluated
    for e in full.mcts.evaluated:
        assert resumed.mcts.lookup(e).params == full.mcts.lookup(e).params, e


def test_setting_and_flag():
    from mctsff.cli import build_parser
    from mctsff.cli.search import search_config
    from mctsff.config import DEFAULTS, ConfigError
    from mctsff.data import data_file

    assert DEFAULTS.terms is True and DEFAULTS.terms_share == 0.2
    assert DEFAULTS.updated(terms=True, terms_share=0.5).terms_share == 0.5
    with pytest.raises(ConfigError, match="terms_share"):
        DEFAULTS.updated(terms_share=1.5)
    dimers = str(data_file("water_dimers_mp2_sample20.extxyz"))
    args = build_parser().parse_args(["search", dimers, "--terms", "--terms-share", "0.1"])
    cfg = search_config(args)
    assert cfg.terms is True and cfg.terms_share == 0.1
    assert search_config(build_parser().parse_args(["search", dimers])).terms is True
    assert search_config(build_parser().parse_args(["search", dimers, "--no-terms"])).terms is False


@pytest.mark.slow
def test_search_with_terms_recovers_buckingham_coulomb(dimers):
    """Buckingham + Coulomb (the hard suite's form MCTS never recovered at budget 300):
    with the term library the true form is among the first fits of the search."""
    from mctsff.search import search

    truth = "prod_c1/r+c1*exp(-r/c2)-c3/r**6"
    params = {"prod_c1[O]": -3.2, "prod_c1[H]": 1.6, "c1": 500.0, "c2": 0.25, "c3": 5.0}
    fitter = _fitter(dimers, truth, params)
    rms = float((fitter.valid.forces**2).mean() ** 0.5)
    cx = Grammar.load("pair").complexity(truth)
    found = []

    def callback(res):
        if res.valid and res.complexity <= cx and res.rmse_valid < 1e-6 * rms:
            found.append(res)

    res = search(
        fitter, "pair", budget=12, seed=0, terms=True, terms_after=0, progress=False,
        callback=callback,
    )  # fmt: skip
    assert res.n_terms >= 1
    assert any(r.extra.get("term_library") for r in found)


def test_a_search_cut_inside_a_batch_of_proposals_resumes_as_if_uninterrupted(
    dimers, small, tmp_path
):
    """The budget cuts the first batch of proposals after 2 of its 4: the other 2 wait in
    the checkpoint and are fitted before the tree's first step, as without the cut (the
    tree drew its first batch at once instead, and the rest of the proposals came later
    or never)."""
    from mctsff.search import search

    truth = Potential(
        "prod_c1*exp(-r/c1)/r+c2/r**12",
        {"prod_c1[O]": -3.2, "prod_c1[H]": 1.6, "c1": 2.5, "c2": 50.0},
        dimers.species,
        dimers.type_pairs,
    )
    train, valid = truth.synthetic(dimers).split(0.2, seed=0)

    def run(budget, **kw):
        fitter = Fitter(train, valid, constraints=(), n_starts=1)
        return search(fitter, small, budget=budget, seed=2, terms=True, terms_after=0, **kw)

    full = run(PROPOSAL_BATCH + 3)
    flags = [full.mcts.lookup(e).extra.get("term_library", False) for e in full.mcts.evaluated]
    assert flags == [True] * PROPOSAL_BATCH + [False] * 3  # a whole batch, then the tree
    part = run(2, out=tmp_path / "cut")
    assert part.n_evaluations == part.n_terms == 2
    resumed = run(PROPOSAL_BATCH + 3, out=tmp_path / "cut", resume=True)
    assert resumed.mcts.evaluated == full.mcts.evaluated
    assert [p.expression for p in resumed.front.points] == [p.expression for p in full.front.points]


@pytest.mark.slow
def test_proposals_join_after_the_searchs_first_fits_with_any_evaluator(dimers, small, tmp_path):
    """With ``terms_after=6`` the selection runs on a background process beside the 2
    workers while the tree fits its first candidates; the proposals join after 6 fits
    whenever the selection ends, so the search fits the same sequence as in process, and
    one cut before the join and resumed fits it too (~12 s)."""
    from mctsff.search import search

    train, valid = _three_terms(dimers)

    def run(budget, **kw):
        fitter = Fitter(train, valid, constraints=(), n_starts=1)
        return search(fitter, small, budget=budget, seed=1, terms=True, terms_after=6, **kw)

    one = run(18)
    flags = [one.mcts.lookup(e).extra.get("term_library", False) for e in one.mcts.evaluated]
    first = flags.index(True)
    assert first >= 6 and not any(flags[:first]) and one.n_terms >= 1
    from mctsff.engines.terms import forget_selections

    forget_selections()  # not kept from the run in process: selected by the workers
    two = run(18, workers=2)
    assert two.mcts.evaluated == one.mcts.evaluated
    part = run(4, out=tmp_path / "cut")
    assert part.n_terms == 0
    resumed = run(18, out=tmp_path / "cut", resume=True)
    assert resumed.mcts.evaluated == one.mcts.evaluated


def test_by_default_the_proposals_are_the_first_fits(dimers, small):
    """``terms_after=0``: a search (in process here, where nothing could run beside the
    selection) fits the proposals first."""
    from mctsff.search import search

    truth = THREE_TERMS[0]
    train, valid = _three_terms(dimers)
    fitter = Fitter(train, valid, constraints=(), cutoff_scheme="none", wall=None, n_starts=1)
    res = search(fitter, small, budget=2, seed=0, terms=True, progress=False)
    assert res.mcts.evaluated[0] == truth


def test_the_selection_goes_to_a_worker_only_when_fits_can_run_meanwhile():
    """With ``after=0`` the search waits for the selection at once: it is made in the
    search's process (when first needed), never handed to a background worker; with
    ``after > 0`` the first step starts it on the evaluator's workers."""
    from mctsff.engines.terms import TermProposals

    class Library:
        n_underivable = 0

        def __init__(self):
            self.started_on = []

        def start(self, evaluator):
            self.started_on.append(evaluator)
            return True

        def proposals(self, stop=None):
            return []

    class Engine:
        results, n_evaluations, deadline = [], 0, None
        _partial, _unfitted = False, None

        def fits_left(self):
            return 10

        def out_of_time(self):
            return False

        def _pending_fits(self):
            return False

    evaluator = object()
    for after, started in ((0, []), (5, [evaluator])):
        library = Library()
        terms = TermProposals(library, Engine(), evaluator, share=0.2, after=after)
        assert terms.step(lambda res: None) == 0
        assert library.started_on == started

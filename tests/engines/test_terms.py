"""The term library (mctsff.engines.terms): the grammar's sum of terms, its single terms,
proposals that the grammar in use derives, and a two-term sum found from synthetic forces."""

import pytest

from mctsff.engines.terms import (
    TermLibrary,
    compose,
    renumber,
    single_terms,
    sum_structure,
)
from mctsff.expr.grammar import Grammar
from mctsff.expr.params import Potential
from mctsff.fit import Fitter

#: a grammar unlike ``pair``: a right-recursive sum with "+" only, its own term forms,
#: amplitudes global or per type (product rule) and no geometric rule
SMALL = r"""
// @variables r
start: sum
sum: term
   | term "+" sum
term: amp "/r**6"                   -> p6
    | amp "/r**12"                  -> p12
    | amp "*exp(-r/" CONST ")"      -> expo
    | amp "*exp(-r/" CONST ")/r"    -> yukawa
amp: CONST | PROD_CONST
CONST: "C"
PROD_CONST: "Q"
"""


@pytest.fixture(scope="module")
def small() -> Grammar:
    return Grammar.from_text(SMALL, name="small")


def _fitter(dimers, expr, params):
    truth = Potential(expr, params, dimers.species, dimers.type_pairs)
    train, valid = truth.synthetic(dimers).split(0.2, seed=0)
    return Fitter(train, valid, constraints=(), cutoff_scheme="none", wall=None, seed=0)


def test_sum_structure_and_single_terms(small):
    s = sum_structure(small)
    assert s is not None and s.sum_nonterminal == "sum" and s.term_nonterminals == ("term",)
    assert s.operators == ("+",)
    terms = single_terms(small)
    # 4 forms x 2 amplitude kinds, each numbered on its own
    assert len(terms) == 8
    assert {"c1/r**6", "prod_c1/r**12", "c1*exp(-r/c2)", "prod_c1*exp(-r/c1)/r"} <= set(terms)
    pair = sum_structure(Grammar.load("pair"))
    assert pair.sum_nonterminal == "potential" and set(pair.operators) == {"+", "-"}
    assert len(single_terms(Grammar.load("pair"))) == 273
    # no sum of finitely many terms: expr "+" expr
    assert sum_structure(Grammar.load("nguyen")) is None


def test_compose_parses_back_with_the_grammar(small):
    assert renumber("c7*exp(-r/c9)+prod_c4/r+c1/r**6") == "c1*exp(-r/c2)+prod_c1/r+c3/r**6"
    assert compose([("+", "c1*exp(-r/c2)"), ("+", "c1/r**6")], small) == "c1*exp(-r/c2)+c3/r**6"
    # the small grammar has no "-" and no 1/r**8: never returned
    assert compose([("+", "c1*exp(-r/c2)"), ("-", "c1/r**6")], small) is None
    assert compose([("+", "c1/r**8")], small) is None
    # a derivation longer than max_length is refused
    text = [("+", "c1/r**6"), ("+", "c1/r**12"), ("+", "c1*exp(-r/c2)")]
    assert compose(text, small) is not None
    assert (
        compose(text, small, max_length=len(small.derivation_of(compose(text, small))) - 1) is None
    )


def test_every_proposal_is_derivable_in_a_custom_grammar(dimers, small):
    fitter = _fitter(
        dimers,
        "prod_c1*exp(-r/c1)/r+c2/r**12",
        {"prod_c1[O]": -3.2, "prod_c1[H]": 1.6, "c1": 2.5, "c2": 50.0},
    )
    lib = TermLibrary(small, fitter, max_length=12)
    props = lib.proposals()
    assert props
    for p in props:
        actions = small.derivation_of(p.expression)
        assert actions is not None, p.expression
        assert len(actions) <= 12
        assert "-" not in p.expression.replace("exp(-r", "")  # the grammar has no minus
    # the pair grammar's own forms never leak in: no terms this grammar lacks
    assert not any("/r**8" in p.expression or "geom_" in p.expression for p in props)
    # the true two-term sum is the best proposal of two terms
    two = [p for p in props if p.n_terms == 2]
    assert two[0].expression in ("prod_c1*exp(-r/c1)/r+c2/r**12", "c1/r**12+prod_c1*exp(-r/c2)/r")
    assert two[0].rel_loss < 1e-12


def test_a_selection_is_kept_per_grammar_and_data(dimers, small):
    fitter = _fitter(dimers, "c1/r**6+c2/r**12", {"c1": -5.0, "c2": 5e3})
    first = TermLibrary(small, fitter, max_length=12)
    props = first.proposals()
    assert props and hasattr(first, "_target")  # selected
    again = TermLibrary(small, fitter, max_length=12)
    assert again.proposals() == props and not hasattr(again, "_target")  # kept, not redone
    assert again.n_underivable == first.n_underivable
    # a shorter max_length takes the kept selection less the proposals longer than it
    short = TermLibrary(small, fitter, max_length=7)
    kept = short.proposals()
    assert not hasattr(short, "_target")
    assert kept == [p for p in props if len(small.derivation_of(p.expression)) <= 7]
    assert 0 < len(kept) < len(props)
    assert short.n_underivable == first.n_underivable + len(props) - len(kept)
    # other settings, other forces or another grammar select anew
    other = TermLibrary(small, fitter, max_length=12, beam=2)
    other.proposals()
    assert hasattr(other, "_target")
    moved = _fitter(dimers, "c1/r**6+c2/r**12", {"c1": -5.0, "c2": 6e3})
    lib = TermLibrary(small, moved, max_length=12)
    lib.proposals()
    assert hasattr(lib, "_target")


def test_a_stopped_selection_proposes_nothing_and_is_not_kept(dimers, small):
    fitter = _fitter(dimers, "c1/r**6+c2/r**12", {"c1": -7.0, "c2": 4e3})
    calls = []
    lib = TermLibrary(small, fitter, max_length=12)
    assert lib.proposals(stop=lambda: calls.append(1) or len(calls) > 3) == []
    assert lib.stopped and len(calls) == 4  # checked between steps, ended at the 4th
    assert lib.proposals() == []  # not tried again by this library
    again = TermLibrary(small, fitter, max_length=12)
    assert again.proposals() and not again.stopped  # nothing was kept: selected in full


@pytest.mark.slow
def test_a_search_time_limit_ends_the_selection(dimers):
    import time

    from mctsff.search import search

    fitter = _fitter(dimers, "c1/r**6+c2/r**12", {"c1": -9.0, "c2": 3e3})  # not selected yet
    lib = TermLibrary(Grammar.load("pair"), fitter, max_length=16)
    t0 = time.perf_counter()
    lib.proposals()
    full = time.perf_counter() - t0
    fitter = _fitter(dimers, "c1/r**6+c2/r**12", {"c1": -9.0, "c2": 3.1e3})
    t0 = time.perf_counter()
    result = search(fitter, "pair", budget=None, time_limit=0.2, seed=0, terms=True)
    took = time.perf_counter() - t0
    assert took < 0.2 + 0.5 * full, (took, full)  # the selection ended, not finished
    assert result.n_terms == 0


def test_proposals_carry_the_selections_constants(dimers, small):
    """Each proposal's start names its expression's parameters (renumbered as the sum
    numbers them, per type for a product rule) and holds the selection's values: the true
    sum's at the truth.  The amplitudes are solved with each column scaled: next to a
    term whose columns are 1e130 times larger (a Gaussian growing to the cutoff), the
    others once got none (the three-term sums of the screened fixture)."""
    import numpy as np

    from mctsff.engines.terms import _lstsq
    from mctsff.expr.params import Parameterization

    params = {"prod_c1[O]": -3.2, "prod_c1[H]": 1.6, "c1": 2.5, "c2": 50.0}
    fitter = _fitter(dimers, "prod_c1*exp(-r/c1)/r+c2/r**12", params)
    props = TermLibrary(small, fitter, max_length=12).proposals()
    for p in props:
        par = Parameterization(fitter.compile(p.expression), fitter.species, fitter.type_pairs)
        assert set(p.start) <= set(par.names), (p.expression, p.start)
    best = next(p for p in props if p.n_terms == 2)
    got = dict(best.start)
    if got["prod_c1[O]"] > 0:  # q[A]·q[B] is the same for -q
        got["prod_c1[O]"], got["prod_c1[H]"] = -got["prod_c1[O]"], -got["prod_c1[H]"]
    amplitude = "c2" if best.expression.startswith("prod_c1") else "c1"
    assert got[amplitude] == pytest.approx(50.0, rel=1e-6)
    for name in ("prod_c1[O]", "prod_c1[H]"):
        assert got[name] == pytest.approx(params[name], rel=1e-6)
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(size=50), 1e130 * rng.normal(size=50)])
    y = X @ np.array([2.0, 3e-130])
    assert _lstsq(X, y) == pytest.approx([2.0, 3e-130], rel=1e-9)


def test_proposals_are_ranked_by_the_loss_they_are_written_with(dimers, small):
    """A charge-product r^-6 with r^-12: the set {r^-6, r^-12} fits exactly with its
    amplitudes free per type pair, but written with a global r^-6 amplitude (the simplest
    rule within kind_tol) it does not; the product-rule expression comes first."""
    params = {"prod_c1[O]": -3.2, "prod_c1[H]": 1.6, "c1": 5e3}
    fitter = _fitter(dimers, "prod_c1/r**6+c1/r**12", params)
    props = TermLibrary(small, fitter, max_length=12).proposals()
    assert props[0].expression == "c1/r**12+prod_c1/r**6"
    assert props[0].written_loss < 1e-20
    glob = next(p for p in props if p.expression == "c1/r**12+c2/r**6")
    assert glob.rel_loss < 1e-20 < 1e-9 < glob.written_loss  # the set's loss is not its own


def test_a_named_constant_keeps_its_name_in_the_start(dimers):
    """``a_morse`` is not numbered by the grammar: its selected value goes into the start
    under its own name (it was dropped)."""
    grammar = Grammar.from_text(
        r"""
// @variables r
start: sum
sum: term | term "+" sum
term: CONST "*exp(-a_morse*r)" -> wall
    | CONST "/r**6"             -> disp
CONST: "C"
""",
        name="named",
    )
    fitter = _fitter(dimers, "c1*exp(-a_morse*r)+c2/r**6", {"c1": 800.0, "a_morse": 3.0, "c2": -8})
    best = TermLibrary(grammar, fitter, max_length=12).proposals()[0]
    assert set(best.start) == {"c1", "c2", "a_morse"}, best
    assert best.start["a_morse"] == pytest.approx(3.0, rel=1e-6)


def test_a_proposal_is_fitted_from_the_selections_constants(dimers, small, tmp_path):
    """Dispersion, a screened charge product and a second exponential: the selection
    proposes the true sum first, with its constants, and the search's fit of it, started
    from them too, is exact (from scratch, with one start, it stopped at 3e-2 of the
    forces' RMS).  Cut by the budget after the first proposal, the other three wait in the
    checkpoint with their constants: the resumed search fits the same, to the same
    constants (the fourth's differ when fitted without its start)."""
    from mctsff.engines.terms import PROPOSAL_BATCH
    from mctsff.search import search

    truth = "c1/r**6+prod_c1*exp(-r/c2)/r+c3*exp(-r/c4)"
    params = {"c1": -5.2, "prod_c1[O]": -1.04, "prod_c1[H]": 0.6, "c2": 0.6, "c3": 0.6, "c4": 2.15}
    pot = Potential(truth, params, dimers.species, dimers.type_pairs)
    train, valid = pot.synthetic(dimers).split(0.2, seed=0)
    rms = float((valid.forces**2).mean() ** 0.5)

    def run(budget, **kw):
        fitter = Fitter(train, valid, constraints=(), cutoff_scheme="none", wall=None, n_starts=1)
        return search(fitter, small, budget=budget, seed=0, terms=True, progress=False, **kw)

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


def test_silently_off_without_a_sum(dimers):
    fitter = _fitter(dimers, "c1/r**12", {"c1": 5e3})
    lib = TermLibrary(Grammar.load("nguyen"), fitter)
    assert not lib.applies and lib.proposals() == []


def test_setting_and_flag():
    from mctsff.cli import build_parser, search_config
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

    res = search(fitter, "pair", budget=12, seed=0, terms=True, progress=False, callback=callback)
    assert res.n_terms >= 1
    assert any(r.extra.get("term_library") for r in found)


def test_a_search_cut_inside_a_batch_of_proposals_resumes_as_if_uninterrupted(
    dimers, small, tmp_path
):
    """The budget cuts the first batch of proposals after 2 of its 4: the other 2 wait in
    the checkpoint and are fitted before the tree's first step, as without the cut (the
    tree drew its first batch at once instead, and the rest of the proposals came later
    or never)."""
    from mctsff.engines.terms import PROPOSAL_BATCH
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
        return search(fitter, small, budget=budget, seed=2, terms=True, **kw)

    full = run(PROPOSAL_BATCH + 3)
    flags = [full.mcts.lookup(e).extra.get("term_library", False) for e in full.mcts.evaluated]
    assert flags == [True] * PROPOSAL_BATCH + [False] * 3  # a whole batch, then the tree
    part = run(2, out=tmp_path / "cut")
    assert part.n_evaluations == part.n_terms == 2
    resumed = run(PROPOSAL_BATCH + 3, out=tmp_path / "cut", resume=True)
    assert resumed.mcts.evaluated == full.mcts.evaluated
    assert [p.expression for p in resumed.front.points] == [p.expression for p in full.front.points]

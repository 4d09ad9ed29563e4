"""The term library (mctsff.engines.terms.library): proposals that the grammar in use
derives, the selection kept per process, stopped, its constants and ranking, and sums found
from synthetic forces."""

import pytest

from mctsff.engines.terms import TermLibrary
from mctsff.expr.grammar import Grammar

from .conftest import synthetic_fitter as _fitter


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
    assert props and first.selected
    again = TermLibrary(small, fitter, max_length=12)
    assert again.proposals() == props and not again.selected  # kept, not redone
    assert again.n_underivable == first.n_underivable
    # a shorter max_length takes the kept selection less the proposals longer than it
    short = TermLibrary(small, fitter, max_length=7)
    kept = short.proposals()
    assert not short.selected
    assert kept == [p for p in props if len(small.derivation_of(p.expression)) <= 7]
    assert 0 < len(kept) < len(props)
    assert short.n_underivable == first.n_underivable + len(props) - len(kept)
    # other settings, other forces or another grammar select anew
    other = TermLibrary(small, fitter, max_length=12, beam=2)
    other.proposals()
    assert other.selected
    moved = _fitter(dimers, "c1/r**6+c2/r**12", {"c1": -5.0, "c2": 6e3})
    lib = TermLibrary(small, moved, max_length=12)
    lib.proposals()
    assert lib.selected


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


def test_silently_off_without_a_sum(dimers):
    fitter = _fitter(dimers, "c1/r**12", {"c1": 5e3})
    lib = TermLibrary(Grammar.load("nguyen"), fitter)
    assert not lib.applies and lib.proposals() == []


def test_a_selection_started_on_a_worker_proposes_what_this_process_would(dimers, small):
    """Started on an evaluator's background process (:meth:`TermLibrary.start`), the
    selection is made there, not here, and gives the proposals, field for field, and the
    count of underivable ones that this process's own selection gives; in process (one
    worker) nothing starts and :meth:`proposals` selects here."""
    from mctsff.engines.parallel import Evaluator

    fitter = _fitter(dimers, "c1/r**6+c2/r**12", {"c1": -6.0, "c2": 4.5e3})  # not kept yet
    with Evaluator(fitter, workers=1) as inline:
        assert not TermLibrary(small, fitter, max_length=7).start(inline)
    with Evaluator(fitter, workers=2) as ev:
        remote = TermLibrary(small, fitter, max_length=7)
        assert remote.start(ev)
        props = remote.proposals()
    assert props and remote.selected_on_worker and not remote.selected
    assert not TermLibrary(small, fitter, max_length=7).start(ev)  # kept here now
    # selected here from scratch
    from mctsff.engines.terms import forget_selections

    forget_selections()
    here = TermLibrary(small, fitter, max_length=7)
    assert here.proposals() == props and here.selected
    assert here.n_underivable == remote.n_underivable

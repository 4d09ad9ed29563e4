"""The selection of sets of terms (mctsff.engines.terms.selection): exchanging the terms of
the best sets recovers sums the forward selection and backward elimination miss."""

import math

import numpy as np
import pytest

from mctsff.engines.terms import TermLibrary
from mctsff.expr.grammar import Grammar

from .conftest import synthetic_fitter

#: the ``pair`` grammar's inverse powers, single and damped basis functions and the Morse
#: shape, amplitudes global or by the product rule (no products of two functions, no
#: damped monomials, no geometric rule: 98 terms instead of 273)
REDUCED = r"""
// @variables r
start: potential
potential: term
         | potential "+" term               -> add
         | potential "-" term               -> sub
term: coef "/" rpow                         -> inverse_power
    | coef "*" factor                       -> scaled
    | coef "*" factor "/" rpow              -> damped_power
    | coef "*" morse                        -> morse
coef: CONST                                 -> global
    | PROD_CONST                            -> product_rule
rpow: "r" -> r1 | "r**2" -> r2 | "r**4" -> r4 | "r**6" -> r6 | "r**8" -> r8 | "r**12" -> r12
factor: "exp(-r/" CONST ")"                 -> exp_decay
      | "exp(-" CONST "*r**2)"              -> gaussian
      | "erfc(" CONST "*r)"                 -> erfc
      | "erf(" CONST "*r)"                  -> erf
      | "tanh(" CONST "*r)"                 -> tanh
      | "(1-exp(-" CONST "*r))**6"          -> dispersion_damping
morse: "(exp(-2*a_morse*(r-r0_morse))-2*exp(-a_morse*(r-r0_morse)))"
CONST: "C"
PROD_CONST: "Q"
"""

BORN_MAYER_HUGGINS = (
    "c1*exp(-r/c2)-c3/r**6-c4/r**8",
    {"c1": 500.0, "c2": 0.3, "c3": 20.0, "c4": 60.0},
)
EWALD_LJ = (
    "prod_c1*erfc(c1*r)/r+c2/r**12-c3/r**6",
    {"prod_c1[O]": -3.2, "prod_c1[H]": 1.6, "c1": 0.2, "c2": 100.0, "c3": 5.0},
)


def _first(grammar, dimers, truth, **kw):
    fitter = synthetic_fitter(dimers, *truth)
    props = TermLibrary(grammar, fitter, max_length=16, **kw).proposals()
    return props[0]


def test_an_exact_sum_with_a_flexible_term_is_exchanged_for_the_true_one(dimers):
    """Born-Mayer-Huggins: the forward selection and backward elimination end at an exact
    sum in which a Morse term with its minimum far beyond the data stands in for the
    exponential (and exp(-r/c)/r**8 with c ~ 5e6 for 1/r**8); exchanging one term at a
    time (the exponential's optimum lies between two grid points, far down the ranking
    at the grid) leaves the true three terms, as exact with two constants fewer."""
    best = _first(Grammar.from_text(REDUCED, name="reduced"), dimers, BORN_MAYER_HUGGINS)
    assert best.expression == "c1/r**8+c2*exp(-r/c3)+c4/r**6", best
    assert best.written_loss < 1e-15
    assert best.start["c3"] == pytest.approx(0.3, rel=1e-6)


@pytest.mark.slow
def test_the_pair_grammar_proposes_the_true_hard_sums_first(dimers):
    """With the ``pair`` grammar (273 terms) the first proposal is the true form for
    Born-Mayer-Huggins (a Morse sum before the exchange) and Ewald + LJ (whose true set
    the beam never reached)."""
    pair = Grammar.load("pair")
    bmh = _first(pair, dimers, BORN_MAYER_HUGGINS)
    assert bmh.expression == "c1/r**8+c2*exp(-r/c3)+c4/r**6" and bmh.written_loss < 1e-15
    ewald = _first(pair, dimers, EWALD_LJ)
    # the true set, its terms in the order it was found (two exact sets with the same
    # terms differ only in losses below rounding, ~1e-21 of U = 0)
    erfc = {
        "c1/r**12+c2/r**6+prod_c1*erfc(c3*r)/r": "c3",
        "c1/r**12+prod_c1*erfc(c2*r)/r+c3/r**6": "c2",
    }
    assert ewald.expression in erfc, ewald
    assert ewald.written_loss < 1e-15
    assert ewald.start[erfc[ewald.expression]] == pytest.approx(0.2, rel=1e-6)


@pytest.mark.slow
def test_a_sparse_set_one_exchange_from_the_true_one_is_exchanged(dimers):
    """Ewald + LJ on the reduced grammar: the sets best by the criterion are flexible ones
    two exchanges from the true set (a Morse term, a damped 1/r**4, erfc/r); the lowest-loss
    set with one nonlinear constant, {1/r**12, 1/r**6, (1-exp(-c*r))**6/r**2}, is one
    exchange from it, and exchanging it too makes the true sum the first proposal."""
    best = _first(Grammar.from_text(REDUCED, name="reduced"), dimers, EWALD_LJ)
    assert best.expression == "c1/r**12+prod_c1*erfc(c2*r)/r+c3/r**6", best
    assert best.written_loss < 1e-15
    assert best.start["c2"] == pytest.approx(0.2, rel=1e-6)


def _selected(fitter, grammar, gram_cond, cancel, monkeypatch):
    """The sets of each size a selection keeps on ``fitter``'s data (shapes, constants,
    losses), solved with ``GRAM_COND`` and projected with ``PROJECTION_CANCEL`` as given."""
    from mctsff.engines.terms import columns, selection
    from mctsff.engines.terms.columns import Dictionary, selection_data, term_shapes
    from mctsff.engines.terms.sums import sum_structure

    monkeypatch.setattr(columns, "GRAM_COND", gram_cond)
    monkeypatch.setattr(selection, "PROJECTION_CANCEL", cancel)
    target, w = selection_data(fitter)
    d = Dictionary(fitter, term_shapes(grammar, sum_structure(grammar), fitter), target, w)
    atoms, blocks = d.atoms(lambda: None)
    sel = selection.Selection(
        d, max_terms=3, beam=3, candidates=4, refine_nfev=20, refine_per_level=12, exchanges=2
    )
    return {
        size: [(loss, [(s, dict(v)) for s, v in chosen]) for loss, chosen in states]
        for size, states in sel.run(atoms, blocks).items()
    }


def test_the_fast_solves_select_the_sets_the_svd_and_explicit_projection_do(
    dimers, small, monkeypatch
):
    """On the MP2 forces of the dimers (no exact sum: no ties below rounding), the
    normal-equation solves and the projected Gram matrices from differences select the
    same sets, at the same constants and losses, as the SVD solves and the columns
    projected explicitly."""
    from mctsff.fit import Fitter

    train, valid = dimers.split(0.2, seed=0)
    fitter = Fitter(train, valid, constraints=(), cutoff_scheme="none", wall=None, seed=0)
    slow = _selected(fitter, small, 0.0, math.inf, monkeypatch)
    fast = _selected(fitter, small, 1e5, 1e-4, monkeypatch)
    assert sorted(fast) == sorted(slow) and max(slow) >= 2
    for size in slow:
        assert [[s for s, _ in c] for _, c in fast[size]] == [
            [s for s, _ in c] for _, c in slow[size]
        ]
        for (lf, cf), (ls, cs) in zip(fast[size], slow[size], strict=True):
            assert lf == pytest.approx(ls, rel=1e-8)
            for (_, vf), (_, vs) in zip(cf, cs, strict=True):
                assert vf == pytest.approx(vs, rel=1e-5)


def test_lstsq_matches_the_svd_solve_well_and_ill_conditioned():
    """The normal-equation path agrees with the SVD where the scaled columns are well
    conditioned, and rank-deficient columns go to the SVD (minimum-norm solution)."""
    from mctsff.engines.terms.columns import lstsq

    rng = np.random.default_rng(0)
    X = rng.standard_normal((500, 4)) * np.array([1e-6, 1.0, 1e3, 1e8])
    y = X @ np.array([2.0, -1.0, 0.5, 3e-8]) + 1e-3 * rng.standard_normal(500)
    norms = np.linalg.norm(X, axis=0)
    ref = np.linalg.lstsq(X / norms, y, rcond=None)[0] / norms
    assert lstsq(X, y) == pytest.approx(ref, rel=1e-9)
    Xd = np.column_stack([X[:, 1], X[:, 1], X[:, 2]])  # two equal columns
    a = lstsq(Xd, y)
    assert np.isfinite(a).all() and a[0] == pytest.approx(a[1], rel=1e-9)

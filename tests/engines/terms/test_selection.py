"""The selection of sets of terms (mctsff.engines.terms.selection): exchanging the terms of
the best sets recovers sums the forward selection and backward elimination miss."""

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
    assert ewald.expression == "c1/r**12+c2/r**6+prod_c1*erfc(c3*r)/r"
    assert ewald.written_loss < 1e-15
    assert ewald.start["c3"] == pytest.approx(0.2, rel=1e-6)


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

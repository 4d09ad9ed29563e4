"""Fixtures of the term library's tests: a small grammar unlike ``pair`` and a fitter on
forces made by a known potential."""

import pytest

from mctsff.expr.grammar import Grammar
from mctsff.expr.params import Potential
from mctsff.fit import Fitter

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


def synthetic_fitter(dimers, expr, params):
    """A fitter (no constraints, no cutoff shift, no wall) on the forces of ``expr`` with
    ``params`` on the dimers, split 80/20."""
    truth = Potential(expr, params, dimers.species, dimers.type_pairs)
    train, valid = truth.synthetic(dimers).split(0.2, seed=0)
    return Fitter(train, valid, constraints=(), cutoff_scheme="none", wall=None, seed=0)

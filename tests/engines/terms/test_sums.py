"""The grammar side of the term library (mctsff.engines.terms.sums): the grammar's sum of
terms, its single terms, and sums written and parsed back with the grammar."""

from mctsff.engines.terms import compose, renumber, single_terms, sum_structure
from mctsff.expr.grammar import Grammar


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

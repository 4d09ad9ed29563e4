"""Tests of mctsff.expr.tree: leftmost derivation semantics, rollouts, derivability."""

from __future__ import annotations

import pickle
import time

import numpy as np
import pytest
import sympy

from mctsff.expr import ops
from mctsff.expr.grammar import Grammar
from mctsff.expr.tree import Derivation, derive

TOY = """\
start: a b
a: "x" | "(" a ")" | a "+" CONST
b: "*y" | PROD_CONST
CONST: "C"
PROD_CONST: "Q"
"""


@pytest.fixture(scope="module")
def toy() -> Grammar:
    return Grammar.from_text(TOY, name="toy")


def prod(g: Grammar, lhs: str, alias_or_rhs) -> int:
    for p in g.productions_for(lhs):
        if p.alias == alias_or_rhs or p.rhs == alias_or_rhs:
            return p.index
    raise KeyError(alias_or_rhs)


def parse(expr: str, names) -> sympy.Expr:
    local = {name: sympy.Symbol(name) for name in names}
    local.update({name: op.sympy for name, op in ops.FUNCTIONS.items()})
    return sympy.parse_expr(expr, local_dict=local)


def test_leftmost_expansion(toy):
    d = Derivation.initial(toy)
    assert d.leftmost == "start" and not d.is_complete and d.n_productions == 0
    assert d.min_remaining == toy.min_length("start") == 3
    d = d.apply(prod(toy, "start", ("a", "b")))
    assert d.pending == ("a", "b") and d.leftmost == "a"
    d = d.apply(prod(toy, "a", ("LPAR", "a", "RPAR")))
    # "(" is shifted to the prefix; a, ")" and b stay pending
    assert d.pending == ("a", "RPAR", "b")
    assert d.partial_string() == "( <a> ')' <b>"
    with pytest.raises(ValueError):
        d.apply(prod(toy, "b", ("PROD_CONST",)))  # b is not leftmost
    d = d.apply(prod(toy, "a", ("a", "PLUS", "CONST")))
    assert d.pending == ("a", "PLUS", "CONST", "RPAR", "b")
    d = d.apply(prod(toy, "a", ("X",)))
    # every terminal that became leftmost is shifted: "+ C )" join the prefix
    assert d.pending == ("b",) and d.leftmost == "b"
    assert d.prefix() == "(x+c1)"
    d = d.apply(prod(toy, "b", ("PROD_CONST",)))
    assert d.is_complete and d.n_productions == 5 and d.min_remaining == 0
    assert d.expression() == "(x+c1)prod_c1"  # the toy grammar is not meant to parse
    assert len(d.actions) == 5 and derive(toy, d.actions) == d


def test_shift_and_yield(toy):
    d = derive(
        toy,
        [
            prod(toy, "start", ("a", "b")),
            prod(toy, "a", ("a", "PLUS", "CONST")),
            prod(toy, "a", ("a", "PLUS", "CONST")),
            prod(toy, "a", ("X",)),
        ],
    )
    # after a -> "x" the whole "+C+C" run is emitted, b is leftmost
    assert d.pending == ("b",)
    d = d.apply(prod(toy, "b", ("__ANON_0",)))
    assert d.expression() == "x+c1+c2*y"


def test_join_spaces_only_where_tokens_would_fuse():
    g = Grammar.from_text('start: "lambda" "x" ":" CONST "*" "*" "x"\nCONST: "C"\n')
    assert Derivation.initial(g).apply(0).expression() == "lambda x:c1* *x"


def test_incomplete_expression_raises(toy):
    with pytest.raises(ValueError):
        Derivation.initial(toy).expression()


def test_equality_hash_pickle(toy):
    acts = [prod(toy, "start", ("a", "b")), prod(toy, "a", ("X",))]
    d1, d2 = derive(toy, acts), derive(toy, acts)
    assert d1 == d2 and hash(d1) == hash(d2) and d1.key == d2.key
    assert d1 != Derivation.initial(toy)
    assert len({d1, d2, Derivation.initial(toy)}) == 2
    d3 = pickle.loads(pickle.dumps(d1))
    assert d3.key == d1.key and d3.actions == d1.actions and d3.pending == d1.pending


def test_legal_actions_respect_max_length(toy):
    d = Derivation.initial(toy).apply(prod(toy, "start", ("a", "b")))
    # n=1, a needs >= 1, b needs 1: with max_length 3 only a -> "x" fits
    assert d.legal_actions(3) == (prod(toy, "a", ("X",)),)
    assert len(d.legal_actions(4)) == 3
    assert d.legal_actions(2) == ()
    with pytest.raises(ValueError):
        d.rollout(np.random.default_rng(0), 2)


@pytest.mark.parametrize("name", ["pair", "lj", "nguyen", "nguyen2", "nguyen_c"])
def test_rollouts_parse_and_respect_max_length(name):
    g = Grammar.load(name)
    rng = np.random.default_rng(1)
    root = Derivation.initial(g)
    for max_length in (g.min_length("start"), 12, 30):
        for _ in range(150):
            d = root.rollout(rng, max_length)
            assert d.is_complete
            assert d.n_productions <= max_length
            assert len(d.actions) == d.n_productions
            assert derive(g, d.actions).expression() == d.expression()
            expr = d.expression()
            names = set(g.variables) | {
                f"{prefix}{i}" for prefix in ("c", "prod_c", "geom_c") for i in range(1, 40)
            }
            names |= {"a_morse", "r0_morse"}
            e = parse(expr, names)
            assert set(map(str, e.free_symbols)) <= names
            assert g.complexity(expr) >= 1


def test_rollout_from_partial_and_determinism():
    g = Grammar.load("nguyen")
    d = Derivation.initial(g).apply(0)
    a = [d.rollout(np.random.default_rng(5), 25).expression() for _ in range(3)]
    assert a[0] == a[1] == a[2]
    rng = np.random.default_rng(5)
    many = {d.rollout(rng, 25).expression() for _ in range(50)}
    assert len(many) > 10
    assert all(len(x.actions) <= 25 for x in [d.rollout(rng, 25)])


def test_weighted_rollout():
    g = Grammar.load("pair")
    root = Derivation.initial(g)
    n_prod = len(g.productions)
    # equal weights draw exactly what the uniform rollout draws
    ones = [1.0] * n_prod
    a = [root.rollout(np.random.default_rng(s), 16, ones).expression() for s in range(30)]
    b = [root.rollout(np.random.default_rng(s), 16).expression() for s in range(30)]
    assert a == b
    # a zero weight excludes a production whenever another one is legal
    r12 = prod(g, "rpow", "r12")
    morse = prod(g, "term", "morse")
    w = list(ones)
    w[r12] = 0.0
    w[morse] = 50.0
    rng = np.random.default_rng(0)
    outs = [root.rollout(rng, 16, w) for _ in range(200)]
    assert all(r12 not in d.actions for d in outs)
    assert all(d.n_productions <= 16 for d in outs)
    share = np.mean([morse in d.actions for d in outs])
    assert share > 0.8  # 50/54 per term


def test_shortest_rollout_is_minimal():
    g = Grammar.load("pair")
    rng = np.random.default_rng(0)
    for _ in range(20):
        d = Derivation.initial(g).rollout(rng, g.min_length("start"))
        assert d.n_productions == g.min_length("start") == 5


def test_rollout_speed():
    g = Grammar.load("nguyen")
    root = Derivation.initial(g)
    rng = np.random.default_rng(0)
    n = 2000
    t0 = time.perf_counter()
    total = 0
    for _ in range(n):
        total += root.rollout(rng, 50).n_productions
    per = (time.perf_counter() - t0) / n
    assert total / n > 30  # long rollouts
    assert per < 500e-6  # ~20 us here; generous bound for slow CI


def find_derivation(g: Grammar, target: str, max_length: int) -> Derivation | None:
    """DFS over leftmost derivations whose emitted prefix is a prefix of ``target``."""
    target = target.replace(" ", "")

    def dfs(d: Derivation) -> Derivation | None:
        if d.is_complete:
            return d if d.expression() == target else None
        for a in d.legal_actions(max_length):
            nxt = d.apply(a)
            if target.startswith(nxt.prefix().replace(" ", "")):
                found = dfs(nxt)
                if found is not None:
                    return found
        return None

    return dfs(Derivation.initial(g))


PAIR_TARGETS = {
    # name: (yield, natural form, max productions)
    "coulomb_lj_product_rule": ("prod_c1/r+c1/r**12-c2/r**6", "q/r + A/r**12 - B/r**6", 13),
    "coulomb_lj_per_type": ("prod_c1/r+geom_c1/r**12-geom_c2/r**6", None, 13),
    "buckingham": ("c1*exp(-r/c2)-c3/r**6", "A*exp(-r/b) - C/r**6", 9),
    "morse": (
        "c1*(exp(-2*a_morse*(r-r0_morse))-2*exp(-a_morse*(r-r0_morse)))",
        "D*(exp(-2*a*(r-r0)) - 2*exp(-a*(r-r0)))",
        5,
    ),
    "screened_coulomb": ("prod_c1*exp(-r/c1)/r", "q*exp(-r/b)/r", 6),
    "damped_coulomb_plus_dispersion": ("prod_c1*erfc(c1*r)/r-c2*(1-exp(-c3*r))**6/r**6", None, 12),
}


@pytest.mark.parametrize("name", sorted(PAIR_TARGETS))
def test_physical_targets_derivable_in_pair_grammar(name):
    g = Grammar.load("pair")
    target, natural, n_max = PAIR_TARGETS[name]
    d = find_derivation(g, target, 25)
    assert d is not None, target
    assert d.n_productions <= n_max
    assert d.expression() == target
    if natural is not None:
        names = ["r", "c1", "c2", "c3", "prod_c1", "a_morse", "r0_morse"]
        names += ["q", "A", "B", "C", "b", "D", "a", "r0"]
        got = parse(target, names)
        ren = {"q": "prod_c1", "A": "c1", "B": "c3", "C": "c3", "b": "c2", "D": "c1"}
        ren.update({"a": "a_morse", "r0": "r0_morse"})
        if name == "coulomb_lj_product_rule":
            ren.update({"A": "c1", "B": "c2"})
        if name == "screened_coulomb":
            ren["b"] = "c1"
        want = parse(natural, names).subs(
            {sympy.Symbol(k): sympy.Symbol(v) for k, v in ren.items()}
        )
        assert sympy.simplify(got - want) == 0


def test_lj_grammar_short_models():
    g = Grammar.load("lj")
    for target, n in (("c1/r**12-c2/r**6+prod_c1/r", 6), ("geom_c1*exp(-r/c1)-c2/r**6", 5)):
        d = find_derivation(g, target, 8)
        assert d is not None and d.n_productions == n


def test_nguyen1_derivable():
    g = Grammar.load("nguyen")
    d = find_derivation(g, "x*x*x+x*x+x", 16)
    assert d is not None and d.n_productions == 16
    assert sympy.expand(parse(d.expression(), ["x"])) == parse("x**3+x**2+x", ["x"])

"""Tests of mctsff.expr.grammar: loading, productions, analysis, errors, complexity."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from mctsff.expr.grammar import Grammar, GrammarError, grammar_dir, shipped_grammars
from mctsff.expr.tree import Derivation

TOY = """\
// @complexity exp=3 CONST=2
start: sum
sum: sum "+" term -> add
   | term
term: CONST "*" atom
    | atom
atom: "x" | "exp(" sum ")"
CONST: "C"
"""


def write(tmp_path: Path, text: str, name: str = "bad.lark") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", ["pair", "lj", "nguyen", "nguyen2", "nguyen_c"])
def test_shipped_grammars_load(name):
    g = Grammar.load(name)
    assert g.name == name
    assert g.path == grammar_dir() / f"{name}.lark"
    assert g.start == "start"
    assert g.productions and all(p.index == i for i, p in enumerate(g.productions))
    assert g.unreachable == []
    assert g.min_length("start") >= 1
    assert g.text.startswith("//")  # header comment
    assert name in shipped_grammars()


def test_load_by_path_and_text(tmp_path):
    path = write(tmp_path, TOY, "toy.lark")
    g1 = Grammar.load(path)
    g2 = Grammar.load(str(path))
    g3 = Grammar.from_text(TOY, name="toy")
    assert g1.name == g2.name == g3.name == "toy"
    assert g1.path == path and g3.path is None
    assert [str(p) for p in g1.productions] == [str(p) for p in g3.productions]


def test_nguyen_productions():
    g = Grammar.load("nguyen")
    assert g.variables == ("x",)
    atoms = g.productions_for("atom")
    assert [p.alias for p in atoms] == ["var", "paren", "sin", "cos", "exp", "log"]
    texts = [tuple(g.terminal_text[s] for s in p.rhs if g.is_terminal(s)) for p in atoms]
    assert texts[0] == ("x",)
    assert texts[2] == ("sin(", ")")
    sums = g.productions_for("sum")
    assert [p.rhs for p in sums] == [("sum", "PLUS", "prod"), ("sum", "MINUS", "prod"), ("prod",)]
    assert [p.alias for p in sums] == ["add", "sub", None]
    assert g.productions_for("start")[0].rhs == ("sum",)
    assert len(g.productions) == 1 + 3 + 3 + 6


def test_pair_grammar_contents():
    g = Grammar.load("pair")
    assert g.variables == ("r",)
    aliases = {p.alias for p in g.productions}
    assert {"inverse_power", "damped_power", "product", "morse", "product_rule"} <= aliases
    placeholders = {t for t, text in g.terminal_text.items() if text is None}
    assert placeholders == {"CONST", "PROD_CONST", "GEOM_CONST"}
    rpows = [g.terminal_text[p.rhs[0]] for p in g.productions_for("rpow")]
    assert rpows == ["r", "r**2", "r**4", "r**6", "r**8", "r**12"]


def test_ebnf_expansion_keeps_aliases():
    g = Grammar.from_text('start: item ("+" item)*\nitem: [CONST "*"] "x" -> it\nCONST: "C"\n')
    items = g.productions_for("item")
    assert len(items) == 2 and all(p.alias == "it" for p in items)
    assert sorted(len(p.rhs) for p in items) == [1, 3]
    assert any(nt.startswith("__start_star") for nt in g.nonterminals)


def test_min_length_small_grammar():
    g = Grammar.from_text(TOY, name="toy")
    assert g.min_length("atom") == 1
    assert g.min_length("term") == 2
    assert g.min_length("sum") == 3
    assert g.min_length("start") == 4
    assert g.min_length("CONST") == 0
    by_rhs = {p.rhs: p.min_length for p in g.productions}
    assert by_rhs[("sum", "PLUS", "term")] == 1 + 3 + 2
    assert by_rhs[("CONST", "STAR", "atom")] == 2
    assert by_rhs[("__ANON_0", "sum", "RPAR")] == 4
    assert g.min_length(g.productions[0]) == 4


def test_recursion_only_through_other_rule():
    g = Grammar.from_text('start: a\na: b "x" | "y"\nb: a "z"\n')
    assert g.min_length("a") == 1
    assert g.min_length("b") == 2
    assert g.min_length("start") == 2


def test_unreachable_reported(tmp_path):
    with pytest.warns(UserWarning, match="unreachable"):
        g = Grammar.from_text('start: "x"\norphan: "y"\n')
    assert g.unreachable == ["orphan"]


def error_line(exc: pytest.ExceptionInfo, path: Path) -> int:
    msg = str(exc.value)
    assert str(path) in msg
    m = re.search(r"line (\d+)", msg)
    assert m, msg
    return int(m.group(1))


def test_syntax_error_names_file_and_line(tmp_path):
    path = write(tmp_path, 'start: expr\nexpr: "a"\n  | ((\n')
    with pytest.raises(GrammarError) as exc:
        Grammar.load(path)
    assert error_line(exc, path) == 3


def test_undefined_rule_names_file_and_line(tmp_path):
    path = write(tmp_path, 'start: expr\n\nexpr: "a"\n    | foo "+"\n')
    with pytest.raises(GrammarError, match="foo") as exc:
        Grammar.load(path)
    assert error_line(exc, path) == 4


def test_nonproductive_rule_names_file_and_line(tmp_path):
    path = write(tmp_path, 'start: expr | "x"\n// loop\nexpr: expr "+" "x"\n')
    with pytest.raises(GrammarError, match="non-productive") as exc:
        Grammar.load(path)
    assert error_line(exc, path) == 3
    assert "expr" in str(exc.value)


def test_nonproductive_start(tmp_path):
    path = write(tmp_path, 'start: start "x"\n')
    with pytest.raises(GrammarError, match="start") as exc:
        Grammar.load(path)
    assert error_line(exc, path) == 1


def test_regex_terminal_rejected(tmp_path):
    path = write(tmp_path, 'start: "x" "*" NUM\n\nNUM: /[0-9]+/\n')
    with pytest.raises(GrammarError, match="NUM") as exc:
        Grammar.load(path)
    assert error_line(exc, path) == 3
    path2 = write(tmp_path, "%import common.NUMBER\nstart: NUMBER\n", "imp.lark")
    with pytest.raises(GrammarError, match="NUMBER") as exc2:
        Grammar.load(path2)
    assert error_line(exc2, path2) == 1


def test_missing_start_and_unknown_name(tmp_path):
    path = write(tmp_path, 'expr: "x"\n')
    with pytest.raises(GrammarError, match="start") as exc:
        Grammar.load(path)
    assert str(path) in str(exc.value)
    with pytest.raises(GrammarError, match="unknown grammar"):
        Grammar.load("no_such_grammar")


def test_complexity_weights_and_directive():
    g = Grammar.from_text(TOY, name="toy")
    assert g.complexity_weights["exp"] == 3
    assert g.complexity_weights["CONST"] == 2
    assert g.complexity_weights["+"] == 1
    assert g.complexity("x") == 1
    assert g.complexity("c1*x") == 1 + 2 + 1
    assert g.complexity("exp(x+c1)") == 3 + 1 + 1 + 2
    default = Grammar.load("pair")
    # prod_c1/r + c2/r**12: + (1), / (1) x2, prod const 1, r 1, c2 1, r**12 = r + POWI + LIT
    assert default.complexity("prod_c1/r+c2/r**12") == 1 + (1 + 1 + 1) + (1 + 1 + 1 + 1 + 1)
    assert default.complexity("-c1*r**-6") == (1 + 1) + 1 + (1 + 1 + 1)
    assert default.complexity("exp(-r/c1)") == 2 + 1 + 1 + 1 + 1
    assert default.complexity("-2.5*r") == 1 + 1 + 1
    with pytest.raises(ValueError):
        default.complexity("foo(r)")


def test_complexity_matches_program_compiler():
    program = pytest.importorskip("mctsff.expr.program")
    rng = np.random.default_rng(0)
    for name in ("pair", "lj", "nguyen_c"):
        g = Grammar.load(name)
        root = Derivation.initial(g)
        for _ in range(100):
            expr = root.rollout(rng, 30).expression()
            compiled = program.Program.from_string(expr, variables=g.variables)
            assert g.complexity(expr) == compiled.complexity, expr


def test_bad_directive(tmp_path):
    path = write(tmp_path, '// @complexity exp=three\nstart: "x"\n')
    with pytest.raises(GrammarError, match="line 1"):
        Grammar.load(path)


def test_grammar_pickles():
    g = Grammar.load("pair")
    g2 = pickle.loads(pickle.dumps(g))
    assert [str(p) for p in g2.productions] == [str(p) for p in g.productions]
    assert g2.complexity_weights == g.complexity_weights


def test_recursive_nonterminals_are_those_on_a_cycle():
    assert Grammar.load("pair").recursive == {"potential"}  # potential -> potential "+" term
    assert Grammar.load("nguyen").recursive == {"sum", "prod", "atom"}  # atom -> "(" sum ")"
    assert Grammar.load("lj").recursive == set()
    toy = Grammar.from_text(
        'start: a\na: a "+" b | b\nb: "x" | "(" c ")"\nc: "y"', name="toy"
    )  # fmt: skip
    assert toy.recursive == {"a"}


def test_wrapping_functions_take_any_expression():
    # sin cos exp log take a whole sum and stand alone as an expression
    assert Grammar.load("nguyen2").wrapping_functions == ("sin", "cos", "exp", "log")
    # the pair grammar's functions have fixed arguments (exp(-r/C), erfc(C*r))
    assert Grammar.load("pair").wrapping_functions == ()
    toy = Grammar.from_text(
        'start: e\ne: e "+" t | t\nt: "x" | "sin(" t ")" | "exp(" e ")" | "log(" e ")" "*x"'
    )
    # sin(t) cannot take a sum; log(e)*x is not a bare function call
    assert toy.wrapping_functions == ("exp",)


@pytest.mark.parametrize(
    "name, expression",
    [
        ("pair", "c1 / r ** 12 - c2 / r ** 6 + prod_c1 / r"),
        ("pair", "c1*exp(-r/c2)-geom_c1*r**2*exp(-c3*r**2)"),
        ("pair", "c1 * (exp(-2 * a_morse * (r - r0_morse)) - 2 * exp(-a_morse * (r - r0_morse)))"),
        ("nguyen2", "exp(y * log(x))"),
        ("nguyen2", "cos(sin(cos(y) * sin(x)) + x / x) - (x - y)"),
    ],
)
def test_derivation_of_reads_an_expression_back_into_productions(name, expression):
    from mctsff.expr.tree import derive

    g = Grammar.load(name)
    actions = g.derivation_of(expression)
    assert actions is not None
    assert derive(g, actions).expression() == expression.replace(" ", "")
    # what a pickled grammar (a worker's copy) reads is the same
    assert pickle.loads(pickle.dumps(g)).derivation_of(expression) == actions


@pytest.mark.parametrize(
    "name, expression",
    [
        ("pair", "-c1/r"),  # no unary minus in the grammar
        ("pair", "c1/r+c1/r**6"),  # one constant used twice
        ("pair", "c2/r"),  # constants numbered otherwise than the grammar numbers them
        ("pair", "c1*exp(-c2*r)"),  # not this grammar's exponential
        ("pair", "c1*r"),  # grows without bound: only damped (docs/grammar.md, Physics)
        ("pair", "prod_c1*r**2"),
        ("pair", "c1*r*tanh(c2*r)"),  # tanh does not decay: no damping
        ("pair", "c1*exp(-r/c2)-geom_c1*r**2/r**8"),  # r**2/r**8 is r**-6, written once
        ("nguyen2", "x**y"),
        ("nguyen2", "not python ("),
    ],
)
def test_derivation_of_is_none_when_the_grammar_cannot_derive_it(name, expression):
    assert Grammar.load(name).derivation_of(expression) is None


def test_derivation_of_is_none_for_rules_lark_inlines():
    # EBNF repetition becomes helper rules that Lark inlines in its parse trees
    g = Grammar.from_text('start: item ("+" item)*\nitem: [CONST "*"] "x" -> it\nCONST: "C"\n')
    assert g.derivation_of("x") is not None
    assert g.derivation_of("c1*x+x") is None


def test_derivation_of_reads_with_lalr_and_falls_back_to_earley():
    from mctsff.expr.tree import derive

    assert Grammar.load("nguyen2")._reader.options.parser == "lalr"
    # two rules reduce "x" before the same "z": not LR(1), Earley reads it
    g = Grammar.from_text('start: a "z" -> one\n | b "z" -> two\na: "x"\nb: "x"\n')
    assert g._reader.options.parser == "earley"
    assert derive(g, g.derivation_of("xz")).expression().replace(" ", "") == "xz"


def test_blocks_are_the_non_recursive_nonterminals():
    pair = Grammar.load("pair")
    assert pair.block_nonterminals == {
        "term", "coef", "rpow", "factor", "monomial", "decay", "morse"
    }  # fmt: skip
    assert pair.top_blocks == {"term"}  # coef, rpow, factor, ... sit inside a term
    lj = Grammar.load("lj")
    assert "model" in lj.top_blocks and "coef" not in lj.top_blocks
    # every nonterminal of nguyen's expression grammar is on a cycle: no blocks
    assert Grammar.load("nguyen").block_nonterminals == frozenset()
    toy = Grammar.from_text('start: s\ns: s "+" t | t\nt: "x" | "y*" u\nu: "x" | "y"')
    assert toy.block_nonterminals == {"t", "u"}
    assert toy.top_blocks == {"t"}


# ----------------------------------------------------------------------------- bad files
@pytest.mark.parametrize(
    ("data", "words"),
    [
        (bytes(range(256)) * 4, ["not UTF-8 text", "byte 0x80"]),  # binary
        ('start: expr\nexpr: "c1*r" | "c\xe9"\n'.encode("latin-1"), ["byte 0xe9"]),  # Latin-1
        (b'start: expr\nexpr: "c1*r"\x00\n', ["NUL"]),
    ],
    ids=["binary", "latin-1", "nul"],
)
def test_a_grammar_file_that_is_not_text_is_one_error_naming_it(tmp_path, data, words):
    path = tmp_path / "bad.lark"
    path.write_bytes(data)
    with pytest.raises(GrammarError) as exc:
        Grammar.load(path)
    message = str(exc.value)
    assert "\n" not in message and str(path) in message
    for w in words:
        assert w in message


def test_max_length_below_the_shortest_derivation_is_one_search_error(screened, capsys):
    from mctsff.cli import main
    from mctsff.data import data_file
    from mctsff.fit import Fitter
    from mctsff.search import SearchError, check_max_length, search

    check_max_length(Grammar.load("pair"), 5)
    with pytest.raises(SearchError, match=r"--max-length 4 .* grammar 'pair' \(5 productions\)"):
        search(Fitter(*screened), "pair", budget=1, max_length=4)
    data = str(data_file("water_dimers_mp2_sample20.extxyz"))
    code = main(["search", data, "--max-length", "3", "--budget", "1", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("mctsff: error: --max-length 3 is below")


# ----------------------------------------------------------------------------- size limits
def _alternatives(n: int) -> str:
    return 'start: t\nt: "c0/r"\n' + "\n".join(f'  | "c{i}*r"' for i in range(1, n))


def _chain(n: int) -> str:
    rules = "\n".join(f'r{i}: "c{i}*r" | r{i + 1} "+" "c{i}/r"' for i in range(n))
    return f'start: r0\n{rules}\nr{n}: "A/r"\n'


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (_alternatives(5000), ["characters", "65536"]),  # 70 kB; Lark took 2 s
        (_chain(220), ["222 nonterminals", "(200"]),  # 7 kB; Lark took 1.2 s (1000: 50 s)
        (_alternatives(2100), ["2101 productions", "(2000"]),  # 28 kB
    ],
    ids=["characters", "nonterminals", "productions"],
)
def test_a_grammar_beyond_the_size_limits_is_one_error_before_lark_builds_it(text, words):
    import time

    t0 = time.perf_counter()
    with pytest.raises(GrammarError) as exc:
        Grammar.from_text(text, name="big")
    assert time.perf_counter() - t0 < 2.0
    message = str(exc.value)
    assert "\n" not in message and "<grammar big>" in message
    for w in words:
        assert w in message


def test_a_checkpoint_holding_a_huge_grammar_is_refused_without_building_it(tmp_path):
    from mctsff.runio import RunFolderError, load_checkpoint

    class _Build:  # pickles as Grammar(text): what a crafted checkpoint can ask for
        def __reduce__(self):
            return Grammar, (_alternatives(5000),)  # 70 kB (3.5 MB: Lark never finished)

    path = tmp_path / "checkpoint.pkl"
    path.write_bytes(pickle.dumps({"grammar": _Build()}))
    with pytest.raises(RunFolderError, match="characters, more than a grammar may have"):
        load_checkpoint(path)

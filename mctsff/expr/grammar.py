"""Context-free grammars of candidate expressions, loaded from ``.lark`` files.

A grammar defines the space searched by :mod:`mctsff.engines.mcts`: every complete
leftmost derivation yields one expression string (Python/sympy syntax) that the
fitter compiles.  Grammars are written in Lark's EBNF; :class:`Grammar` lets
Lark parse the file and takes the BNF productions (after EBNF expansion, aliases
kept) from ``Lark(...).rules``.  The productions are the actions of the search.

Terminal convention
-------------------
* **String terminals** (anonymous like ``"+"``, ``"exp("`` or named
  ``PLUS: "+"``) are emitted verbatim.  Identifiers inside them are variables
  (``r``, ``x``, ...), function names from :data:`mctsff.expr.ops.FUNCTIONS`, or
  *named* fitted constants (any other identifier, e.g. ``a_morse``; the prefix
  rules of :func:`mctsff.expr.ops.constant_rule` apply).  A named constant that
  appears twice in one expression is one constant (this is how a grammar ties
  parameters, e.g. the range of a Morse potential).
* **Placeholder terminals** stand for fresh fitted constants and are numbered
  by order of appearance in the yield, one counter per kind:

  ================  ==================  =====================================
  terminal          emitted names       meaning
  ================  ==================  =====================================
  ``CONST``         ``c1, c2, ...``     one global constant
  ``PROD_CONST``    ``prod_c1, ...``    per-type, product rule X^AB = X^A X^B
  ``GEOM_CONST``    ``geom_c1, ...``    per-type, geometric mean
  ``ARITH_CONST``   ``arith_c1, ...``   per-type, arithmetic mean
  ``PAIR_CONST``    ``pair_c1, ...``    free value per unordered type pair
  ================  ==================  =====================================

  Their pattern in the file does not matter (``CONST: "C"`` is customary).
* Any other regular-expression terminal (``/[0-9]+/``, ``%import
  common.NUMBER``) is rejected with :class:`GrammarError`.

Tokens are joined without spaces except where two word-like tokens (or two of
``*``/``/``) would otherwise fuse, so ``"exp(" "-r/" CONST ")"`` yields
``exp(-r/c1)``.

Directives (comments, ignored by Lark)
--------------------------------------
``// @complexity exp=3 sqrt=2 CONST=1``
    Override complexity weights.  Keys are operator names of
    :data:`mctsff.expr.ops.OPS` (``+``, ``**``, ``neg``, ``exp``, ...) or the leaf
    kinds ``CONST``, ``PROD_CONST``, ``GEOM_CONST``, ``ARITH_CONST``,
    ``PAIR_CONST``, ``VAR``, ``LIT`` and ``POWI`` (``x**n`` with integer ``n``
    costs ``complexity(x) + POWI + LIT``).
``// @variables r``
    Names of the independent variables (default: the identifiers ``r``, ``x``,
    ``y``, ``z`` or ``x<digits>`` found in the terminals).

Analysis
--------
The symbol graph (networkx) gives the nonterminals unreachable from ``start``
(reported in :attr:`Grammar.unreachable`, with a warning) and the recursive
ones (:attr:`Grammar.recursive`, those on a cycle); a fixed point gives
the productive nonterminals and the minimum number of productions needed to
expand each symbol and each production (:meth:`Grammar.min_length`,
:attr:`Production.min_length`), which bounds rollouts.  A syntax error, an
undefined symbol, a missing ``start``, a reachable non-productive nonterminal or
an unsupported terminal raises one :class:`GrammarError` whose message names
the file and line.
"""

from __future__ import annotations

import ast
import functools
import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import lark
import networkx as nx

from mctsff.expr import ops

__all__ = [
    "PLACEHOLDERS",
    "Grammar",
    "GrammarError",
    "Production",
    "grammar_dir",
    "shipped_grammars",
]

#: Placeholder terminal name -> prefix of the constants it stands for.
PLACEHOLDERS: dict[str, str] = {
    "CONST": "c",
    "PROD_CONST": "prod_c",
    "GEOM_CONST": "geom_c",
    "ARITH_CONST": "arith_c",
    "PAIR_CONST": "pair_c",
}

#: Prefix of a per-type constant's combining rule (``prod_``, …) -> its placeholder kind.
_RULE_PREFIX_TO_KIND = {
    prefix: next(kind for kind, p in PLACEHOLDERS.items() if p == prefix + "c")
    for prefix in ops.TYPE_RULES
}
_PREFIX_KIND = {prefix: kind for kind, prefix in PLACEHOLDERS.items()}
_CONSTANT_NAME = re.compile(
    r"\b(" + "|".join(sorted(map(re.escape, _PREFIX_KIND), key=len, reverse=True)) + r")\d+\b"
)
_DEFAULT_VARIABLE = re.compile(r"^(r|x|y|z|x\d+)$")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")
_WORD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.")


class GrammarError(ValueError):
    """A grammar that cannot be used: the message names the file and line."""


#: Limits on a grammar, checked before Lark builds its parser: Lark's set-up time grows
#: faster than the grammar (a chain of 1000 rules, 35 kB, took 50 s; 250 000
#: alternatives, 3.5 MB, never finished), so a grammar received from someone else could
#: stall a search or a resume.  The shipped ones are far inside (``pair``: 3.3 kB, 9
#: nonterminals, 31 productions); at the limits Lark and the analysis take a few seconds.
MAX_GRAMMAR_CHARS = 65_536
MAX_NONTERMINALS = 200
MAX_PRODUCTIONS = 2000


@dataclass(frozen=True, slots=True)
class Production:
    """One BNF production ``lhs -> rhs``.

    Attributes
    ----------
    index
        Position in :attr:`Grammar.productions` (the action id used by the search).
    lhs
        Nonterminal name.
    rhs
        Symbols (nonterminal and terminal names, in order).
    alias
        Lark alias (``-> name``) or ``None``.
    min_length
        Minimum number of productions needed to expand ``lhs`` when this
        production is used first (itself included).
    """

    index: int
    lhs: str
    rhs: tuple[str, ...]
    alias: str | None = None
    min_length: float = math.inf

    def __str__(self) -> str:
        alias = f"  -> {self.alias}" if self.alias else ""
        return f"{self.lhs}: {' '.join(self.rhs) or '<empty>'}{alias}"


class _Tables:
    """Integer tables used by :mod:`mctsff.expr.tree` (hot path, no attribute lookups).

    Nonterminals are ids ``>= 0``; terminal ``t`` is encoded as ``-1 - t`` on
    the derivation stack.
    """

    __slots__ = (
        "start",
        "nt_min",
        "prod_lhs",
        "prod_push",
        "prod_min",
        "prod_nnt",
        "by_nt",
        "by_nt_min",
        "term_text",
        "term_prefix",
        "term_word_start",
        "term_word_end",
        "term_op_start",
        "term_op_end",
    )


def grammar_dir() -> Path:
    """Folder holding the shipped ``.lark`` files (wheel install or source checkout)."""
    package = Path(__file__).resolve().parents[1]  # mctsff/
    for candidate in (package / "grammars", package.parent / "grammars"):
        if candidate.is_dir():
            return candidate
    return package.parent / "grammars"


def shipped_grammars() -> list[str]:
    """Names of the shipped grammars (``"pair"``, ``"lj"``, ``"nguyen"``, ...)."""
    return sorted(p.stem for p in grammar_dir().glob("*.lark"))


def _parse_directives(text: str) -> tuple[dict[str, float], tuple[str, ...] | None]:
    weights: dict[str, float] = {}
    variables: tuple[str, ...] | None = None
    for lineno, line in enumerate(text.splitlines(), 1):
        m = re.match(r"\s*//\s*@(\w+)\b(.*)$", line)
        if not m:
            continue
        key, rest = m.group(1), m.group(2).split()
        if key == "complexity":
            for item in rest:
                name, sep, value = item.partition("=")
                try:
                    number = float(value)
                except ValueError:
                    number = math.nan
                if not sep or not name or not math.isfinite(number):
                    raise GrammarError(f"line {lineno}: bad @complexity item {item!r}")
                weights[name] = int(number) if number.is_integer() else number
        elif key == "variables":
            variables = tuple(v.strip(",") for v in rest if v.strip(","))
    return weights, variables


class Grammar:
    """A checked context-free grammar of expressions.

    Use :meth:`load` (a path or a shipped grammar name) or :meth:`from_text`.

    Attributes
    ----------
    name, path, text
        Grammar name, source file (``None`` for text) and the grammar text.
    start
        Start symbol (always ``"start"``).
    productions
        All productions; ``productions[i].index == i``.
    nonterminals, terminals
        Symbol names in order of first definition.
    terminal_text
        Terminal name -> emitted text (``None`` for placeholders).
    unreachable
        Nonterminals not reachable from ``start`` (kept but never used).
    recursive
        Nonterminals on a cycle of the symbol graph (they can derive themselves,
        so they have infinitely many complete sub-derivations); the others have
        finitely many (in ``pair``: a term, its coefficient, its factors).
    complexity_weights
        Operator / leaf-kind -> complexity weight (defaults from :mod:`mctsff.expr.ops`
        updated with ``// @complexity`` directives).
    variables
        Independent variable names.

    Examples
    --------
    >>> g = Grammar.from_text('start: "x" | start "+" "x"', name="toy")
    >>> [str(p) for p in g.productions_for("start")]
    ['start: X', 'start: start PLUS X']
    >>> g.min_length("start")
    1
    """

    start = "start"

    def __init__(self, text: str, *, name: str = "grammar", path: Path | None = None) -> None:
        self.text = text
        self.name = name
        self.path = path
        self._where = str(path) if path is not None else f"<grammar {name}>"
        self._check_size(text)
        try:
            parser = lark.Lark(text, start=self.start, keep_all_tokens=True)
        except lark.exceptions.LarkError as exc:
            raise self._lark_error(exc) from None
        except RecursionError:
            raise GrammarError(f"{self._where}: nested too deeply") from None
        try:
            weights, variables = _parse_directives(text)
        except GrammarError as exc:
            raise GrammarError(f"{self._where}, {exc}") from None
        self._lark = parser
        self._build(parser, weights, variables)

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, source: str | Path | Grammar) -> Grammar:
        """Load a grammar from a ``.lark`` path or a shipped grammar name.

        Parameters
        ----------
        source
            Path to a ``.lark`` file, or the name of a shipped grammar
            (``"pair"``, ``"lj"``, ``"nguyen"``, ...; see :func:`shipped_grammars`).
            Text containing a ``:`` and a newline is treated as grammar text; a
            :class:`Grammar` is returned unchanged.
        """
        if isinstance(source, Grammar):
            return source
        if isinstance(source, str) and "\n" in source and ":" in source:
            return cls.from_text(source)
        path = Path(source)
        if not path.suffix and not path.exists():
            shipped = grammar_dir() / f"{source}.lark"
            if not shipped.exists():
                raise GrammarError(
                    f"unknown grammar {str(source)!r}: not a file and not one of "
                    f"{shipped_grammars()}"
                )
            path = shipped
        if not path.is_file():
            raise GrammarError(f"grammar file not found: {path}")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            from mctsff.runio import not_text

            raise GrammarError(f"grammar file {path}: {not_text(exc)}") from None
        except OSError as exc:
            raise GrammarError(f"grammar file {path}: cannot read ({exc.strerror})") from None
        if "\x00" in text:
            raise GrammarError(f"grammar file {path}: holds NUL bytes (a binary file?)")
        return cls(text, name=path.stem, path=path)

    @classmethod
    def from_text(cls, text: str, name: str = "grammar") -> Grammar:
        """Build a grammar from ``.lark`` text."""
        return cls(text, name=name, path=None)

    # ------------------------------------------------------------------ errors
    def _check_size(self, text: str) -> None:
        """Refuse text beyond :data:`MAX_GRAMMAR_CHARS`, or whose productions (after EBNF
        expansion, as Lark's grammar loader compiles them, without the parser's analysis,
        whose time grows fastest) exceed :data:`MAX_NONTERMINALS` nonterminals or
        :data:`MAX_PRODUCTIONS` productions.  Errors of the grammar itself are left to
        Lark's parser, which reports them with their line."""
        if not isinstance(text, str):
            raise GrammarError(f"{self._where}: grammar text is a {type(text).__name__}")
        if len(text) > MAX_GRAMMAR_CHARS:
            raise GrammarError(
                f"{self._where}: {len(text)} characters, more than a grammar may have "
                f"({MAX_GRAMMAR_CHARS}; Lark's set-up time grows faster than the grammar)"
            )
        try:
            from lark.load_grammar import load_grammar

            loaded, _ = load_grammar(text, "<string>", [], True)
            _, rules, _ = loaded.compile([self.start], set())
        except RecursionError:
            raise GrammarError(f"{self._where}: nested too deeply") from None
        except Exception:  # noqa: BLE001 - a grammar error (reported by Lark next) or an API change
            return
        nonterminals = len({rule.origin.name for rule in rules})
        for count, limit, what in (
            (nonterminals, MAX_NONTERMINALS, "nonterminals"),
            (len(rules), MAX_PRODUCTIONS, "productions"),
        ):
            if count > limit:
                raise GrammarError(
                    f"{self._where}: {count} {what}, more than a grammar may have ({limit}; "
                    "Lark's set-up time grows faster than the grammar)"
                )

    def _lark_error(self, exc: Exception) -> GrammarError:
        msg = str(exc).strip()
        line = getattr(exc, "line", None)
        if not isinstance(line, int) or line < 0:
            m = re.search(r"\bline (\d+)", msg)
            line = int(m.group(1)) if m else None
        if line is None:
            m = re.search(r"Rule '([^']+)' used but not defined \(in rule (\S+?)\)", msg)
            if m:
                line = self._use_line(m.group(1), m.group(2))
            elif "undefined rule" in msg and "'start'" in msg:
                msg = f"no 'start' rule: {msg}"
                line = 1
            else:
                m = re.search(r"'(\w+)'", msg)
                line = self._def_line(m.group(1)) if m else None
        first = msg.splitlines()[0] if msg else type(exc).__name__
        return GrammarError(f"{self._where}, line {line or '?'}: {first}")

    def _def_line(self, name: str) -> int | None:
        """Line where rule or terminal ``name`` is defined (internal names map to their rule)."""
        m = re.match(r"^__(\w+?)_(?:star|plus|opt|inline)_\d+$", name)
        if m:
            name = m.group(1)
        pattern = re.compile(
            rf"^[ \t]*[?!]?{re.escape(name)}[ \t]*(\{{[^}}]*\}})?(\.-?\d+)?[ \t]*:", re.M
        )
        found = pattern.search(self.text)
        if found is None:
            return None
        return self.text.count("\n", 0, found.start()) + 1

    def _use_line(self, used: str, rule: str) -> int | None:
        """Line inside the definition of ``rule`` where ``used`` occurs."""
        start = self._def_line(rule)
        if start is None:
            return None
        lines = self.text.splitlines()
        word = re.compile(rf"\b{re.escape(used)}\b")
        for i in range(start - 1, len(lines)):
            if i > start - 1 and re.match(
                r"^[ \t]*[?!]?[A-Za-z_]\w*[ \t]*(\.\d+)?[ \t]*:", lines[i]
            ):
                break
            if word.search(lines[i].split("//")[0]):
                return i + 1
        return start

    def _error(self, line: int | None, message: str) -> GrammarError:
        return GrammarError(f"{self._where}, line {line or '?'}: {message}")

    # ------------------------------------------------------------------ build
    def _build(
        self,
        parser: lark.Lark,
        weights: dict[str, float],
        variables: tuple[str, ...] | None,
    ) -> None:
        termdefs = {t.name: t for t in parser.terminals}
        productions: list[tuple[str, tuple[str, ...], str | None]] = []
        nonterminals: list[str] = []
        terminals: list[str] = []
        for rule in parser.rules:
            lhs = str(rule.origin.name)
            rhs = tuple(str(s.name) for s in rule.expansion)
            alias = None if rule.alias is None else str(rule.alias)
            if lhs not in nonterminals:
                nonterminals.append(lhs)
            productions.append((lhs, rhs, alias))
            for sym, s in zip(rhs, rule.expansion, strict=True):
                if s.is_term and sym not in terminals:
                    terminals.append(sym)
        nt_set = set(nonterminals)
        if self.start not in nt_set:
            raise self._error(1, "no 'start' rule")

        # terminals: verbatim strings or placeholders
        terminal_text: dict[str, str | None] = {}
        for term in terminals:
            if term in PLACEHOLDERS:
                terminal_text[term] = None
                continue
            tdef = termdefs.get(term)
            if tdef is None:
                raise self._error(self._def_line(term), f"terminal {term} has no definition")
            if not isinstance(tdef.pattern, lark.lexer.PatternStr):
                user = next((lhs for lhs, rhs, _ in productions if term in rhs), None)
                line = self._def_line(term)
                if line is None:
                    m = re.search(rf"%import\s+\S*\b{re.escape(term)}\b", self.text)
                    line = self.text.count("\n", 0, m.start()) + 1 if m else None
                if line is None and user is not None:
                    line = self._def_line(user)
                shown = term if not term.startswith("__ANON") else f"/{tdef.pattern.value}/"
                raise self._error(
                    line,
                    f"regular-expression terminal {shown} is not supported; use string "
                    f"terminals or a placeholder ({', '.join(PLACEHOLDERS)})",
                )
            terminal_text[term] = tdef.pattern.value

        # symbol graph, reachability
        graph = nx.DiGraph()
        graph.add_nodes_from(nonterminals)
        for lhs, rhs, _ in productions:
            for sym in rhs:
                if sym in nt_set:
                    graph.add_edge(lhs, sym)
        reachable = nx.descendants(graph, self.start) | {self.start}
        self.recursive = frozenset(
            nt
            for scc in nx.strongly_connected_components(graph)
            for nt in scc
            if len(scc) > 1 or graph.has_edge(nt, nt)
        )
        # Lark drops rules it cannot reach from start: find them in the text
        defined = re.findall(
            r"^[ \t]*[?!]?(_?[a-z][a-z_0-9]*)[ \t]*(?:\.-?\d+)?[ \t]*:", self.text, re.M
        )
        self.unreachable = [nt for nt in nonterminals if nt not in reachable]
        self.unreachable += [
            nt for nt in dict.fromkeys(defined) if nt not in nt_set and nt not in self.unreachable
        ]
        if self.unreachable:
            warnings.warn(
                f"{self._where}: unreachable nonterminals {self.unreachable}",
                stacklevel=3,
            )

        # productivity and minimum derivation lengths (fixed point)
        nt_min = {nt: math.inf for nt in nonterminals}
        changed = True
        while changed:
            changed = False
            for lhs, rhs, _ in productions:
                cost = 1 + sum(nt_min[s] for s in rhs if s in nt_set)
                if cost < nt_min[lhs]:
                    nt_min[lhs] = cost
                    changed = True
        dead = [nt for nt in nonterminals if nt in reachable and not math.isfinite(nt_min[nt])]
        if dead:
            where = ", ".join(f"{nt} (line {self._def_line(nt) or '?'})" for nt in dead)
            raise self._error(
                self._def_line(dead[0]),
                f"non-productive nonterminals (cannot derive a terminal string): {where}",
            )

        self.nonterminals = nonterminals
        self.terminals = terminals
        self.terminal_text = terminal_text
        self._nt_min = {nt: (int(v) if math.isfinite(v) else v) for nt, v in nt_min.items()}
        self.productions = [
            Production(
                i,
                lhs,
                rhs,
                alias,
                int(1 + sum(nt_min[s] for s in rhs if s in nt_set))
                if all(math.isfinite(nt_min[s]) for s in rhs if s in nt_set)
                else math.inf,
            )
            for i, (lhs, rhs, alias) in enumerate(productions)
        ]
        self._by_lhs: dict[str, list[Production]] = {nt: [] for nt in nonterminals}
        for p in self.productions:
            self._by_lhs[p.lhs].append(p)

        # complexity weights and variables
        cw: dict[str, float] = {name: op.complexity for name, op in ops.OPS.items()}
        for kind in (*PLACEHOLDERS, "VAR", "LIT"):
            cw[kind] = ops.LEAF_COMPLEXITY
        cw["POWI"] = ops.POWI_COMPLEXITY
        cw.update(weights)
        self.complexity_weights = cw
        if variables is None:
            names = set()
            for text in terminal_text.values():
                if text:
                    names.update(n for n in _IDENT.findall(text) if _DEFAULT_VARIABLE.match(n))
            variables = tuple(sorted(names))
        self.variables = variables
        self._tables = self._compile(nt_set)

    def _compile(self, nt_set: set[str]) -> _Tables:
        nt_id = {nt: i for i, nt in enumerate(self.nonterminals)}
        t_id = {t: i for i, t in enumerate(self.terminals)}
        tab = _Tables()
        tab.start = nt_id[self.start]
        tab.nt_min = [self._nt_min[nt] for nt in self.nonterminals]
        tab.prod_lhs = [nt_id[p.lhs] for p in self.productions]
        tab.prod_push = [
            tuple(nt_id[s] if s in nt_set else -1 - t_id[s] for s in reversed(p.rhs))
            for p in self.productions
        ]
        tab.prod_min = [p.min_length for p in self.productions]
        tab.prod_nnt = [sum(1 for s in p.rhs if s in nt_set) for p in self.productions]
        by_nt, by_nt_min = [], []
        for nt in self.nonterminals:
            usable = sorted(
                (p for p in self._by_lhs[nt] if math.isfinite(p.min_length)),
                key=lambda p: (p.min_length, p.index),
            )
            by_nt.append(tuple(p.index for p in usable))
            by_nt_min.append([p.min_length for p in usable])
        tab.by_nt, tab.by_nt_min = by_nt, by_nt_min
        tab.term_text = [self.terminal_text[t] for t in self.terminals]
        tab.term_prefix = [PLACEHOLDERS.get(t) for t in self.terminals]
        starts, ends, op_s, op_e = [], [], [], []
        for text in tab.term_text:
            if text is None:
                starts.append(True), ends.append(True), op_s.append(False), op_e.append(False)
            elif text == "":
                starts.append(False), ends.append(False), op_s.append(False), op_e.append(False)
            else:
                starts.append(text[0] in _WORD_CHARS)
                ends.append(text[-1] in _WORD_CHARS)
                op_s.append(text[0] in "*/")
                op_e.append(text[-1] in "*/")
        tab.term_word_start, tab.term_word_end = starts, ends
        tab.term_op_start, tab.term_op_end = op_s, op_e
        return tab

    # ------------------------------------------------------------------ queries
    def productions_for(self, nonterminal: str) -> list[Production]:
        """Productions with left-hand side ``nonterminal`` (in grammar order)."""
        try:
            return list(self._by_lhs[nonterminal])
        except KeyError:
            raise KeyError(f"{nonterminal!r} is not a nonterminal of {self.name}") from None

    def min_length(self, symbol: str | Production | int) -> int | float:
        """Minimum number of productions to fully expand ``symbol``.

        ``symbol`` may be a nonterminal (name), a terminal (0), a
        :class:`Production` or a production index (the production counts as one).
        """
        if isinstance(symbol, Production):
            return symbol.min_length
        if isinstance(symbol, int):
            return self.productions[symbol].min_length
        if symbol in self._nt_min:
            return self._nt_min[symbol]
        if symbol in self.terminal_text:
            return 0
        raise KeyError(f"unknown symbol {symbol!r}")

    def is_terminal(self, symbol: str) -> bool:
        """True for a terminal name."""
        return symbol in self.terminal_text

    @functools.cached_property
    def wrapping_functions(self) -> tuple[str, ...]:
        """Functions ``f`` for which ``f(E)`` is an expression for every expression ``E``.

        A production ``A: "f(" N ")"`` qualifies when ``start`` reaches ``A`` through
        unit productions (``start: sum``, ``sum: prod``, ``prod: atom``), so ``f(…)`` on
        its own is a whole expression, and ``N`` derives everything ``start`` does
        (``N`` reaches ``start``, or every production of ``start`` is a unit
        production to a nonterminal ``N`` reaches).  In ``nguyen``: ``sin cos exp
        log``; in ``pair`` none (its functions take fixed arguments such as
        ``exp(-r/C)``).
        """
        unit = nx.DiGraph()
        unit.add_nodes_from(self.nonterminals)
        for p in self.productions:
            if len(p.rhs) == 1 and p.rhs[0] in self._by_lhs:
                unit.add_edge(p.lhs, p.rhs[0])

        def below(nt: str) -> set[str]:
            return nx.descendants(unit, nt) | {nt}

        top = below(self.start)
        starts = self.productions_for(self.start)
        out = []
        for p in self.productions:
            if p.lhs not in top or len(p.rhs) != 3 or p.rhs[1] not in self._by_lhs:
                continue
            opener, closer = (self.terminal_text.get(s) for s in (p.rhs[0], p.rhs[2]))
            m = re.fullmatch(r"([A-Za-z_]\w*)\(", opener or "")
            if m is None or closer != ")":
                continue
            covered = below(p.rhs[1])
            if self.start in covered or all(
                len(s.rhs) == 1 and s.rhs[0] in covered for s in starts
            ):
                out.append(m.group(1))
        return tuple(dict.fromkeys(out))

    @functools.cached_property
    def block_nonterminals(self) -> frozenset[str]:
        """Nonterminals with finitely many complete sub-derivations, the start excepted.

        Those not in :attr:`recursive`: in ``pair`` a term, its coefficient, its factors
        and powers.  A complete sub-derivation of one of them is a *block* (one term of
        a sum, one factor), the unit that the search counts as proposed.
        """
        return frozenset(
            nt for nt in self.nonterminals if nt not in self.recursive and nt != self.start
        )

    @functools.cached_property
    def top_blocks(self) -> frozenset[str]:
        """Block nonterminals that the start or a recursive nonterminal derives directly.

        The outermost blocks of an expression: in ``pair`` the ``term`` of the sum
        ``potential``; the blocks inside them (``coef``, ``factor``) are not top blocks.
        """
        blocks = self.block_nonterminals
        return frozenset(
            s
            for p in self.productions
            if p.lhs in self.recursive or p.lhs == self.start
            for s in p.rhs
            if s in blocks
        )

    def derivation_of(self, expression: str) -> tuple[int, ...] | None:
        """The leftmost derivation (production indices) whose yield is ``expression``.

        The inverse of :func:`mctsff.expr.tree.derive` for expressions written the way the
        grammar writes them, up to spaces and the numbering of constants
        (``c1 * exp(-r / c2)`` in ``pair``): each constant ``c3``, ``prod_c1``, … is
        read as its placeholder terminal, the text is parsed with a Lark parser of the
        grammar (LALR(1), about 0.2 ms an expression in the shipped grammars; Earley
        for a grammar LALR cannot take, about 20 times slower), and the parse tree is
        read back in pre-order.  ``None`` when the
        grammar cannot derive it (another bracketing, a unary minus the grammar
        lacks, a constant used twice, an unknown name): the search then treats the
        expression as one without a derivation, as before.  Memoised per grammar.
        """
        memo = self.__dict__.setdefault("_derivations", {})
        if expression not in memo:
            if len(memo) >= 1 << 14:
                memo.clear()
            memo[expression] = self._derive_text(expression)
        return memo[expression]

    def _derive_text(self, expression: str) -> tuple[int, ...] | None:
        from mctsff.expr.tree import derive

        compact = re.sub(r"\s+", "", expression)
        seen: set[str] = set()

        def constant(m: re.Match) -> str:
            text = self._placeholder_text.get(_PREFIX_KIND[m.group(1)])
            if text is None or m.group(0) in seen:
                raise ValueError(m.group(0))  # not a placeholder here, or used twice
            seen.add(m.group(0))
            return text

        try:
            tree = self._reader.parse(_CONSTANT_NAME.sub(constant, compact))
            actions = tuple(self._preorder(tree))
            derived = derive(self, actions).expression()
        except (lark.exceptions.LarkError, ValueError, KeyError, IndexError):
            return None
        if derived.replace(" ", "") != compact:
            return None  # constants numbered otherwise: not this expression's derivation
        return actions

    @functools.cached_property
    def _reader(self) -> lark.Lark:
        """The parser :meth:`derivation_of` reads with: LALR(1) where the grammar allows."""
        try:
            return lark.Lark(self.text, start=self.start, parser="lalr", keep_all_tokens=True)
        except lark.exceptions.LarkError:
            return self._lark

    @functools.cached_property
    def _placeholder_text(self) -> dict[str, str]:
        """Lark text of each placeholder terminal used (``CONST`` → ``"C"`` in ``pair``)."""
        return {t.name: t.pattern.value for t in self._lark.terminals if t.name in PLACEHOLDERS}

    @functools.cached_property
    def _production_index(self) -> dict[tuple[str, tuple[str, ...]], int]:
        """``(tree label, rhs) → production index``; the label is the alias or the lhs."""
        out: dict[tuple[str, tuple[str, ...]], int] = {}
        for p in self.productions:
            out.setdefault((p.alias or p.lhs, p.rhs), p.index)
        return out

    def _preorder(self, tree: lark.Tree) -> list[int]:
        """Production indices of a Lark parse tree in pre-order (the leftmost derivation)."""
        symbols, below = [], []
        for child in tree.children:
            if child is None:  # an absent optional part (``[...]``): the shorter production
                continue
            if isinstance(child, lark.Token):
                symbols.append(child.type)
            else:
                sub = self._preorder(child)
                symbols.append(self.productions[sub[0]].lhs)
                below += sub
        index = self._production_index[(str(tree.data), tuple(symbols))]
        return [index, *below]

    def max_actions(self) -> int:
        """Largest number of productions of one nonterminal (branching factor bound)."""
        return max(len(v) for v in self._by_lhs.values())

    def complexity(self, expression: str) -> float:
        """Complexity of an expression string under :attr:`complexity_weights`.

        Each operator node adds its weight, each leaf the weight of its kind
        (``VAR``, ``LIT``, ``CONST`` or the type-constant kind of its prefix);
        ``a**n`` with an integer literal ``n`` costs ``complexity(a) + POWI + LIT``;
        a negative numeric literal is one literal.  With default weights this
        equals ``mctsff.expr.program.Program.from_string(expr).complexity``.
        """
        try:
            tree = ast.parse(expression.strip(), mode="eval").body
        except SyntaxError as exc:
            raise ValueError(f"cannot parse expression {expression!r}: {exc}") from None
        cw = self.complexity_weights
        variables = set(self.variables)

        def intlit(node: ast.AST) -> bool:
            if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
                node = node.operand
            return isinstance(node, ast.Constant) and float(node.value).is_integer()

        binops = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}

        def walk(node: ast.AST) -> float:
            if isinstance(node, ast.Constant):
                return cw["LIT"]
            if isinstance(node, ast.Name):
                name = node.id
                if name in variables:
                    return cw.get(name, cw["VAR"])
                if name in ops.RESERVED:
                    return cw["LIT"]
                for prefix, kind in _RULE_PREFIX_TO_KIND.items():
                    if name.startswith(prefix) and len(name) > len(prefix):
                        return cw[kind]
                return cw["CONST"]
            if isinstance(node, ast.UnaryOp):
                if isinstance(node.operand, ast.Constant):
                    return cw["LIT"]
                if isinstance(node.op, ast.UAdd):
                    return walk(node.operand)
                return cw["neg"] + walk(node.operand)
            if isinstance(node, ast.BinOp):
                op = binops.get(type(node.op))
                if op is None:
                    raise ValueError(f"unsupported operator in {expression!r}")
                if op == "**" and intlit(node.right):
                    return walk(node.left) + cw["POWI"] + cw["LIT"]
                return cw[op] + walk(node.left) + walk(node.right)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                fname = node.func.id
                if fname not in ops.FUNCTIONS:
                    raise ValueError(f"unknown function {fname!r} in {expression!r}")
                return cw.get(fname, ops.FUNCTIONS[fname].complexity) + sum(
                    walk(a) for a in node.args
                )
            raise ValueError(f"unsupported syntax in {expression!r}")

        value = walk(tree)
        return int(value) if float(value).is_integer() else value

    def __repr__(self) -> str:
        return (
            f"Grammar({self.name!r}, {len(self.productions)} productions, "
            f"{len(self.nonterminals)} nonterminals)"
        )

    def __getstate__(self) -> dict:
        return {"text": self.text, "name": self.name, "path": self.path}

    def __setstate__(self, state: dict) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.__init__(state["text"], name=state["name"], path=state["path"])

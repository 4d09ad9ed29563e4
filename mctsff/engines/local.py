"""Local moves: prune, demote, grow, wrap, spread and substitute around front members.

The variant functions turn one expression into its neighbours (:func:`pruned_variants`,
:func:`demoted_variants`, :func:`grown_variants`, :func:`wrapped_variants`,
:func:`substituted_variants`); :class:`LocalMoves` fits them around new front members,
through the engine's transposition table, within a share of the budget and the deadline
(:class:`~mctsff.config.LocalMoveSettings` holds its settings).  :func:`mctsff.search.search`
drives it; this module imports nothing above the engines.
"""

from __future__ import annotations

import ast
import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mctsff.config import DEFAULTS, LocalMoveSettings
from mctsff.engines.engine import fit_in_time
from mctsff.expr import ops
from mctsff.expr.grammar import Grammar
from mctsff.expr.program import signed_terms
from mctsff.fit.objective import searched_expression
from mctsff.fit.result import FitResult

#: settings of the local moves that ``search(local_options=...)`` takes, with their type
LOCAL_OPTIONS: dict[str, type] = LocalMoveSettings.tunables()


# ----------------------------------------------------------------------------- pruning
def _term_text(sign: int, node: ast.AST) -> str:
    return ("-" if sign < 0 else "") + "(" + ast.unparse(node) + ")"


def _join(terms: list[str]) -> str:
    return "+".join(terms).replace("+-", "-")


def _absorbs_sign(node: ast.AST, names: dict[str, int]) -> bool:
    """True if ``node`` is a product with a numerator global constant used nowhere else."""
    return any(
        not divides
        and isinstance(f, ast.Name)
        and names.get(f.id) == 1
        and ops.constant_rule(f.id) == "global"
        and f.id not in ops.RESERVED
        for divides, f in _factors(node)
    )


def _names(node: ast.AST) -> set[str]:
    """Identifiers used in ``node`` (variables, constants, function names)."""
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _name_counts(terms: list[tuple[int, ast.AST]], variables: Sequence[str]) -> dict[str, int]:
    """How often each identifier other than a variable occurs in the terms."""
    counts: dict[str, int] = {}
    for _, node in terms:
        for n in ast.walk(node):
            if isinstance(n, ast.Name) and n.id not in variables:
                counts[n.id] = counts.get(n.id, 0) + 1
    return counts


def _compose(terms: list[tuple[int, ast.AST]], variables: Sequence[str]) -> str:
    """Join signed terms, starting with a positive one where the function allows it.

    A sum whose terms are all negative loses the sign of one term whose free global
    constant (used once, as a factor) can take it: ``-(c1*f)`` is the family ``c1*f``
    one unary minus simpler.  Otherwise a positive term moves to the front
    (``-a + b`` → ``b - a``), which is the same function written as a grammar derives it.
    """
    if not any(sign > 0 for sign, _ in terms):
        counts = _name_counts(terms, variables)
        for i, (_, node) in enumerate(terms):
            if _absorbs_sign(node, counts):
                terms = [(1, node)] + terms[:i] + terms[i + 1 :]
                break
    else:
        i = next(i for i, (sign, _) in enumerate(terms) if sign > 0)
        terms = [terms[i]] + terms[:i] + terms[i + 1 :]
    return _join([_term_text(s, n) for s, n in terms])


def top_level_terms(expression: str) -> list[str]:
    """Signed top-level additive terms of an expression (``a - b + c`` → ``[a, -b, c]``)."""
    return list(_top_level_terms(expression))


@functools.lru_cache(maxsize=1 << 16)
def _top_level_terms(expression: str) -> tuple[str, ...]:
    # memoised: the local moves split every result and every front member, many times
    return tuple(_term_text(s, n) for s, n in signed_terms(expression))


def _factors(node: ast.AST, inverse: bool = False) -> list[tuple[bool, ast.AST]]:
    """Multiplicative factors of a term as ``(divides, node)``: ``a*b/(c*d)`` → a, b, /c, /d."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        return _factors(node.left, inverse) + _factors(node.right, inverse)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        return _factors(node.left, inverse) + _factors(node.right, not inverse)
    return [(inverse, node)]


def _product(factors: list[tuple[bool, ast.AST]]) -> ast.AST:
    """Inverse of :func:`_factors` (numerator first)."""
    ordered = [f for f in factors if not f[0]] + [f for f in factors if f[0]]
    node = ordered[0][1] if not ordered[0][0] else ast.Constant(1)
    rest = ordered[1:] if not ordered[0][0] else ordered
    for divides, f in rest:
        node = ast.BinOp(node, ast.Div() if divides else ast.Mult(), f)
    return node


def pruned_variants(expression: str, variables: Sequence[str] = ("r",)) -> list[str]:
    """The expression with one top-level term, or one factor of a term, removed.

    Term removal keeps at least one term; factor removal drops one factor that
    depends on a variable from a product, when another such factor remains
    (``c1*erf(c2*r)/r**6`` → ``c1/r**6`` and ``c1*erf(c2*r)``): searches often find
    the right form times a factor that the fit saturates to 1 (``erf``, ``tanh``,
    a second ``exp``).  The factor may have carried the sign (``erf(c2*r)`` with
    ``c2 < 0``), so when the dropped factor holds a fitted constant, a term whose
    sign no free global constant can take (``-geom_c1*erf(c2*r)/r**12``,
    ``geom_c1 >= 0``) is offered with both signs.
    """
    terms = signed_terms(expression)
    out = []
    if len(terms) >= 2:
        for i in range(len(terms)):
            out.append(_compose(terms[:i] + terms[i + 1 :], variables))
    from mctsff.expr.program import Program

    names = set(variables)
    constants = set(Program.from_string(expression, variables).constants)
    counts = _name_counts(terms, variables)
    for i, (sign, node) in enumerate(terms):
        factors = _factors(node)
        varying = [not names.isdisjoint(_names(f)) for _, f in factors]
        if sum(varying) < 2:
            continue
        for j in range(len(factors)):
            if not varying[j]:
                continue
            rest = _product(factors[:j] + factors[j + 1 :])
            # a factor with a fitted constant in it can have carried the sign
            carried = not constants.isdisjoint(_names(factors[j][1]))
            signs = (sign, -sign) if carried and not _absorbs_sign(rest, counts) else (sign,)
            for s in signs:
                out.append(_compose(terms[:i] + [(s, rest)] + terms[i + 1 :], variables))
    return out


def demoted_variants(expression: str, variables: Sequence[str] = ("r",)) -> list[str]:
    """The expression with one per-atom-type constant replaced by one global constant.

    ``prod_c1*exp(-r/c1)/r`` → ``k*exp(-r/c1)/r``: the form without that type
    dependence, one parameter per type fewer.  Where the dependence does not matter
    (one species pair dominates, or the types fit the same value) the simpler form
    fits as well and is the one to report; a geometric-mean constant, never
    negative, written as ``-(geom_c1*f)`` becomes ``k*f`` with the sign free.
    """
    from mctsff.expr.program import Program

    constants = Program.from_string(expression, variables).constants
    taken = set(constants)
    # in order of appearance: a set's order of strings changes with PYTHONHASHSEED
    typed = [n for n in dict.fromkeys(constants) if ops.constant_rule(n) != "global"]
    if not typed:
        return []
    fresh = _fresh_name("", taken)
    return [
        _compose(signed_terms(ast.unparse(_renamed(expression, {name: fresh}))), variables)
        for name in typed
    ]


def _fresh_name(prefix: str, taken: set[str]) -> str:
    """The first ``{prefix}k1``, ``{prefix}k2``, … not in ``taken``."""
    k = 1
    while f"{prefix}k{k}" in taken:
        k += 1
    return f"{prefix}k{k}"


def _renamed(expression: str, mapping: Mapping[str, str]) -> ast.AST:
    """The expression's tree with every name in ``mapping`` replaced by its value."""

    class _Rename(ast.NodeTransformer):
        def visit_Name(self, node):
            if node.id in mapping:
                return ast.copy_location(ast.Name(id=mapping[node.id], ctx=node.ctx), node)
            return node

    return _Rename().visit(ast.parse(expression.replace("^", "**"), mode="eval"))


def rename_constants(term: str, taken: set[str], variables: Sequence[str]) -> str:
    """Rename the constants of ``term`` to fresh names (same kind prefix) not in ``taken``.

    Constants shared inside the term stay shared. ``taken`` is updated.
    """
    from mctsff.expr.program import Program

    prog = Program.from_string(term, variables)
    mapping = {}
    for name in prog.constants:
        prefix = next((p for p in ops.TYPE_RULES if name.startswith(p)), "")
        mapping[name] = _fresh_name(prefix, taken)
        taken.add(mapping[name])
    return ast.unparse(_renamed(term, mapping))


def normalise_names(expression: str, variables: Sequence[str] = ("r",)) -> str:
    """Renumber constants by first appearance and kind (``c1, c2, prod_c1, …``) for display."""
    from mctsff.expr.program import Program

    prog = Program.from_string(expression, variables)
    counters: dict[str, int] = {}
    mapping = {}
    for name in prog.constants:
        prefix = next((p for p in ops.TYPE_RULES if name.startswith(p)), "")
        counters[prefix] = counters.get(prefix, 0) + 1
        mapping[name] = f"{prefix}c{counters[prefix]}"
    return ast.unparse(_renamed(expression, mapping))


def grown_variants(
    expression: str, library: Sequence[str], variables: Sequence[str], max_terms: int = 4
) -> list[str]:
    """``expression + t`` for each library term ``t`` it does not already contain."""
    from mctsff.expr.program import Program

    terms = top_level_terms(expression)
    if len(terms) >= max_terms:
        return []
    own = {term_key(t) for t in terms}
    taken = set(Program.from_string(expression, variables).constants)
    out = []
    for t in library:
        if term_key(t) in own:
            continue
        out.append(f"{expression}+{rename_constants(t, set(taken), variables)}")
    return out


def wrapped_variants(
    expression: str, functions: Sequence[str], variables: Sequence[str]
) -> list[str]:
    """``f(expression)`` and, for a sum, ``f(term)`` for each function and top-level term.

    ``functions`` are those the grammar can apply to any expression
    (:attr:`~mctsff.expr.grammar.Grammar.wrapping_functions`).  A front member often holds
    the inside of the answer (``y*log(x)`` on the way to ``exp(y*log(x))``, fitted
    as a linear-scaled ``scale*(y*log(x)) + offset``), alone or as one term of a sum;
    the search itself rarely proposes a function around exactly that.  A term's sign
    is dropped (``f(-t)`` is not ``±f(t)`` in general, but the term is the
    candidate inside).  Terms without a variable (a fitted constant) are not wrapped.
    """
    if not functions:
        return []
    return [f"{f}({b})" for b in _wrap_bodies(expression, variables) for f in functions]


def _wrap_bodies(expression: str, variables: Sequence[str]) -> list[str]:
    """The expression and, for a sum, each top-level term holding a variable (no sign)."""
    names = set(variables)
    terms = signed_terms(expression)
    bodies = [expression]
    if len(terms) > 1:
        bodies += [ast.unparse(n) for _, n in terms if not names.isdisjoint(_names(n))]
    return list(dict.fromkeys(bodies))


def substituted_variants(
    expression: str, functions: Sequence[str], variables: Sequence[str], max_occurrences: int = 2
) -> list[str]:
    """``g(b)``: ``b`` the expression or one of its terms with one variable ``v`` as ``f(v)``.

    For each body of :func:`wrapped_variants` (the expression, and each top-level term
    of a sum), each occurrence of a variable in it, each function ``f`` and each
    function ``g`` of ``functions``: the body with that occurrence replaced by
    ``f(v)``, inside ``g``.  The step from a front member to the answer is often
    both at once: ``x*y - y`` is on the Nguyen-11 front, ``y*log(x)`` (the inside of
    ``x**y = exp(y*log(x))``) fits worse than it at the same complexity and so never
    enters the front to be wrapped, but the term ``x*y`` gives ``exp(log(x)*y)``
    directly.  Only bodies with at most ``max_occurrences`` variable occurrences
    (a body yields ``occurrences × len(functions)**2`` candidates; the move is for
    the small pieces a front member is built from); the search fits them within
    their own share of the fits (``local_options["substitute_share"]``).
    """
    if not functions:
        return []
    names = set(variables)
    out: list[str] = []
    for body in _wrap_bodies(expression, variables):
        n_occ = sum(isinstance(n, ast.Name) and n.id in names for n in ast.walk(ast.parse(body)))
        if n_occ > max_occurrences:
            continue
        for k in range(n_occ):
            for f in functions:
                tree = ast.parse(body, mode="eval")
                target = [n for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id in names][k]
                call = ast.Call(ast.Name(f, ast.Load()), [ast.Name(target.id, ast.Load())], [])
                inner = ast.unparse(_Replace(target, call).visit(tree))
                out += [f"{g}({inner})" for g in functions]
    return list(dict.fromkeys(out))


class _Replace(ast.NodeTransformer):
    """Replaces one node (by identity) of a tree with another."""

    def __init__(self, target: ast.AST, new: ast.AST) -> None:
        self.target, self.new = target, new

    def generic_visit(self, node: ast.AST) -> ast.AST:
        return self.new if node is self.target else super().generic_visit(node)


# ----------------------------------------------------------------------------- the moves
def local_values(local: LocalMoveSettings, names) -> dict[str, Any]:
    """The numeric local-move settings ``names`` of ``local``, each of its declared type."""
    return {
        k: None if getattr(local, k) is None else LOCAL_OPTIONS[k](getattr(local, k))
        for k in names
        if k in LOCAL_OPTIONS
    }


@functools.lru_cache(maxsize=1 << 16)
def term_key(term: str) -> str:
    """Cheap structural key of a term: constants renamed by kind, then unparsed (memoised)."""

    class _Generic(ast.NodeTransformer):
        def visit_Name(self, node):
            rule = ops.constant_rule(node.id)
            if (
                node.id in ops.RESERVED
                or node.id in ("r", "x", "y")
                or len(node.id) == 1
                and (node.id in "xyzr")
            ):
                return node
            return ast.copy_location(ast.Name(id=f"K_{rule}", ctx=node.ctx), node)

    t = term[1:] if term.startswith("-") else term
    return ast.unparse(_Generic().visit(ast.parse(t.replace("^", "**"), mode="eval")))


def _fits_left(engine) -> float:
    """Fits the budget still allows the local moves (``inf`` for an engine without one).

    Fits the engine has in flight (a pipelined batch, sent to the workers but not yet
    recorded) do not count: the local moves of the results already recorded come first,
    as they do in a run with a larger budget, and the batch in flight is recorded as far
    as the budget then allows (the rest waits).  Counting them would leave the local moves
    waiting for a batch that only the engine's next step records, and the engine waiting
    for the local moves: a search with ``pipeline`` ≥ 1 then never ended.
    """
    limit = getattr(engine, "fit_limit", None)
    if limit is None:
        return math.inf
    return max(0, limit - engine.n_evaluations)


def _out_of_time(engine) -> bool:
    out_of_time = getattr(engine, "out_of_time", None)
    return out_of_time is not None and out_of_time()


def _strings(values: Any) -> list[str]:
    if not isinstance(values, list | tuple) or not all(isinstance(v, str) for v in values):
        raise ValueError(f"expected a list of expressions, not {values!r:.60}")
    return list(values)


class LocalMoves:
    """Prune/grow moves around new front members, sharing the tree's transposition table.

    *Prune* fits a new front member with each top-level term, or one r-dependent factor
    of a term, removed, and with one per-atom-type constant made global. *Grow* fits
    the best front members plus one more term from a library: the terms of the
    front members and the simplest terms met anywhere in the search.

    *Wrap* (with grow, in grammars with :attr:`~mctsff.expr.grammar.Grammar.wrapping_functions`)
    fits a new front member, and each of its top-level terms, inside each function the
    grammar can apply to a whole expression (:func:`wrapped_variants`).  *Substitute*
    (same grammars) fits a new front member from the search, and each of its small
    terms, with one variable ``v`` made ``f(v)`` inside each such function
    (:func:`substituted_variants`), within its own share of the fits
    (``substitute_share``, checked before each batch).

    Every result is recorded with its derivation where the grammar has one
    (:meth:`~mctsff.expr.grammar.Grammar.derivation_of`), so the tree's building-block
    reuse (elite rollouts, transplantation) can copy parts of what the moves found.

    A move is fitted only if the grammar in use derives it
    (:meth:`~mctsff.expr.grammar.Grammar.derivation_of`, as written, up to spaces and the
    numbering of constants); the others are dropped and counted in ``n_underivable``,
    so every expression a search fits is one its grammar can produce.

    Moves chain: the moves around what entered the front are fitted next, grow and wrap moves
    up to ``max_depth`` levels from the search's result, prunes for as long as a
    pruned form enters the front (each prune removes a term, a factor or a type
    constant, so a chain ends; ``max_prune_depth`` is a guard), so a search result
    that holds the answer plus two spare terms is pruned down to the answer.
    """

    # the defaults of the settings (mctsff.config.LocalMoveSettings documents them)
    max_depth = DEFAULTS.local.max_depth
    max_library = DEFAULTS.local.max_library
    simple_complexity = DEFAULTS.local.simple_complexity
    max_terms = DEFAULTS.local.max_terms
    spread_hosts = DEFAULTS.local.spread_hosts
    max_share = DEFAULTS.local.max_share
    spread_share: float | None = DEFAULTS.local.spread_share
    substitute_share = DEFAULTS.local.substitute_share
    #: a guard on prune chains (each prune removes something, so a chain ends)
    max_prune_depth = 16

    def __init__(
        self,
        mcts,
        evaluator,
        front,
        callback,
        variables,
        prune,
        grow,
        wrap=(),
        options=None,
        grammar: Grammar | None = None,
        searched: Callable[[FitResult], str] = searched_expression,
    ):
        for key, value in (options or {}).items():
            setattr(self, key, value)
        self.grammar = grammar
        #: the expression the search proposed for a result (:meth:`Objective.searched`)
        self.searched = searched
        #: moves dropped because the grammar cannot derive them
        self.n_underivable = 0
        self.mcts = mcts
        self.evaluator = evaluator
        self.front = front
        self.callback = callback
        self.variables = tuple(variables)
        self.prune = prune
        self.grow = grow
        self.wrap = tuple(wrap) if grow else ()
        self.n_fits = 0
        self.n_substituted = 0
        self._entered: list[FitResult] = []
        self._terms: list[str] = []
        #: a level of moves cut short: {"depth", "todo": [(expr, origin, kind)], "entered"}
        self._level: dict[str, Any] | None = None
        self.simple: dict[str, tuple[int, str]] = {}
        for res in getattr(mcts, "results", []):  # rebuilt on resume: same library, same count
            self.observe(res)
            if "local_move_from" in res.extra:
                self.n_fits += 1
                self.n_substituted += res.extra.get("local_move") == "substitute"

    def observe(self, res: FitResult) -> list[str]:
        """Collect the simple top-level terms of any valid result; return the new ones."""
        if not (self.grow and res.valid):
            return []
        from mctsff.expr.program import Program

        new = []
        try:
            for t in top_level_terms(self.searched(res)):
                t = t[1:] if t.startswith("-") else t
                key = term_key(t)
                if key in self.simple:
                    continue
                cx = Program.from_string(t, self.variables).complexity
                if cx <= self.simple_complexity:
                    self.simple[key] = (cx, t)
                    new.append(t)
        except (SyntaxError, ValueError):
            pass
        return new

    def queue(self, entered: FitResult | None, terms: list[str]) -> None:
        """Note a search result's local moves; :meth:`flush` fits them all at once."""
        if entered is not None:
            self._entered.append(entered)
        self._terms += terms

    def flush(self) -> None:
        """Fit the local moves queued since the last flush as one batch (so workers stay busy).

        The budget (:meth:`~mctsff.engines.engine.SearchEngine.fits_left`) and the deadline hold
        here too: a level of moves they cut short waits (:attr:`waiting`) and is finished
        first by the next flush, as are the moves of a tree batch the budget cut short
        (they wait for the rest of the batch), so a search stopped by its budget and
        resumed (:meth:`pending_state`) fits what an uninterrupted one does.
        """
        if getattr(self.mcts, "_partial", False) or getattr(self.mcts, "_unfitted", None):
            return  # the engine's batch is cut short: its moves wait for the rest of it
        if self._level is not None:
            depth = self._level["depth"]
            members = self._finish_level()
            if members is None:
                return
            if members:
                self._explore_all(members, [], depth + 1)
            if self._level is not None:
                return
        entered, terms = self._entered, self._terms
        self._entered, self._terms = [], []
        todo = self.spread_variants(terms) if terms else []
        self._explore_all([p for p in entered if self._alive(p)], todo, depth=0)

    @property
    def waiting(self) -> bool:
        """A level of moves was cut short by the budget or the deadline (finished first)."""
        return self._level is not None

    def pending_state(self) -> dict[str, Any]:
        """The queued and cut-short moves as plain data (expressions), for a checkpoint."""
        level = self._level
        return {
            "entered": [p.expression for p in self._entered],
            "terms": list(self._terms),
            "level": None
            if level is None
            else {
                "depth": int(level["depth"]),
                "todo": [list(t) for t in level["todo"]],
                "entered": [p.expression for p in level["entered"]],
            },
        }

    def restore_pending(self, state: Mapping[str, Any] | None) -> None:
        """Take back :meth:`pending_state` (members as the front's own results).

        Raises ``ValueError`` for a state that is not one (a damaged checkpoint).
        """
        if not state:
            return
        on_front = {p.expression: p for p in self.front.points}

        def members(names: Any) -> list[FitResult]:
            found = [on_front.get(e) or self.mcts.lookup(e) for e in _strings(names)]
            return [p for p in found if p is not None and self._alive(p)]

        self._entered = members(state.get("entered", []))
        self._terms = _strings(state.get("terms", []))
        level = state.get("level")
        if level is not None:
            todo = []
            for t in level["todo"]:
                expr, origin, kind = t
                todo.append((str(expr), str(origin), None if kind is None else str(kind)))
            self._level = {
                "depth": int(level["depth"]),
                "todo": todo,
                "entered": members(level.get("entered", [])),
            }

    def _on_front(self, res: FitResult) -> bool:
        return any(res is p for p in self.front.points)

    def _alive(self, res: FitResult) -> bool:
        """On the front, or kept off it for idle terms (its replacement is fitted next)."""
        return self._on_front(res) or has_idle_terms(res)

    def spread_variants(self, terms: list[str]) -> list[tuple[str, str]]:
        """Newly met simple terms added to the best front members that can take a term."""
        if not terms or not hasattr(self.mcts, "record"):
            return []
        if not self._budget_left(self.spread_share):
            return []
        hosts = [
            p
            for p in sorted(self.front.points, key=lambda p: p.score_loss)
            if p.valid and len(top_level_terms(self.searched(p))) < self.max_terms
        ][: self.spread_hosts]
        todo = []
        for host in hosts:
            todo += [
                (v, "spread")
                for v in grown_variants(self.searched(host), terms, self.variables, self.max_terms)
            ]
        return todo

    def library(self) -> list[str]:
        """Front-member terms and simple terms, simplest first, one per structure."""
        from mctsff.expr.program import Program

        seen = dict(self.simple)
        for p in self.front.points:
            try:
                for t in top_level_terms(self.searched(p)):
                    t = t[1:] if t.startswith("-") else t
                    key = term_key(t)
                    if key not in seen:
                        seen[key] = (Program.from_string(t, self.variables).complexity, t)
            except (SyntaxError, ValueError):
                continue
        return [t for _, t in sorted(seen.values())][: self.max_library]

    def _budget_left(self, share: float | None = None) -> bool:
        """Local fits may use at most ``share`` (``max_share``) of all fits; the tree the rest."""
        share = self.max_share if share is None else share
        return self.n_fits <= share * max(self.mcts.n_evaluations, 1)

    def _grow_from(self, res: FitResult) -> bool:
        return self._budget_left() and len(top_level_terms(self.searched(res))) < self.max_terms

    def variants(self, res: FitResult, depth: int) -> list[tuple[str, ...]]:
        """Prune, grow, wrap and substitution moves around one front member, with their
        origin (and ``"substitute"`` for the substitution moves, which have their own share)."""
        if not res.valid or depth >= self.max_prune_depth or not (self.prune or self.grow):
            return []
        if not hasattr(self.mcts, "record"):
            return []  # an engine without a shared transposition table
        if has_idle_terms(res) and not self._on_front(
            res
        ):  # replaced by its form without idle terms
            if not self.prune:
                return []
            kept = [
                t for i, t in enumerate(signed_terms(res.expression)) if not has_idle_terms(res, i)
            ]
            return [(_compose(kept, self.variables), res.expression, "idle")] if kept else []
        candidates: list[str] = []
        expression = self.searched(res)
        try:
            if self.prune:
                candidates += pruned_variants(expression, self.variables)
                candidates += demoted_variants(expression, self.variables)
            if self.grow and depth < self.max_depth and self._grow_from(res):
                candidates += grown_variants(expression, self.library(), self.variables)
            if self.wrap and depth < self.max_depth and self._budget_left():
                candidates += wrapped_variants(expression, self.wrap, self.variables)
            substitute = (
                self.wrap
                and depth == 0
                and self.n_substituted < self.substitute_share * max(self.mcts.n_evaluations, 1)
            )
            subs = substituted_variants(expression, self.wrap, self.variables) if substitute else []
        except (SyntaxError, ValueError):
            return []
        return [(c, res.expression) for c in candidates] + [
            (c, res.expression, "substitute") for c in subs
        ]

    def _explore_all(self, members, extra: list[tuple[str, ...]], depth: int) -> None:
        """Fit the moves around ``members`` plus ``extra`` as one batch per level."""
        while depth < self.max_prune_depth:
            todo = list(extra)
            for res in members:
                todo += self.variants(res, depth)
            self._level = {"depth": depth, "todo": self._new_moves(todo), "entered": []}
            members = self._finish_level()
            if members is None:
                return  # cut short by the budget or the deadline: the level waits
            extra = []
            depth += 1
            if not members:
                return

    def _finish_level(self) -> list[FitResult] | None:
        """Fit the current level's moves within the budget and the deadline; its members
        still on the front once all are fitted, ``None`` while some wait."""
        level = self._level
        todo = level["todo"]
        n = int(min(len(todo), _fits_left(self.mcts)))
        if n and not _out_of_time(self.mcts):
            del todo[: self._fit(todo[:n], level["entered"])]
        if todo:
            return None
        self._level = None
        return [p for p in level["entered"] if self._alive(p)]

    def _new_moves(self, candidates: list[tuple[str, ...]]) -> list[tuple[str, str, str | None]]:
        """Distinct unseen candidates the grammar derives, as ``(expression, origin, kind)``.

        A candidate is ``(expression, origin)`` or ``(expression, origin, kind)``.
        """
        todo, keys = [], set()
        for expr, origin, *kind in candidates:
            try:
                expr = normalise_names(expr, self.variables)
                key = self.mcts._key(expr)
            except ValueError:
                continue
            if key in keys or self.mcts.lookup(expr) is not None:
                continue
            if self.grammar is not None and self.grammar.derivation_of(expr) is None:
                self.n_underivable += 1  # the grammar is the law: never fit what it cannot derive
                continue
            keys.add(key)
            todo.append((expr, origin, kind[0] if kind else None))
        return todo

    def _fit(self, moves: list[tuple[str, str, str | None]], entered: list[FitResult]) -> int:
        """Fit moves in one evaluator call (under a deadline, until it passes); record them,
        add those entering the front to ``entered``; return how many were fitted."""
        deadline = getattr(self.mcts, "deadline", None)
        results = fit_in_time(
            self.evaluator,
            [expr for expr, _, _ in moves],
            None if deadline is None else self.mcts.out_of_time,
        )
        for (expr, origin, kind), new in zip(moves, results, strict=False):
            new.extra["local_move_from"] = origin
            if kind is not None:
                new.extra["local_move"] = kind
            if not self.mcts.record(expr, new):
                continue
            self.n_fits += 1
            self.n_substituted += kind == "substitute"
            self.observe(new)
            if self.front.update(new) or has_idle_terms(new):
                entered.append(new)
            if self.callback is not None:
                self.callback(new)
        return len(results)


def replaceable_by(
    grammar: Grammar | None, variables: Sequence[str] = ("r",)
) -> Callable[[FitResult, list[int]], bool]:
    """``(result, kept) -> bool``: whether the local moves can fit the sum of the signed
    terms ``kept`` (indices into :func:`signed_terms`) of ``result`` in its place, as the
    ``"idle"`` move writes it: the grammar (if any) derives it.  What
    :class:`~mctsff.engines.holdout.IdleTerms` asks before it calls a term negligible."""

    def replaceable(res: FitResult, kept: list[int]) -> bool:
        try:
            terms = signed_terms(res.expression)
            expr = normalise_names(_compose([terms[i] for i in kept], variables), variables)
        except (SyntaxError, ValueError, IndexError):
            return False
        return grammar is None or grammar.derivation_of(expr) is not None

    return replaceable


def has_idle_terms(res: FitResult, term: int | None = None) -> bool:
    """Whether the front kept ``res`` off for idle terms
    (:class:`~mctsff.engines.holdout.IdleTerms`; with ``term``, whether that term of
    :func:`signed_terms` is one)."""
    idle = res.extra.get("idle_terms") or []
    return bool(idle) if term is None else term in idle

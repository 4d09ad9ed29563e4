"""How a selected set of terms is written in the grammar: each amplitude's combining rule
(global, product, geometric, arithmetic, per type pair) chosen by refitting, the terms
joined and parsed back with the grammar, and the selection's constants named as the
expression names them."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mctsff.expr.grammar import Grammar

from .columns import Atom, Dictionary, Shape, lstsq
from .sums import CONST_RE, composed

__all__ = ["renumbered_start", "written_expressions"]

#: one written expression: its text, productions, constants and loss
Written = tuple[str, int, dict[str, float], float]


def written_expressions(
    dictionary: Dictionary, grammar: Grammar, chosen: Sequence[Atom], kind_tol: float, loss0: float
) -> tuple[list[Written], int]:
    """The grammar's expressions of one selected set: each term's combining rule chosen
    by refitting the amplitudes under it (the simplest within ``kind_tol`` of ``loss0``
    first, then the lowest loss); at most two, each parsed back with the grammar.  Each
    comes with its number of productions, its constants (:attr:`~.library.Proposal.start`)
    and its loss; with them the number of expressions the grammar could not derive."""
    fitter = dictionary.fitter
    y = dictionary.y
    n_underivable = 0
    P = len(fitter.type_pairs)
    n_species = len(fitter.species)
    pair_idx = [(fitter.species.index(a), fitter.species.index(b)) for a, b in fitter.type_pairs]
    # relaxed joint amplitudes, for the rank-one directions of product/geometric rules
    blocks = [dictionary.set_columns([c]) for c in chosen]
    if any(b is None for b in blocks):
        return [], 0
    coef = lstsq(np.concatenate(blocks, axis=1), y)
    # per rule: (name, columns, parameters, needs a sign, rank-one direction or None)
    options: list[list[tuple[tuple[str, ...], list[np.ndarray], int, list, list]]] = []
    pos = 0
    for (s_idx, _), X in zip(chosen, blocks, strict=True):
        shape = dictionary.shapes[s_idx]
        per_slot: list[list[tuple[str, np.ndarray, int, float, Any]]] = []
        col = 0
        for split in shape.split:
            m = P if split else 1
            Xs, amp = X[:, col : col + m], coef[pos + col : pos + col + m]
            col += m
            rules: list[tuple[str, np.ndarray, int, float, Any]] = []
            if not split:
                rules.append(("global", Xs, 1, 0.0, None))
            else:
                rules.append(("global", Xs.sum(axis=1, keepdims=True), 1, 0.0, None))
                A = np.zeros((n_species, n_species))
                for p, (i, j) in enumerate(pair_idx):
                    A[i, j] = A[j, i] = amp[p]
                vals, vecs = np.linalg.eigh(A)
                v = vecs[:, int(np.argmax(np.abs(vals)))]
                d = np.array([v[i] * v[j] for i, j in pair_idx])
                rules.append(("product", (Xs @ d)[:, None], n_species, 1.0, v))
                da = np.abs(v)
                dg = np.array([da[i] * da[j] for i, j in pair_idx])
                rules.append(("geometric", (Xs @ dg)[:, None], n_species, 1.0, v))
                M = np.zeros((P, n_species))
                for p, (i, j) in enumerate(pair_idx):
                    M[p, i] += 0.5
                    M[p, j] += 0.5
                rules.append(("arithmetic", Xs @ M, n_species, 0.0, None))
                rules.append(("pair", Xs, P, 0.0, None))
            per_slot.append(rules)
        pos += X.shape[1]
        term_opts = []
        for combo in itertools.product(*per_slot):
            kind = tuple(r[0] for r in combo)
            if kind not in shape.kinds:
                continue
            term_opts.append(
                (
                    kind,
                    [r[1] for r in combo],
                    sum(r[2] for r in combo),
                    [r[3] for r in combo],
                    [r[4] for r in combo],
                )
            )
        if not term_opts:
            return [], 0
        options.append(term_opts)
    scored = []
    for combo in itertools.product(*options):
        X = np.concatenate([c for opt in combo for c in opt[1]], axis=1)
        c = lstsq(X, y)
        res = y - X @ c
        loss = float(res @ res)
        n_params = sum(opt[2] for opt in combo)
        # the sign a rank-one rule needs: that of its fitted scale
        signs, k = [], 0
        for opt in combo:
            sign = "+"
            for block, needs in zip(opt[1], opt[3], strict=True):
                if needs and c[k] < 0:
                    sign = "-"
                k += block.shape[1]
            signs.append(sign)
        scored.append((loss, n_params, combo, signs, c))
    best = min(s[0] for s in scored)
    tol = best + kind_tol * loss0
    simplest = min(scored, key=lambda s: (s[0] > tol, s[1], s[0]))
    lowest = min(scored, key=lambda s: (s[0], s[1]))
    out: list[tuple[str, int, dict[str, float], float]] = []
    for written, _, combo, signs, c in (simplest, lowest):
        terms = []
        k = 0
        for (s_idx, values), opt, sign in zip(chosen, combo, signs, strict=True):
            text = dictionary.shapes[s_idx].kinds[opt[0]]
            start, k = _term_start(fitter, dictionary.shapes[s_idx], text, values, opt, sign, c, k)
            terms.append((sign, text, start))
        # a term that must be subtracted goes after one that need not
        terms.sort(key=lambda t: t[0] == "-")
        found = composed([(sign, text) for sign, text, _ in terms], grammar)
        if found is None:
            n_underivable += 1
        elif all(found[0] != o[0] for o in out):
            out.append((*found, renumbered_start(terms), written))
    return out, n_underivable


def _term_start(fitter, shape: Shape, text: str, values, opt, sign: str, c, k: int):
    """One term's constants by the names ``text`` (its kind) gives them, from the
    nonlinear ``values`` and the amplitudes ``c[k:]`` solved under the rules of ``opt``;
    and the index of the next term's amplitudes."""
    # the kind's names of the first kind's constants (the same places in the text)
    local: dict[str, str] = {}
    for a, b in zip(CONST_RE.finditer(shape.text), CONST_RE.finditer(text), strict=True):
        local.setdefault(a.group(0), b.group(0))
    # (a named constant, ``a_morse``, keeps its name: the grammar does not number it)
    start = {local.get(name, name): float(v) for name, v in values.items()}
    flip = -1.0 if sign == "-" else 1.0
    species, pairs = fitter.species, fitter.type_pairs
    for slot, rule, block, v in zip(shape.slots, opt[0], opt[1], opt[4], strict=True):
        name = shape.program.constants[slot]
        name = local.get(name, name)
        width = block.shape[1]
        amp = np.asarray(c[k : k + width], dtype=float)
        k += width
        if rule == "global":
            start[name] = flip * float(amp[0])
        elif rule in ("product", "geometric"):
            scale = abs(float(amp[0]))
            per_type = np.sqrt(scale) * v if rule == "product" else scale * v**2
            named = zip(species, per_type, strict=True)
            start.update({f"{name}[{s}]": float(x) for s, x in named})
        elif rule == "arithmetic":
            named = zip(species, amp, strict=True)
            start.update({f"{name}[{s}]": flip * float(x) for s, x in named})
        else:  # per pair
            named = zip(pairs, amp, strict=True)
            start.update({f"{name}[{a}-{b}]": flip * float(x) for (a, b), x in named})
    return {n: x for n, x in start.items() if math.isfinite(x)}, k


def renumbered_start(terms: Sequence[tuple[str, str, Mapping[str, float]]]) -> dict[str, float]:
    """The constants of ``(sign, term, constants)`` by the names of the terms' sum
    (:func:`~.sums.renumber`: every occurrence of a constant is a new one, and takes its value)."""
    counters: dict[str, int] = {}
    out: dict[str, float] = {}
    for _, text, start in terms:
        new: dict[str, list[str]] = {}
        for m in CONST_RE.finditer(text):
            counters[m.group(1)] = counters.get(m.group(1), 0) + 1
            new.setdefault(m.group(0), []).append(f"{m.group(1)}{counters[m.group(1)]}")
        for name, value in start.items():
            base, bracket, rest = name.partition("[")
            for renamed in new.get(base, (base,)):  # a named constant keeps its name
                out[f"{renamed}{bracket}{rest}"] = value
    return out

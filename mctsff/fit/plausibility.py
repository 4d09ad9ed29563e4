"""Chemist's checks of a fitted pair potential: flags, never errors.

A fit can reach a low force error with constants no force-field developer would accept.
:func:`plausibility_flags` reads the fitted expression term by term (sympy's additive
terms, each split into its ``r``-dependence and its constants) and reports

* a Coulomb-like term (``prod_q/r``, any numeric or global factor) whose per-type charges
  all have one sign: every pair repels, so no molecule of these types is neutral;
* a molecule of the data that is not neutral under those charges
  (``|Σ q| > NEUTRALITY_TOL · Σ |q|`` over its atoms; the product rule fixes the charges
  up to one common sign and scale, which this ratio does not see);
* a dispersion term (``/r**6``) that is repulsive for some type pair;
* a type pair whose force at the cutoff is still more than :data:`DECAY_TOL` of its
  largest force between the shortest distance of the data and the cutoff (before any
  cutoff shift): the potential does not decay within the cutoff.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import sympy

from mctsff.expr import ops
from mctsff.expr.params import Potential

__all__ = ["plausibility_flags", "molecule_compositions", "NEUTRALITY_TOL", "DECAY_TOL"]

#: Net charge of a molecule, relative to the sum of its atoms' absolute charges, above which
#: it is flagged as not neutral.
NEUTRALITY_TOL = 0.05
#: Force at the cutoff, relative to the largest force inside it, above which a type pair
#: is flagged as not decaying.
DECAY_TOL = 0.1
#: Additive terms (or terms of a power of a sum) above which an expression is not expanded
#: (:func:`_expansion_size`): its top-level terms are read as they are.  ``(a + b)**N``
#: expands into ``N + 1`` terms, so an exponent of millions would take gigabytes.
MAX_EXPANDED_TERMS = 2000


def molecule_compositions(
    dataset, max_frames: int | None = 5, singles: bool = False
) -> list[dict[str, int]]:
    """Distinct molecule compositions (``{"H": 2, "O": 1}``) in the first frames of a dataset.

    Empty when the dataset has no molecule ids.

    Parameters
    ----------
    dataset
        A :class:`~mctsff.data.Dataset`.
    max_frames
        Frames read from the start (``None``: all).
    singles
        Count molecules of one atom too (an ion, or an atom the molecule assignment left
        alone).
    """
    mol = getattr(dataset, "mol", None)
    if mol is None:
        return []
    fo = np.asarray(dataset.frame_offsets)
    n_frames = (
        int(dataset.n_frames) if max_frames is None else min(int(dataset.n_frames), max_frames)
    )
    end = int(fo[n_frames])
    if end == 0:
        return []
    n_types = len(dataset.species)
    frame = np.repeat(np.arange(n_frames), np.diff(fo[: n_frames + 1]))
    key = np.stack([frame, np.asarray(mol[:end], dtype=np.int64)], axis=1)
    _, group = np.unique(key, axis=0, return_inverse=True)
    group = np.asarray(group).ravel()
    counts = np.zeros((int(group.max()) + 1, n_types), dtype=np.int64)
    np.add.at(counts, (group, np.asarray(dataset.atom_type[:end], dtype=np.int64)), 1)
    first = np.full(counts.shape[0], end, dtype=np.int64)
    np.minimum.at(first, group, np.arange(end))
    out, seen = [], set()
    for g in np.argsort(first, kind="stable"):  # in the order the molecules first appear
        row = counts[g]
        key_g = tuple(int(x) for x in row)
        if key_g in seen or (row.sum() < 2 and not singles):
            continue
        seen.add(key_g)
        out.append({dataset.species[t]: int(n) for t, n in enumerate(row) if n})
    return out


def formula(comp: dict[str, int]) -> str:
    """Chemical formula of a composition: ``{"H": 2, "O": 1}`` → ``H2O``."""
    return "".join(f"{s}{n if n > 1 else ''}" for s, n in sorted(comp.items()))


def plausibility_flags(
    pot: Potential,
    *,
    cutoff: float,
    r_min: float,
    compositions: Iterable[dict[str, int]] = (),
) -> list[str]:
    """Flags of :mod:`this module <mctsff.fit.plausibility>` for a fitted potential.

    Parameters
    ----------
    pot
        The fitted potential (its cutoff shift, if any, is ignored for the decay check).
    cutoff, r_min
        The cutoff and the shortest pair distance of the data (Å).
    compositions
        Molecule compositions of the data (:func:`molecule_compositions`).

    Examples
    --------
    >>> pot = Potential("prod_q/r", {"prod_q[O]": 1.0, "prod_q[H]": 0.5}, ("H", "O"))
    >>> plausibility_flags(pot, cutoff=9.0, r_min=1.5, compositions=[{"H": 2, "O": 1}])[0]
    'charges prod_q all have one sign (every pair repels): no molecule is neutral'
    """
    prog = pot.program
    r = prog.symbols[prog.variables[0]]
    flags: list[str] = []
    expr = prog.sympy
    if _expansion_size(expr) <= MAX_EXPANDED_TERMS:
        expr = sympy.expand(expr)
    terms = expr.args if expr.is_Add else (expr,)
    for term in terms:
        coef, rpart = term.as_independent(r, as_Add=False)
        names = sorted(str(s) for s in coef.free_symbols)
        typed = [n for n in names if ops.constant_rule(n) == "product"]
        if rpart == 1 / r and len(typed) == 1:
            flags += _charge_flags(pot, typed[0], compositions)
        if rpart == r**-6:  # London dispersion (an r**-8 term may as well be a wall)
            flags += _dispersion_flags(pot, term, r)
    flags += _decay_flags(pot, cutoff, r_min)
    return flags


def _expansion_size(expr: sympy.Expr) -> int:
    """The most terms :func:`sympy.expand` makes of ``expr`` or of any part of it
    (products of sums multiply their terms, ``(sum of k terms)**n`` has
    ``comb(k + n - 1, n)``, function arguments are expanded too), capped just above
    :data:`MAX_EXPANDED_TERMS`, without expanding anything."""
    cap = MAX_EXPANDED_TERMS + 1
    most = 0

    def size(e: sympy.Expr) -> int:
        nonlocal most
        if e.is_Add:
            n = sum(size(a) for a in e.args)
        elif e.is_Mul:
            n = 1
            for a in e.args:
                n = min(n * size(a), cap)
        elif e.is_Pow:
            base, exp = size(e.base), size(e.exp)
            n = 1
            if e.exp.is_Integer and base > 1:
                k = abs(int(e.exp))
                n = cap if k >= cap else min(math.comb(base + k - 1, k), cap)
                most = max(most, n)
                if int(e.exp) < 0:  # a denominator: expanded, yet one term
                    n = 1
            most = max(most, exp)
        else:
            for a in e.args:
                most = max(most, size(a))
            n = 1
        n = min(n, cap)
        most = max(most, n)
        return n

    size(expr)
    return most


def _per_type(pot: Potential, name: str) -> dict[str, float]:
    return {s: pot.params[f"{name}[{s}]"] for s in pot.species if f"{name}[{s}]" in pot.params}


def _charge_flags(pot: Potential, name: str, compositions) -> list[str]:
    q = _per_type(pot, name)
    values = np.array(list(q.values()))
    if values.size < 2 or not np.any(np.abs(values) > 0):
        return []
    if np.all(values >= 0) or np.all(values <= 0):
        return [f"charges {name} all have one sign (every pair repels): no molecule is neutral"]
    out = []
    for comp in compositions:
        if not set(comp) <= set(q):
            continue
        net = sum(n * q[s] for s, n in comp.items())
        total = sum(n * abs(q[s]) for s, n in comp.items())
        if total > 0 and abs(net) > NEUTRALITY_TOL * total:
            out.append(
                f"charges {name} leave {formula(comp)} with net charge {net / total:+.2f} of "
                f"its total |q| (not neutral; --neutral {name} imposes it)"
            )
    return out


def _dispersion_flags(pot: Potential, term, r) -> list[str]:
    out = []
    prog = pot.program
    n = int(sympy.degree(1 / term.as_independent(r, as_Add=False)[1], r))
    for p, pair in enumerate(pot.type_pairs):
        subs = {prog.symbols[c]: float(pot.consts[p, k]) for k, c in enumerate(prog.constants)}
        subs[r] = 1.0
        value = float(term.xreplace(subs))  # the term's U at 1 Å: +C means repulsive
        if value > 0 and math.isfinite(value):
            out.append(f"dispersion term r**-{n} is repulsive for {pair[0]}-{pair[1]}")
    return out


def _decay_flags(pot: Potential, cutoff: float, r_min: float) -> list[str]:
    raw = Potential(pot.program, pot.params, pot.species, pot.type_pairs)  # unshifted
    grid = np.linspace(max(r_min, 1e-3), cutoff, 200)
    out = []
    for pair in pot.type_pairs:
        d = np.abs(raw.derivative(grid, pair))
        if not np.all(np.isfinite(d)):
            continue
        peak = float(d.max(initial=0.0))
        if peak > 0 and d[-1] > DECAY_TOL * peak:
            out.append(
                f"the force of {pair[0]}-{pair[1]} at the cutoff is {d[-1] / peak:.0%} of its "
                "largest: the potential does not decay within the cutoff"
            )
    return out

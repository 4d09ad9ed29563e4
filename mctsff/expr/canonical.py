"""Transposition keys of expressions: one key per function, whatever its constants are named.

:func:`canonical_key` evaluates an expression at fixed probe points with fixed values of its
constants, numbered by their role rather than their names, and hashes the values: the search
engines key their transposition table on it (``SearchConfig.canonical``), so each function is
fitted once.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import zlib
from collections.abc import Sequence

import numpy as np

from mctsff.expr import ops

#: Probe points of the transposition key per variable (fixed: keys are the same in
#: every run and process, so checkpoints resume).
_PROBE_POINTS = 12
#: Relative resolution of the probed values (2**-30 ≈ 1e-9) and the magnitude below
#: which a value counts as 0 (round-off of a cancellation).
_PROBE_BITS = 30
_PROBE_ZERO = 1e-10


@functools.lru_cache(maxsize=8)
def _probe_inputs(n_vars: int) -> np.ndarray:
    """``(n_vars, 12)`` fixed inputs on [−3, 3] (both signs, so a domain shows)."""
    X = np.random.default_rng(20261201).uniform(-3.0, 3.0, size=(n_vars, _PROBE_POINTS))
    X.flags.writeable = False
    return X


@functools.lru_cache(maxsize=256)
def _probe_value(rule: str, rank: int = -1) -> float:
    """Fixed value in [0.6, 2.4) of a constant combined by ``rule``.

    ``rank = -1`` is the kind's shared value (a constant not yet numbered); ``rank = k``
    the value of the k-th constant of that kind in the canonical order.
    """
    return 0.6 + 1.8 * (zlib.crc32(f"{rule}:{rank}".encode()) % 100_003) / 100_003


def _quantised(v: np.ndarray) -> np.ndarray:
    """Probed values as integers of ~9 significant digits (last axis), exponents appended."""
    with np.errstate(all="ignore"):
        m, e = np.frexp(v)
        q = np.round(m * float(1 << _PROBE_BITS))
    up = np.abs(q) == float(1 << _PROBE_BITS)  # 0.99999999997 rounds to 1 = 0.5·2**1
    q[up] *= 0.5
    e[up] += 1
    small = np.abs(v) < _PROBE_ZERO
    q[small] = 0.0
    e[small] = 0
    q[np.isnan(v)] = np.nan  # one NaN bit pattern
    return np.concatenate([q, e.astype(np.float64)], axis=-1)


def canonical_key(expression: str, variables: Sequence[str] = ("r",)) -> str:
    """Transposition key: the values of the expression at fixed probe points.

    Every variable takes 12 fixed values on [−3, 3] and every fitted constant a
    fixed value of its own, so two expressions get the same key when they compute
    the same function for those values.  Constants are numbered by their role, not
    their names: they get their values one at a time, each time the constant whose
    value changes the probed function in the first way (in a fixed order of the
    probed values) among those not numbered yet, while the others hold one shared
    value per kind (:func:`mctsff.expr.ops.constant_rule`).  So two expressions that
    differ only in the numbering of their constants (``c1/r + c2*exp(-r/c3)`` and
    ``c1*exp(-r/c2) + c3/r``) get the same key and are fitted once — as do any two
    that compute the same function (``x*x + x`` and ``x*(x + 1)``,
    ``sin(x)**2 + cos(x)**2`` and ``x/x``) — while distinct constants never share a
    value, so terms that cancel only when two constants are equal
    (``c1*f + c2*g - c3*g``) do not make an expression look like a shorter one
    (``c1*f``), and two that differ in domain stay apart (``exp(log(x))`` is
    undefined where ``x < 0``, ``x`` is not).  Values are compared to about 9
    significant digits (below ``1e-10`` they count as 0, and NaN and ±inf as
    themselves), so round-off of equal functions does not separate them; the key
    is a hash of those values.  Measured: 0.2–0.5 ms per pair-grammar key with one
    to eight constants, about 1 ms when three terms are interchangeable
    (``c1*exp(-r/c2) + c3*exp(-r/c4) + c5*exp(-r/c6)``), beside 30–100 ms for a fit.
    """
    from mctsff.expr.program import Program

    prog = Program.from_string(expression, variables)
    X = _probe_inputs(len(prog.variables))
    n = len(prog.constants)
    rules = [ops.constant_rule(c) for c in prog.constants]
    values = np.array([_probe_value(r) for r in rules] or [0.0])
    ranks: dict[str, int] = {}
    free = list(range(n))
    while free:
        # the constants of the first kind not numbered yet, each given the kind's next
        # value in turn (the others unchanged), are numbered in the order of the probed
        # values up to the first tie; of tied ones only the first, then probe again
        rule = min(rules[i] for i in free)
        cand = [i for i in free if rules[i] == rule]
        order = [0]
        if len(cand) > 1:
            trial = np.repeat(values[None, :], len(cand), axis=0)
            trial[np.arange(len(cand)), cand] = _probe_value(rule, ranks.get(rule, 0))
            group = np.repeat(np.arange(len(cand), dtype=np.int64), _PROBE_POINTS)
            with np.errstate(all="ignore"):
                v = prog.evaluate(np.tile(X, (1, len(cand))), trial, group, mode=0)[0]
            q = _quantised(v.reshape(len(cand), _PROBE_POINTS))
            q[np.isnan(q)] = np.inf
            ranked = np.lexsort(q.T[::-1])  # stable: ties keep their position
            same = [np.array_equal(q[a], q[b]) for a, b in itertools.pairwise(ranked)]
            m = 0  # ranked[:m] are each unlike both neighbours
            while (
                m < len(ranked) and not (m > 0 and same[m - 1]) and not (m < len(same) and same[m])
            ):
                m += 1
            order = [int(j) for j in ranked[: max(m, 1)]]
        for j in order:
            i = cand[j]
            free.remove(i)
            values[i] = _probe_value(rule, ranks.get(rule, 0))
            ranks[rule] = ranks.get(rule, 0) + 1
    with np.errstate(all="ignore"):
        v = prog.evaluate(X, values[None, :], None, mode=0)[0]
    return hashlib.blake2b(_quantised(v).tobytes(), digest_size=16).hexdigest()

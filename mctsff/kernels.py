"""Numba kernels: the only module that compiles anything.

The kernels are compiled once per operator set, never per expression: an
expression is *data* (a postfix program from :mod:`mctsff.program`) fed to a
blocked stack interpreter.  The interpreter works on blocks of
:data:`BLOCK` rows at a time and carries, per stack slot,

* ``v``  the value,
* ``d``  the derivative with respect to variable 0 (``r`` for pair potentials),
* ``g``  the derivatives with respect to every constant slot,
* ``h``  the mixed second derivatives d²/(d var0 d constant),

so U, U'(r), ∂U/∂c and ∂U'/∂c come out of one walk (forward-mode, hyper-dual
style).  The force-matching kernels scatter U' into per-atom forces and the
∂U'/∂θ into the force Jacobian without materialising per-pair arrays.

Flags
-----
``MCTSFF_NUMBA_CACHE`` (default ``1``) turns numba's on-disk cache on or off.
``fastmath`` is never used: NaN/Inf detection must stay exact.  Kernels are
serial (``parallel=False``); parallelism comes from processes.
"""

from __future__ import annotations

import math
import os

import numpy as np
from numba import njit

from mctsff import ops

CACHE = os.environ.get("MCTSFF_NUMBA_CACHE", "1") not in ("0", "false", "False", "")
#: Rows evaluated together by the interpreter.
BLOCK = 256

# evaluation modes (bit flags)
MODE_VALUE = 0
MODE_D = 1  # derivative w.r.t. variable 0
MODE_G = 2  # derivatives w.r.t. constants
MODE_ALL = 3  # both, plus the mixed second derivatives

_VAR = ops.VAR
_CONST = ops.CONST
_LIT = ops.LIT
_ADD = ops.ADD
_SUB = ops.SUB
_MUL = ops.MUL
_DIV = ops.DIV
_POW = ops.POW
_NEG = ops.NEG
_EXP = ops.EXP
_LOG = ops.LOG
_SQRT = ops.SQRT
_INV = ops.INV
_POWI = ops.POWI
_TANH = ops.TANH
_ERFC = ops.ERFC
_ERF = ops.ERF
_SIN = ops.SIN
_COS = ops.COS
_SQUARE = ops.SQUARE
_CUBE = ops.CUBE
_ABS = ops.ABS
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)

jit = njit(cache=CACHE, nogil=True, error_model="numpy")


@jit
def _ipow(x, n):
    """x**n for integer n by binary exponentiation (n may be negative)."""
    if n == 0:
        return 1.0
    m = n if n > 0 else -n
    result = 1.0
    base = x
    while m > 0:
        if m & 1:
            result *= base
        base *= base
        m >>= 1
    if n < 0:
        return 1.0 / result
    return result


@jit
def _run_block(code, lits, X, consts, group, start, n, mode, sv, sd, sg, sh, f1, f2):
    """Run the postfix program on rows ``start:start+n``; result in stack slot 0."""
    K = sg.shape[1]
    want_d = (mode & 1) != 0
    want_g = (mode & 2) != 0
    want_h = want_d and want_g
    sp = 0
    for ins in range(code.shape[0]):
        op = code[ins, 0]
        arg = code[ins, 1]
        if op == _VAR:
            for t in range(n):
                sv[sp, t] = X[arg, start + t]
            if want_d:
                one = 1.0 if arg == 0 else 0.0
                for t in range(n):
                    sd[sp, t] = one
            if want_g:
                for k in range(K):
                    for t in range(n):
                        sg[sp, k, t] = 0.0
            if want_h:
                for k in range(K):
                    for t in range(n):
                        sh[sp, k, t] = 0.0
            sp += 1
        elif op == _CONST:
            for t in range(n):
                sv[sp, t] = consts[group[start + t], arg]
            if want_d:
                for t in range(n):
                    sd[sp, t] = 0.0
            if want_g:
                for k in range(K):
                    val = 1.0 if k == arg else 0.0
                    for t in range(n):
                        sg[sp, k, t] = val
            if want_h:
                for k in range(K):
                    for t in range(n):
                        sh[sp, k, t] = 0.0
            sp += 1
        elif op == _LIT:
            c = lits[arg]
            for t in range(n):
                sv[sp, t] = c
            if want_d:
                for t in range(n):
                    sd[sp, t] = 0.0
            if want_g:
                for k in range(K):
                    for t in range(n):
                        sg[sp, k, t] = 0.0
            if want_h:
                for k in range(K):
                    for t in range(n):
                        sh[sp, k, t] = 0.0
            sp += 1
        elif op <= _POW:
            # binary: a = slot sp-2, b = slot sp-1, result into a
            sp -= 1
            a = sp - 1
            b = sp
            if op == _ADD or op == _SUB:
                s = 1.0 if op == _ADD else -1.0
                for t in range(n):
                    sv[a, t] += s * sv[b, t]
                if want_d:
                    for t in range(n):
                        sd[a, t] += s * sd[b, t]
                if want_g:
                    for k in range(K):
                        for t in range(n):
                            sg[a, k, t] += s * sg[b, k, t]
                if want_h:
                    for k in range(K):
                        for t in range(n):
                            sh[a, k, t] += s * sh[b, k, t]
            elif op == _MUL:
                if want_h:
                    for k in range(K):
                        for t in range(n):
                            sh[a, k, t] = (
                                sh[a, k, t] * sv[b, t]
                                + sd[a, t] * sg[b, k, t]
                                + sg[a, k, t] * sd[b, t]
                                + sv[a, t] * sh[b, k, t]
                            )
                if want_g:
                    for k in range(K):
                        for t in range(n):
                            sg[a, k, t] = sg[a, k, t] * sv[b, t] + sv[a, t] * sg[b, k, t]
                if want_d:
                    for t in range(n):
                        sd[a, t] = sd[a, t] * sv[b, t] + sv[a, t] * sd[b, t]
                for t in range(n):
                    sv[a, t] *= sv[b, t]
            elif op == _DIV:
                for t in range(n):
                    q = 1.0 / sv[b, t]
                    f1[t] = q
                    sv[a, t] *= q
                if want_d:
                    for t in range(n):
                        sd[a, t] = (sd[a, t] - sv[a, t] * sd[b, t]) * f1[t]
                if want_g:
                    for k in range(K):
                        for t in range(n):
                            cg = (sg[a, k, t] - sv[a, t] * sg[b, k, t]) * f1[t]
                            sg[a, k, t] = cg
                            if want_h:
                                sh[a, k, t] = (
                                    sh[a, k, t]
                                    - cg * sd[b, t]
                                    - sv[a, t] * sh[b, k, t]
                                    - sd[a, t] * sg[b, k, t]
                                ) * f1[t]
            else:  # _POW, a > 0: c = exp(b log a)
                for t in range(n):
                    x = sv[a, t]
                    L = math.log(x) if x > 0.0 else math.nan
                    f2[t] = L
                    f1[t] = 1.0 / x
                    sv[a, t] = math.exp(sv[b, t] * L)
                if want_g:
                    for k in range(K):
                        for t in range(n):
                            c = sv[a, t]
                            L = f2[t]
                            q = f1[t]
                            bb = sv[b, t]
                            pg = sg[b, k, t] * L + bb * sg[a, k, t] * q
                            if want_h:
                                pd = sd[b, t] * L + bb * sd[a, t] * q
                                sh[a, k, t] = c * pg * pd + c * (
                                    sh[b, k, t] * L
                                    + sd[b, t] * sg[a, k, t] * q
                                    + sg[b, k, t] * sd[a, t] * q
                                    + bb * (sh[a, k, t] * q - sd[a, t] * sg[a, k, t] * q * q)
                                )
                            sg[a, k, t] = c * pg
                if want_d:
                    for t in range(n):
                        sd[a, t] = sv[a, t] * (sd[b, t] * f2[t] + sv[b, t] * sd[a, t] * f1[t])
        else:
            # unary: value into sv, first and second derivative into f1, f2
            a = sp - 1
            if op == _NEG:
                for t in range(n):
                    sv[a, t] = -sv[a, t]
                    f1[t] = -1.0
                    f2[t] = 0.0
            elif op == _EXP:
                for t in range(n):
                    e = math.exp(sv[a, t])
                    sv[a, t] = e
                    f1[t] = e
                    f2[t] = e
            elif op == _LOG:
                for t in range(n):
                    x = sv[a, t]
                    sv[a, t] = math.log(x) if x > 0.0 else math.nan
                    q = 1.0 / x if x > 0.0 else math.nan
                    f1[t] = q
                    f2[t] = -q * q
            elif op == _SQRT:
                for t in range(n):
                    x = sv[a, t]
                    s = math.sqrt(x) if x >= 0.0 else math.nan
                    sv[a, t] = s
                    f1[t] = 0.5 / s
                    f2[t] = -0.25 / (s * x)
            elif op == _INV:
                for t in range(n):
                    q = 1.0 / sv[a, t]
                    sv[a, t] = q
                    f1[t] = -q * q
                    f2[t] = 2.0 * q * q * q
            elif op == _POWI:
                for t in range(n):
                    x = sv[a, t]
                    p2 = _ipow(x, arg - 2) if arg != 2 else 1.0
                    p1 = p2 * x
                    sv[a, t] = p1 * x
                    f1[t] = arg * p1
                    f2[t] = arg * (arg - 1) * p2
            elif op == _TANH:
                for t in range(n):
                    y = math.tanh(sv[a, t])
                    sv[a, t] = y
                    g1 = 1.0 - y * y
                    f1[t] = g1
                    f2[t] = -2.0 * y * g1
            elif op == _ERFC or op == _ERF:
                s = -1.0 if op == _ERFC else 1.0
                for t in range(n):
                    x = sv[a, t]
                    g1 = s * _TWO_OVER_SQRT_PI * math.exp(-x * x)
                    sv[a, t] = math.erfc(x) if op == _ERFC else math.erf(x)
                    f1[t] = g1
                    f2[t] = -2.0 * x * g1
            elif op == _SIN:
                for t in range(n):
                    x = sv[a, t]
                    y = math.sin(x)
                    sv[a, t] = y
                    f1[t] = math.cos(x)
                    f2[t] = -y
            elif op == _COS:
                for t in range(n):
                    x = sv[a, t]
                    y = math.cos(x)
                    sv[a, t] = y
                    f1[t] = -math.sin(x)
                    f2[t] = -y
            elif op == _SQUARE:
                for t in range(n):
                    x = sv[a, t]
                    sv[a, t] = x * x
                    f1[t] = 2.0 * x
                    f2[t] = 2.0
            elif op == _CUBE:
                for t in range(n):
                    x = sv[a, t]
                    sv[a, t] = x * x * x
                    f1[t] = 3.0 * x * x
                    f2[t] = 6.0 * x
            elif op == _ABS:
                for t in range(n):
                    x = sv[a, t]
                    sv[a, t] = abs(x)
                    f1[t] = 1.0 if x >= 0.0 else -1.0
                    f2[t] = 0.0
            else:
                # unknown opcode: poison the block so the candidate is rejected
                for t in range(n):
                    sv[a, t] = math.nan
                    f1[t] = math.nan
                    f2[t] = math.nan
            # chain rule, using the old d and g before overwriting them
            if want_h:
                for k in range(K):
                    for t in range(n):
                        sh[a, k, t] = f2[t] * sd[a, t] * sg[a, k, t] + f1[t] * sh[a, k, t]
            if want_g:
                for k in range(K):
                    for t in range(n):
                        sg[a, k, t] *= f1[t]
            if want_d:
                for t in range(n):
                    sd[a, t] *= f1[t]


@jit
def _evaluate(code, lits, X, consts, group, mode, depth, v, d, g, h):
    n_rows = X.shape[1]
    K = consts.shape[1]
    sv = np.empty((depth, BLOCK))
    sd = np.empty((depth, BLOCK if mode & 1 else 1))
    sg = np.empty((depth, K, BLOCK if mode & 2 else 1))
    sh = np.empty((depth, K, BLOCK if mode == 3 else 1))
    f1 = np.empty(BLOCK)
    f2 = np.empty(BLOCK)
    for start in range(0, n_rows, BLOCK):
        n = min(BLOCK, n_rows - start)
        _run_block(code, lits, X, consts, group, start, n, mode, sv, sd, sg, sh, f1, f2)
        for t in range(n):
            v[start + t] = sv[0, t]
        if mode & 1:
            for t in range(n):
                d[start + t] = sd[0, t]
        if mode & 2:
            for k in range(K):
                for t in range(n):
                    g[start + t, k] = sg[0, k, t]
        if mode == 3:
            for k in range(K):
                for t in range(n):
                    h[start + t, k] = sh[0, k, t]


def evaluate(
    code: np.ndarray,
    lits: np.ndarray,
    X: np.ndarray,
    consts: np.ndarray,
    group: np.ndarray | None = None,
    mode: int = MODE_D,
    depth: int = 32,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Evaluate a postfix program row-wise.

    Parameters
    ----------
    code, lits
        Program from :class:`mctsff.program.Program` (``(n, 2)`` int64, float64).
    X
        Inputs, shape ``(n_vars, n_rows)``; variable 0 is the one differentiated.
    consts
        Constant table, shape ``(n_groups, n_consts)``; row ``group[i]`` is used for row i.
    group
        Group (type-pair) index of each row; zeros if omitted.
    mode
        Bit flags: 1 = d/dvar0, 2 = d/dconstants, 3 = both plus mixed second derivatives.
    depth
        Stack depth (``Program.max_stack``).

    Returns
    -------
    v, d, g, h
        Value ``(n,)``, derivative w.r.t. variable 0 ``(n,)``, constant gradients
        ``(n, K)`` and mixed derivatives ``(n, K)``; ``None`` for lanes not requested.
    """
    X = np.ascontiguousarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[None, :]
    n = X.shape[1]
    consts = np.ascontiguousarray(np.atleast_2d(consts), dtype=np.float64)
    if group is None:
        group = np.zeros(n, dtype=np.int64)
    K = consts.shape[1]
    v = np.empty(n)
    d = np.empty(n) if mode & 1 else np.empty(0)
    g = np.empty((n, K)) if mode & 2 else np.empty((0, K))
    h = np.empty((n, K)) if mode == MODE_ALL else np.empty((0, K))
    _evaluate(code, lits, X, consts, group, mode, depth, v, d, g, h)
    return v, (d if mode & 1 else None), (g if mode & 2 else None), (h if mode == 3 else None)


@jit
def _pair_forces(code, lits, X, consts, group, depth, pi, pj, u, pf, forces, energies):
    """Scatter -U'(r) u into per-atom forces and U into per-frame energies."""
    n_rows = X.shape[1]
    K = consts.shape[1]
    sv = np.empty((depth, BLOCK))
    sd = np.empty((depth, BLOCK))
    sg = np.empty((depth, K, 1))
    sh = np.empty((depth, K, 1))
    f1 = np.empty(BLOCK)
    f2 = np.empty(BLOCK)
    want_e = energies.shape[0] > 0
    for start in range(0, n_rows, BLOCK):
        n = min(BLOCK, n_rows - start)
        _run_block(code, lits, X, consts, group, start, n, 1, sv, sd, sg, sh, f1, f2)
        for t in range(n):
            p = start + t
            du = sd[0, t]
            i = pi[p]
            j = pj[p]
            for c in range(3):
                fc = du * u[p, c]
                forces[i, c] -= fc
                forces[j, c] += fc
            if want_e:
                energies[pf[p]] += sv[0, t]


@jit
def _pair_jacobian(
    code, lits, X, consts, group, T, depth, pi, pj, u, pf, forces, jac, energies, ejac
):
    """Forces, energies and their Jacobians with respect to the fitted parameters.

    ``T[type_pair, k, m]`` is d(constant slot k)/d(parameter m) for that type pair.
    ``jac`` has one row per force component (3*atom + c).
    """
    n_rows = X.shape[1]
    K = consts.shape[1]
    M = T.shape[2]
    sv = np.empty((depth, BLOCK))
    sd = np.empty((depth, BLOCK))
    sg = np.empty((depth, K, BLOCK))
    sh = np.empty((depth, K, BLOCK))
    f1 = np.empty(BLOCK)
    f2 = np.empty(BLOCK)
    dth = np.empty(M)
    eth = np.empty(M)
    want_e = energies.shape[0] > 0
    for start in range(0, n_rows, BLOCK):
        n = min(BLOCK, n_rows - start)
        _run_block(code, lits, X, consts, group, start, n, 3, sv, sd, sg, sh, f1, f2)
        for t in range(n):
            p = start + t
            tp = group[p]
            for m in range(M):
                acc = 0.0
                acc_e = 0.0
                for k in range(K):
                    w = T[tp, k, m]
                    if w != 0.0:
                        acc += sh[0, k, t] * w
                        acc_e += sg[0, k, t] * w
                dth[m] = acc
                eth[m] = acc_e
            du = sd[0, t]
            i = pi[p]
            j = pj[p]
            for c in range(3):
                uc = u[p, c]
                forces[i, c] -= du * uc
                forces[j, c] += du * uc
                ri = 3 * i + c
                rj = 3 * j + c
                for m in range(M):
                    jc = dth[m] * uc
                    jac[ri, m] -= jc
                    jac[rj, m] += jc
            if want_e:
                f = pf[p]
                energies[f] += sv[0, t]
                for m in range(M):
                    ejac[f, m] += eth[m]


def pair_forces(
    code: np.ndarray,
    lits: np.ndarray,
    r: np.ndarray,
    consts: np.ndarray,
    pair_type: np.ndarray,
    pair_i: np.ndarray,
    pair_j: np.ndarray,
    u: np.ndarray,
    pair_frame: np.ndarray,
    n_atoms: int,
    n_frames: int = 0,
    depth: int = 32,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-atom forces ``(n_atoms, 3)`` and per-frame pair energies ``(n_frames,)``.

    ``n_frames=0`` skips the energies.
    """
    forces = np.zeros((n_atoms, 3))
    energies = np.zeros(n_frames)
    _pair_forces(
        code,
        lits,
        r[None, :],
        consts,
        pair_type,
        depth,
        pair_i,
        pair_j,
        u,
        pair_frame,
        forces,
        energies,
    )
    return forces, energies


def pair_jacobian(
    code: np.ndarray,
    lits: np.ndarray,
    r: np.ndarray,
    consts: np.ndarray,
    T: np.ndarray,
    pair_type: np.ndarray,
    pair_i: np.ndarray,
    pair_j: np.ndarray,
    u: np.ndarray,
    pair_frame: np.ndarray,
    n_atoms: int,
    n_frames: int = 0,
    depth: int = 32,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Forces, force Jacobian ``(3*n_atoms, M)``, energies and energy Jacobian."""
    M = T.shape[2]
    forces = np.zeros((n_atoms, 3))
    jac = np.zeros((3 * n_atoms, M))
    energies = np.zeros(n_frames)
    ejac = np.zeros((n_frames, M))
    _pair_jacobian(
        code,
        lits,
        r[None, :],
        consts,
        pair_type,
        T,
        depth,
        pair_i,
        pair_j,
        u,
        pair_frame,
        forces,
        jac,
        energies,
        ejac,
    )
    return forces, jac, energies, ejac


def warmup() -> None:
    """Compile (or load from cache) every kernel once, e.g. in a parent process."""
    code = np.array([[_VAR, 0], [_CONST, 0], [_MUL, 0], [_EXP, 0]], dtype=np.int64)
    lits = np.zeros(1)
    r = np.linspace(1.0, 2.0, 4)
    consts = np.ones((1, 1))
    grp = np.zeros(4, dtype=np.int64)
    for mode in (0, 1, 2, 3):
        evaluate(code, lits, r, consts, grp, mode=mode, depth=4)
    pi = np.zeros(4, dtype=np.int64)
    pj = np.ones(4, dtype=np.int64)
    u = np.ones((4, 3))
    pf = np.zeros(4, dtype=np.int64)
    pair_forces(code, lits, r, consts, grp, pi, pj, u, pf, 2, 1, depth=4)
    pair_jacobian(code, lits, r, consts, np.ones((1, 1, 1)), grp, pi, pj, u, pf, 2, 1, depth=4)

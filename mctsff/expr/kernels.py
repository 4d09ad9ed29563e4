"""Numba kernels: the only module that compiles anything.

The kernels are compiled once per operator set, never per expression: an
expression is *data* (a postfix program from :mod:`mctsff.expr.program`) fed to a
blocked stack interpreter.  The interpreter works on blocks of
:data:`BLOCK` rows at a time and carries, per stack slot,

* ``v``  the value,
* ``d``  the derivative with respect to variable 0 (``r`` for pair potentials),
* ``g``  the derivatives with respect to every constant slot,
* ``h``  the mixed second derivatives d²/(d var0 d constant),

so U, U'(r), ∂U/∂c and ∂U'/∂c come out of one walk (forward-mode, hyper-dual
style).  The force-matching kernels scatter U' into per-atom forces and the
∂U'/∂θ into the force Jacobian without materialising per-pair arrays.

Two things keep the interpreter close to hand-written code:

* superinstructions (:func:`fuse`, run by every kernel on entry, so
  ``Program.code`` stays plain postfix): a binary operator with a single leaf
  operand (``x*A``, ``x/b``, ``C/x``, ``r - x``) reads the leaf directly
  instead of pushing it, and a divisor that is the same on every row is
  inverted once per block;
* lanes that are identically zero (d of a constant, g of ``r``, h of almost
  every leaf) are flagged per stack slot and neither written nor read.

Both give the same floating-point operations as the plain interpreter on the
lanes that are computed (the tests compare them to 1e-13).

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
from numba import njit, uint64

from mctsff.expr import ops

CACHE = os.environ.get("MCTSFF_NUMBA_CACHE", "1") not in ("0", "false", "False", "")
#: Rows evaluated together by the interpreter.
BLOCK = 1024

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


_ADD_L = ops.ADD_L
_SUB_L = ops.SUB_L
_RSUB_L = ops.RSUB_L
_MUL_L = ops.MUL_L
_DIV_L = ops.DIV_L
_RDIV_L = ops.RDIV_L


@jit
def _fuse(code):
    """Peephole pass: a binary operator with a single-leaf operand becomes a superinstruction.

    ``x leaf op`` becomes ``x OP_L(leaf)`` and ``leaf x op`` becomes ``x ROP_L(leaf)``
    (``ADD_L``/``MUL_L`` for the commutative operators), so the leaf is never pushed.
    When both operands are leaves the variable stays on the stack.  ``POW`` and
    already fused instructions are copied unchanged (the pass is idempotent).
    """
    n = code.shape[0]
    out = np.empty((n, 2), dtype=np.int64)
    starts = np.empty(n + 1, dtype=np.int64)  # output index where each stack value starts
    m = 0
    sp = 0
    for i in range(n):
        op = code[i, 0]
        arg = code[i, 1]
        if op <= _LIT:
            starts[sp] = m
            sp += 1
        elif op <= _POW:
            if sp >= 2 and op != _POW:
                sa = starts[sp - 2]
                sb = starts[sp - 1]
                right = m - sb == 1 and out[sb, 0] <= _LIT
                left = sb - sa == 1 and out[sa, 0] <= _LIT
                if left and right and not (out[sb, 0] == _VAR and out[sa, 0] != _VAR):
                    left = False  # keep the variable on the stack, fuse the constant
                if left:
                    leaf = 4 * out[sa, 1] + out[sa, 0]
                    for j in range(sb, m):
                        out[j - 1, 0] = out[j, 0]
                        out[j - 1, 1] = out[j, 1]
                    m -= 1
                    if op == _SUB:
                        op = _RSUB_L
                    elif op == _DIV:
                        op = _RDIV_L
                    else:
                        op = _ADD_L if op == _ADD else _MUL_L
                    arg = leaf
                elif right:
                    arg = 4 * out[sb, 1] + out[sb, 0]
                    m = sb
                    if op == _ADD:
                        op = _ADD_L
                    elif op == _SUB:
                        op = _SUB_L
                    elif op == _MUL:
                        op = _MUL_L
                    else:
                        op = _DIV_L
            sp = max(sp - 1, 0)
        # unary and fused instructions: one value in, one out (stack start unchanged)
        out[m, 0] = op
        out[m, 1] = arg
        m += 1
    return out[:m].copy()


def fuse(code: np.ndarray) -> np.ndarray:
    """The kernel form of a postfix program: binary operators with a leaf operand fused.

    Every kernel runs this pass itself (it costs well under a microsecond), so
    ``Program.code`` stays plain postfix.  Exposed for tests and inspection.

    Examples
    --------
    >>> from mctsff.expr.program import Program
    >>> fuse(Program.from_string("A*exp(-r/b)").code).tolist()  # doctest: +NORMALIZE_WHITESPACE
    [[0, 0], [8, 0], [26, 5], [9, 0], [25, 1]]
    """
    return _fuse(np.ascontiguousarray(code, dtype=np.int64))


@jit
def _leaf(op, arg, lits, X, consts, group, start, n, dst, row):
    """Values of the leaf ``(op, arg)`` on rows ``start:start+n`` into ``dst[row]``."""
    # row indices as unsigned integers: numba then skips the negative-index
    # wrap-around, and these copies vectorise (several times faster)
    s0 = uint64(start)
    if op == _VAR:
        for t in range(n):
            dst[row, t] = X[arg, s0 + uint64(t)]
    elif op == _CONST:
        if consts.shape[0] == 1:
            c = consts[0, arg]
            for t in range(n):
                dst[row, t] = c
        else:
            for t in range(n):
                dst[row, t] = consts[group[s0 + uint64(t)], arg]
    else:
        c = lits[arg]
        for t in range(n):
            dst[row, t] = c


@jit
def _prep(sd, sg, sh, st, s, K, n, need_d, need_g, need_h):
    """Store zeros in the lanes of slot ``s`` that are needed but identically zero."""
    if need_d and st[0, s] == 0:
        for t in range(n):
            sd[s, t] = 0.0
        st[0, s] = 1
    if need_g and st[1, s] == 0:
        for k in range(K):
            for t in range(n):
                sg[s, k, t] = 0.0
        st[1, s] = 1
    if need_h and st[2, s] == 0:
        for k in range(K):
            for t in range(n):
                sh[s, k, t] = 0.0
        st[2, s] = 1


@jit
def _run_block(code, lits, X, consts, group, start, n, mode, sv, sd, sg, sh, buf, st):
    """Run the program on rows ``start:start+n``; the result is in stack slot 0.

    ``st[0|1|2, slot]`` says whether the d, g, h lanes of a slot are stored (1) or
    identically zero (0, not stored): leaves have d = 1 or 0 and no h, a literal
    or variable has no g, so those lanes are neither written nor read.  Slot 0 is
    stored in full at the end for every requested lane.  ``buf`` holds the
    scratch rows f1, f2 (first and second derivative of a unary op) and w (the
    operand of a superinstruction).
    """
    K = sg.shape[1]
    want_d = (mode & 1) != 0
    want_g = (mode & 2) != 0
    want_h = want_d and want_g
    sp = 0
    for ins in range(code.shape[0]):
        op = code[ins, 0]
        arg = code[ins, 1]
        if op <= _LIT:
            _leaf(op, arg, lits, X, consts, group, start, n, sv, sp)
            st[0, sp] = 0
            st[1, sp] = 0
            st[2, sp] = 0
            if want_d and op == _VAR and arg == 0:
                for t in range(n):
                    sd[sp, t] = 1.0
                st[0, sp] = 1
            if want_g and op == _CONST:
                for k in range(K):
                    val = 1.0 if k == arg else 0.0
                    for t in range(n):
                        sg[sp, k, t] = val
                st[1, sp] = 1
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
                if want_d and st[0, b] != 0:
                    if st[0, a] != 0:
                        for t in range(n):
                            sd[a, t] += s * sd[b, t]
                    else:
                        for t in range(n):
                            sd[a, t] = s * sd[b, t]
                        st[0, a] = 1
                if want_g and st[1, b] != 0:
                    if st[1, a] != 0:
                        for k in range(K):
                            for t in range(n):
                                sg[a, k, t] += s * sg[b, k, t]
                    else:
                        for k in range(K):
                            for t in range(n):
                                sg[a, k, t] = s * sg[b, k, t]
                        st[1, a] = 1
                if want_h and st[2, b] != 0:
                    if st[2, a] != 0:
                        for k in range(K):
                            for t in range(n):
                                sh[a, k, t] += s * sh[b, k, t]
                    else:
                        for k in range(K):
                            for t in range(n):
                                sh[a, k, t] = s * sh[b, k, t]
                        st[2, a] = 1
                continue
            need_d = want_d and (st[0, a] != 0 or st[0, b] != 0)
            need_g = want_g and (st[1, a] != 0 or st[1, b] != 0)
            if op == _POW:
                need_h = want_h and (st[2, a] != 0 or st[2, b] != 0 or (need_d and need_g))
            else:
                need_h = want_h and (
                    st[2, a] != 0
                    or st[2, b] != 0
                    or (st[0, a] != 0 and st[1, b] != 0)
                    or (st[1, a] != 0 and st[0, b] != 0)
                    or (op == _DIV and ((need_g and st[0, b] != 0) or (need_d and st[1, b] != 0)))
                )
            if need_h:
                need_d = True
                need_g = True
            _prep(sd, sg, sh, st, a, K, n, need_d, need_g, need_h)
            _prep(sd, sg, sh, st, b, K, n, need_d, need_g, need_h)
            if op == _MUL:
                if need_h:
                    for k in range(K):
                        for t in range(n):
                            sh[a, k, t] = (
                                sh[a, k, t] * sv[b, t]
                                + sd[a, t] * sg[b, k, t]
                                + sg[a, k, t] * sd[b, t]
                                + sv[a, t] * sh[b, k, t]
                            )
                if need_g:
                    for k in range(K):
                        for t in range(n):
                            sg[a, k, t] = sg[a, k, t] * sv[b, t] + sv[a, t] * sg[b, k, t]
                if need_d:
                    for t in range(n):
                        sd[a, t] = sd[a, t] * sv[b, t] + sv[a, t] * sd[b, t]
                for t in range(n):
                    sv[a, t] *= sv[b, t]
            elif op == _DIV:
                for t in range(n):
                    q = 1.0 / sv[b, t]
                    buf[0, t] = q
                    sv[a, t] *= q
                if need_d:
                    for t in range(n):
                        sd[a, t] = (sd[a, t] - sv[a, t] * sd[b, t]) * buf[0, t]
                if need_g:
                    for k in range(K):
                        for t in range(n):
                            cg = (sg[a, k, t] - sv[a, t] * sg[b, k, t]) * buf[0, t]
                            sg[a, k, t] = cg
                            if need_h:
                                sh[a, k, t] = (
                                    sh[a, k, t]
                                    - cg * sd[b, t]
                                    - sv[a, t] * sh[b, k, t]
                                    - sd[a, t] * sg[b, k, t]
                                ) * buf[0, t]
            else:  # _POW, a > 0: c = exp(b log a)
                for t in range(n):
                    x = sv[a, t]
                    L = math.log(x) if x > 0.0 else math.nan
                    buf[1, t] = L
                    buf[0, t] = 1.0 / x
                    sv[a, t] = math.exp(sv[b, t] * L)
                if need_g:
                    for k in range(K):
                        for t in range(n):
                            c = sv[a, t]
                            L = buf[1, t]
                            q = buf[0, t]
                            bb = sv[b, t]
                            pg = sg[b, k, t] * L + bb * sg[a, k, t] * q
                            if need_h:
                                pd = sd[b, t] * L + bb * sd[a, t] * q
                                sh[a, k, t] = c * pg * pd + c * (
                                    sh[b, k, t] * L
                                    + sd[b, t] * sg[a, k, t] * q
                                    + sg[b, k, t] * sd[a, t] * q
                                    + bb * (sh[a, k, t] * q - sd[a, t] * sg[a, k, t] * q * q)
                                )
                            sg[a, k, t] = c * pg
                if need_d:
                    for t in range(n):
                        L = buf[1, t]
                        q = buf[0, t]
                        sd[a, t] = sv[a, t] * (sd[b, t] * L + sv[b, t] * sd[a, t] * q)
            st[0, a] = 1 if need_d else 0
            st[1, a] = 1 if need_g else 0
            st[2, a] = 1 if need_h else 0
        elif op >= _ADD_L:
            # superinstruction: top of stack (slot a) op leaf w; the leaf has d = dw,
            # g = 1 for constant slot kw (none if kw < 0) and h = 0
            a = sp - 1
            lop = arg & 3
            larg = arg >> 2
            # a literal or a single-row constant is one number: kept in a scalar (wc)
            uni = lop == _LIT or (lop == _CONST and consts.shape[0] == 1)
            if uni:
                wc = lits[larg] if lop == _LIT else consts[0, larg]
            else:
                wc = 0.0
                _leaf(lop, larg, lits, X, consts, group, start, n, buf, 2)
            has_d = lop == _VAR and larg == 0
            dw = 1.0 if has_d else 0.0
            kw = larg if lop == _CONST else -1
            has_g = kw >= 0
            if op == _ADD_L or op == _SUB_L:
                s = 1.0 if op == _ADD_L else -1.0
                for t in range(n):
                    sv[a, t] += s * (wc if uni else buf[2, t])
                if want_d and has_d:
                    if st[0, a] != 0:
                        for t in range(n):
                            sd[a, t] += s
                    else:
                        for t in range(n):
                            sd[a, t] = s
                        st[0, a] = 1
                if want_g and has_g:
                    _prep(sd, sg, sh, st, a, K, n, False, True, False)
                    for t in range(n):
                        sg[a, kw, t] += s
            elif op == _RSUB_L:
                for t in range(n):
                    sv[a, t] = (wc if uni else buf[2, t]) - sv[a, t]
                if want_d:
                    if st[0, a] != 0:
                        for t in range(n):
                            sd[a, t] = dw - sd[a, t]
                    elif has_d:
                        for t in range(n):
                            sd[a, t] = dw
                        st[0, a] = 1
                if want_g and (st[1, a] != 0 or has_g):
                    _prep(sd, sg, sh, st, a, K, n, False, True, False)
                    for k in range(K):
                        dk = 1.0 if k == kw else 0.0
                        for t in range(n):
                            sg[a, k, t] = dk - sg[a, k, t]
                if want_h and st[2, a] != 0:
                    for k in range(K):
                        for t in range(n):
                            sh[a, k, t] = -sh[a, k, t]
            elif op == _MUL_L:
                need_d = want_d and (st[0, a] != 0 or has_d)
                need_g = want_g and (st[1, a] != 0 or has_g)
                need_h = want_h and (
                    st[2, a] != 0 or (st[0, a] != 0 and has_g) or (st[1, a] != 0 and has_d)
                )
                if need_h:
                    need_d = True
                    need_g = True
                _prep(sd, sg, sh, st, a, K, n, need_d, need_g, need_h)
                if need_h:
                    for k in range(K):
                        dk = 1.0 if k == kw else 0.0
                        for t in range(n):
                            sh[a, k, t] = (
                                sh[a, k, t] * (wc if uni else buf[2, t])
                                + sd[a, t] * dk
                                + sg[a, k, t] * dw
                            )
                if need_g:
                    for k in range(K):
                        dk = 1.0 if k == kw else 0.0
                        for t in range(n):
                            sg[a, k, t] = sg[a, k, t] * (wc if uni else buf[2, t]) + sv[a, t] * dk
                if need_d:
                    for t in range(n):
                        sd[a, t] = sd[a, t] * (wc if uni else buf[2, t]) + sv[a, t] * dw
                        sv[a, t] *= wc if uni else buf[2, t]
                else:
                    for t in range(n):
                        sv[a, t] *= wc if uni else buf[2, t]
            elif op == _DIV_L:
                need_d = want_d and (st[0, a] != 0 or has_d)
                need_g = want_g and (st[1, a] != 0 or has_g)
                need_h = want_h and (st[2, a] != 0 or (need_g and has_d) or (need_d and has_g))
                if need_h:
                    need_d = True
                    need_g = True
                _prep(sd, sg, sh, st, a, K, n, need_d, need_g, need_h)
                qc = 1.0 / wc if uni else 0.0  # the same divisor on every row: divide once
                if not uni:
                    for t in range(n):
                        buf[0, t] = 1.0 / buf[2, t]
                if need_d:
                    for t in range(n):
                        q = qc if uni else buf[0, t]
                        v = sv[a, t] * q
                        sv[a, t] = v
                        sd[a, t] = (sd[a, t] - v * dw) * q
                else:
                    for t in range(n):
                        sv[a, t] *= qc if uni else buf[0, t]
                if need_g:
                    for k in range(K):
                        dk = 1.0 if k == kw else 0.0
                        for t in range(n):
                            cg = (sg[a, k, t] - sv[a, t] * dk) * (qc if uni else buf[0, t])
                            sg[a, k, t] = cg
                            if need_h:
                                sh[a, k, t] = (sh[a, k, t] - cg * dw - sd[a, t] * dk) * (
                                    qc if uni else buf[0, t]
                                )
            elif op == _RDIV_L:
                need_d = want_d and (st[0, a] != 0 or has_d)
                need_g = want_g and (st[1, a] != 0 or has_g)
                need_h = want_h and (
                    st[2, a] != 0 or (need_g and st[0, a] != 0) or (need_d and st[1, a] != 0)
                )
                if need_h:
                    need_d = True
                    need_g = True
                _prep(sd, sg, sh, st, a, K, n, need_d, need_g, need_h)
                # new d goes to f2 first when g and h still need the old d of x
                if need_d and not need_g:
                    for t in range(n):
                        q = 1.0 / sv[a, t]
                        buf[0, t] = q
                        v = (wc if uni else buf[2, t]) * q
                        sv[a, t] = v
                        sd[a, t] = (dw - v * sd[a, t]) * q
                elif need_d:
                    for t in range(n):
                        q = 1.0 / sv[a, t]
                        buf[0, t] = q
                        v = (wc if uni else buf[2, t]) * q
                        sv[a, t] = v
                        buf[1, t] = (dw - v * sd[a, t]) * q
                else:
                    for t in range(n):
                        q = 1.0 / sv[a, t]
                        buf[0, t] = q
                        sv[a, t] = (wc if uni else buf[2, t]) * q
                if need_g:
                    for k in range(K):
                        dk = 1.0 if k == kw else 0.0
                        for t in range(n):
                            gx = sg[a, k, t]
                            cg = (dk - sv[a, t] * gx) * buf[0, t]
                            if need_h:
                                sh[a, k, t] = (
                                    (0.0 - cg * sd[a, t]) - sv[a, t] * sh[a, k, t] - buf[1, t] * gx
                                ) * buf[0, t]
                            sg[a, k, t] = cg
                if need_d and need_g:
                    for t in range(n):
                        sd[a, t] = buf[1, t]
            else:
                # unknown opcode: poison the block (every lane) so the candidate is rejected
                _prep(sd, sg, sh, st, a, K, n, want_d, want_g, want_h)
                for t in range(n):
                    sv[a, t] = math.nan
                    if want_d:
                        sd[a, t] = math.nan
                for k in range(K):
                    for t in range(n):
                        if want_g:
                            sg[a, k, t] = math.nan
                        if want_h:
                            sh[a, k, t] = math.nan
        else:
            # unary: value into sv, first and second derivative into f1, f2
            a = sp - 1
            poison = False
            if op == _NEG:  # every stored lane changes sign
                for t in range(n):
                    sv[a, t] = -sv[a, t]
                if want_d and st[0, a] != 0:
                    for t in range(n):
                        sd[a, t] = -sd[a, t]
                if want_g and st[1, a] != 0:
                    for k in range(K):
                        for t in range(n):
                            sg[a, k, t] = -sg[a, k, t]
                if want_h and st[2, a] != 0:
                    for k in range(K):
                        for t in range(n):
                            sh[a, k, t] = -sh[a, k, t]
                continue
            if op == _EXP:
                if want_d and st[0, a] != 0 and not (want_g and st[1, a] != 0):
                    # only d is stored (mode 1 on r): chain rule in the same pass
                    for t in range(n):
                        e = math.exp(sv[a, t])
                        sv[a, t] = e
                        sd[a, t] *= e
                    continue
                for t in range(n):
                    e = math.exp(sv[a, t])
                    sv[a, t] = e
                    buf[0, t] = e
                    buf[1, t] = e
            elif op == _LOG:
                for t in range(n):
                    x = sv[a, t]
                    sv[a, t] = math.log(x) if x > 0.0 else math.nan
                    q = 1.0 / x if x > 0.0 else math.nan
                    buf[0, t] = q
                    buf[1, t] = -q * q
            elif op == _SQRT:
                for t in range(n):
                    x = sv[a, t]
                    s = math.sqrt(x) if x >= 0.0 else math.nan
                    sv[a, t] = s
                    buf[0, t] = 0.5 / s
                    buf[1, t] = -0.25 / (s * x)
            elif op == _INV:
                for t in range(n):
                    q = 1.0 / sv[a, t]
                    sv[a, t] = q
                    buf[0, t] = -q * q
                    buf[1, t] = 2.0 * q * q * q
            elif op == _POWI:
                # p2 = x**(arg-2) by binary exponentiation (the multiplications of
                # x**m, one pass per bit over the block): base in f1, result in f2;
                # the first base is x itself, read from the stack slot
                e = arg - 2
                m = e if e > 0 else -e
                first = True
                base_is_x = True
                while m > 0:
                    if m & 1:
                        if first and base_is_x:
                            for t in range(n):
                                buf[1, t] = sv[a, t]
                        elif first:
                            for t in range(n):
                                buf[1, t] = buf[0, t]
                        elif base_is_x:
                            for t in range(n):
                                buf[1, t] *= sv[a, t]
                        else:
                            for t in range(n):
                                buf[1, t] *= buf[0, t]
                        first = False
                    m >>= 1
                    if m > 0:
                        if base_is_x:
                            for t in range(n):
                                x = sv[a, t]
                                buf[0, t] = x * x
                            base_is_x = False
                        else:
                            for t in range(n):
                                buf[0, t] *= buf[0, t]
                if e < 0:
                    for t in range(n):
                        buf[1, t] = 1.0 / buf[1, t]
                c1 = float(arg)
                c2 = float(arg * (arg - 1))
                d_only = want_d and st[0, a] != 0 and not (want_g and st[1, a] != 0)
                if first:  # arg == 2: p2 = 1
                    if d_only:
                        for t in range(n):
                            x = sv[a, t]
                            sv[a, t] = x * x
                            sd[a, t] *= c1 * x
                        continue
                    for t in range(n):
                        x = sv[a, t]
                        sv[a, t] = x * x
                        buf[0, t] = c1 * x
                        buf[1, t] = c2
                elif d_only:
                    # only d is stored: chain rule in the same pass
                    for t in range(n):
                        x = sv[a, t]
                        p1 = buf[1, t] * x
                        sv[a, t] = p1 * x
                        sd[a, t] *= c1 * p1
                    continue
                else:
                    for t in range(n):
                        x = sv[a, t]
                        p2 = buf[1, t]
                        p1 = p2 * x
                        sv[a, t] = p1 * x
                        buf[0, t] = c1 * p1
                        buf[1, t] = c2 * p2
            elif op == _TANH:
                for t in range(n):
                    y = math.tanh(sv[a, t])
                    sv[a, t] = y
                    g1 = 1.0 - y * y
                    buf[0, t] = g1
                    buf[1, t] = -2.0 * y * g1
            elif op == _ERFC or op == _ERF:
                s = -1.0 if op == _ERFC else 1.0
                for t in range(n):
                    x = sv[a, t]
                    g1 = s * _TWO_OVER_SQRT_PI * math.exp(-x * x)
                    sv[a, t] = math.erfc(x) if op == _ERFC else math.erf(x)
                    buf[0, t] = g1
                    buf[1, t] = -2.0 * x * g1
            elif op == _SIN:
                for t in range(n):
                    x = sv[a, t]
                    y = math.sin(x)
                    sv[a, t] = y
                    buf[0, t] = math.cos(x)
                    buf[1, t] = -y
            elif op == _COS:
                for t in range(n):
                    x = sv[a, t]
                    y = math.cos(x)
                    sv[a, t] = y
                    buf[0, t] = -math.sin(x)
                    buf[1, t] = -y
            elif op == _SQUARE:
                for t in range(n):
                    x = sv[a, t]
                    sv[a, t] = x * x
                    buf[0, t] = 2.0 * x
                    buf[1, t] = 2.0
            elif op == _CUBE:
                for t in range(n):
                    x = sv[a, t]
                    sv[a, t] = x * x * x
                    buf[0, t] = 3.0 * x * x
                    buf[1, t] = 6.0 * x
            elif op == _ABS:
                for t in range(n):
                    x = sv[a, t]
                    sv[a, t] = abs(x)
                    buf[0, t] = 1.0 if x >= 0.0 else -1.0
                    buf[1, t] = 0.0
            else:
                # unknown opcode: poison the block so the candidate is rejected
                poison = True
                for t in range(n):
                    sv[a, t] = math.nan
                    buf[0, t] = math.nan
                    buf[1, t] = math.nan
            if poison:
                _prep(sd, sg, sh, st, a, K, n, want_d, want_g, want_h)
            # chain rule, using the old d and g before overwriting them (h is stored
            # only where d and g are)
            need_h = want_h and (st[2, a] != 0 or (st[0, a] != 0 and st[1, a] != 0))
            if need_h:
                _prep(sd, sg, sh, st, a, K, n, True, True, True)
                for k in range(K):
                    for t in range(n):
                        sh[a, k, t] = buf[1, t] * sd[a, t] * sg[a, k, t] + buf[0, t] * sh[a, k, t]
            if want_g and st[1, a] != 0:
                for k in range(K):
                    for t in range(n):
                        sg[a, k, t] *= buf[0, t]
            if want_d and st[0, a] != 0:
                for t in range(n):
                    sd[a, t] *= buf[0, t]
    _prep(sd, sg, sh, st, 0, K, n, want_d, want_g, want_h)


@jit
def _evaluate(code, lits, X, consts, group, mode, depth, fuse, v, d, g, h):
    prog = _fuse(code) if fuse else code
    n_rows = X.shape[1]
    B = min(BLOCK, max(n_rows, 1))  # small problems: small (cache-resident) stacks
    K = consts.shape[1]
    sv = np.empty((depth, B))
    sd = np.empty((depth, B if mode & 1 else 1))
    sg = np.empty((depth, K, B if mode & 2 else 1))
    sh = np.empty((depth, K, B if mode == 3 else 1))
    buf = np.empty((3, B))
    st = np.empty((3, depth), dtype=np.int64)
    for start in range(0, n_rows, B):
        n = min(B, n_rows - start)
        _run_block(prog, lits, X, consts, group, start, n, mode, sv, sd, sg, sh, buf, st)
        s0 = uint64(start)  # unsigned: no wrap-around, the copies vectorise
        for t in range(n):
            v[s0 + uint64(t)] = sv[0, t]
        if mode & 1:
            for t in range(n):
                d[s0 + uint64(t)] = sd[0, t]
        if mode & 2:
            for k in range(K):
                for t in range(n):
                    g[s0 + uint64(t), k] = sg[0, k, t]
        if mode == 3:
            for k in range(K):
                for t in range(n):
                    h[s0 + uint64(t), k] = sh[0, k, t]


def evaluate(
    code: np.ndarray,
    lits: np.ndarray,
    X: np.ndarray,
    consts: np.ndarray,
    group: np.ndarray | None = None,
    mode: int = MODE_D,
    depth: int = 32,
    fuse: bool = True,
    out: tuple | None = None,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Evaluate a postfix program row-wise.

    Parameters
    ----------
    code, lits
        Program from :class:`mctsff.expr.program.Program` (``(n, 2)`` int64, float64).
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
    fuse
        Run the superinstruction pass (:func:`fuse`) first; ``False`` interprets the
        plain postfix code (for tests).
    out
        Optional ``(v, d, g, h)`` arrays to write into instead of allocating (entries
        for lanes not requested may be ``None``), e.g. to evaluate many times without
        new memory.

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
    consts = np.ascontiguousarray(consts, dtype=np.float64)
    if consts.ndim != 2:
        consts = consts.reshape(1, -1)
    group = (
        np.zeros(n, dtype=np.int64)
        if group is None
        else np.ascontiguousarray(group, dtype=np.int64)
    )
    K = consts.shape[1]
    want_d = mode & 1
    want_g = mode & 2
    want_h = mode == MODE_ALL
    if out is None:
        v = np.empty(n)
        d = np.empty(n) if want_d else _NO_ROWS
        g = np.empty((n, K)) if want_g else _NO_ROWS_2D
        h = np.empty((n, K)) if want_h else _NO_ROWS_2D
    else:
        v, d, g, h = (
            _checked_out(out[0], (n,), "v"),
            _checked_out(out[1], (n,), "d") if want_d else _NO_ROWS,
            _checked_out(out[2], (n, K), "g") if want_g else _NO_ROWS_2D,
            _checked_out(out[3], (n, K), "h") if want_h else _NO_ROWS_2D,
        )
    _evaluate(code, lits, X, consts, group, mode, depth, fuse, v, d, g, h)
    return v, (d if want_d else None), (g if want_g else None), (h if want_h else None)


# placeholders for lanes that are not requested (never read or written)
_NO_ROWS = np.empty(0)
_NO_ROWS_2D = np.empty((0, 0))


def _checked_out(a, shape, name):
    if not (
        isinstance(a, np.ndarray)
        and a.dtype == np.float64
        and a.shape == shape
        and a.flags.c_contiguous
        and a.flags.writeable
    ):
        raise ValueError(f"out: {name} must be a writeable C-contiguous float64 array {shape}")
    return a


@jit
def _pair_forces(code, lits, X, consts, group, depth, mode, pi, pj, u, pf, forces, energies):
    """Scatter -U'(r) u into per-atom forces and U into per-frame energies.

    ``mode`` is always :data:`MODE_D`; it is an argument (not a literal) so that the
    interpreter is compiled once for every kernel, not once per mode.
    """
    n_rows = X.shape[1]
    B = min(BLOCK, max(n_rows, 1))  # small problems: small (cache-resident) stacks
    K = consts.shape[1]
    sv = np.empty((depth, B))
    sd = np.empty((depth, B))
    sg = np.empty((depth, K, 1))
    sh = np.empty((depth, K, 1))
    buf = np.empty((3, B))
    st = np.empty((3, depth), dtype=np.int64)
    prog = _fuse(code)
    want_e = energies.shape[0] > 0
    for start in range(0, n_rows, B):
        n = min(B, n_rows - start)
        _run_block(prog, lits, X, consts, group, start, n, mode, sv, sd, sg, sh, buf, st)
        for t in range(n):
            p = start + t
            # a non-finite U (e.g. an overflowing r-independent term, whose d lane is
            # never computed) poisons the forces so the candidate is rejected
            du = sd[0, t] if math.isfinite(sv[0, t]) else math.nan
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
    code, lits, X, consts, group, T, depth, mode, pi, pj, u, pf, forces, jac, energies, ejac
):
    """Forces, energies and their Jacobians with respect to the fitted parameters.

    ``mode`` is always :data:`MODE_ALL` (an argument, see :func:`_pair_forces`).

    ``T[type_pair, k, m]`` is d(constant slot k)/d(parameter m) for that type pair.
    ``jac`` has one row per force component (3*atom + c).
    """
    n_rows = X.shape[1]
    B = min(BLOCK, max(n_rows, 1))  # small problems: small (cache-resident) stacks
    K = consts.shape[1]
    M = T.shape[2]
    sv = np.empty((depth, B))
    sd = np.empty((depth, B))
    sg = np.empty((depth, K, B))
    sh = np.empty((depth, K, B))
    buf = np.empty((3, B))
    st = np.empty((3, depth), dtype=np.int64)
    prog = _fuse(code)
    dth = np.empty(M)
    eth = np.empty(M)
    want_e = energies.shape[0] > 0
    for start in range(0, n_rows, B):
        n = min(B, n_rows - start)
        _run_block(prog, lits, X, consts, group, start, n, mode, sv, sd, sg, sh, buf, st)
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
            du = sd[0, t] if math.isfinite(sv[0, t]) else math.nan
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
        MODE_D,
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
        MODE_ALL,
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

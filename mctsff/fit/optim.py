"""Bound-constrained Levenberg–Marquardt for small dense least-squares problems.

:func:`levenberg_marquardt` (Marquardt scaling, Nielsen's damping, projected steps) and
:func:`constrained_levenberg_marquardt` (equality and inequality constraints linearised in
every step: each step solves the damped model's convex QP, :func:`qp_step`, with DAQP's dual
active-set solver); :func:`lstsq` (scaled normal equations, cheaper than
``np.linalg.lstsq`` on a loaded machine); the rows of the augmented Lagrangian
(:func:`al_rows`, :func:`al_jac`) that :mod:`mctsff.fit.problem` adds for the constraints
it does not linearise.  Plain numpy/LAPACK/DAQP: nothing of mctsff.
"""

from __future__ import annotations

import math

import daqp
import numpy as np
from scipy.linalg.lapack import dgesv as _dgesv


def lstsq(A: np.ndarray, b: np.ndarray, rcond: float = 1e-13) -> np.ndarray:
    """Minimum-norm least-squares solution of ``A x ≈ b`` for a few columns.

    Solved through the column-scaled normal equations and a symmetric eigensolve (a
    pseudo-inverse dropping eigenvalues below ``rcond`` of the largest): for tall
    matrices with a handful of columns this costs a fraction of ``numpy.linalg.lstsq``,
    whose LAPACK driver may also start BLAS threads, and it is exact enough for a
    start that a local solver then polishes.
    """
    n = A.shape[1]
    if n == 0:
        return np.zeros(0)
    scale = np.sqrt(np.einsum("ij,ij->j", A, A))
    scale = np.where(scale > 0, scale, 1.0)
    As = A / scale
    G = As.T @ As
    w, V = np.linalg.eigh(G)
    keep = w > rcond * max(float(w[-1]), 1e-300)
    g = V.T @ (As.T @ b)
    y = np.zeros(n)
    y[keep] = g[keep] / w[keep]
    return (V @ y) / scale


def _damp_more(damp: float, nu: float) -> tuple[float, float]:
    """Nielsen's damping after a rejected step: ``λ·ν``, and ``ν`` doubled."""
    return damp * nu, nu * 2.0


def _damp_less(damp: float, ratio: float) -> tuple[float, float]:
    """Nielsen's damping after an accepted step with actual/predicted decrease ``ratio``."""
    return damp * max(1.0 / 3.0, 1.0 - (2.0 * ratio - 1.0) ** 3), 2.0


def levenberg_marquardt(
    fun, fun_jac, x0, lo, hi, *, max_iter=200, ftol=1e-12, xtol=1e-14, gtol=1e-10
):
    """Bound-constrained Levenberg–Marquardt for small dense problems.

    Marquardt scaling with Nielsen's damping update; variables at a bound whose
    gradient pushes outwards are frozen for the step, the step is projected onto
    the box ``[lo, hi]``, and a non-finite trial point counts as a failed step.
    Stops when the relative decrease of ``Σres²`` falls below ``ftol`` on an
    accepted step, when the step is below ``xtol`` relative to ``x``, when every
    free column of J is orthogonal to the residual to within ``gtol`` (the
    cosine test of MINPACK), or after ``max_iter`` evaluations.

    Parameters
    ----------
    fun
        ``x -> residual vector``.
    fun_jac
        ``x -> (residual vector, Jacobian)``.

    Returns
    -------
    x, residual, n_evaluations
    """
    x = np.clip(np.asarray(x0, dtype=np.float64), lo, hi)
    r, J = fun_jac(x)
    nev = 1
    if not (np.isfinite(r).all() and np.isfinite(J).all()):
        return x, r, nev
    f = float(r @ r)
    A = J.T @ J
    g = J.T @ r
    damp = 1e-3 * max(float(A.diagonal().max(initial=0.0)), 1e-300)
    nu = 2.0
    has_bounds = bool(np.isfinite(lo).any() or np.isfinite(hi).any())
    while nev < max_iter:
        diag = A.diagonal()
        if has_bounds:
            # projected gradient: freeze components pushing against an active bound
            free = ~(((x <= lo) & (g > 0)) | ((x >= hi) & (g < 0)))
            if not free.any():
                break
            if free.all():
                free = None  # same numbers as masking with an all-True mask, less work
        else:
            free = None
        gf = g if free is None else g[free]
        df = diag if free is None else diag[free]
        # cosine between each free column and the residual
        if (np.abs(gf) <= gtol * np.sqrt(df * f)).all():
            break
        Af = A if free is None else A[np.ix_(free, free)]
        d = np.maximum(df, 1e-12 * max(float(df.max()), 1e-300))
        lhs = Af.copy()
        lhs.flat[:: lhs.shape[0] + 1] += damp * d  # the diagonal
        # LAPACK's LU solve called directly: np.linalg.solve costs ~25 µs of wrapping
        _, _, sf, info = _dgesv(lhs, -gf, overwrite_a=1, overwrite_b=0)
        if info != 0 or not np.isfinite(sf).all():  # singular: damp harder
            damp, nu = _damp_more(damp, nu)
            if not damp <= 1e30:  # hopeless (or a non-finite J): stop, never spin
                break
            continue
        if free is None:
            step = sf
        else:
            step = np.zeros_like(x)
            step[free] = sf
        x_new = np.clip(x + step, lo, hi) if has_bounds else x + step
        step = x_new - x
        if math.sqrt(step @ step) <= xtol * (math.sqrt(x @ x) + xtol):
            break
        r_new = fun(x_new)
        nev += 1
        f_new = float(r_new @ r_new)
        pred = -(2.0 * float(step @ g) + float(step @ A @ step))
        if math.isfinite(f_new) and f_new < f and pred > 0:
            rho = (f - f_new) / pred
            converged = (f - f_new) <= ftol * f
            x = x_new
            r, J = fun_jac(x)
            nev += 1
            if not (np.isfinite(r).all() and np.isfinite(J).all()):
                break
            f = float(r @ r)
            A = J.T @ J
            g = J.T @ r
            damp, nu = _damp_less(damp, rho)
            if converged:
                break
        else:
            damp, nu = _damp_more(damp, nu)
            if damp > 1e30:
                break
    return x, r, nev


#: Second-order corrections tried after a step of :func:`constrained_levenberg_marquardt`
#: that was rejected with an inequality row (the wall) outside its band (0: none);
#: measured in benchmarks/results/2026-12-06-second_order.md.
SECOND_ORDER_STEPS = 2


def _second_order(cons, x_new, c_new, step, C, binding, fi, d, outside, excess, lo, hi):
    """A trial point pulled back onto the constraints its step linearised (a second-order
    correction), with the constraint values there.

    A step whose linearised constraints stay inside their band can leave it where a
    constraint is curved (the Maratos effect): the merit then rejects it, the damping
    shrinks every later step, and the iterates crawl along the constraint.  The
    correction ``s_c = D⁻¹C_Rᵀ(C_R D⁻¹C_Rᵀ)⁺(−c(x + s))`` on the rows ``R`` that bind in
    the step or end outside the band (``C`` the Jacobian at ``x`` on the free variables,
    ``D`` the Marquardt scaling ``d``) is applied up to :data:`SECOND_ORDER_STEPS` times
    while rows stay outside the band and it lowers their excess and stays shorter than
    the step; each costs one evaluation of the constraints, not of the residual.
    ``outside(c)`` marks the rows outside their band, ``excess(c)`` sums how far.
    """
    sd = np.sqrt(d)
    size = math.sqrt(float((step[fi] * sd) @ (step[fi] * sd)))
    for _ in range(SECOND_ORDER_STEPS):
        out = outside(c_new)
        if not out.any():
            break
        rows = out | binding
        Cr = C[np.ix_(rows, fi)] / sd
        if not (np.isfinite(Cr).all() and np.isfinite(c_new[rows]).all()):
            break  # (LAPACK would print its complaint about a non-finite input)
        y = np.linalg.lstsq(Cr, -c_new[rows], rcond=1e-14)[0]
        if not (np.isfinite(y).all() and math.sqrt(float(y @ y)) <= size):
            break
        x_try = x_new.copy()
        x_try[fi] += y / sd
        x_try = np.clip(x_try, lo, hi)
        c_try, _ = cons(x_try, False)
        if not (np.isfinite(c_try).all() and excess(c_try) < excess(c_new)):
            break
        x_new, c_new = x_try, c_try
    return x_new, c_new


#: What DAQP takes for an infinite bound.
_DAQP_INF = 1e30


def qp_step(H, g, C, c, eq, room_lo, room_hi, d, ctol):
    """The damped Gauss–Newton step under the linearised constraints and the box.

    Solves the convex QP ``min ½sᵀHs + gᵀs`` subject to the linearised rows and
    ``−room_lo ≤ s ≤ room_hi`` (DAQP's dual active-set method, in the variables scaled by
    ``√d``), so a row binds exactly when the model's minimiser would cross its bound and is
    released when its multiplier changes sign, and the step shrinks with the damping in
    ``H`` whatever rows bind.  The rows:

    * an inequality row ``c ≤ 0`` is kept at ``c + Cs ≤ 0``, or, already inside its band
      (``0 < c ≤ ctol``), at most where it is (no step is spent on pulling it further in:
      near a constrained optimum such steps raise the loss, are rejected and stall);
    * an equality row inside its band may move within it; one the step would take out of
      the band, or one already outside, is put on the constraint, ``c + Cs = 0`` (a second
      QP): the iterates reach the surface in one step and keep the band's width as margin
      for the constraint's curvature, so a constraint that pins a nonlinear constant (force0
      on LJ's σ) pins it, and the other constants move freely along it.

    Returns
    -------
    (step followed by the multipliers of the binding rows, binding-row mask), or
    ``None`` where the linearised constraints are inconsistent (or not finite).
    """
    sd = np.sqrt(d)
    n = g.size
    if not (np.isfinite(H).all() and np.isfinite(C).all() and np.isfinite(c).all()):
        return None
    Hs = np.ascontiguousarray(H / np.outer(sd, sd))
    # rows scaled to unit norm (DAQP's tolerances are absolute; a force0 row of LJ at a
    # tiny ε has coefficients of 1e-10 that it would take for zero)
    A = C / sd
    norm = np.sqrt(np.einsum("ij,ij->i", A, A))
    norm = np.where(norm > 0.0, norm, 1.0)
    A = np.ascontiguousarray(A / norm[:, None])
    c = c / norm
    ctol = ctol / norm
    f = g / sd
    inside = np.where(eq, np.abs(c), c) <= ctol
    top = np.where(eq, np.where(inside, ctol, 0.0), np.where(inside, np.maximum(c, 0.0), 0.0))
    bottom = np.where(eq, np.where(inside, -ctol, 0.0) - c, -_DAQP_INF)
    with np.errstate(invalid="ignore", over="ignore"):
        upper = np.concatenate([np.minimum(room_hi * sd, _DAQP_INF), top - c])
        lower = np.concatenate([np.maximum(-room_lo * sd, -_DAQP_INF), bottom])
    sense = np.zeros(upper.size, dtype=np.int32)
    y, _, flag, info = daqp.solve(Hs, f, A, upper, lower, sense, primal_tol=1e-12)
    if flag < 1 or not np.isfinite(y).all():
        return None
    mult = np.asarray(info["lam"][n:], dtype=float)
    pin = eq & inside & (mult != 0.0)
    if pin.any():  # equality rows the step would take out of the band: onto the constraint
        upper[n:][pin] = lower[n:][pin] = -c[pin]
        y2, _, flag, info = daqp.solve(Hs, f, A, upper, lower, sense, primal_tol=1e-12)
        if flag >= 1 and np.isfinite(y2).all():
            y = y2
            mult = np.asarray(info["lam"][n:], dtype=float)
    binding = (mult != 0.0) | (eq & ~inside)
    return np.concatenate([y / sd, (mult / norm)[binding]]), binding


def _binding_step(H, g, Cf, c, signed, ctol):
    """Where the linearised constraints are inconsistent: the KKT step with the rows
    outside their band as equalities ``C s = −c`` (at most as many as free variables,
    those furthest out first, then those the step would push out); ``(step followed by
    multipliers, binding-row mask)``, or ``(None, mask)`` where singular."""
    nf = g.size
    active = signed(c) > ctol
    sol = None
    for _ in range(3):
        k = int(active.sum())
        if k > nf:
            worst = np.argsort(-signed(c) * active)[:nf]
            active = np.zeros_like(active)
            active[worst] = True
            k = nf
        kkt = np.zeros((nf + k, nf + k))
        kkt[:nf, :nf] = H
        kkt[:nf, nf:] = Cf[active].T
        kkt[nf:, :nf] = Cf[active]
        rhs = np.concatenate([-g, -c[active]])
        _, _, sol, info = _dgesv(kkt, rhs, overwrite_a=1, overwrite_b=0)
        if info != 0 or not np.isfinite(sol).all():
            return None, active
        more = (signed(c + Cf @ sol[:nf]) > ctol) & ~active
        if not more.any() or k == nf:
            break
        active = active | more
    return sol, active


def constrained_levenberg_marquardt(
    fun, fun_jac, cons, x0, lo, hi, *, max_iter=200, ftol=1e-15, xtol=1e-14, ctol=1e-9, ineq=None
):
    """Levenberg–Marquardt with constraints ``|c(x)| ≤ ctol`` (``c(x) ≤ ctol`` on the rows
    of ``ineq``) linearised at every step.

    An equality constraint is met when ``|c| ≤ ctol`` (the band the fit reports against).
    Each step minimises the damped Gauss–Newton model ``‖J s + r‖² + λ sᵀDs`` under the
    linearised constraints and the box ``[lo, hi]``, a small convex QP (:func:`qp_step`):
    the iterates move onto the constraint surface in one or two steps with no penalty
    parameter and no outer loop, a row binds only where the model's minimiser would
    leave its band (a term that has died out before the constraint's point, ``c ~ 1e-100``
    per unit of its prefactor, never forces its prefactor to zero), and a row whose
    multiplier changes sign is released.  Where the linearised
    constraints are inconsistent, the rows furthest outside bind as equalities instead
    (:func:`_binding_step`).  A step is accepted when it lowers the merit
    ``‖r‖² + ρ Σ max(0, |c| − ctol)`` (``ρ`` twice the largest multiplier seen); the
    damping follows Nielsen's update on the merit's actual over predicted decrease.  A
    step rejected with an inequality row outside its band (the constraint's curvature)
    gets a second-order correction (:func:`_second_order`) and a second trial.  Stops on a
    relative decrease of ``‖r‖²`` (a decrease, not a rise that bought feasibility) below
    ``ftol`` inside the band, a relative step below ``xtol``, or after ``max_iter``
    evaluations; a last minimum-norm Newton step on the rows still outside the band then
    cleans up, where it costs the fit nothing.

    Parameters
    ----------
    fun, fun_jac
        As for :func:`levenberg_marquardt`.
    cons
        ``(x, jac) -> (c, C)``: constraint values ``(n_c,)`` and, with ``jac``, their
        Jacobian ``(n_c, n)`` (else ``None``).
    ineq
        Boolean mask ``(n_c,)`` of the inequality rows ``c ≤ 0`` (``None``: all are
        equalities).

    Returns
    -------
    x, residual, n_evaluations
    """

    x = np.clip(np.asarray(x0, dtype=np.float64), lo, hi)
    r, J = fun_jac(x)
    c, C = cons(x, True)
    eq = np.ones(c.size, bool) if ineq is None else ~np.asarray(ineq, bool)

    def signed(v):
        """Distance past the bound: |c| on equality rows, c on inequality rows."""
        return np.where(eq, np.abs(v), v)

    def excess(v):
        return float(np.maximum(signed(v) - ctol, 0.0).sum())

    def outside(v):
        return signed(v) > ctol

    def trial(x_t, c_t, merit, rho, pred):
        """Residual, loss and excess at a trial point, the merit's actual decrease from
        ``merit``, and whether the step is accepted."""
        r_t = fun(x_t)
        f_t = float(r_t @ r_t)
        e_t = excess(c_t)
        ared = merit - (f_t + rho * e_t)
        ok = math.isfinite(f_t) and bool(np.isfinite(c_t).all()) and ared > 0 and pred > 0
        return r_t, f_t, e_t, ared, ok

    nev = 1
    if not (np.isfinite(r).all() and np.isfinite(J).all() and np.isfinite(c).all()):
        return x, r, nev
    f = float(r @ r)
    A = J.T @ J
    g = J.T @ r
    damp = 1e-3 * max(float(A.diagonal().max(initial=0.0)), 1e-300)
    nu = 2.0
    rho = 0.0
    n = x.size
    while nev < max_iter:
        free = ~(((x <= lo) & (g > 0)) | ((x >= hi) & (g < 0)))
        if not free.any():
            break
        fi = np.flatnonzero(free)
        Af = A[np.ix_(fi, fi)]
        d = np.maximum(Af.diagonal(), 1e-12 * max(float(Af.diagonal().max()), 1e-300))
        H = Af.copy()
        H[np.arange(fi.size), np.arange(fi.size)] += damp * d
        Cf = C[:, fi]
        qp = qp_step(H, g[fi], Cf, c, eq, x[fi] - lo[fi], hi[fi] - x[fi], d, ctol)
        if qp is not None:
            sol, active = qp
        else:  # the linearised constraints are inconsistent: bind the rows furthest out
            sol, active = _binding_step(H, g[fi], Cf, c, signed, ctol)
        if sol is None:
            damp, nu = _damp_more(damp, nu)
            if not damp <= 1e30:
                break
            continue
        step = np.zeros(n)
        step[fi] = sol[: fi.size]
        mult = sol[fi.size :]
        rho = max(rho, 2.0 * float(np.max(np.abs(mult), initial=0.0)))
        x_new = np.clip(x + step, lo, hi)
        step = x_new - x
        if math.sqrt(step @ step) <= xtol * (math.sqrt(x @ x) + xtol):
            break
        e_old = excess(c)
        pred = -(2.0 * float(step @ g) + float(step @ A @ step)) + rho * (
            e_old - excess(c + C @ step)
        )
        merit = f + rho * e_old
        c_new, _ = cons(x_new, False)
        r_new, f_new, e_new, ared, accepted = trial(x_new, c_new, merit, rho, pred)
        nev += 1
        if (
            not accepted
            and SECOND_ORDER_STEPS
            and math.isfinite(f_new)
            and np.any(outside(c_new) & ~eq)
        ):
            # curvature of an inequality (the wall) put the point outside its band
            x_soc, c_soc = _second_order(
                cons, x_new, c_new, step, C, active, fi, d, outside, excess, lo, hi
            )
            if x_soc is not x_new:
                x_new, c_new = x_soc, c_soc
                r_new, f_new, e_new, ared, accepted = trial(x_new, c_new, merit, rho, pred)
                nev += 1
        if accepted:
            ratio = ared / pred
            # (a step that trades loss for feasibility is progress, not convergence)
            converged = 0.0 <= f - f_new <= ftol * f and e_new == 0.0
            x = x_new
            r, J = fun_jac(x)
            c, C = cons(x, True)
            nev += 1
            if not (np.isfinite(r).all() and np.isfinite(J).all() and np.isfinite(C).all()):
                break
            f = float(r @ r)
            A = J.T @ J
            g = J.T @ r
            damp, nu = _damp_less(damp, ratio)
            if converged:
                break
        else:
            damp, nu = _damp_more(damp, nu)
            if damp > 1e30:
                break
    # clean-up: minimum-norm Newton steps on the rows outside the band, where free
    for _ in range(3):
        out = signed(c) > 0.1 * ctol
        if not (np.isfinite(c).all() and np.isfinite(C).all() and out.any()) or excess(c) == 0.0:
            break
        free = (x > lo) & (x < hi)
        if not free.any():
            break
        s_f = np.linalg.lstsq(C[np.ix_(out, free)], -c[out], rcond=1e-14)[0]
        x_new = x.copy()
        x_new[free] += s_f
        x_new = np.clip(x_new, lo, hi)
        c_new, _ = cons(x_new, True)
        if not (np.isfinite(c_new).all() and excess(c_new) < excess(c)):
            break
        r_new = fun(x_new)
        nev += 1
        f_old = float(r @ r)
        if not (np.isfinite(r_new).all() and float(r_new @ r_new) <= f_old * (1 + 1e-6) + 1e-300):
            break  # the constraint cannot be cleaned up without giving up the fit
        x, r = x_new, r_new
        c, C = cons(x, True)
    return x, r, nev


def violation_of(v, kind) -> float:
    if kind == "eq":
        return float(np.max(np.abs(v))) if v.size else 0.0
    return float(np.max(np.maximum(v, 0.0))) if v.size else 0.0


def al_rows(v, lam, mu, kind):
    s = math.sqrt(mu)
    if kind == "eq":
        return s * (v + lam / mu)
    return s * np.maximum(0.0, v + lam / mu)


def al_jac(v, J, lam, mu, kind):
    s = math.sqrt(mu)
    if kind == "eq":
        return s * J
    active = (v + lam / mu) > 0
    return s * J * active[:, None]

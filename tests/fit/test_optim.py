"""The least-squares solvers: bound-constrained and constrained Levenberg–Marquardt."""

import numpy as np
import pytest

from mctsff.fit import constrained_levenberg_marquardt, levenberg_marquardt
from mctsff.fit.optim import _second_order

FREE = np.full(2, -np.inf), np.full(2, np.inf)


def test_levenberg_marquardt_rosenbrock_with_bounds():
    def fun(x):
        return np.array([10 * (x[1] - x[0] ** 2), 1 - x[0]])

    def fun_jac(x):
        return fun(x), np.array([[-20 * x[0], 10.0], [-1.0, 0.0]])

    x, r, _ = levenberg_marquardt(fun, fun_jac, np.array([-1.2, 1.0]), *FREE)
    np.testing.assert_allclose(x, [1, 1], atol=1e-8)
    x, r, _ = levenberg_marquardt(
        fun, fun_jac, np.array([-1.2, 1.0]), np.array([-2, -2.0]), np.array([0.5, 2.0])
    )
    assert x[0] == pytest.approx(0.5)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # the point of the test
def test_levenberg_marquardt_stops_when_the_normal_matrix_overflows():
    # J and r finite, Jᵀr and JᵀJ overflow: every damped solve fails; stop, never spin
    import signal

    def fun(x):
        return np.array([1e10, 1e10])

    def fun_jac(x):
        return fun(x), np.array([[1e300, 1.0], [1e300, 1.0]])

    def alarm(*_):
        raise TimeoutError("levenberg_marquardt did not return")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(10)
    try:
        x, res, nev = levenberg_marquardt(fun, fun_jac, np.ones(2), *FREE)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert nev >= 1 and np.all(np.isfinite(res))


def test_constrained_levenberg_marquardt_meets_an_equality():
    """min (x-2)² + (y-1)² subject to x + y = 1: x = 1, y = 0."""

    def fun(z):
        return np.array([z[0] - 2.0, z[1] - 1.0])

    def fun_jac(z):
        return fun(z), np.eye(2)

    def cons(z, jac):
        return np.array([z[0] + z[1] - 1.0]), (np.array([[1.0, 1.0]]) if jac else None)

    x, _, _ = constrained_levenberg_marquardt(fun, fun_jac, cons, np.array([5.0, 5.0]), *FREE)
    assert x == pytest.approx([1.0, 0.0], abs=1e-9)


def test_constrained_levenberg_marquardt_inequalities_bind_only_when_crossed():
    """min (x-2)² + (y-1)²: with x² ≤ 1 and y ≤ 5 the first binds (x = 1), the second
    does not hold y back (y = 1); a start outside both ends inside them."""

    def fun(z):
        return np.array([z[0] - 2.0, z[1] - 1.0])

    def fun_jac(z):
        return fun(z), np.eye(2)

    def cons(z, jac):
        c = np.array([z[0] ** 2 - 1.0, z[1] - 5.0])
        return c, (np.array([[2.0 * z[0], 0.0], [0.0, 1.0]]) if jac else None)

    free = FREE
    ineq = np.array([True, True])
    for start in ([0.0, 0.0], [3.0, 8.0]):
        x, _, _ = constrained_levenberg_marquardt(
            fun, fun_jac, cons, np.array(start), *free, ineq=ineq, ctol=1e-12
        )
        assert x == pytest.approx([1.0, 1.0], abs=1e-8)
    # the same rows as equalities pin y at 5
    x, _, _ = constrained_levenberg_marquardt(fun, fun_jac, cons, np.array([0.5, 0.0]), *free)
    assert x == pytest.approx([1.0, 5.0], abs=1e-8)


def test_constrained_levenberg_marquardt_does_not_stop_on_a_step_that_raises_the_loss():
    """min x² + 100 (y − x²)² subject to x = 1, from the free optimum (0, 0): the first
    step onto x = 1 raises the loss (0 → 101) while meeting the constraint; that is
    progress, not convergence: the solve goes on to (1, 1), loss 1."""

    def fun(z):
        return np.array([z[0], 10.0 * (z[1] - z[0] ** 2)])

    def fun_jac(z):
        return fun(z), np.array([[1.0, 0.0], [-20.0 * z[0], 10.0]])

    def cons(z, jac):
        return np.array([z[0] - 1.0]), (np.array([[1.0, 0.0]]) if jac else None)

    x, r, _ = constrained_levenberg_marquardt(fun, fun_jac, cons, np.zeros(2), *FREE, ftol=1e-3)
    assert x == pytest.approx([1.0, 1.0], abs=1e-4)
    assert float(r @ r) == pytest.approx(1.0, rel=1e-6)


def test_second_order_correction_pulls_a_tangent_step_back_into_the_band():
    """|z|² ≤ 1 at (0, 1): a tangent step (0.3, 0) leaves the disc by 0.09; the correction
    brings the point back onto the circle (not merely nearer), and a correction longer
    than the step is refused (the point is returned unchanged)."""

    def cons(z, jac):
        return np.array([z @ z - 1.0]), (2.0 * z[None, :] if jac else None)

    def outside(v):
        return v > 1e-9

    def excess(v):
        return float(np.maximum(v - 1e-9, 0.0).sum())

    x = np.array([0.0, 1.0])
    step = np.array([0.3, 0.0])
    C = cons(x, True)[1]
    x_new = x + step
    c_new = cons(x_new, False)[0]
    args = (C, np.array([True]), np.arange(2), np.ones(2), outside, excess, *FREE)
    x_c, c_c = _second_order(cons, x_new, c_new, step, *args)
    assert c_new[0] == pytest.approx(0.09)
    assert abs(c_c[0]) < 0.01 * c_new[0]
    assert x_c[0] == pytest.approx(0.3)  # the correction is normal to the step
    tiny = np.array([1e-3, 0.0])  # a step much shorter than the violation to undo
    x_far = np.array([0.3, 1.0])
    x_same, c_same = _second_order(cons, x_far, cons(x_far, False)[0], tiny, *args)
    assert x_same is x_far and c_same[0] == pytest.approx(0.09)


def _polygon_problem():
    """Nonlinear residuals under 16 curved inequality rows (a rounded polygon about the
    origin); the target (2, 1) lies outside, so several rows bind near the optimum."""
    th = np.linspace(0.0, 2.0 * np.pi, 16, endpoint=False)
    D = np.stack([np.cos(th), np.sin(th)], axis=1)

    def fun(x):
        return np.array([x[0] - 2.0, x[1] - 1.0, 0.3 * (x[0] * x[1] - 2.0)])

    def fun_jac(x):
        return fun(x), np.array([[1.0, 0.0], [0.0, 1.0], [0.3 * x[1], 0.3 * x[0]]])

    def cons(x, jac=True):
        return D @ x - 1.0 + 0.05 * (x @ x), (D + 0.1 * x[None, :]) if jac else None

    return fun, fun_jac, cons


@pytest.mark.parametrize("x0", [(0.0, 0.0), (3.0, 3.0), (-3.0, 0.5)])
def test_constrained_levenberg_marquardt_finds_the_constrained_optimum_in_few_steps(x0):
    # reference: SLSQP to machine precision; from (-3, 0.5) an active set of "the rows
    # furthest out, as equalities" ends on the polygon's far side (loss 8.6), and from
    # (3, 3), where more rows are violated than there are variables, it needs 77
    # evaluations: each step's QP must release rows and shrink with the damping
    from scipy.optimize import minimize

    fun, fun_jac, cons = _polygon_problem()
    ref = minimize(
        lambda x: fun(x) @ fun(x),
        np.zeros(2),
        jac=lambda x: 2.0 * fun_jac(x)[1].T @ fun(x),
        constraints=[
            {"type": "ineq", "fun": lambda x: -cons(x, False)[0], "jac": lambda x: -cons(x)[1]}
        ],  # fmt: skip
        method="SLSQP",
        options={"ftol": 1e-15, "maxiter": 500},
    )
    x, r, nev = constrained_levenberg_marquardt(
        fun, fun_jac, cons, np.array(x0), *FREE, ineq=np.ones(16, bool), ctol=1e-9
    )
    np.testing.assert_allclose(x, ref.x, atol=1e-7)
    assert r @ r == pytest.approx(ref.fun, rel=1e-8)
    assert cons(x, False)[0].max() <= 1e-9
    assert nev <= 40


def test_constrained_levenberg_marquardt_with_inconsistent_rows_stops_finite():
    # x ≤ -1 and x ≥ 1 cannot both hold: the QP is infeasible in every step and the
    # fallback (the rows furthest out as equalities) is singular; the solver stops with
    # finite values between the two instead of raising or spinning
    def fun(x):
        return np.array([x[0] - 3.0, x[1]])

    def fun_jac(x):
        return fun(x), np.eye(2)

    def cons(x, jac=True):
        C = np.array([[1.0, 0.0], [-1.0, 0.0]])
        return C @ x + 1.0, C if jac else None

    x, r, nev = constrained_levenberg_marquardt(
        fun, fun_jac, cons, np.zeros(2), *FREE, ineq=np.ones(2, bool), ctol=1e-9, max_iter=50
    )
    assert np.isfinite(x).all() and np.isfinite(r).all() and nev <= 50
    assert -1.0 - 1e-6 <= x[0] <= 1.0 + 1e-6

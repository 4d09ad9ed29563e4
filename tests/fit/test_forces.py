"""Force matching: recovery of known potentials, the AL constraints, Jacobians, flags."""

import dataclasses
import math

import numpy as np
import pytest

from mctsff.expr.params import Parameterization, Potential
from mctsff.fit import Constraint, FitConfigError, Fitter
from mctsff.fit.problem import Problem

KNOWN = {
    "coulomb_lj_product": (
        "prod_q/r + prod_A/r**12 - prod_B/r**6",
        {
            "prod_q[O]": -3.2,
            "prod_q[H]": 1.6,
            "prod_A[O]": 800.0,
            "prod_A[H]": 10.0,
            "prod_B[O]": 5.0,
            "prod_B[H]": 0.5,
        },
    ),
    "coulomb_lj_pair": (
        "prod_q/r + pair_A/r**12 - pair_B/r**6",
        {
            "prod_q[O]": -3.2,
            "prod_q[H]": 1.6,
            "pair_A[O-O]": 6.4e5,
            "pair_A[H-O]": 8000.0,
            "pair_A[H-H]": 100.0,
            "pair_B[O-O]": 25.0,
            "pair_B[H-O]": 2.5,
            "pair_B[H-H]": 0.25,
        },
    ),
    "buckingham": (
        "pair_A*exp(-r/b) - pair_C/r**6",
        {
            "pair_A[H-H]": 50.0,
            "pair_A[H-O]": 300.0,
            "pair_A[O-O]": 2000.0,
            "b": 0.3,
            "pair_C[H-H]": 1.0,
            "pair_C[H-O]": 3.0,
            "pair_C[O-O]": 20.0,
        },
    ),
    "morse": ("D*(exp(-2*a*(r-r0)) - 2*exp(-a*(r-r0)))", {"D": 0.2, "a": 1.5, "r0": 2.9}),
    "screened_coulomb": ("prod_q*exp(-r/b)/r", {"prod_q[O]": -3.2, "prod_q[H]": 1.6, "b": 2.5}),
}


#: Synthetic data come from the true form shifted as the default cutoff scheme shifts it.
SHIFTED = {"cutoff": 9.0, "scheme": "shifted-force"}
#: Buckingham's -C/r**6 and an attractive Coulomb pair have no repulsive wall: exact
#: recovery of such a truth fits without the default wall constraint.
NO_WALL = {"wall": None}


def _synthetic(dimers, name):
    expr, params = KNOWN[name]
    truth = Potential(expr, params, dimers.species, dimers.type_pairs, **SHIFTED)
    return expr, params, truth, truth.synthetic(dimers).split(0.2, seed=0)


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_recovers_constants_from_good_start(dimers, name):
    expr, params, truth, (train, valid) = _synthetic(dimers, name)
    start = {k: v * 1.05 for k, v in params.items()}
    res = Fitter(train, valid, constraints=(), n_starts=1, initial=start, **NO_WALL).fit(expr)
    assert res.valid
    for k, v in params.items():
        assert abs(res.params[k] / v - 1) <= 1e-6, (k, res.params[k], v)
    assert res.rmse_train < 1e-10 and res.rmse_valid < 1e-10


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_multistart_finds_true_minimum(dimers, name):
    expr, params, truth, (train, valid) = _synthetic(dimers, name)
    res = Fitter(train, valid, constraints=(), n_starts=8, seed=0, **NO_WALL).fit(expr)
    assert res.rmse_train < 1e-9, res
    # compare per-pair constants: q -> -q leaves the product rule unchanged
    fitted = Potential(expr, res.params, dimers.species, dimers.type_pairs)
    np.testing.assert_allclose(fitted.consts, truth.consts, rtol=1e-6)


@pytest.mark.parametrize(
    "expr", ["prod_c1*exp(-r/c1) - prod_c2/r**6", "geom_c1*exp(-r/c1) - prod_c2/r**6"]
)
def test_per_type_prefactors_of_a_global_potential_are_fitted_exactly(dimers, expr):
    """Buckingham forces (one global amplitude) fitted with per-type amplitudes.

    The exact per-type values (q[H] = q[O] = sqrt(2000), ...) exist, but from random
    per-type starts (``scan=False``, the fitter before the scan) the fit ends in a local
    minimum with q[H], q[O] of opposite sign; the default fit (the scan of the range
    with per-pair amplitudes solved exactly, factored back) reaches them.
    """
    truth = Potential(
        "c1*exp(-r/c2) - c3/r**6",
        {"c1": 2000.0, "c2": 0.3, "c3": 20.0},
        dimers.species,
        **SHIFTED,
    )
    train, valid = truth.synthetic(dimers).split(0.2, seed=0)
    rms = float(np.sqrt(np.mean(valid.forces**2)))
    plain = Fitter(train, valid, constraints=(), n_starts=3, seed=0, scan=False, **NO_WALL).fit(
        expr
    )
    assert plain.rmse_valid > 1e-3 * rms  # the local minimum the scan is for
    res = Fitter(train, valid, constraints=(), **NO_WALL).fit(expr)
    assert res.valid and res.rmse_valid < 1e-8 * rms, res
    assert res.params["c1"] == pytest.approx(0.3, rel=1e-6)
    old = Fitter(train, valid, constraints=(), seed=0, scan=False, pair_start=True, **NO_WALL).fit(
        expr
    )
    assert old.valid and old.rmse_valid < 1e-8 * rms  # the older remedy still works
    assert len(old.extra["start_losses"]) == 4


def test_per_type_start_keeps_the_users_bounds(dimers, monkeypatch):
    """The relaxed fit behind ``pair_start`` keeps the user's bounds on the constants it
    shares with the expression (a range ``c1`` kept in [0.35, 1])."""
    expr = "prod_c1*exp(-r/c1) - prod_c2/r**6"
    truth = Potential(
        "c1*exp(-r/c2) - c3/r**6",
        {"c1": 2000.0, "c2": 0.3, "c3": 20.0},
        dimers.species,
        **SHIFTED,
    )
    train, valid = truth.synthetic(dimers).split(0.2, seed=0)
    seen = []
    explore = Problem.explore

    def spy(self, x0, lo, hi, tol=None):
        if any(n.startswith("pair_") for n in self.prog.constants):
            k = self.par.names.index("c1")
            seen.append((lo[k], hi[k], x0[k]))
        return explore(self, x0, lo, hi, tol)

    monkeypatch.setattr(Problem, "explore", spy)
    fitter = Fitter(
        train,
        valid,
        constraints=(),
        n_starts=3,
        seed=0,
        pair_start=True,
        scan=False,
        bounds={"c1": (0.35, 1)},
    )
    res = fitter.fit(expr)
    assert seen == [(0.35, 1.0, pytest.approx(seen[0][2]))]
    assert 0.35 <= seen[0][2] <= 1.0
    assert 0.35 <= res.params["c1"] <= 1.0


def test_per_type_start_renames_past_the_users_constants(dimers):
    """A user constant already called ``pair_prod_c2`` does not merge with the relaxed
    copy of ``prod_c2``."""
    expr = "prod_c1*exp(-r/c1) - prod_c2/r**6 + pair_prod_c2/r**12"
    fitter = Fitter(dimers, constraints=(), pair_start=True, scan=False)
    prog = fitter.compile(expr)
    problem = Problem(fitter, prog, Parameterization(prog, dimers.species, dimers.type_pairs))
    relaxed, _, common, pairs = problem._relaxation()
    assert len(relaxed.prog.constants) == len(prog.constants)
    assert "pair_prod_c2" in relaxed.prog.constants  # the user's, untouched
    user = {j for m, j in common if problem.par.names[m].startswith("pair_prod_c2[")}
    assert len(user) == len(dimers.type_pairs)
    for idx in pairs.values():
        assert user.isdisjoint(idx)
    res = fitter.fit(expr)
    assert res.valid and len(res.extra["start_losses"]) == 4


def test_fit_is_reproducible(dimers):
    expr, _, _, (train, valid) = _synthetic(dimers, "buckingham")
    a = Fitter(train, valid, n_starts=3, seed=4).fit(expr)
    b = Fitter(train, valid, n_starts=3, seed=4).fit(expr)
    assert a.params == b.params and a.rmse_valid == b.rmse_valid


@pytest.mark.parametrize("constraints", [("force0",), ("force0", "energy0")])
def test_augmented_lagrangian_meets_equality_constraints(dimers, constraints):
    train, valid = dimers.split(0.2, seed=0)
    expr = "prod_q/r + pair_A*exp(-r/b) - pair_C/r**6"
    res = Fitter(
        train, valid, constraints=constraints, n_starts=3, cutoff_scheme="none", **NO_WALL
    ).fit(expr)
    assert res.valid
    for name in ("force0", "energy0")[: len(constraints)]:
        assert res.constraints[name] <= 1e-8
    pot = Potential(expr, res.params, dimers.species, dimers.type_pairs)
    for pair in dimers.type_pairs:
        assert abs(pot.derivative(9.0, pair)[0]) <= 1e-8
        if "energy0" in constraints:
            assert abs(pot.energy(9.0, pair)[0]) <= 1e-8
    # the constrained optimum costs something relative to the free one
    free = Fitter(train, valid, constraints=(), n_starts=3, cutoff_scheme="none", **NO_WALL).fit(
        expr
    )
    assert free.loss <= res.loss
    assert not any("not satisfied" in f for f in res.flags)


def test_inequality_and_user_constraints(dimers):
    train, valid = dimers.split(0.2, seed=0)
    expr = "prod_q/r + A*exp(-r/b) - C/r**6"
    # user constraint: the O–O force vanishes at 2.9 Å (a minimum there)
    user = Constraint("minimum_OO", "eq", lambda pot: pot.derivative(2.9, ("O", "O")))
    res = Fitter(
        train,
        valid,
        constraints=("force0", "repulsive:1.0", user),
        n_starts=3,
        cutoff_scheme="none",
    ).fit(expr)
    assert res.constraints["force0"] <= 1e-8
    assert res.constraints["minimum_OO"] <= 1e-8
    assert res.constraints["repulsive"] <= 1e-8
    pot = Potential(expr, res.params, dimers.species, dimers.type_pairs)
    r = np.linspace(0.5, 1.0, 8)
    for pair in dimers.type_pairs:
        assert np.all(pot.derivative(r, pair) <= 1e-8)
    assert abs(pot.derivative(2.9, ("O", "O"))[0]) <= 1e-8


def test_infeasible_constraint_is_flagged(dimers):
    train, valid = dimers.split(0.2, seed=0)
    # q/r has U'(rc) = -q/rc^2: zero only for q = 0; a range-less exp can't help
    res = Fitter(
        train,
        valid,
        constraints=("force0",),
        n_starts=2,
        constraint_tol=1e-12,
        cutoff_scheme="none",
    ).fit("pair_A*exp(-r/b)")
    assert res.valid
    assert any("force0" in f for f in res.flags) or res.constraints["force0"] <= 1e-11


@pytest.mark.parametrize("scheme", ["shifted-force", "shifted-energy", "none"])
@pytest.mark.parametrize("energy_weight", [0.0, 0.5])
def test_analytic_jacobian_matches_finite_differences(dimers, energy_weight, scheme):
    train, valid = dimers.split(0.2, seed=0)
    expr = "prod_q/r + geom_e*exp(-r/arith_s) - pair_C/r**6 + B*tanh(r/c)**2"
    fitter = Fitter(
        train, valid, weights="potfit", energy_weight=energy_weight, cutoff_scheme=scheme
    )
    prog = fitter.compile(expr)
    par = Parameterization(prog, dimers.species, dimers.type_pairs)
    prob = Problem(fitter, prog, par)
    rng = np.random.default_rng(3)
    theta = rng.uniform(0.5, 1.5, par.n_params)
    res, J = prob._rows(theta, True)
    fd = np.empty_like(J)
    for m in range(par.n_params):
        h = 1e-6 * max(1.0, abs(theta[m]))
        tp, tm = theta.copy(), theta.copy()
        tp[m] += h
        tm[m] -= h
        fd[:, m] = (prob._rows(tp, False)[0] - prob._rows(tm, False)[0]) / (2 * h)
    np.testing.assert_allclose(J, fd, rtol=1e-6, atol=1e-9 * np.abs(J).max())
    # constraint Jacobians too
    cons = Fitter(train, constraints=("force0", "energy0")).constraints
    prob.constraints = list(cons)
    prob._points = [
        (np.tile(c.r_points, 3), np.repeat(np.arange(3), len(c.r_points))) for c in cons
    ]
    vals, jacs = prob._cons(theta)
    for k, Jc in enumerate(jacs):
        for m in range(par.n_params):
            h = 1e-6 * max(1.0, abs(theta[m]))
            tp, tm = theta.copy(), theta.copy()
            tp[m] += h
            tm[m] -= h
            d = (prob._cons(tp)[0][k] - prob._cons(tm)[0][k]) / (2 * h)
            np.testing.assert_allclose(Jc[:, m], d, rtol=1e-5, atol=1e-10)


def test_invalid_candidate_reported_not_raised(dimers):
    train, valid = dimers.split(0.2, seed=0)
    res = Fitter(train, valid).fit("log(r - 5)")  # r < 5 for most pairs: NaN everywhere
    assert not res.valid and res.reason
    assert math.isinf(res.score_loss)
    overflow = Fitter(train, valid, constraints=()).fit("exp(exp(exp(r)))")
    assert not overflow.valid


def test_r_independent_terms_are_refused_in_force_only_fits(dimers):
    # `c1*r/r` is a constant: its only "force" is the round-off of the derivative as
    # written, which a force-only fit scaled by c1 ~ 1e15 to beat the zero-force model
    train, valid = dimers.split(0.2, seed=0)
    fitter = Fitter(train, valid, constraints=())
    for expr, constant in [
        ("c1*r/r", "c1"),
        ("c1*r**2/r**2 - c2/r**6", "c1"),
        ("prod_q/r + c1*exp(-r/c2)*exp(r/c2)", "c1"),
        ("c1", "c1"),
    ]:
        res = fitter.fit(expr)
        assert not res.valid, expr
        assert res.reason.startswith(f"{constant} does not depend on r"), res.reason
        assert math.isinf(res.score_loss)
    assert fitter.fit("c1*r/r**2").valid  # = c1/r: cancels to a force-bearing term
    # with energies in the objective a constant term shifts them and is fitted
    with_energy = Fitter(train, valid, constraints=(), energy_weight=1.0).fit("c1*r/r + c2/r**6")
    assert with_energy.valid and math.isfinite(with_energy.params["c1"])


def test_range_parameter_at_cutoff_is_flagged(dimers):
    # Coulomb data fit by a screened form: the screening length runs to the cutoff
    truth = Potential(
        "prod_q/r", {"prod_q[O]": -3.2, "prod_q[H]": 1.6}, dimers.species, dimers.type_pairs
    )
    train, valid = truth.synthetic(dimers).split(0.2, seed=0)
    res = Fitter(
        train,
        valid,
        constraints=(),
        n_starts=3,
        bounds={"b": (0.1, 9.0)},
        cutoff_scheme="none",
        **NO_WALL,
    ).fit("prod_q*exp(-r/b)/r")
    assert res.params["b"] >= 0.9 * 9.0
    assert any("range parameter b" in f for f in res.flags)
    assert any("upper bound" in f for f in res.flags)


def test_parameters_without_constants_and_bad_options(dimers):
    train, valid = dimers.split(0.2, seed=0)
    res = Fitter(train, valid).fit("1/r")
    assert res.valid and res.params == {}
    with pytest.raises(FitConfigError, match="n_starts"):
        Fitter(train, n_starts=0)
    with pytest.raises(FitConfigError, match="unknown fit option"):
        Fitter(train, n_start=3)
    with pytest.raises(FitConfigError, match="unknown constraint"):
        Fitter(train, constraints=("sideways",))


def test_shifted_force_keeps_the_charges_of_a_bare_coulomb_term(dimers):
    """Under force0 on the form a bare Coulomb term can only have zero charges; the default
    shifted-force scheme fits U - U(rc) - (r - rc) U'(rc) and recovers them exactly."""
    params = {"prod_q[O]": -3.2, "prod_q[H]": 1.6}
    truth = Potential("prod_q/r", params, dimers.species, dimers.type_pairs, **SHIFTED)
    train, valid = truth.synthetic(dimers).split(0.2, seed=0)
    res = Fitter(train, valid, **NO_WALL).fit("prod_q/r")
    assert res.extra["cutoff_scheme"] == "shifted-force"
    assert res.params["prod_q[O]"] * res.params["prod_q[H]"] == pytest.approx(-3.2 * 1.6, rel=1e-8)
    pot = Potential("prod_q/r", res.params, dimers.species, dimers.type_pairs, **SHIFTED)
    for pair in dimers.type_pairs:  # energy and force both vanish at the cutoff
        assert pot.energy(9.0, pair)[0] == pytest.approx(0.0, abs=1e-12)
        assert pot.derivative(9.0, pair)[0] == pytest.approx(0.0, abs=1e-12)
    old = Fitter(train, valid, cutoff_scheme="constraint", **NO_WALL).fit("prod_q/r")
    assert set(old.constraints) == {"force0"}
    assert abs(old.params["prod_q[O]"] * old.params["prod_q[H]"]) < 1e-6  # the null model


def test_shifted_energy_and_none_schemes(dimers):
    """shifted-energy moves U(rc) to 0 and leaves the forces; none fits the form as written."""
    expr, params = "c1/r**12 - c2/r**6", {"c1": 6e4, "c2": 40.0}
    for scheme in ("shifted-energy", "none"):
        truth = Potential(
            expr, params, dimers.species, dimers.type_pairs, cutoff=9.0, scheme=scheme
        )
        train, valid = truth.synthetic(dimers).split(0.2, seed=0)
        res = Fitter(train, valid, cutoff_scheme=scheme, energy_weight=1.0, **NO_WALL).fit(expr)
        assert res.rmse_train < 1e-9 and res.params["c2"] == pytest.approx(40.0, rel=1e-6)
        u_rc = truth.energy(9.0, ("O", "O"))[0]
        assert (u_rc == pytest.approx(0.0, abs=1e-14)) == (scheme == "shifted-energy")
    with pytest.raises(FitConfigError, match="cutoff_scheme"):
        Fitter(train, cutoff_scheme="switched")


def test_repulsive_wall_is_imposed_by_default(dimers):
    """Buckingham forces: the exact form turns attractive at short range (-C/r**6 wins); the
    default fit keeps U' <= 0 from 0.5 Å to each pair's shortest distance and says so."""
    truth = Potential(
        "c1*exp(-r/c2) - c3/r**6",
        {"c1": 2000.0, "c2": 0.3, "c3": 20.0},
        dimers.species,
        dimers.type_pairs,
        **SHIFTED,
    )
    train, valid = truth.synthetic(dimers).split(0.2, seed=0)
    expr = "c1*exp(-r/c2) - c3/r**6"
    free = Fitter(train, valid, **NO_WALL).fit(expr)
    walled = Fitter(train, valid).fit(expr)
    assert free.rmse_train < 1e-9 and "wall" not in free.constraints
    assert walled.constraints["wall"] <= 1e-7 and walled.rmse_train > free.rmse_train
    pot = Potential(expr, walled.params, dimers.species, dimers.type_pairs, **SHIFTED)
    fpot = Potential(expr, free.params, dimers.species, dimers.type_pairs, **SHIFTED)
    for p, pair in enumerate(dimers.type_pairs):
        shortest = float(np.min(train.r[train.pair_type == p]))
        r = np.geomspace(0.5, shortest, 50)
        assert np.all(pot.derivative(r, pair) <= 1e-6), pair
    assert np.any(fpot.derivative(np.geomspace(0.5, 1.0, 20), ("O", "O")) > 0)  # no wall
    with pytest.raises(FitConfigError, match="wall"):
        Fitter(train, wall=-1.0)


def test_default_wall_is_strict_so_a_flat_potential_is_no_wall(dimers):
    """Coulomb forces with uncharged H: the exact fit has flat H–H and H–O potentials
    (U' = 0 meets U' <= 0); the default wall asks U'(0.5 Å) <= -WALL_FORCE of every pair,
    so the fit finds a strict wall (or says it failed), and the wall check agrees."""
    from mctsff.engines.pareto import wall_failed
    from mctsff.export import wall_problem
    from mctsff.fit import WALL_FORCE, repulsive_wall

    expr = "prod_c1/r"
    truth = Potential(
        expr, {"prod_c1[O]": -0.8, "prod_c1[H]": 0.0}, dimers.species, dimers.type_pairs, **SHIFTED
    )
    train, valid = truth.synthetic(dimers).split(0.2, seed=0)
    free = Fitter(train, valid, **NO_WALL).fit(expr)
    assert free.rmse_train < 1e-9 and abs(free.params["prod_c1[H]"]) < 1e-6  # flat H
    assert wall_problem(free) is not None and "too flat" in wall_problem(free)
    res = Fitter(train, valid).fit(expr)
    pot = res.potential()
    slopes = {p: float(pot.derivative(0.5, p)[0]) for p in dimers.type_pairs}
    if not wall_failed(res.flags, res.constraints):
        assert all(d <= 1e-7 - WALL_FORCE for d in slopes.values()), slopes
    assert (wall_problem(res) is None) == (not wall_failed(res.flags, res.constraints))
    # the constraint's value is U' + force up to reach x the shortest distance, U' beyond
    c = repulsive_wall(0.5, [1.5], force=2.0, reach=0.5, n=3)
    assert c.pair_points[0].tolist() == pytest.approx([0.5, 0.75, 0.866025, 1.5])
    assert c.offset.tolist() == [2.0, 2.0, 0.0, 0.0]
    with pytest.raises(FitConfigError, match="wall force"):
        repulsive_wall(0.5, [1.5], force=-1.0, reach=0.5)
    with pytest.raises(FitConfigError, match="wall reach"):
        repulsive_wall(0.5, [1.5], force=1.0, reach=1.5)


def test_wall_gives_a_barrier_up_to_half_the_shortest_distance(dimers):
    """Coulomb forces with uncharged H fitted by geom_c1/r**8: the fit wants the H
    amplitude at zero; a bound at the wall radius alone gives it U'(0.5 Å) = -WALL_FORCE
    and 0.06 eV there (an MD demo member unstable in liquid water).  The wall asks
    U' <= -WALL_FORCE up to WALL_REACH x each pair's shortest distance, so every pair has a
    barrier of WALL_FORCE x (that - 0.5 Å); the result records the shortest distances and
    the wall check, at the fit's own points, agrees with the fit's record."""
    from mctsff.engines.pareto import wall_failed
    from mctsff.export import wall_problem
    from mctsff.fit import WALL_FORCE, WALL_REACH
    from mctsff.fit.objective import ForceObjective

    truth = Potential(
        "prod_c1/r", {"prod_c1[O]": -0.8, "prod_c1[H]": 0.0}, dimers.species, dimers.type_pairs,
        **SHIFTED,
    )  # fmt: skip
    train, valid = truth.synthetic(dimers).split(0.2, seed=0)
    fitter = Fitter(train, valid)
    res = fitter.fit("geom_c1/r**8")
    shortest = [float(np.min(train.r[train.pair_type == p])) for p in range(3)]
    assert res.extra["wall_shortest"] == shortest == fitter.wall_shortest
    assert ForceObjective(fitter).description()["wall_shortest"] == shortest  # run.json
    assert not wall_failed(res.flags, res.constraints), res.flags
    assert wall_problem(res) is None
    pot = res.potential()
    for pair, rs in zip(dimers.type_pairs, shortest, strict=True):
        edge = WALL_REACH * rs
        r = np.geomspace(0.5, edge, 40)
        assert np.all(pot.derivative(r, pair) <= 1e-6 - WALL_FORCE), pair
        barrier = pot.energy(0.5, pair)[0] - pot.energy(edge, pair)[0]
        assert barrier >= WALL_FORCE * (edge - 0.5) * (1 - 1e-6), (pair, barrier)


def test_a_fit_no_better_than_zero_forces_is_flagged(dimers):
    """Bounds that keep a repulsion far too strong leave the fit worse than U = 0: the
    result says so; a sound fit of the same form does not carry the flag."""
    forced = Fitter(dimers, bounds={"c1": (100.0, 101.0)}).fit("c1/r**6")
    assert any(f.startswith("no better than U = 0") for f in forced.flags)
    free = Fitter(dimers).fit("14.399645*prod_q/r + c1/r**12")
    assert not any(f.startswith("no better than U = 0") for f in free.flags)


def test_a_final_solve_that_wrecks_a_nearly_feasible_start_is_discarded():
    """The README's first fit with every water neutral: one loose start ends within 10x
    the tolerance at a good loss, and its final solve, led by the huge multiplier of an
    ill-conditioned wall row, trades a 4e4-fold loss for the last 3e-8 of violation
    (reported valid at a training RMSE of 0.58 eV/Å, worse than U = 0, before the
    guard).  The fit keeps the start instead."""
    from mctsff.data import dataset_path, load_dataset
    from mctsff.fit.constraints import neutrality

    ds = load_dataset(dataset_path("water-dimers"), cutoff=9.0)
    train, valid, _ = ds.split_holdout(0.2, 0.2, seed=0)
    positive = {"pair_A": (0, math.inf), "pair_C": (0, math.inf)}
    fitter = Fitter(train, valid, bounds=positive, constraints=(neutrality("prod_q", ds),))
    res = fitter.fit("14.399645*prod_q/r + pair_A*exp(-r/b) - pair_C/r**6")
    assert res.valid and max(res.constraints.values()) <= 1e-7
    assert res.rmse_train < 0.08  # U = 0: 0.089 eV/Å on these frames; the wreck 0.58
    assert not any(f.startswith("no better than U = 0") for f in res.flags)


def test_wall_holds_between_its_points(dimers):
    """A narrow well between two of the wall's 12 points per pair (``-c1*exp(-c2*(r-c3)**2)``
    at large c2) meets the imposed rows; the fit's dense check finds it, and the exchange
    of points solves the fit again until the wall holds everywhere (or flags it)."""
    from mctsff.expr.params import Parameterization
    from mctsff.fit import WALL_CHECK
    from mctsff.fit.constraints import point_values

    truth = Potential(
        "prod_c1/r", {"prod_c1[O]": 0.8, "prod_c1[H]": 0.4}, dimers.species, dimers.type_pairs,
        **SHIFTED,
    )  # fmt: skip
    train, valid = truth.synthetic(dimers).split(0.2, seed=0)
    fitter = Fitter(train, valid)
    expr = "prod_c1/r + c4/r**12 - c1*exp(-c2*(r - c3)**2)"
    prog = fitter.compile(expr)
    par = Parameterization(prog, fitter.species, fitter.type_pairs)
    problem = Problem(fitter, prog, par)
    lo, hi = fitter._bounds(par)
    wall = next(c for c in problem.constraints if c.name == "wall")
    oo = fitter.type_pairs.index(("O", "O"))
    r_oo = wall.pair_points[oo]
    mid = 0.5 * (r_oo[-3] + r_oo[-2])  # between two points, beyond the strict reach
    values = {"prod_c1[O]": 0.8, "prod_c1[H]": 0.4, "c4": 5.0, "c1": 0.5, "c2": 4e4, "c3": mid}
    theta = np.array([values[n] for n in par.names])
    vals, _ = problem._cons(theta, jac=False)
    assert np.max(vals[problem.constraints.index(wall)]) <= 0  # the 12 points hold
    found = fitter._wall_violations(problem, theta)
    assert found[oo].size and abs(found[oo][0] - mid) < 0.01  # the dense check sees the well
    res, _ = problem._rows(theta, False)
    out = fitter._wall_exchange(problem, (theta, float(res @ res), 0.0, {}), lo, hi)
    assert not any(f.size for f in fitter._wall_violations(problem, out[0]))
    consts, T = par.table(out[0])
    dense = fitter._wall_check
    r, g = dense.points(len(fitter.type_pairs))
    v, _ = point_values(dense, prog, consts, T, r, g, jac=False, shift=problem.shift(out[0], False))
    assert r.size >= 3 * WALL_CHECK
    assert np.max(v) <= fitter.options.constraint_tol


def test_rigid_match_fits_total_forces_that_atom_match_cannot(dimers):
    """Coulomb + r**-12 forces between molecules plus forces each molecule exerts on itself
    (equal and opposite along its bonds and H-H, as total DFT forces hold): matching every
    atom's force spreads the intramolecular part over the charges; matching the molecules'
    net forces and torques (``match="rigid"``) recovers the constants exactly."""
    from mctsff.data.rigid import rigid_basis

    expr = "prod_c1/r + geom_c1/r**12"
    params = {"prod_c1[O]": -0.8, "prod_c1[H]": 0.4, "geom_c1[O]": 3e4, "geom_c1[H]": 1.0}
    truth = Potential(expr, params, dimers.species, dimers.type_pairs, **SHIFTED)
    inter, _ = truth.forces(dimers)
    rng = np.random.default_rng(1)
    intra = np.zeros_like(inter)
    for frame in range(dimers.n_frames):
        atoms = np.flatnonzero(dimers.atom_frame == frame)
        for m in np.unique(dimers.mol[atoms]):
            idx = atoms[dimers.mol[atoms] == m]
            for a, i in enumerate(idx):
                for j in idx[a + 1 :]:
                    u = dimers.positions[j] - dimers.positions[i]
                    s = rng.normal(0.0, 2.0)
                    intra[i] += s * u
                    intra[j] -= s * u
    total = dimers.with_forces(inter + intra, None)
    assert np.abs(rigid_basis(total)((inter + intra - inter).ravel())).max() < 1e-9
    train, valid = total.split(0.25, seed=0)
    atoms = Fitter(train, valid, **NO_WALL).fit(expr)
    rigid_fitter = Fitter(train, valid, match="rigid", **NO_WALL)
    rigid = rigid_fitter.fit(expr)
    assert rigid.rmse_train < 1e-8 and rigid.rmse_valid < 1e-8
    for k, v in params.items():  # (the product rule's common sign is free)
        got = rigid.params[k] if k.startswith("geom") else abs(rigid.params[k])
        assert got == pytest.approx(abs(v), rel=1e-5), k
    assert atoms.rmse_train > 0.1  # the intramolecular forces stay unexplained
    # the search's per-frame errors (validation, test) compare what the fit compares
    from mctsff.engines.holdout import FrameErrors

    pred, _ = Potential(expr, atoms.params, dimers.species, dimers.type_pairs, **SHIFTED).forces(
        valid
    )
    c = rigid_basis(valid)((pred - valid.forces).ravel())
    errors = FrameErrors(rigid_fitter, valid)
    assert errors.rmse(atoms) == pytest.approx(math.sqrt(c @ c / (3 * valid.n_atoms)))
    assert errors.rmse(rigid) < 1e-8
    with pytest.raises(FitConfigError, match="molecule ids"):
        Fitter(dataclasses.replace(train, mol=None), match="rigid")
    with pytest.raises(FitConfigError, match="match"):
        Fitter(train, match="molecules")


def test_a_given_start_is_solved_too(dimers):
    # a well 0.06 Å wide at 3.4 Å: the scan's grid and the ladder miss it, a start near it
    # (e.g. from a term selection) reaches it exactly, with the scan and without
    expr, params = "c1*exp(-c2*(r-c3)**2)", {"c1": -0.05, "c2": 300.0, "c3": 3.4}
    truth = Potential(expr, params, dimers.species, dimers.type_pairs, **SHIFTED)
    train, valid = truth.synthetic(dimers).split(0.2, seed=0)
    for options in ({}, {"scan": False, "n_starts": 1}):
        fitter = Fitter(train, valid, **NO_WALL, **options)
        res = fitter.fit(expr, start={"c2": 250.0, "c3": 3.38})
        assert res.rmse_train < 1e-9, (options, res.params)
    assert fitter.fit(expr).rmse_train > 0.1  # one start at 1 alone does not
    with pytest.raises(FitConfigError, match="zz is not a constant"):
        fitter.fit(expr, start={"zz": 1.0})
    with pytest.raises(FitConfigError, match="c1 must be a finite number"):
        fitter.fit(expr, start={"c1": math.nan})

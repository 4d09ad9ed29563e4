"""Tests of mctsff.fit.surrogate: the fit-free error estimate that ranks rollouts."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from mctsff.expr.params import Potential
from mctsff.fit import Constraint, Fitter, potfit_weights
from mctsff.fit.surrogate import ForceSurrogate


@pytest.fixture(scope="module")
def coulomb_lj(dimers):
    truth = Potential(
        "prod_c1/r + c1/r**12 - c2/r**6",
        {"prod_c1[O]": -3.2, "prod_c1[H]": 1.6, "c1": 6e4, "c2": 40.0},
        dimers.species,
        dimers.type_pairs,
    )
    return truth.synthetic(dimers)


def test_sums_of_inverse_powers_are_scored_exactly(coulomb_lj):
    """Amplitudes are solved by least squares: the true sum scores round-off whatever the
    names and signs, and each missing term shows."""
    s = ForceSurrogate(coulomb_lj)
    assert s("prod_c1/r + c1/r**12 - c2/r**6") < 1e-10
    assert s("c7/r**6 + prod_q/r + A/r**12") < 1e-10
    # the per-type amplitude is relaxed to one value per type pair, so a global
    # amplitude cannot stand in for the charges: each part of the force is missing
    for partial in ("c1/r**12 - c2/r**6", "c1/r**12 + prod_c1/r", "c1/r + c2/r**12 - c3/r**6"):
        assert s(partial) > 1e-5, partial
    assert s("c1/r**12") > s("c1/r**12 - c2/r**6") > s("prod_c1/r + c1/r**12 - c2/r**6")


def test_range_constants_are_scored_on_a_grid(screened):
    """The screened Coulomb form (range 2.5 Å, between grid points) beats forms that miss
    its shape, and a sum holding it scores as well as it."""
    train, _ = screened
    s = ForceSurrogate(train)
    truth = s("prod_c1*exp(-r/c1)/r")
    assert truth < 0.1
    for decoy in ("prod_c1/r", "c1*exp(-r/c2)", "prod_c1/r**2", "c1*tanh(c2*r)/r**8"):
        assert s(decoy) > truth, decoy
    assert s("prod_c1*exp(-r/c1)/r + c2/r**12") <= truth * (1 + 1e-9)


def test_unknown_terms_and_bad_text_are_inf_never_an_error(screened):
    train, _ = screened
    s = ForceSurrogate(train)
    # three range constants in one term: not gridded
    assert s("c1*exp(-r/c2)*erfc(c3*r)*tanh(c4*r)") == math.inf
    # two linear constants in one term: no single amplitude
    assert s("(c1 + c2)*exp(-r/c3)") == math.inf
    assert s("c1/r +") == math.inf
    assert s("") == math.inf
    assert s("c1*r - c1*r") == math.inf or s("c1*r - c1*r") >= 0.0


def test_estimates_are_cached_and_the_cache_is_bounded(screened):
    train, _ = screened
    s = ForceSurrogate(train, cache_size=2)
    a = s("prod_c1/r")
    assert s("prod_c1/r") == a
    s("c1/r**6")
    s("c1/r**12")
    assert len(s._values) == 2 and "prod_c1/r" not in s._values
    assert s("prod_c1/r") == a  # recomputed, same value


def test_large_datasets_are_capped_in_frames_pairs_rows_and_terms(coulomb_lj):
    """Cost and memory stay bounded; the estimate on a subset still ranks the same way."""
    full = ForceSurrogate(coulomb_lj)
    assert full._target.n_frames == coulomb_lj.n_frames and full._rows is None
    assert ForceSurrogate(coulomb_lj, max_frames=5)._target.n_frames == 5
    per_frame = coulomb_lj.n_pairs // coulomb_lj.n_frames  # 9 intermolecular pairs a dimer
    assert ForceSurrogate(coulomb_lj, max_pairs=4 * per_frame)._target.n_frames == 4
    assert ForceSurrogate(coulomb_lj, max_pairs=1)._target.n_frames == 1  # at least one
    s = ForceSurrogate(coulomb_lj, max_rows=50, max_terms=2)
    assert s._y.shape == (50,) and len(np.unique(s._rows)) == 50
    assert s("prod_c1/r + c1/r**12 - c2/r**6") < 1e-10 < s("c1/r**12 - c2/r**6")
    assert len(s._columns) == 2  # three terms seen, two kept


def test_from_fitter_needs_a_pair_dataset(screened):
    from mctsff.fit.regression import RegressionData, RegressionFitter

    train, valid = screened
    s = ForceSurrogate.from_fitter(Fitter(train, valid, constraints=()))
    assert isinstance(s, ForceSurrogate) and s("prod_c1*exp(-r/c1)/r") < 0.1
    x = np.linspace(0.1, 1.0, 20)
    assert (
        ForceSurrogate.from_fitter(RegressionFitter(RegressionData(x[None], x**2, ("x",)))) is None
    )
    # a fitter whose training set is only a projection has no pairs to score on
    assert ForceSurrogate.from_fitter(SimpleNamespace(train=object(), _train=None)) is None


def _fitted_relative(fitter, expression: str, y2: float) -> float:
    """The constrained fit's relative residual, sqrt(loss / |y|²), for comparison."""
    res = fitter.fit(expression)
    assert res.valid, res
    return math.sqrt(res.loss / y2)


@pytest.mark.parametrize("expression", ["c1/r**12 - c2/r**6", "c3/r + c1/r**6 - c2/r**12"])
def test_force0_is_imposed_as_the_fitter_imposes_it(coulomb_lj, expression):
    """For amplitudes alone (no range constants) the estimate is the constrained fit's
    optimum: the same relative residual as Fitter with force0 reaches."""
    fitter = Fitter(coulomb_lj, constraints=("force0",), n_starts=3, seed=0, cutoff_scheme="none")
    s = ForceSurrogate.from_fitter(fitter)
    free = ForceSurrogate(coulomb_lj)
    y2 = float(np.mean(coulomb_lj.forces**2))
    assert s(expression) == pytest.approx(_fitted_relative(fitter, expression, y2), rel=1e-4)
    assert s(expression) > free(expression)  # the constraint costs something here
    # per-type amplitudes are relaxed to one value per type pair: a lower bound of the fit
    assert s("prod_c1/r + c1/r**6") <= _fitted_relative(fitter, "prod_c1/r + c1/r**6", y2)
    # a lone Coulomb term cannot vanish in force at the cutoff: only amplitude 0 is allowed
    assert s("prod_c1/r") == 1.0 and free("prod_c1/r") < 1.0


@pytest.mark.parametrize("scheme", ["shifted-force", "shifted-energy"])
def test_cutoff_scheme_is_scored_as_the_fitter_fits_it(coulomb_lj, scheme):
    """For amplitudes alone the estimate is the shifted fit's optimum (energies included)."""
    fitter = Fitter(coulomb_lj, n_starts=3, seed=0, energy_weight=0.5, cutoff_scheme=scheme)
    s = ForceSurrogate.from_fitter(fitter)
    E = np.asarray(coulomb_lj.energies)
    y2 = float(np.mean(coulomb_lj.forces**2)) + 0.5 / len(E) * float(np.sum((E - E.mean()) ** 2))
    plain = ForceSurrogate(coulomb_lj, energy_weight=0.5)
    for expression in ("c1/r**12 - c2/r**6", "c3/r + c1/r**12"):
        assert s(expression) == pytest.approx(_fitted_relative(fitter, expression, y2), rel=1e-4)
        if scheme == "shifted-force":  # a shifted energy is a constant per dimer: offset away
            assert s(expression) != pytest.approx(plain(expression), rel=1e-6)


def test_a_term_dead_at_the_cutoff_is_left_free(screened):
    """Where a range constant makes the term's force at the cutoff smaller than the
    fitter's tolerance, the constraint does not bind; the true form keeps its score."""
    train, _ = screened
    s = ForceSurrogate(
        train, constraints=[Constraint("f", "eq", r_points=np.array([100.0]), derivative=True)]
    )
    assert s("prod_c1*exp(-r/c1)/r") == pytest.approx(ForceSurrogate(train)("prod_c1*exp(-r/c1)/r"))
    assert s("prod_c1/r") == 1.0  # 1/r has not died out at 100 Å


def test_weights_and_energies_follow_the_fitter(coulomb_lj):
    """With potfit weights and energy rows the estimate is again the fit's optimum for
    amplitudes alone, so candidates are ranked by the loss the user asked for."""
    opts = dict(constraints=(), n_starts=3, seed=0, weights="potfit", energy_weight=0.5)
    fitter = Fitter(coulomb_lj, **opts)
    s = ForceSurrogate.from_fitter(fitter)
    F = coulomb_lj.forces.ravel()
    w = potfit_weights(F)
    E = np.asarray(coulomb_lj.energies)
    y2 = float(np.mean((w * F) ** 2)) + 0.5 / len(E) * float(np.sum((E - E.mean()) ** 2))
    for expression in ("c1/r**12 - c2/r**6", "c1/r**6", "c3/r + c1/r**12"):
        want = _fitted_relative(fitter, expression, y2)
        assert s(expression) == pytest.approx(want, rel=1e-4), expression
        assert s(expression) != pytest.approx(ForceSurrogate(coulomb_lj)(expression), rel=1e-3)
    # the same weights given as an array, and checked
    same = ForceSurrogate(
        coulomb_lj, weights=w.reshape(-1, 3), energy_weight=0.5, cutoff_scheme="shifted-force"
    )
    assert same("c1/r**6") == pytest.approx(s("c1/r**6"), rel=1e-12)
    with pytest.raises(ValueError, match="shape"):
        ForceSurrogate(coulomb_lj, weights=np.ones(5))
    with pytest.raises(ValueError, match="potfit"):
        ForceSurrogate(coulomb_lj, weights="heavy")


def test_weights_follow_the_frames_kept(coulomb_lj):
    """Capping the frames keeps each kept atom's own weights."""
    w = np.arange(1.0, coulomb_lj.forces.size + 1).reshape(-1, 3)
    s = ForceSurrogate(coulomb_lj, weights=w, max_frames=3)
    sub = coulomb_lj.subset(
        np.unique(np.linspace(0, coulomb_lj.n_frames - 1, 3).round().astype(int))
    )
    fo = np.asarray(coulomb_lj.frame_offsets)
    idx = np.unique(np.linspace(0, coulomb_lj.n_frames - 1, 3).round().astype(int))
    atoms = np.concatenate([np.arange(fo[f], fo[f + 1]) for f in idx])
    direct = ForceSurrogate(sub, weights=w[atoms])
    assert s("c1/r**12") == pytest.approx(direct("c1/r**12"), rel=1e-12)


def test_rss_of_columns_that_overflow_is_inf_and_quiet(capfd):
    """A term that overflows on the data gives an infinite residual, and LAPACK (which
    prints 'On entry to DLASCL ...' for a non-finite matrix) is never called with it."""
    from mctsff.fit.surrogate import _rss

    A = np.ones((5, 2))
    A[0, 0] = np.inf
    assert _rss(np.ones(5), A) == math.inf
    out, err = capfd.readouterr()
    assert "DLASCL" not in out + err

"""Tests of mctsff.surrogate: the fit-free error estimate that ranks rollouts."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from mctsff.fit import Fitter
from mctsff.params import Potential
from mctsff.surrogate import ForceSurrogate


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
    from mctsff.regression import RegressionData, RegressionFitter

    train, valid = screened
    s = ForceSurrogate.from_fitter(Fitter(train, valid, constraints=()))
    assert isinstance(s, ForceSurrogate) and s("prod_c1*exp(-r/c1)/r") < 0.1
    x = np.linspace(0.1, 1.0, 20)
    assert (
        ForceSurrogate.from_fitter(RegressionFitter(RegressionData(x[None], x**2, ("x",)))) is None
    )
    # a fitter whose training set is only a projection has no pairs to score on
    assert ForceSurrogate.from_fitter(SimpleNamespace(train=object(), _train=None)) is None

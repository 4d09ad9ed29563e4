"""Grid projection F = M·g: exactness, error bound, Jacobian, streaming, fitter integration."""

import math

import numpy as np
import pytest

from mctsff.data import DataError, data_file, iter_chunks, load_dataset
from mctsff.data.projection import ForceProjection, ProjectionError
from mctsff.expr.params import Parameterization, Potential
from mctsff.expr.program import Program
from mctsff.fit import FitConfigError, Fitter
from mctsff.fit.target import Target

BULK = data_file("bulk_water_dft_80x192.extxyz")
COULOMB_LJ = "prod_q/r + prod_A/r**12 - prod_B/r**6"
TRUTH = {
    "prod_q[O]": -3.2,
    "prod_q[H]": 1.6,
    "prod_A[O]": 800.0,
    "prod_A[H]": 10.0,
    "prod_B[O]": 5.0,
    "prod_B[H]": 0.5,
}


@pytest.fixture(scope="module")
def bulk8():
    """8 periodic frames of 64 waters, intermolecular pairs within 6 Å."""
    return load_dataset(BULK, 6.0, molecules="nearest-O", frames=slice(0, 8))


def _exact_loss(ds, prog, consts, w=None):
    t = Target.from_dataset(ds)
    f, _ = t.predict(prog, consts)
    d = f - t.forces
    if w is not None:
        d = d * w
    return float(np.mean(d * d))


def _consts(expr, ds, values):
    prog = Program.from_string(expr)
    par = Parameterization(prog, ds.species, ds.type_pairs)
    theta = np.array([values[n] for n in par.names])
    consts, T = par.table(theta)
    return prog, par, theta, consts, T


def test_exact_when_the_force_is_cubic(dimers):
    # U' = 4 q r**3 + 3 c r**2 is a cubic: 4-point Lagrange interpolation reproduces it exactly
    prog, _, _, consts, _ = _consts(
        "prod_q*r**4 + c*r**3", dimers, {"prod_q[O]": 0.3, "prod_q[H]": -0.2, "c": 0.01}
    )
    proj = ForceProjection.from_dataset(dimers, spacing=0.2)
    exact = _exact_loss(dimers, prog, consts)
    assert proj.loss(prog, consts) == pytest.approx(exact, rel=1e-10)
    assert proj.interpolation_error(prog, consts) < 1e-10 * np.abs(consts).max() * 1e3


def test_error_bound_holds_and_error_is_small(bulk8):
    prog, _, _, consts, _ = _consts(COULOMB_LJ, bulk8, TRUTH)
    exact = _exact_loss(bulk8, prog, consts)
    errors = []
    for h in (0.2, 0.1, 0.05):
        proj = ForceProjection.from_dataset(bulk8, spacing=h)
        b = proj.error_bound(prog, consts)
        errors.append(abs(b["loss_projected"] - exact) / exact)
        # |sqrt(L_proj) - sqrt(L_exact)| <= beta * eps
        assert abs(math.sqrt(b["loss_projected"]) - math.sqrt(exact)) <= b["bound_sqrt_loss"]
        assert errors[-1] <= b["loss_rel_bound"]
    assert errors[-1] < 1e-3
    # fourth-order convergence of cubic interpolation: halving h cuts the error ~16x
    assert errors[0] > errors[1] and errors[1] / errors[2] > 8


def test_weights_are_projected(dimers):
    prog, _, _, consts, _ = _consts(COULOMB_LJ, dimers, TRUTH)
    w = np.random.default_rng(0).uniform(0.5, 2.0, size=3 * dimers.n_atoms)
    proj = ForceProjection.from_dataset(dimers, spacing=0.02, weights=w)
    weighted = _exact_loss(dimers, prog, consts, w)
    assert proj.loss(prog, consts) == pytest.approx(weighted, rel=1e-5)
    assert abs(weighted - _exact_loss(dimers, prog, consts)) > 1e-2 * weighted


def test_jacobian_matches_finite_differences(dimers):
    prog, par, theta, consts, T = _consts(COULOMB_LJ, dimers, TRUTH)
    proj = ForceProjection.from_dataset(dimers, spacing=0.05)
    res, J = proj.residual(prog, consts, T)
    assert J.shape == (proj.rank, par.n_params)
    for k in range(par.n_params):
        step = 1e-6 * max(1.0, abs(theta[k]))
        tp, tm = theta.copy(), theta.copy()
        tp[k] += step
        tm[k] -= step
        rp, _ = proj.residual(prog, par.table(tp)[0])
        rm, _ = proj.residual(prog, par.table(tm)[0])
        fd = (rp - rm) / (2 * step)
        assert np.allclose(J[:, k], fd, rtol=1e-5, atol=1e-7 * np.abs(J).max())


def test_streamed_file_equals_in_memory(tmp_path, bulk8):
    import ase.io

    path = tmp_path / "bulk8.extxyz"
    ase.io.write(path, ase.io.read(BULK, "0:8"))
    streamed = ForceProjection.from_file(path, 6.0, 0.1, chunk_frames=3, molecules="nearest-O")
    memory = ForceProjection.from_dataset(bulk8, spacing=0.1)
    assert streamed.n_pairs == memory.n_pairs == bulk8.n_pairs
    prog, _, _, consts, _ = _consts(COULOMB_LJ, bulk8, TRUTH)
    assert streamed.loss(prog, consts) == pytest.approx(memory.loss(prog, consts), rel=1e-12)


def test_chunk_errors_name_the_frame_in_the_file(tmp_path):
    import ase.io

    images = ase.io.read(BULK, "0:6")
    forces = images[4].get_forces()
    forces[3, 1] = np.nan
    images[4].calc.results["forces"] = forces
    path = tmp_path / "bad.extxyz"
    ase.io.write(path, images)
    with pytest.raises(DataError, match=r"bad\.extxyz: frame 4: .*forces"):
        list(iter_chunks(path, 6.0, 2, molecules="nearest-O"))


def test_bad_spacing():
    with pytest.raises(ProjectionError, match="spacing"):
        ForceProjection.from_frames([], spacing=0.0)


@pytest.mark.slow
def test_fitter_on_projection_recovers_constants(dimers):
    truth = Potential(COULOMB_LJ, TRUTH, dimers.species, dimers.type_pairs)
    train, valid = truth.synthetic(dimers).split(0.2, seed=0)
    opts = {"constraints": (), "n_starts": 3, "cutoff_scheme": "none"}  # the truth is unshifted
    exact = Fitter(train, valid, **opts).fit(COULOMB_LJ)
    proj = Fitter(train, valid, projection=0.01, **opts).fit(COULOMB_LJ)
    assert proj.valid and exact.valid
    for name, value in TRUTH.items():  # the product rule fixes charges up to a common sign
        assert abs(proj.params[name]) == pytest.approx(abs(value), rel=1e-3)
    qq = proj.params["prod_q[O]"] * proj.params["prod_q[H]"]
    assert qq == pytest.approx(TRUTH["prod_q[O]"] * TRUTH["prod_q[H]"], rel=1e-4)
    info = proj.extra["projection"]
    assert info["spacing"] == 0.01 and info["n_pairs"] == train.n_pairs
    assert proj.rmse_train < 1e-3 * float(np.sqrt(np.mean(train.forces**2)))
    assert proj.loss == pytest.approx(info["loss_exact"])


def test_fitter_projection_keeps_constraints_and_agrees_with_exact(bulk8):
    train, valid = bulk8.split(0.25, seed=0)
    expr = "prod_q/r + c1*exp(-r/c2) - c3/r**6"
    exact = Fitter(train, valid, constraints=("force0",)).fit(expr)  # shifted-force (default)
    proj = Fitter(train, valid, constraints=("force0",), projection=0.05).fit(expr)
    assert proj.constraints["force0"] <= 1e-8
    assert proj.rmse_train == pytest.approx(exact.rmse_train, rel=1e-6)
    assert proj.rmse_valid == pytest.approx(exact.rmse_valid, rel=1e-5)
    assert proj.extra["projection"]["rel_error"] < 1e-5


def test_fitter_projection_errors(dimers):
    train, valid = dimers.split(0.2, seed=0)
    with pytest.raises(FitConfigError, match="force rows only"):
        Fitter(train, valid, projection=0.05, energy_weight=1.0)
    other = ForceProjection.from_dataset(valid, spacing=0.05)
    with pytest.raises(FitConfigError, match="same training set"):
        Fitter(train, valid, projection=other)
    with pytest.raises(FitConfigError, match="spacing"):
        Fitter(train, valid, projection=-1.0)


def test_split_file_fits_without_pairs_in_memory(tmp_path, bulk8):
    import ase.io

    path = tmp_path / "bulk8.extxyz"
    ase.io.write(path, ase.io.read(BULK, "0:8"))
    ptrain, pvalid = ForceProjection.split_file(
        path, 6.0, 0.05, valid_fraction=0.25, seed=0, chunk_frames=3, molecules="nearest-O"
    )
    train, valid = bulk8.split(0.25, seed=0)  # the same frames as the in-memory split
    assert (ptrain.n_pairs, pvalid.n_pairs) == (train.n_pairs, valid.n_pairs)
    assert ptrain.n_frames == train.n_frames and ptrain.path == str(path)
    expr = "prod_q/r + c1*exp(-r/c2) - c3/r**6"
    streamed = Fitter(ptrain, pvalid, constraints=("force0",)).fit(expr)
    exact = Fitter(train, valid, constraints=("force0",)).fit(expr)
    assert streamed.constraints["force0"] <= 1e-8
    assert streamed.rmse_train == pytest.approx(exact.rmse_train, rel=1e-5)
    assert streamed.rmse_valid == pytest.approx(exact.rmse_valid, rel=1e-5)
    info = streamed.extra["projection"]
    assert info["loss_exact"] is None and info["bound_sqrt_loss"] > 0
    with pytest.raises(FitConfigError, match="weights"):
        Fitter(ptrain, pvalid, weights="potfit")


def test_holdout_file_keeps_the_test_frames_out_of_the_fit(tmp_path, bulk8):
    """Streamed frames split as in memory; the test frames reach only the test projection
    (its RMSE matches the in-memory one), never the training grid."""
    import ase.io

    from mctsff.engines.holdout import holdout_scorer

    path = tmp_path / "bulk8.extxyz"
    ase.io.write(path, ase.io.read(BULK, "0:8"))
    ptrain, pvalid, ptest = ForceProjection.holdout_file(
        path,
        6.0,
        0.05,
        valid_fraction=0.25,
        test_fraction=0.25,
        seed=3,
        chunk_frames=3,
        molecules="nearest-O",
    )
    train, valid, test = bulk8.split_holdout(0.25, 0.25, seed=3)
    for p, d in ((ptrain, train), (pvalid, valid), (ptest, test)):
        assert (p.n_frames, p.n_pairs) == (d.n_frames, d.n_pairs)
    lo = {}  # train + valid shape the fit's grid
    for part in (train, valid):
        for t, tp in enumerate(part.type_pairs):
            lo[tp] = min(lo.get(tp, math.inf), float(part.r[part.pair_type == t].min()))
    assert np.allclose(
        ptrain.grid.lo, [0.05 * math.floor(lo[tp] / 0.05) for tp in train.type_pairs]
    )
    expr = "prod_q/r + c1*exp(-r/c2) - c3/r**6"
    res = Fitter(ptrain, pvalid).fit(expr)
    exact = holdout_scorer(Fitter(train, valid), test)(res)
    assert holdout_scorer(Fitter(ptrain, pvalid), ptest)(res) == pytest.approx(exact, rel=1e-5)
    # no test frames: the split of split_file
    a, b, none = ForceProjection.holdout_file(
        path, 6.0, 0.05, valid_fraction=0.25, test_fraction=0.0, seed=3, molecules="nearest-O"
    )
    c, d = ForceProjection.split_file(
        path, 6.0, 0.05, valid_fraction=0.25, seed=3, molecules="nearest-O"
    )
    assert none is None and (a.n_pairs, b.n_pairs) == (c.n_pairs, d.n_pairs)


def test_search_on_a_projection(tmp_path, bulk8):
    from mctsff.search import search

    train, valid = bulk8.split(0.25, seed=0)
    fitter = Fitter(ForceProjection.from_dataset(train, 0.05), valid)
    res = search(fitter, "pair", budget=12, seed=0, out=tmp_path / "run", workers=1)
    assert res.n_evaluations >= 12 and res.front.points
    assert (tmp_path / "run" / "potentials.png").exists()

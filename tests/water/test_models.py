"""Reference water models: published parameters through the engine, and refits."""

import json
import math

import ase.io
import numpy as np
import pytest
from ase import units

from mctsff.data import data_file, from_atoms
from mctsff.export.base import KCAL_PER_MOL
from mctsff.water.models import (
    MODEL_EXPRESSION,
    evaluate_model,
    get_model,
    model_potential,
    published_result,
    reference_lines,
    reference_model,
    refit_model,
)

K_E = 14.399645  # eV·Å/e²
DIMERS = "water_dimers_mp2_sample20.extxyz"


def _numpy_model(symbols, pos, mol, q, A, B):
    """Plain double loop: Coulomb on all intermolecular pairs + LJ (A/r^12 − B/r^6) on O–O."""
    n = len(symbols)
    e = 0.0
    f = np.zeros((n, 3))
    for i in range(n):
        for j in range(n):
            if j <= i or mol[i] == mol[j]:
                continue
            d = pos[i] - pos[j]
            r = math.sqrt(d @ d)
            u = K_E * q[symbols[i]] * q[symbols[j]] / r
            du = -K_E * q[symbols[i]] * q[symbols[j]] / r**2
            if symbols[i] == "O" and symbols[j] == "O":
                u += A / r**12 - B / r**6
                du += -12 * A / r**13 + 6 * B / r**7
            e += u
            f[i] -= du * d / r
            f[j] += du * d / r
    return e, f


@pytest.fixture(scope="module")
def frames():
    return ase.io.read(data_file(DIMERS), ":")


@pytest.fixture(scope="module")
def full(frames):
    # 20 Å: every intermolecular pair of the dimers
    return from_atoms(frames, 20.0, path=DIMERS)


def test_published_parameters():
    expr, params, fixed = reference_model("q-SPC/Fw")
    assert expr == MODEL_EXPRESSION
    eps = 0.1554252 * units.kcal / units.mol
    assert KCAL_PER_MOL == pytest.approx(0.0433641, rel=1e-6)
    assert params["prod_q[O]"] == -0.84 and params["prod_q[H]"] == 0.42
    assert params["pair_A[O-O]"] == pytest.approx(4 * eps * 3.165492**12, rel=1e-12)
    assert params["pair_B[O-O]"] == pytest.approx(4 * eps * 3.165492**6, rel=1e-12)
    assert set(fixed) == {"pair_A[H-H]", "pair_B[H-H]", "pair_A[H-O]", "pair_B[H-O]"}
    assert all(params[p] == 0.0 for p in fixed)
    # spellings and the other models
    assert get_model("qspcfw") is get_model("q_spc_fw") is get_model("Q-SPC/Fw")
    assert get_model("TIP3P").q_O == -0.834 and get_model("spc/fw").q_H == 0.41
    assert get_model("tip3p").epsilon_ev == pytest.approx(0.1520 * KCAL_PER_MOL)
    with pytest.raises(KeyError, match="q-SPC/Fw"):
        get_model("tip4p")
    with pytest.raises(ValueError, match="only H and O"):
        reference_model("tip3p", species=("C", "H", "O"))


def test_the_docstring_table_is_made_from_the_models():
    import mctsff.water.models as models

    rows = {line.split()[0]: line.split()[1:] for line in models.__doc__.splitlines() if line}
    for m in models.MODELS.values():
        values = [m.q_O, m.q_H, m.sigma_OO, m.epsilon_OO, m.r_OH, m.theta_HOH, m.k_b, m.k_theta]
        assert rows[m.name] == ["rigid" if v is None else str(v) for v in values], m.name
        assert f"- {m.name}: {m.reference}" in models.__doc__
        assert get_model(m.name.replace("/", "_").replace("-", " ").upper()) is m


@pytest.mark.parametrize("name", ["q-spcfw", "spcfw", "tip3p"])
def test_engine_equals_plain_numpy(name, frames, full):
    m = get_model(name)
    pot = model_potential(name, full.species, full.type_pairs)
    f_eng, e_eng = pot.forces(full)
    q = {"O": m.q_O, "H": m.q_H}
    for k, at in enumerate(frames):
        e, f = _numpy_model(
            at.get_chemical_symbols(), at.positions, at.arrays["mol"], q, m.lj_A, m.lj_B
        )
        sl = slice(full.frame_offsets[k], full.frame_offsets[k + 1])
        np.testing.assert_allclose(f_eng[sl], f, rtol=1e-10, atol=1e-12)
        assert e_eng[k] == pytest.approx(e, rel=1e-10, abs=1e-12)


def test_forces_are_minus_energy_gradient(frames):
    pot = model_potential("q-spcfw")
    h = 1e-5
    for at in frames[:3]:
        ds = from_atoms(at, 20.0)
        f, _ = pot.forces(ds)
        num = np.zeros_like(f)
        for i in range(len(at)):
            for c in range(3):
                e = []
                for s in (h, -h):
                    b = at.copy()
                    b.positions[i, c] += s
                    e.append(pot.forces(from_atoms(b, 20.0))[1][0])
                num[i, c] = -(e[0] - e[1]) / (2 * h)
        np.testing.assert_allclose(f, num, atol=1e-6)
        # intermolecular forces of a pair potential: each molecule's total is minus the other's
        np.testing.assert_allclose(f[:3].sum(0), -f[3:].sum(0), atol=1e-12)


def test_evaluate_and_published_result(full):
    rmse = evaluate_model("q-spcfw", full)
    ref_rms = float(np.sqrt(np.mean(full.forces**2)))
    assert 0.0 < rmse < ref_rms  # better than predicting zero force, far from exact
    train, valid = full.split(0.2, seed=0)
    pub = published_result("q-spcfw", train, valid)
    assert pub.valid and not pub.extra["fitted"]
    assert pub.score_loss == pytest.approx(evaluate_model("q-spcfw", valid))
    n_t, n_v = train.n_atoms, valid.n_atoms
    combined = math.sqrt((pub.rmse_train**2 * n_t + pub.rmse_valid**2 * n_v) / (n_t + n_v))
    assert combined == pytest.approx(rmse)


def test_refit_improves_training_loss(dimers):
    train, valid = dimers.split(0.2, seed=0)
    pub = published_result("q-spcfw", train, valid)
    res = refit_model("q-spcfw", train, valid)
    assert res.valid and res.extra["fitted"]
    assert res.rmse_train <= pub.rmse_train
    assert res.rmse_valid < pub.rmse_valid  # measured: 0.097 vs 0.155 eV/Å
    for p in res.extra["fixed"]:
        assert res.params[p] == 0.0
    assert not any(" at its " in f for f in res.flags)
    q_o, q_h = res.params["prod_q[O]"], res.params["prod_q[H]"]
    assert abs(q_o + 2 * q_h) < 1e-6  # neutral molecules
    assert res.params["pair_A[O-O]"] > 0  # still repulsive at short range
    lines = reference_lines("q-spcfw", train, valid)
    assert lines == {
        "q-SPC/Fw (published)": pytest.approx(pub.score_loss),
        "q-SPC/Fw (refit)": pytest.approx(res.score_loss),
    }


def test_cli_fit_model(capsys):
    from mctsff.cli import main

    data = str(data_file(DIMERS))
    assert main(["fit", data, "--model", "q-SPC/Fw", "--json"]) == 0
    pub = json.loads(capsys.readouterr().out)
    assert pub["expression"] == MODEL_EXPRESSION and pub["params"]["prod_q[O]"] == -0.84
    assert main(["fit", data, "--model", "q-spcfw", "--refit", "--json"]) == 0
    ref = json.loads(capsys.readouterr().out)
    assert ref["rmse_train"] <= pub["rmse_train"]
    assert set(ref["constraints"]) == {"neutral"}  # no force0 unless asked for
    assert main(["fit", data]) == 2
    assert "--expr EXPRESSION or --model NAME" in capsys.readouterr().err
    assert main(["fit", data, "--model", "tip5p"]) == 2
    assert "unknown water model" in capsys.readouterr().err


@pytest.mark.slow
def test_water_example_runs(tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / "water_dimers.py"
    spec = importlib.util.spec_from_file_location("water_example", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    data = str(data_file(DIMERS))
    summary = mod.main(["--data", data, "--budget", "4", "--time", "20", "--out", str(tmp_path)])
    ref = summary["reference"]
    assert ref["model"] == "q-SPC/Fw"
    assert ref["refit"]["rmse_train"] <= ref["published"]["rmse_train"]
    # four candidates under force0 may all be null models, which the front leaves out
    assert (tmp_path / "pareto.png").is_file() and isinstance(summary["front"], list)

"""Plain y = f(x) regression: Nguyen data, exact recovery, constants, invalid candidates, CSV."""

import math

import numpy as np
import pytest

from mctsff.expr.program import ExpressionError, Program
from mctsff.fit import FitConfigError
from mctsff.fit.regression import (
    NGUYEN,
    RegressionData,
    RegressionDataError,
    RegressionFitter,
    nguyen,
)

FORMULAS = {
    1: lambda x, y: x**3 + x**2 + x,
    2: lambda x, y: x**4 + x**3 + x**2 + x,
    3: lambda x, y: x**5 + x**4 + x**3 + x**2 + x,
    4: lambda x, y: x**6 + x**5 + x**4 + x**3 + x**2 + x,
    5: lambda x, y: np.sin(x**2) * np.cos(x) - 1,
    6: lambda x, y: np.sin(x) + np.sin(x + x**2),
    7: lambda x, y: np.log(x + 1) + np.log(x**2 + 1),
    8: lambda x, y: np.sqrt(x),
    9: lambda x, y: np.sin(x) + np.sin(y**2),
    10: lambda x, y: 2 * np.sin(x) * np.cos(y),
    11: lambda x, y: x**y,
    12: lambda x, y: x**4 - x**3 + 0.5 * y**2 - y,
}
RANGES = {7: (0.0, 2.0), 8: (0.0, 4.0), 9: (0, 1), 10: (0, 1), 11: (0, 1), 12: (0, 1)}


# ----------------------------------------------------------------------------- Nguyen
@pytest.mark.parametrize("task", range(1, 13))
def test_nguyen_matches_formula_and_truth_string(task):
    data, truth = nguyen(task, seed=3)
    two = task >= 9
    assert data.variables == (("x", "y") if two else ("x",))
    assert data.X.shape == (2 if two else 1, 20) and data.y.shape == (20,)
    lo, hi = RANGES.get(task, (-1.0, 1.0))
    assert data.X.min() >= lo and data.X.max() <= hi
    x = data.X[0]
    y = data.X[1] if two else None
    np.testing.assert_allclose(data.y, FORMULAS[task](x, y), rtol=1e-14, atol=1e-14)
    # the truth string, compiled and run by the kernels, gives the same values
    prog = Program.from_string(truth, data.variables)
    assert prog.n_constants == 0
    v, *_ = prog.evaluate(data.X, np.zeros((1, 1)), mode=0)
    np.testing.assert_allclose(v, data.y, rtol=1e-12, atol=1e-12)


def test_nguyen_seed_and_size():
    a, _ = nguyen(1, seed=0)
    b, _ = nguyen(1, seed=0)
    c, _ = nguyen(1, seed=1)
    np.testing.assert_array_equal(a.X, b.X)
    assert not np.array_equal(a.X, c.X)
    assert nguyen(8, n=50)[0].n == 50
    assert set(NGUYEN) == set(range(1, 13))
    with pytest.raises(ValueError, match="Nguyen"):
        nguyen(13)


# ----------------------------------------------------------------------------- fitting
@pytest.mark.parametrize("task", [1, 5, 8, 10, 12])
def test_exact_expressions_have_zero_error(task):
    data, truth = nguyen(task, seed=0)
    res = RegressionFitter(data).fit(truth)
    assert res.valid and res.rmse_train < 1e-10 and res.params == {}
    assert res.loss == pytest.approx(res.rmse_train**2, abs=1e-25)


def test_exact_expression_written_differently():
    data, _ = nguyen(1, seed=0)
    train, valid = data.split(0.25, seed=0)
    res = RegressionFitter(train, valid).fit("x**3+x**2+x")
    assert res.valid and res.rmse_train < 1e-10 and res.rmse_valid < 1e-10
    assert res.complexity > 0


def test_linear_constants_solved_exactly():
    data, _ = nguyen(2, seed=0)
    res = RegressionFitter(data, n_starts=1).fit("c1*x**4 + c2*x**3 + c3*x**2 + c4*x + c5")
    assert res.rmse_train < 1e-10
    want = {"c1": 1.0, "c2": 1.0, "c3": 1.0, "c4": 1.0, "c5": 0.0}
    for k, v in want.items():
        assert res.params[k] == pytest.approx(v, abs=1e-8)


def test_recovers_nonlinear_constants():
    rng = np.random.default_rng(7)
    x = rng.uniform(-2.0, 2.0, 60)
    truth = {"c1": 1.7, "c2": 0.8, "c3": 2.3}
    y = truth["c1"] * x**3 + truth["c2"] * np.sin(truth["c3"] * x)
    data = RegressionData.from_arrays(x[None, :], y, ("x",))
    fitter = RegressionFitter(data, initial={"c3": 2.0})
    res = fitter.fit("c1*x**3 + c2*sin(c3*x)")
    assert res.valid and res.rmse_train < 1e-10
    for k, v in truth.items():
        assert abs(res.params[k] - v) <= 1e-6 * abs(v), (k, res.params[k])
    # evaluate() reproduces the data with the fitted constants
    np.testing.assert_allclose(fitter.evaluate(res.expression, res.params), y, atol=1e-9)
    np.testing.assert_allclose(
        fitter.evaluate("c1*x**3 + c2*sin(c3*x)", truth, x[None, :5]), y[:5], rtol=1e-14
    )
    with pytest.raises(KeyError, match="c3"):
        fitter.evaluate("c1*x**3 + c2*sin(c3*x)", {"c1": 1.0, "c2": 1.0})


# ----------------------------------------------------------------------------- linear scaling
def test_linear_scaling_fits_scale_and_offset_of_a_constant_free_expression():
    data, _ = nguyen(10, seed=0)  # 2*sin(x)*cos(y)
    shifted = RegressionData(data.X, 2.0 * data.y - 0.5, data.variables)
    train, valid = shifted.split(0.25, seed=1)
    fitter = RegressionFitter(train, valid, linear_scaling=True)
    res = fitter.fit("sin(x)*cos(y)")
    assert res.expression == "scale*(sin(x)*cos(y)) + offset"
    assert res.extra["unscaled_expression"] == "sin(x)*cos(y)"
    assert res.params == pytest.approx({"scale": 4.0, "offset": -0.5}, abs=1e-12)
    assert res.rmse_train < 1e-12 and res.rmse_valid < 1e-12
    # the reported model is what one evaluates, and its complexity is its own
    np.testing.assert_allclose(fitter.evaluate(res.expression, res.params), train.y, atol=1e-12)
    assert res.complexity == Program.from_string(res.expression, ("x", "y")).complexity
    plain = RegressionFitter(train, valid, linear_scaling=False).fit("sin(x)*cos(y)")
    assert plain.expression == "sin(x)*cos(y)" and plain.rmse_train > 0.5


def test_linear_scaling_keeps_expressions_it_cannot_improve():
    data, _ = nguyen(1, seed=0)
    fitter = RegressionFitter(data, linear_scaling=True)
    exact = fitter.fit("x*x*x + x*x + x")
    assert exact.expression == "x*x*x + x*x + x" and exact.params == {}
    assert "unscaled_expression" not in exact.extra
    # scale and offset already present: the joint fit has nothing to add
    lin = fitter.fit("c1*(x*x*x + x*x) + c2")
    assert set(lin.params) == {"c1", "c2"}


def test_linear_scaling_refines_constants_jointly():
    x = np.linspace(0.1, 2.0, 40)
    data = RegressionData.from_arrays(x[None, :], 3.0 * np.exp(0.5 * x) + 1.0)
    res = RegressionFitter(data, linear_scaling=True).fit("exp(c*x)")
    assert res.expression == "scale*(exp(c*x)) + offset"
    assert res.params == pytest.approx({"c": 0.5, "scale": 3.0, "offset": 1.0}, rel=1e-9)
    assert res.rmse_train < 1e-10


def test_linear_scaling_names_avoid_the_expression_constants():
    x = np.linspace(0.1, 2.0, 40)
    data = RegressionData.from_arrays(x[None, :], 2.0 * x / 1.5 + 4.0)
    res = RegressionFitter(data, linear_scaling=True, bounds={"scale": (1.5, 1.5)}).fit("x/scale")
    assert res.expression == "scale_1*(x/scale) + offset"
    assert res.params["scale"] == 1.5 and res.rmse_train < 1e-10


def test_two_variable_constants_and_bounds():
    rng = np.random.default_rng(2)
    X = rng.uniform(0.1, 1.0, (2, 40))
    y = 3.0 * np.exp(-X[0] / 0.4) + 0.5 * X[1] ** 2
    data = RegressionData.from_arrays(X, y, ("x", "y"))
    res = RegressionFitter(data, n_starts=3).fit("a*exp(-x/b) + c*y**2")
    assert res.rmse_train < 1e-10
    assert res.params["a"] == pytest.approx(3.0, rel=1e-6)
    assert res.params["b"] == pytest.approx(0.4, rel=1e-6)
    assert res.params["c"] == pytest.approx(0.5, rel=1e-6)
    # a bound that excludes the truth is respected and flagged
    bounded = RegressionFitter(data, bounds={"b": (0.5, 2.0)}).fit("a*exp(-x/b) + c*y**2")
    assert 0.5 <= bounded.params["b"] <= 2.0
    assert any("b at its lower bound" in f for f in bounded.flags)
    assert bounded.rmse_train > 1e-6


@pytest.mark.parametrize("expr", ["log(x-5)", "sqrt(x-3)", "c1*log(x-5)", "c1/(x-x)"])
def test_invalid_candidates_are_flagged_not_raised(expr):
    data, _ = nguyen(1, seed=0)
    res = RegressionFitter(data).fit(expr)
    assert res.valid is False
    assert res.reason and "finite" in res.reason
    assert math.isinf(res.loss) and res.score_loss == math.inf


def test_unparsable_expression_raises():
    data, _ = nguyen(1, seed=0)
    with pytest.raises(ExpressionError):
        RegressionFitter(data).fit("x +* 2")


def test_fit_is_deterministic():
    data, _ = nguyen(6, seed=0)
    expr = "sin(a*x) + sin(b*x + c*x**2)"
    r1 = RegressionFitter(data, seed=4).fit(expr)
    r2 = RegressionFitter(data, seed=4).fit(expr)
    assert r1.params == r2.params and r1.rmse_train == r2.rmse_train
    assert r1.extra["start_losses"] == r2.extra["start_losses"]


def test_config_errors():
    data, _ = nguyen(1, seed=0)
    two, _ = nguyen(9, seed=0)
    with pytest.raises(FitConfigError, match="n_starts"):
        RegressionFitter(data, n_starts=0)
    with pytest.raises(FitConfigError, match="variables"):
        RegressionFitter(data, two)


# ----------------------------------------------------------------------------- data
def test_csv_round_trip(tmp_path):
    data, _ = nguyen(12, seed=5)
    path = tmp_path / "n12.csv"
    data.to_csv(path, target="f")
    back = RegressionData.from_csv(path, target="f")
    assert back.variables == ("x", "y")
    np.testing.assert_array_equal(back.X, data.X)
    np.testing.assert_array_equal(back.y, data.y)
    assert back.path == str(path)


def test_csv_target_column_anywhere(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("t, a ,b\n1,2,3\n\n4,5,6\n")
    d = RegressionData.from_csv(path, target="t")
    assert d.variables == ("a", "b")
    np.testing.assert_array_equal(d.y, [1.0, 4.0])
    np.testing.assert_array_equal(d.X, [[2.0, 5.0], [3.0, 6.0]])


@pytest.mark.parametrize(
    "text, pattern",
    [
        ("x,y\n1,2\n3,abc\n", r"line 3, column 2 \('y'\): not a number"),
        ("x,y\n1,2\n,4\n", r"line 3, column 1 \('x'\): missing value"),
        ("x,y\n1,2\n3,nan\n", r"line 3, column 2 .*non-finite"),
        ("x,y\n1,2\n3\n", r"line 3: 1 fields, expected 2"),
        ("x,z\n1,2\n", r"line 1: no target column 'y'"),
        ("", r"empty file"),
        ("x,y\n", r"no data rows"),
    ],
)
def test_bad_csv_messages(tmp_path, text, pattern):
    path = tmp_path / "bad_data.csv"
    path.write_text(text)
    with pytest.raises(RegressionDataError, match=pattern) as info:
        RegressionData.from_csv(path)
    assert "bad_data.csv" in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(RegressionDataError, match="nope.csv"):
        RegressionData.from_csv(tmp_path / "nope.csv")


def test_from_arrays_validation():
    with pytest.raises(RegressionDataError, match="names"):
        RegressionData.from_arrays(np.ones((2, 3)), np.ones(3), ("x",))
    with pytest.raises(RegressionDataError, match="samples"):
        RegressionData.from_arrays(np.ones((1, 3)), np.ones(4), ("x",))
    with pytest.raises(RegressionDataError, match="finite"):
        RegressionData.from_arrays(np.array([[1.0, np.nan]]), np.ones(2), ("x",))
    d = RegressionData.from_arrays(np.arange(4.0), np.arange(4.0), ("x",))
    assert d.X.shape == (1, 4) and d.X.dtype == np.float64


def test_split_deterministic_and_disjoint():
    data, _ = nguyen(9, seed=0, n=50)
    a_tr, a_va = data.split(0.2, seed=11)
    b_tr, b_va = data.split(0.2, seed=11)
    np.testing.assert_array_equal(a_tr.X, b_tr.X)
    np.testing.assert_array_equal(a_va.y, b_va.y)
    assert a_tr.n == 40 and a_va.n == 10
    # the two parts partition the rows
    both = np.sort(np.concatenate([a_tr.y, a_va.y]))
    np.testing.assert_array_equal(both, np.sort(data.y))
    c_tr, _ = data.split(0.2, seed=12)
    assert not np.array_equal(c_tr.y, a_tr.y)
    same, none = data.split(0.0)
    assert same is data and none is None
    with pytest.raises(RegressionDataError, match="valid_fraction"):
        data.split(1.0)

"""Tests of mctsff.pareto."""

from __future__ import annotations

import csv
import math

from mctsff.pareto import ParetoFront
from mctsff.result import FitResult


def res(expr: str, complexity: int, loss: float, valid_loss: float = math.nan, **kw) -> FitResult:
    return FitResult(expr, complexity=complexity, rmse_train=loss, rmse_valid=valid_loss, **kw)


def test_dominance_logic():
    f = ParetoFront()
    assert f.update(res("a", 5, 1.0))
    assert f.update(res("b", 3, 2.0))  # simpler, worse: both stay
    assert f.update(res("c", 8, 0.5))
    assert [p.expression for p in f.points] == ["b", "a", "c"]
    assert not f.update(res("d", 6, 1.5))  # dominated by a
    assert not f.update(res("e", 5, 1.0))  # exact tie: keep a
    assert f.update(res("f", 5, 0.9))  # same complexity, lower loss: replaces a
    assert [p.expression for p in f.points] == ["b", "f", "c"]
    assert f.update(res("g", 2, 0.4))  # dominates everything
    assert [p.expression for p in f.points] == ["g"]
    assert len(f) == 1 and "g" in f


def test_front_is_monotone_and_uses_score_loss():
    f = ParetoFront()
    assert f.update(res("train-good-valid-bad", 3, 0.1, valid_loss=5.0))
    assert f.update(res("valid-good", 4, 1.0, valid_loss=0.5))
    pts = f.points
    assert [p.complexity for p in pts] == sorted(p.complexity for p in pts)
    losses = [p.score_loss for p in pts]
    assert losses == sorted(losses, reverse=True)
    assert ParetoFront().dominates(res("x", 1, 0.1), res("y", 2, 0.1))
    assert not ParetoFront().dominates(res("x", 1, 0.1), res("y", 1, 0.1))


def test_invalid_never_enters():
    f = ParetoFront()
    assert not f.update(FitResult.invalid("exp(exp(r))", "overflow", 4))
    assert not f.update(res("nan", 2, math.nan))
    assert len(f) == 0 and f.best() is None


def test_best():
    f = ParetoFront([res("a", 3, 2.0), res("b", 5, 1.0), res("c", 9, 0.1)])
    assert f.best().expression == "c"
    assert f.best(max_complexity=6).expression == "b"
    assert f.best(max_complexity=1) is None


def test_json_round_trip(tmp_path):
    f = ParetoFront(
        [
            res("prod_c1/r", 3, 2.0, params={"prod_c1[O]": -0.8, "prod_c1[H]": 0.4}),
            res("prod_c1/r+c1/r**12", 7, 0.5, valid_loss=0.6, flags=["bound"]),
        ]
    )
    path = tmp_path / "front.json"
    f.to_json(path)
    g = ParetoFront.from_json(path)
    assert [p.to_dict() for p in g.points] == [p.to_dict() for p in f.points]
    assert math.isnan(g.points[0].rmse_valid)
    assert g.points[0].params == {"prod_c1[O]": -0.8, "prod_c1[H]": 0.4}


def test_csv(tmp_path):
    f = ParetoFront([res("a", 3, 2.0, params={"c1": 1.5}), res("b", 5, 1.0)])
    path = tmp_path / "front.csv"
    f.to_csv(path)
    rows = list(csv.DictReader(path.open()))
    assert [r["expression"] for r in rows] == ["a", "b"]
    assert float(rows[0]["loss"]) == 2.0 and rows[0]["params"] == '{"c1": 1.5}'


def test_plot_writes_png(tmp_path):
    f = ParetoFront([res("a", 3, 2.0), res("b", 5, 0.1), res("c", 9, 0.0)])
    path = f.plot(tmp_path / "front.png", reference_lines={"TIP3P": 0.5, "SPC/E": 0.4})
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    empty = ParetoFront().plot(tmp_path / "empty.png")
    assert empty.exists()


def test_loss_floor_keeps_noise_level_exact_fits_out():
    f = ParetoFront(loss_floor=1e-10)
    assert f.update(res("exact", 10, 8e-14))
    assert not f.update(res("exact_plus_junk", 14, 4e-14))  # rounding noise, not a gain
    assert f.update(res("simpler_worse", 5, 0.3))
    assert [p.expression for p in f.points] == ["simpler_worse", "exact"]

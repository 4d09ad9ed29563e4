"""Tests of mctsff.engines.pareto."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from mctsff.engines.pareto import ParetoFront
from mctsff.fit.result import FitResult


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
    assert float(rows[0]["score_loss"]) == 2.0 and rows[0]["params"] == '{"c1": 1.5}'


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


# ----------------------------------------------------------------------------- selection
def test_knee_rule_takes_the_largest_log_drop_per_complexity_within_the_factor():
    from mctsff.engines.pareto import KNEE_LOSS_FACTOR, knee_index

    cx = [3, 7, 15, 30]
    loss = [1.0, 0.21, 0.2, 0.19]
    # 7, 15 and 30 are within sqrt(1.5) of 0.19; 7 gains most per unit complexity
    assert knee_index(cx, loss, null_loss=2.0) == 1
    # the simplest member, measured from U = 0, wins when it is within the factor
    assert knee_index([3, 20], [0.2, 0.19], null_loss=2.0) == 0
    # without U = 0 the simplest member scores 0 (PySR's convention)
    assert knee_index([3, 20], [0.2, 0.19]) == 1
    # a member outside the factor is never chosen, however steep its drop
    assert 1.0**2 > KNEE_LOSS_FACTOR * 0.5**2
    assert knee_index([3, 40], [1.0, 0.5], null_loss=2.0) == 1
    assert knee_index([3, 4], [1.0, 0.5], null_loss=2.0, eligible=[True, False]) == 0
    assert knee_index([], []) is None


def test_selected_member_follows_the_knee_rule_not_the_lowest_loss():
    f = ParetoFront(
        [res("a", 3, 1.0), res("b", 7, 0.21), res("c", 15, 0.2), res("d", 30, 0.19)],
        null_loss=2.0,
    )
    assert f.best().expression == "d"
    assert f.selected().expression == "b"
    assert f.selected(eligible=lambda p: p.expression != "b").expression == "c"


def test_resolved_is_a_paired_test_over_frames():
    from mctsff.engines.pareto import resolved

    worse = np.array([2.0, 2.2, 1.8, 2.1])
    assert resolved(worse - 1.0, worse)  # the same gain on every frame
    assert not resolved(worse, worse)  # no gain
    noisy = worse + np.array([-1.5, 1.2, -1.1, 1.6])  # the same mean, a spread far larger
    assert resolved(noisy, worse + 0.0) is False
    assert resolved(np.array([1.0]), np.array([1.5]))  # one frame: any gain


def test_front_keeps_only_members_the_frames_resolve():
    """Null models and unresolved additions stay off; a simpler member evicts them."""
    rng = np.random.default_rng(0)
    null = 1.0 + rng.random(20)
    errors = {
        "null_like": null * (1 - 1e-6) + 1e-4 * rng.standard_normal(20),  # ~ U = 0
        "good": 0.2 * null,
        "good_plus_junk": 0.2 * null + 0.01 * rng.standard_normal(20),  # lower on average
        "better": 0.05 * null,
    }
    errors["good_plus_junk"] -= errors["good_plus_junk"].mean() - 0.2 * null.mean() + 1e-4
    n_comp = 60

    def member(name, cx):
        return res(name, cx, 0.0, valid_loss=math.sqrt(errors[name].sum() / n_comp))

    f = ParetoFront(
        frame_errors=lambda p: errors[p.expression], null_frame_errors=null, null_loss=1.0
    )
    assert not f.update(member("null_like", 2))  # does not beat U = 0 resolvably
    assert f.update(member("good", 5))
    assert not f.update(member("good_plus_junk", 9))  # lower loss, but not resolved
    assert f.update(member("better", 12))
    assert [p.expression for p in f.points] == ["good", "better"]
    # without frame errors only dominance decides
    g = ParetoFront([member("null_like", 2), member("good", 5), member("good_plus_junk", 9)])
    assert len(g) == 3


def test_plot_draws_the_null_line_and_test_points(tmp_path):
    f = ParetoFront([res("a", 3, 2.0, 2.1, rmse_test=2.2), res("b", 5, 0.1, 0.12)], null_loss=3.0)
    path = f.plot(tmp_path / "front.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    f.test_rmse = lambda p: 7.0
    f.score_test()
    assert [p.rmse_test for p in f.points] == [7.0, 7.0]
    f.to_csv(tmp_path / "front.csv")
    rows = list(csv.DictReader((tmp_path / "front.csv").open()))
    assert [float(r["rmse_test"]) for r in rows] == [7.0, 7.0]
    assert [r["selected"] for r in rows] == ["0", "1"]


def test_a_member_held_off_by_a_simpler_one_comes_back_when_that_one_leaves():
    """The front is the archive filtered by the rule, not the order results came in."""
    per_frame = {"X": 0.500, "B": 0.496, "A": 0.505}  # B gains 0.8 % on X, 1.8 % on A
    cx = {"X": 15, "B": 24, "A": 9}

    def member(name):
        return res(name, cx[name], 0.0, valid_loss=per_frame[name])

    f = ParetoFront(
        frame_errors=lambda p: np.full(10, per_frame[p.expression]),
        null_frame_errors=np.ones(10),
    )
    assert f.update(member("X"))
    assert not f.update(member("B"))  # within 1 % of X
    assert [p.expression for p in f.archive] == ["X", "B"]
    assert f.update(member("A"))  # X gains under 1 % on A: X leaves, B comes back
    assert [p.expression for p in f.points] == ["A", "B"]
    assert [p.expression for p in f.archive] == ["A", "X", "B"]


@pytest.mark.slow  # a search through the CLI with its plots: 2.5 s even at --budget 4
def test_a_searchs_pareto_json_reads_back_with_its_potentials(tmp_path, capsys):
    """``ParetoFront.from_json`` reads the file a search writes; each member carries the
    atom types, type pairs, cutoff and scheme, so ``.potential()`` gives the shifted
    potential, zero at the cutoff like the fit."""
    from mctsff.cli import main
    from mctsff.data import data_file

    out = tmp_path / "run"
    data = str(data_file("water_dimers_mp2_sample20.extxyz"))
    # (24 fits: with the term proposals on, the first 12 on these 4 validation frames can
    # leave no member that beats U = 0 by more than the frames resolve: an empty front)
    quick = ["--budget", "24", "--quiet", "--no-constraints", "--starts", "1", "--cutoff", "7"]
    assert main(["search", data, "--out", str(out), *quick]) == 0
    capsys.readouterr()
    front = ParetoFront.from_json(out / "pareto.json")
    assert front.points
    for p in front.points:
        assert p.species == ("H", "O") and ("H", "O") in p.type_pairs
        assert p.cutoff == 7.0 and p.cutoff_scheme == "shifted-force"
        pot = p.potential()
        assert abs(float(pot.energy(np.array([7.0]), ("O", "O"))[0])) < 1e-9
        assert np.isfinite(pot.energy(np.array([3.0]), ("H", "O"))).all()
    with pytest.raises(ValueError, match="no atom types"):
        FitResult("c1*x", params={"c1": 1.0}).potential()


def test_math_label_tells_apart_constants_of_two_rules_with_one_stem():
    """``prod_c1`` and ``geom_c1`` are two constants: the label and the sympy form must not
    write both as c1 (they did: ``c1^A c1^B/r + sqrt(c1^A c1^B)/r^12``, one symbol)."""
    from mctsff.engines.pareto import math_label
    from mctsff.expr.params import sympy_expression
    from mctsff.expr.program import Program

    label = math_label("geom_c1/r**12 + prod_c1/r")
    assert r"c^{A}_{1} c^{B}_{1} / r" in label
    assert r"\sqrt{\tilde{c}^{A}_{1} \tilde{c}^{B}_{1}}" in label
    expr = sympy_expression(Program.from_string("geom_c1/r**12 + prod_c1/r + arith_c1*exp(-r/c1)"))
    names = {s.name for s in expr.free_symbols}
    assert names == {"r", "c1", "c1^A", "c1^B", "ctilde1^A", "ctilde1^B", "cbar1^A", "cbar1^B"}
    # a stem no other rule shares keeps its plain letter
    assert "q^{A} q^{B}" in math_label("prod_q/r + geom_e/r**12")

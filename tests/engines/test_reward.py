"""Tests of mctsff.engines.reward."""

from __future__ import annotations

import math

import pytest

from mctsff.engines.reward import Reward, SPLReward, TradeoffReward, get_reward
from mctsff.fit.result import FitResult


def res(loss: float, complexity: int = 5, valid: bool = True, valid_loss: float = math.nan):
    return FitResult(
        "c1*r", complexity=complexity, valid=valid, rmse_train=loss, rmse_valid=valid_loss
    )


def test_spl_values():
    r = SPLReward()
    assert r(res(0.0, 0)) == 1.0
    assert r(res(1.0, 0)) == pytest.approx(0.5)
    assert r(res(0.0, 10)) == pytest.approx(0.9999**10)
    assert SPLReward(eta=0.5, scale=0.1)(res(0.1, 2)) == pytest.approx(0.25 * 0.5)
    # lower loss and lower complexity are better
    assert r(res(0.1, 5)) > r(res(0.2, 5))
    assert SPLReward(eta=0.9)(res(0.1, 5)) > SPLReward(eta=0.9)(res(0.1, 6))


def test_uses_validation_loss_when_known():
    r = SPLReward(eta=1.0)
    assert r(res(0.0, valid_loss=1.0)) == pytest.approx(0.5)
    assert r(res(1.0, valid_loss=math.nan)) == pytest.approx(0.5)


def test_invalid_and_nonfinite_give_zero():
    for reward in (SPLReward(), TradeoffReward()):
        assert reward(res(0.1, valid=False)) == 0.0
        assert reward(res(math.inf)) == 0.0
        assert reward(res(math.nan)) == 0.0
        assert reward(FitResult.invalid("exp(exp(r))", "overflow")) == 0.0


def test_tradeoff_values_and_clip():
    r = TradeoffReward(alpha=0.01, loss_scale=0.5)
    assert r(res(0.0, 10)) == pytest.approx(0.9)
    assert r(res(0.5, 10)) == pytest.approx(0.4)
    assert r(res(0.5, 100)) == 0.0
    assert 0.0 <= r(res(123.0, 3)) <= 1.0


def test_parameter_validation():
    with pytest.raises(ValueError):
        SPLReward(eta=0.0)
    with pytest.raises(ValueError):
        SPLReward(scale=-1)
    with pytest.raises(ValueError):
        TradeoffReward(alpha=-0.1)
    with pytest.raises(ValueError):
        TradeoffReward(loss_scale=0)


def test_get_reward():
    assert isinstance(get_reward(), SPLReward)
    assert get_reward("spl", eta=0.9) == SPLReward(eta=0.9)
    assert isinstance(get_reward("Tradeoff", alpha=0.1), TradeoffReward)

    def custom(result: FitResult) -> float:
        return 1.0 / (1.0 + result.score_loss)

    assert get_reward(custom) is custom
    assert isinstance(custom, Reward) and isinstance(SPLReward(), Reward)
    with pytest.raises(ValueError, match="unknown reward"):
        get_reward("nope")
    with pytest.raises(TypeError):
        get_reward(3.0)
    with pytest.raises(TypeError):
        get_reward(custom, eta=0.5)

"""Rewards: map a :class:`~mctsff.fit.result.FitResult` to a number in [0, 1].

The search maximises the reward; it sees only this number.  A reward is any
callable ``reward(result) -> float`` (:class:`Reward` protocol).  Invalid results
and non-finite losses always get 0.  Losses are read from
:attr:`FitResult.score_loss` (validation RMSE when known, else training RMSE);
for force matching they are in eV/Å, hence the ``scale`` parameters: a loss
equal to ``scale`` halves the accuracy factor.

Built-ins
---------
``"spl"`` -> :class:`SPLReward`
    ``eta**complexity / (1 + loss/scale)`` (Sun et al., ICLR 2023).
``"tradeoff"`` -> :class:`TradeoffReward`
    ``max(0, 1/(1 + loss/loss_scale) - alpha*complexity)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from mctsff.fit.result import FitResult

__all__ = ["REWARDS", "Reward", "SPLReward", "TradeoffReward", "get_reward"]


@runtime_checkable
class Reward(Protocol):
    """Anything callable as ``reward(result) -> float`` (higher is better, ideally in [0, 1])."""

    def __call__(self, result: FitResult) -> float: ...


def _loss(result: FitResult) -> float | None:
    if not result.valid:
        return None
    loss = result.score_loss
    if loss is None or not math.isfinite(loss) or loss < 0:
        return None
    return float(loss)


@dataclass(frozen=True, slots=True)
class SPLReward:
    """SPL reward ``eta**complexity / (1 + loss/scale)``.

    Parameters
    ----------
    eta
        Parsimony discount per unit of complexity (0 < eta <= 1); 0.9999 is SPL's.
    scale
        Loss unit: the accuracy factor is 1/2 at ``loss == scale``.

    Examples
    --------
    >>> from mctsff.fit.result import FitResult
    >>> SPLReward(eta=0.5)(FitResult("x", complexity=1, rmse_train=0.0))
    0.5
    """

    eta: float = 0.9999
    scale: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.eta <= 1:
            raise ValueError(f"eta must be in (0, 1], got {self.eta}")
        if not self.scale > 0:
            raise ValueError(f"scale must be positive, got {self.scale}")

    def __call__(self, result: FitResult) -> float:
        loss = _loss(result)
        if loss is None:
            return 0.0
        return self.eta ** max(result.complexity, 0) / (1.0 + loss / self.scale)


@dataclass(frozen=True, slots=True)
class TradeoffReward:
    """Linear loss-complexity trade-off ``max(0, 1/(1 + loss/loss_scale) - alpha*complexity)``.

    The accuracy term is 1 for a perfect fit and 1/2 at ``loss == loss_scale``;
    every unit of complexity costs ``alpha`` (so a term worth adding must lower
    the loss enough to raise the accuracy term by more than ``alpha`` times its
    complexity).  The clip makes over-complex candidates worth 0.

    Parameters
    ----------
    alpha
        Cost per unit of complexity (``>= 0``).
    loss_scale
        Loss unit (``> 0``).
    """

    alpha: float = 0.01
    loss_scale: float = 1.0

    def __post_init__(self) -> None:
        if not self.alpha >= 0:
            raise ValueError(f"alpha must be >= 0, got {self.alpha}")
        if not self.loss_scale > 0:
            raise ValueError(f"loss_scale must be positive, got {self.loss_scale}")

    def __call__(self, result: FitResult) -> float:
        loss = _loss(result)
        if loss is None:
            return 0.0
        value = 1.0 / (1.0 + loss / self.loss_scale) - self.alpha * max(result.complexity, 0)
        return max(0.0, value)


#: Built-in rewards by name.
REWARDS: dict[str, type] = {"spl": SPLReward, "tradeoff": TradeoffReward}


def get_reward(reward: str | Callable[[FitResult], float] | None = None, **kwargs) -> Reward:
    """Resolve a reward given by name (``"spl"``, ``"tradeoff"``) or as a callable.

    Parameters
    ----------
    reward
        Name, callable or ``None`` (``"spl"``).
    **kwargs
        Parameters of a named reward (``eta=``, ``scale=``, ``alpha=``, ``loss_scale=``).
    """
    if reward is None:
        reward = "spl"
    if isinstance(reward, str):
        try:
            cls = REWARDS[reward.lower()]
        except KeyError:
            raise ValueError(f"unknown reward {reward!r}; choose from {sorted(REWARDS)}") from None
        return cls(**kwargs)
    if not callable(reward):
        raise TypeError(f"reward must be a name or a callable, got {type(reward).__name__}")
    if kwargs:
        raise TypeError("keyword arguments are only accepted with a reward name")
    return reward

"""Pareto front of fitted expressions in (complexity, loss).

The loss is :attr:`FitResult.score_loss` (validation RMSE when known, else
training RMSE).  A result enters the front when no member has both lower-or-equal
complexity and lower-or-equal loss; members it dominates leave.  At equal
complexity the lower loss wins; an exact tie keeps the member already there.
Invalid results and non-finite losses never enter.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable
from pathlib import Path

from mctsff.result import FitResult

__all__ = ["ParetoFront"]


def _loss(result: FitResult) -> float:
    return float(result.score_loss)


class ParetoFront:
    """Non-dominated results in (complexity, loss), both minimised.

    Parameters
    ----------
    results
        Optional initial results (fed through :meth:`update`).
    loss_floor
        Losses at or below this value count as equal (exact fits differ only by
        rounding noise, which must not let a more complex exact form in).

    Examples
    --------
    >>> from mctsff.result import FitResult
    >>> front = ParetoFront()
    >>> front.update(FitResult("c1*x", complexity=3, rmse_train=0.5))
    True
    >>> front.update(FitResult("c1*x+c2", complexity=5, rmse_train=0.7))  # dominated
    False
    >>> [p.expression for p in front.points]
    ['c1*x']
    """

    def __init__(self, results: Iterable[FitResult] = (), loss_floor: float = 0.0) -> None:
        self._points: list[FitResult] = []
        self.loss_floor = float(loss_floor)
        for r in results:
            self.update(r)

    @property
    def points(self) -> list[FitResult]:
        """Members sorted by increasing complexity (hence decreasing loss)."""
        return list(self._points)

    def __len__(self) -> int:
        return len(self._points)

    def __iter__(self):
        return iter(list(self._points))

    def __contains__(self, expression: object) -> bool:
        return any(p.expression == expression for p in self._points)

    def _l(self, result: FitResult) -> float:
        return max(_loss(result), self.loss_floor)

    def dominates(self, a: FitResult, b: FitResult) -> bool:
        """True when ``a`` is no worse than ``b`` in both objectives and better in one."""
        la, lb = self._l(a), self._l(b)
        return (
            a.complexity <= b.complexity and la <= lb and (a.complexity < b.complexity or la < lb)
        )

    def update(self, result: FitResult) -> bool:
        """Offer a result; return True when it joined the front."""
        if not result.valid or not math.isfinite(_loss(result)):
            return False
        loss = self._l(result)
        for p in self._points:
            if p.complexity <= result.complexity and self._l(p) <= loss:
                return False  # dominated or an exact tie: keep the member
        self._points = [p for p in self._points if not self.dominates(result, p)]
        self._points.append(result)
        self._points.sort(key=lambda p: (p.complexity, _loss(p)))
        return True

    def best(self, max_complexity: float | None = None) -> FitResult | None:
        """Lowest-loss member with complexity ``<= max_complexity`` (any if ``None``)."""
        pts = [p for p in self._points if max_complexity is None or p.complexity <= max_complexity]
        return min(pts, key=_loss) if pts else None

    # ------------------------------------------------------------------ files
    def to_dict(self) -> dict:
        """JSON-friendly representation."""
        return {"points": [p.to_dict() for p in self._points]}

    def to_json(self, path: str | Path) -> None:
        """Write the front to a JSON file."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n")

    @classmethod
    def from_json(cls, path: str | Path) -> ParetoFront:
        """Read a front written by :meth:`to_json`."""
        data = json.loads(Path(path).read_text())
        front = cls()
        front._points = [FitResult.from_dict(d) for d in data["points"]]
        front._points.sort(key=lambda p: (p.complexity, _loss(p)))
        return front

    def to_csv(self, path: str | Path) -> None:
        """Write one row per member: complexity, loss, RMSEs, expression, params (JSON)."""
        with open(path, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(
                ["complexity", "loss", "rmse_train", "rmse_valid", "expression", "params"]
            )
            for p in self._points:
                writer.writerow(
                    [
                        p.complexity,
                        repr(_loss(p)),
                        repr(float(p.rmse_train)),
                        repr(float(p.rmse_valid)),
                        p.expression,
                        json.dumps({k: float(v) for k, v in p.params.items()}),
                    ]
                )

    def plot(
        self,
        path: str | Path,
        reference_lines: dict[str, float] | None = None,
        *,
        title: str | None = None,
        ylabel: str = "loss (RMSE)",
    ) -> Path:
        """Plot loss (log scale) against complexity as a step front and save it (Agg, no pyplot).

        Parameters
        ----------
        path
            Output image (format from the suffix, e.g. ``.png``).
        reference_lines
            Label -> loss of reference models, drawn as dashed horizontal lines.
        title, ylabel
            Axis decorations.
        """
        from matplotlib.figure import Figure  # no pyplot: no global backend state

        fig = Figure(figsize=(6.0, 4.0), dpi=120)
        ax = fig.add_subplot()
        if self._points:
            xs = [p.complexity for p in self._points]
            positive = [_loss(p) for p in self._points if _loss(p) > 0]
            floor = min(positive) / 10 if positive else 1e-12  # zero loss on a log axis
            ys = [max(_loss(p), floor) for p in self._points]
            ax.step(xs, ys, where="post", color="C0", lw=1.5, label="Pareto front")
            ax.plot(xs, ys, "o", color="C0", ms=4)
        for i, (label, value) in enumerate((reference_lines or {}).items()):
            if value is not None and math.isfinite(value) and value > 0:
                color = f"C{(i + 1) % 10}"
                ax.axhline(value, ls="--", lw=1.0, color=color, label=label)
                ax.annotate(
                    label,
                    xy=(0.99, value),
                    xycoords=("axes fraction", "data"),
                    ha="right",
                    va="bottom",
                    fontsize="small",
                    color=color,
                )
        ax.set_yscale("log")
        ax.set_xlabel("complexity")
        ax.set_ylabel(ylabel)
        if title:
            ax.set_title(title)
        if self._points or reference_lines:
            ax.legend(fontsize="small")
        fig.tight_layout()
        fig.savefig(path)
        return Path(path)

    def __repr__(self) -> str:
        return f"ParetoFront({len(self._points)} points)"

"""Pareto front of fitted expressions in (complexity, loss), and the choice of one member.

The loss is :attr:`FitResult.score_loss` (validation RMSE when known, else
training RMSE).  A result enters the front when no member has both lower-or-equal
complexity and lower-or-equal loss; members it dominates leave.  At equal
complexity the lower loss wins; an exact tie keeps the member already there.
Invalid results and non-finite losses never enter.

**Resolution rule (front hygiene).**  Given per-frame errors (``frame_errors``: for a
result, the sum of squared force errors of each validation frame), a result enters
only if it beats U = 0 (``null_frame_errors``) and every simpler member by more than
the data can resolve (:func:`resolved`): with ``d_f`` the per-frame error of the
simpler model minus that of the result, the total ``sum(d)`` must exceed
:data:`MIN_RELATIVE_GAIN` of the simpler model's total error, and be positive in at
least :data:`RESOLUTION_LEVEL` of a paired bootstrap over the frames.  The front keeps
every non-dominated result in an archive and shows the members the rule keeps, walking
from the simplest, so a member held off by a simpler one that later leaves comes back.
Without ``frame_errors`` only dominance decides.

**Selection (the knee rule).**  :func:`knee_index` and :meth:`ParetoFront.selected`
choose the member a user gets by default, in the spirit of PySR's
``model_selection="best"``: among the members whose validation mean square error is
within :data:`KNEE_LOSS_FACTOR` of the lowest (RMSE within its square root), the one
with the largest drop of log loss per unit complexity relative to the next-simpler
member (U = 0 at complexity 0 for the simplest, where its loss is known); ties go to
the simpler member.
"""

from __future__ import annotations

import csv
import functools
import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from mctsff.fit.constraints import CONSTRAINT_TOL, MET
from mctsff.fit.result import FitResult
from mctsff.runfolder import read_front_points, read_null_rmse

__all__ = [
    "KNEE_LOSS_FACTOR",
    "MIN_RELATIVE_GAIN",
    "RESOLUTION_LEVEL",
    "ParetoFront",
    "knee_index",
    "math_label",
    "resolved",
    "wall_failed",
]

#: The knee rule considers members whose validation mean square error is at most this
#: factor times the lowest one (PySR's ``model_selection="best"`` uses 1.5 on its loss);
#: on the RMSE the factor is its square root, about 1.22.
KNEE_LOSS_FACTOR = 1.5

#: Share of the paired bootstrap resamples of the validation frames in which a front
#: member must beat U = 0 and every simpler member (:func:`resolved`): one-sided 95 %.
RESOLUTION_LEVEL = 0.95

#: Smallest relative fall of the total validation squared error (1 %, about 0.5 % of the
#: RMSE) that lets a member beat U = 0 or a simpler member: below it a gain, however
#: consistent over the frames, is not worth a more complex potential.
MIN_RELATIVE_GAIN = 0.01

#: Bootstrap resamples of the frames in :func:`resolved`.
N_BOOTSTRAP = 2000


def resolved(
    better: np.ndarray,
    worse: np.ndarray,
    level: float = RESOLUTION_LEVEL,
    min_gain: float = MIN_RELATIVE_GAIN,
) -> bool:
    """Whether per-frame errors ``better`` beat ``worse`` by more than the frames resolve.

    Two conditions, both needed: the total error falls by more than ``min_gain`` of the
    simpler model's, and a paired bootstrap over the frames (:data:`N_BOOTSTRAP`
    resamples of the frames with replacement, a fixed seed, so the answer is
    reproducible) finds the total lower in at least ``level`` of the resamples.

    Parameters
    ----------
    better, worse
        Per-frame error sums (same frames, same order) of the candidate and of the
        simpler model it must beat.
    level
        Share of the bootstrap resamples in which the candidate must be better.
    min_gain
        Smallest relative fall of the total error that counts.

    Examples
    --------
    >>> import numpy as np
    >>> resolved(np.array([1.0, 1.0, 1.0]), np.array([2.0, 2.1, 1.9]))
    True
    >>> resolved(np.array([1.0, 1.0, 1.0]), np.array([1.2, 0.5, 0.9]))  # one frame gains
    False
    """
    b = np.asarray(better, dtype=np.float64)
    w = np.asarray(worse, dtype=np.float64)
    d = w - b
    total = float(w.sum())
    if d.size == 0 or not (np.all(np.isfinite(d)) and total > 0):
        return False
    if float(d.sum()) <= min_gain * total:
        return False
    idx = _bootstrap_index(d.size)
    return float(np.mean(d[idx].sum(axis=1) > 0)) >= level


@functools.lru_cache(maxsize=8)
def _bootstrap_index(n: int) -> np.ndarray:
    """The resamples of :func:`resolved` for ``n`` frames (fixed seed, computed once)."""
    idx = np.random.default_rng(0).integers(0, n, size=(N_BOOTSTRAP, n))
    idx.flags.writeable = False
    return idx


def knee_index(
    complexities: list[float],
    losses: list[float],
    *,
    null_loss: float | None = None,
    factor: float = KNEE_LOSS_FACTOR,
    eligible: list[bool] | None = None,
    floor: float = 0.0,
) -> int | None:
    """Index of the member the knee rule selects (see the module docstring).

    Parameters
    ----------
    complexities, losses
        A front sorted by increasing complexity; the losses are RMSEs (validation
        where known).
    null_loss
        RMSE of U = 0 on the same frames: the predecessor of the simplest member at
        complexity 0 (without it the simplest member scores 0).
    factor
        Members whose squared loss is within ``factor`` of the lowest are candidates.
    eligible
        Optional mask: members that may be selected (all by default); the others still
        count as the next-simpler member of a candidate.
    floor
        Losses below ``floor`` count as ``floor`` (the front's loss floor).

    Returns
    -------
    int or None
        ``None`` when no member is eligible with a finite loss.

    Examples
    --------
    >>> knee_index([3, 7, 15], [1.0, 0.2, 0.19], null_loss=2.0)  # 15 gains too little
    1
    """
    n = len(losses)
    tiny = max(float(floor), 1e-300)
    loss = [max(float(x), tiny) if math.isfinite(float(x)) else math.inf for x in losses]
    ok = [i for i in range(n) if math.isfinite(loss[i]) and (eligible is None or eligible[i])]
    if not ok:
        return None
    lmin = min(loss[i] for i in ok)
    candidates = [i for i in ok if loss[i] ** 2 <= factor * lmin**2]

    def score(i: int) -> float:
        if i == 0:
            if null_loss is None or not math.isfinite(null_loss) or complexities[0] <= 0:
                return 0.0
            prev_loss, prev_cx = max(float(null_loss), tiny), 0.0
        else:
            prev_loss, prev_cx = loss[i - 1], float(complexities[i - 1])
        dc = float(complexities[i]) - prev_cx
        if not math.isfinite(prev_loss) or dc <= 0:
            return 0.0
        return (math.log(prev_loss) - math.log(loss[i])) / dc

    return max(candidates, key=lambda i: (score(i), -complexities[i]))


#: Start of the flag a fit gives a member whose repulsive wall failed (mctsff.fit).
WALL_FLAG = "constraint wall not satisfied"
#: A wall residual above this fails (the fit's flag threshold at the default tolerance).
WALL_TOL = MET * CONSTRAINT_TOL


def wall_failed(flags: Iterable[str], constraints: dict[str, float] | None = None) -> bool:
    """Whether a fit's record shows its repulsive wall failed: a :data:`WALL_FLAG` flag,
    or a ``wall`` residual above :data:`WALL_TOL` (or not finite).  Such a member is never
    selected (:meth:`ParetoFront.selected`) and ``mctsff export`` refuses it."""
    if any(str(f).startswith(WALL_FLAG) for f in flags):
        return True
    if not constraints or "wall" not in constraints:
        return False
    v = constraints["wall"]  # None: a non-finite residual written to JSON
    return not (isinstance(v, int | float) and not isinstance(v, bool) and v <= WALL_TOL)


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
    frame_errors
        Optional ``result -> per-frame error sums`` (or ``None`` when unknown) on the
        validation frames; turns on the resolution rule (module docstring).
    null_frame_errors
        Per-frame error sums of U = 0 on the same frames: every member must beat it.
    null_loss
        RMSE of U = 0 (validation): drawn on :meth:`plot` and used by :meth:`selected`.
    resolution_level
        Bootstrap level of the resolution rule (:data:`RESOLUTION_LEVEL`).
    test_rmse
        Optional ``result -> RMSE on test data`` that :meth:`score_test` writes into
        each member's ``rmse_test``; nothing in the front or its selection reads it.
    admit
        Optional ``result -> bool``: a result it rejects never enters (the search's rule
        against parameters at a bound with no effect, :class:`~mctsff.engines.holdout.IdleTerms`).
        Asked only of results that no member dominates.

    Examples
    --------
    >>> from mctsff.fit.result import FitResult
    >>> front = ParetoFront()
    >>> front.update(FitResult("c1*x", complexity=3, rmse_train=0.5))
    True
    >>> front.update(FitResult("c1*x+c2", complexity=5, rmse_train=0.7))  # dominated
    False
    >>> [p.expression for p in front.points]
    ['c1*x']
    """

    def __init__(
        self,
        results: Iterable[FitResult] = (),
        loss_floor: float = 0.0,
        *,
        frame_errors: Callable[[FitResult], np.ndarray | None] | None = None,
        null_frame_errors: np.ndarray | None = None,
        null_loss: float | None = None,
        resolution_level: float = RESOLUTION_LEVEL,
        test_rmse: Callable[[FitResult], float] | None = None,
        admit: Callable[[FitResult], bool] | None = None,
    ) -> None:
        self._points: list[FitResult] = []
        self._archive: list[FitResult] = []
        self.loss_floor = float(loss_floor)
        self.frame_errors = frame_errors
        self.null_frame_errors = null_frame_errors
        self.null_loss = None if null_loss is None else float(null_loss)
        self.resolution_level = float(resolution_level)
        self.test_rmse = test_rmse
        self.admit = admit
        # id(member) -> (member, its frame errors); (id(a), id(b)) -> a beats b
        self._errors: dict[int, tuple[FitResult, np.ndarray | None]] = {}
        self._pairs: dict[tuple[int, int], bool] = {}
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

    @property
    def archive(self) -> list[FitResult]:
        """All non-dominated results offered, by increasing complexity: :attr:`points`
        before the resolution rule (the same list without ``frame_errors``)."""
        return list(self._archive)

    def update(self, result: FitResult) -> bool:
        """Offer a result; return True when it joined the front."""
        if not result.valid or not math.isfinite(_loss(result)):
            return False
        loss = self._l(result)
        for p in self._archive:
            if p.complexity <= result.complexity and self._l(p) <= loss:
                return False  # dominated or an exact tie: keep the member
        if self.admit is not None and not self.admit(result):
            return False
        self._archive = [p for p in self._archive if not self.dominates(result, p)]
        self._archive.append(result)
        self._archive.sort(key=lambda p: (p.complexity, _loss(p)))
        self._refresh()
        return any(p is result for p in self._points)

    def _refresh(self) -> None:
        """The front: the archive's members that the resolution rule keeps, simplest first.

        Each member must beat U = 0 and every simpler member kept; so a member held off by
        a simpler one comes back when that one leaves the archive.
        """
        if self.frame_errors is None:
            self._points = list(self._archive)
            return
        live = {id(p) for p in self._archive}
        self._errors = {k: v for k, v in self._errors.items() if k in live}
        self._pairs = {k: v for k, v in self._pairs.items() if k[0] in live and k[1] in live}
        kept: list[FitResult] = []
        for p in self._archive:
            if self._errors_of(p) is None or (
                self._beats(p, None) and all(self._beats(p, k) for k in kept)
            ):
                kept.append(p)
        self._points = kept

    def _errors_of(self, p: FitResult) -> np.ndarray | None:
        entry = self._errors.get(id(p))
        if entry is None or entry[0] is not p:
            entry = (p, self.frame_errors(p) if self.frame_errors else None)
            self._errors[id(p)] = entry
        return entry[1]

    def _beats(self, p: FitResult, simpler: FitResult | None) -> bool:
        """:func:`resolved` for ``p`` against a simpler member (``None``: U = 0), cached."""
        if simpler is None:
            if self.null_frame_errors is None:
                return True
            key = (id(p), id(p))  # (p, p) never compares p with itself: U = 0's slot
            other = self.null_frame_errors
        else:
            key = (id(p), id(simpler))
            other = self._errors_of(simpler)
            if other is None:
                return True
        if key not in self._pairs:
            self._pairs[key] = resolved(self._errors_of(p), other, self.resolution_level)
        return self._pairs[key]

    def best(self, max_complexity: float | None = None) -> FitResult | None:
        """Lowest-loss member with complexity ``<= max_complexity`` (any if ``None``).

        The member a user gets by default is :meth:`selected` (the knee rule), not this.
        """
        pts = [p for p in self._points if max_complexity is None or p.complexity <= max_complexity]
        return min(pts, key=_loss) if pts else None

    def score_test(self) -> None:
        """Set each member's ``rmse_test`` with :attr:`test_rmse` (nothing without it)."""
        if self.test_rmse is None:
            return
        for p in self._points:
            p.rmse_test = float(self.test_rmse(p))

    def selected(self, eligible: Callable[[FitResult], bool] | None = None) -> FitResult | None:
        """The member the knee rule chooses (:func:`knee_index`); ``None`` on an empty front
        or when no member may be chosen.  A member whose repulsive wall failed
        (:func:`wall_failed`) never is.

        Parameters
        ----------
        eligible
            Optional predicate: only members for which it is true may be chosen.
        """
        pts = self._points
        k = knee_index(
            [p.complexity for p in pts],
            [_loss(p) for p in pts],
            null_loss=self.null_loss,
            eligible=[
                not wall_failed(p.flags, p.constraints) and (eligible is None or eligible(p))
                for p in pts
            ],
            floor=self.loss_floor,
        )
        return None if k is None else pts[k]

    # ------------------------------------------------------------------ files
    def to_dict(self) -> dict:
        """JSON-friendly representation."""
        return {"points": [p.to_dict() for p in self._points]}

    def to_json(self, path: str | Path) -> None:
        """Write the front to a JSON file."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n")

    @classmethod
    def from_json(cls, path: str | Path) -> ParetoFront:
        """Read a front written by :meth:`to_json`, a search's ``pareto.json`` (a list
        of members) or the run folder holding it (:func:`mctsff.runfolder.read_front_points`;
        :class:`~mctsff.runio.RunFolderError` naming the file when it cannot).  Read from a
        run folder (or its ``pareto.json``), :attr:`null_loss` is the run's ``null_rmse``
        (``run.json``, :func:`mctsff.runfolder.read_null_rmse`), where it records one."""
        points = read_front_points(path)
        front = cls(null_loss=read_null_rmse(path))
        front._points = [FitResult.from_dict(d) for d in points]
        front._points.sort(key=lambda p: (p.complexity, _loss(p)))
        front._archive = list(front._points)
        return front

    def to_csv(self, path: str | Path) -> None:
        """Write one row per member: complexity, score_loss (the loss that ranks the front:
        :attr:`~mctsff.fit.result.FitResult.score_loss`, the validation RMSE when there are
        validation frames), RMSEs (train, validation, test), whether the knee rule
        selects it, expression, params (JSON), and, when an MD check scored members
        (``extra["md_check"]``, :mod:`mctsff.water.rerank`), one ``md_*`` column per score
        (empty for members it did not check)."""
        chosen = self.selected()
        md_keys = _md_keys(self._points)
        with open(path, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(
                [
                    "complexity",
                    "score_loss",
                    "rmse_train",
                    "rmse_valid",
                    "rmse_test",
                    "selected",
                    "expression",
                    "params",
                    *(f"md_{k}" for k in md_keys),
                ]
            )
            for p in self._points:
                writer.writerow(
                    [
                        p.complexity,
                        repr(_loss(p)),
                        repr(float(p.rmse_train)),
                        repr(float(p.rmse_valid)),
                        repr(float(p.rmse_test)),
                        int(p is chosen),
                        p.expression,
                        json.dumps({k: float(v) for k, v in p.params.items()}),
                        *(_md_cell(p, k) for k in md_keys),
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
        """Draw :meth:`figure` and save it (format from the suffix, e.g. ``.png``).

        Parameters
        ----------
        path
            Output image.
        reference_lines, title, ylabel
            As in :meth:`figure`.
        """
        fig = self.figure(reference_lines, title=title, ylabel=ylabel)
        fig.savefig(path, bbox_inches="tight")
        return Path(path)

    def figure(
        self,
        reference_lines: dict[str, float] | None = None,
        *,
        title: str | None = None,
        ylabel: str = "loss (RMSE)",
    ):
        """Loss (log scale) against complexity as a step front (a matplotlib ``Figure``,
        Agg, no pyplot).

        The front's losses are drawn as a step line, each member labelled with its
        expression in math text (:func:`math_label`, rotated so labels do not cross);
        the members' training and test RMSEs (where known) as markers at the same
        complexity, the member :meth:`selected` chooses circled, and U = 0
        (:attr:`null_loss`, where known) as a wide grey reference band under the dashed
        ``reference_lines``, each labelled with its loss in the legend, which sits
        outside the axes.  When an MD check scored members (``extra["md_check"]``,
        :mod:`mctsff.water.rerank`), a second panel below shows, at the same complexity,
        each stable member's O–O RDF distance to experiment with its density, and a cross
        for each unstable one.

        Parameters
        ----------
        reference_lines
            Label -> loss of reference models, drawn as dashed horizontal lines
            (legend ``"label (loss)"``).
        title, ylabel
            Axis decorations.
        """
        from matplotlib.figure import Figure  # no pyplot: no global backend state

        md_points = [p for p in self._points if isinstance(p.extra.get("md_check"), dict)]
        fig = Figure(figsize=(9.0, 7.5 if md_points else 5.5), dpi=120)
        if md_points:
            ax, ax_md = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2.6, 1]})
        else:
            ax = fig.add_subplot()
        if self._points:
            xs = [p.complexity for p in self._points]
            positive = [_loss(p) for p in self._points if _loss(p) > 0]
            floor = min(positive) / 10 if positive else 1e-12  # zero loss on a log axis
            ys = [max(_loss(p), floor) for p in self._points]
            ax.step(xs, ys, where="post", color="C0", lw=1.5, label="Pareto front")
            ax.plot(xs, ys, "o", color="C0", ms=4)
            for attr, marker, label in (("rmse_train", "^", "train"), ("rmse_test", "s", "test")):
                pts = [
                    (p.complexity, max(float(getattr(p, attr)), floor))
                    for p in self._points
                    if math.isfinite(float(getattr(p, attr)))
                ]
                if pts and (
                    attr != "rmse_train" or any(math.isfinite(p.rmse_valid) for p in self._points)
                ):
                    ax.plot(
                        *zip(*pts, strict=True),
                        marker,
                        color="0.35",
                        ms=3.5,
                        ls="none",
                        label=label,
                    )
            chosen = self.selected()
            if chosen is not None:
                ax.plot(
                    [chosen.complexity],
                    [max(_loss(chosen), floor)],
                    "o",
                    ms=11,
                    mfc="none",
                    mec="C3",
                    mew=1.5,
                    label="selected (knee rule)",
                )
            for p, x, y in zip(self._points, xs, ys, strict=True):
                ax.annotate(
                    math_label(p.expression),
                    xy=(x, y),
                    xytext=(5, 7),
                    textcoords="offset points",
                    rotation=35,
                    rotation_mode="anchor",
                    ha="left",
                    va="bottom",
                    fontsize=8,
                    color="C3" if p is chosen else "0.15",
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.75},
                    gid="member-label",
                )
            lo, hi = min(ys), max(ys)
            extra = [self.null_loss, *(reference_lines or {}).values()]
            extra = [v for v in extra if v is not None and math.isfinite(v) and v > 0]
            lo, hi = min([lo, *extra]), max([hi, *extra])
            ax.set_ylim(lo / 1.6, hi * (hi / lo) ** 0.6 * 1.5 if hi > lo else hi * 10)
            span = max(xs) - min(xs)
            ax.set_xlim(min(xs) - 0.05 * span - 1, max(xs) + 0.35 * span + 1)
        # U = 0 is a wide grey band under the dashed reference lines, and every line's
        # value is in its legend label, so a reference model at about U = 0's loss (as
        # q-SPC/Fw published is on the water dimers' validation frames) stays visible on it
        if self.null_loss is not None and math.isfinite(self.null_loss) and self.null_loss > 0:
            ax.axhline(
                self.null_loss,
                ls="-",
                lw=4.0,
                color="0.78",
                zorder=1.0,
                label=f"U = 0 ({self.null_loss:.3g})",
            )
        for i, (label, value) in enumerate((reference_lines or {}).items()):
            if value is not None and math.isfinite(value) and value > 0:
                color = f"C{(i + 1) % 10}"
                ax.axhline(
                    value, ls="--", lw=1.3, color=color, zorder=1.5, label=f"{label} ({value:.3g})"
                )
        ax.set_yscale("log")
        ax.set_xlabel("complexity")
        ax.set_ylabel(ylabel)
        if title:
            ax.set_title(title)
        if self._points or reference_lines or self.null_loss:
            ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
        if md_points:
            _md_panel(ax_md, md_points)
            ax.set_xlabel("")
        fig.tight_layout()
        return fig

    def __repr__(self) -> str:
        return f"ParetoFront({len(self._points)} points)"


def _md_keys(points: Iterable[FitResult]) -> list[str]:
    """Keys of the members' MD scores (``extra["md_check"]``), in order of appearance."""
    keys: dict[str, None] = {}
    for p in points:
        md = p.extra.get("md_check")
        if isinstance(md, dict):
            keys.update(dict.fromkeys(md))
    return list(keys)


def _md_cell(p: FitResult, key: str) -> str:
    md = p.extra.get("md_check")
    v = md.get(key) if isinstance(md, dict) else None
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(int(v))
    return repr(v) if isinstance(v, float) else str(v)


def _md_panel(ax, points: list[FitResult]) -> None:
    """The MD scores of ``points``: O–O RDF RMS distance to experiment (stable runs,
    density beside each), a cross at the top for unstable runs."""
    stable = [p for p in points if p.extra["md_check"].get("stable")]
    ys = [p.extra["md_check"].get("rms_exp_OO") for p in stable]
    top = 1.3 * max([y for y in ys if y is not None] or [0.5])
    label = "MD stable (density g/cm³)"
    for p, y in zip(stable, ys, strict=True):
        if y is None:
            continue
        ax.plot([p.complexity], [y], "o", color="C2", ms=6, label=label)
        label = None
        rho = p.extra["md_check"].get("density")
        if rho is not None:
            ax.annotate(
                f"{rho:.2f}",
                (p.complexity, y),
                xytext=(5, 4),
                textcoords="offset points",
                fontsize=8,
            )
    label = "MD unstable"
    for p in points:
        if not p.extra["md_check"].get("stable"):
            ax.plot([p.complexity], [top], "x", color="C3", ms=8, mew=2, label=label)
            label = None
    ax.set_ylim(0.0, 1.25 * top)
    ax.set_ylabel("O–O RDF RMS\nto experiment")
    ax.set_xlabel("complexity")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))


@functools.lru_cache(maxsize=1024)
def math_label(expression: str) -> str:
    """An expression as short matplotlib math text (``$...$``, from sympy's LaTeX, with
    per-type constants written through their combining rule, e.g. ``q^A q^B``).

    Falls back to the plain expression when it does not parse or mathtext cannot
    render the LaTeX.
    """
    try:
        import sympy
        from matplotlib.mathtext import MathTextParser

        from mctsff.expr.params import sympy_expression
        from mctsff.expr.program import Program

        text = sympy.latex(sympy_expression(Program.from_string(expression)), fold_short_frac=True)
        text = _inline_fractions(text.replace(r"\operatorname{erfc}", r"\mathrm{erfc}"))
        text = f"${text}$"
        MathTextParser("path").parse(text)
        return text
    except Exception:  # any failure: the plain text is still a readable label
        return expression.replace("$", "")


def _group(text: str, i: int) -> tuple[str, int]:
    """The brace group opening at ``text[i]`` (without braces) and the index after it."""
    depth = 0
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1 : j], j + 1
    raise ValueError("unbalanced braces")


def _inline_fractions(text: str) -> str:
    r"""``\frac{a}{b}`` written ``a/b`` (a sum in parentheses), which stays legible at
    the small size of a label where a stacked fraction does not."""
    out, i = [], 0
    while (k := text.find(r"\frac{", i)) >= 0:
        out.append(text[i:k])
        num, j = _group(text, k + 5)
        den, i = _group(text, j)
        num, den = _inline_fractions(num), _inline_fractions(den)
        wrap = [any(c in part.lstrip("-") for c in "+-") for part in (num, den)]
        num = rf"\left({num}\right)" if wrap[0] else num
        den = rf"\left({den}\right)" if wrap[1] or " " in den.strip() else den
        out.append(f"{{{num}/{den}}}")
    out.append(text[i:])
    return "".join(out)

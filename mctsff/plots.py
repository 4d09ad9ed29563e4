"""The potentials figure of a run folder (``potentials.png``): U(r) of front members per type
pair, as fitted and exported, with reference potentials dashed.

:func:`mctsff.search.write_outputs` saves it beside the Pareto plot
(:meth:`mctsff.engines.pareto.ParetoFront.plot`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mctsff.engines.pareto import ParetoFront, math_label


def plot_potentials(
    path: Path,
    front: ParetoFront,
    fitter,
    n_best: int = 4,
    *,
    reference_potentials: Mapping[str, Any] | None = None,
) -> Path:
    """Save :func:`potentials_figure` (arguments as there) to ``path``."""
    fig = potentials_figure(front, fitter, n_best, reference_potentials=reference_potentials)
    fig.savefig(path, bbox_inches="tight")
    return Path(path)


def potentials_figure(
    front: ParetoFront,
    fitter,
    n_best: int = 4,
    *,
    reference_potentials: Mapping[str, Any] | None = None,
):
    """U(r) of front members, one panel per type pair (cf. Fig. 2 of the study).

    The member the knee rule selects (:meth:`ParetoFront.selected`; the lowest-loss
    member when none may be selected) is drawn thick, up to ``n_best - 1`` simpler
    members thin, and each ``reference_potentials`` entry (label -> Potential, e.g.
    q-SPC/Fw) dashed.  Every curve is the potential as fitted and exported
    (``fitter.potential``: shifted by the fit's cutoff scheme).  The legend sits below
    the panels; each panel's y-range keeps the wells of the selected member and the
    references visible (curves beyond it are clipped).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    points = front.points
    chosen = front.selected() or (min(points, key=lambda p: p.score_loss) if points else None)
    simpler = [p for p in points if chosen is not None and p.complexity < chosen.complexity]
    simpler = simpler[-max(n_best - 1, 0) :] if n_best > 1 else []
    curves: list[tuple[str, Any, dict]] = []
    for k, p in enumerate(simpler):
        style = dict(color=f"C{(k + 1) % 10}", lw=1.0, alpha=0.8, ls="-")
        curves.append((f"{math_label(p.expression)}  (c={p.complexity:g})", p, style))
    if chosen is not None:
        style = dict(color="C3", lw=2.6, ls="-", zorder=5)
        label = f"selected: {math_label(chosen.expression)}  (c={chosen.complexity:g})"
        curves.append((label, chosen, style))
    pots: list[tuple[str, Any, dict, bool]] = []
    for label, p, style in curves:
        try:
            pots.append((label, fitter.potential(p.expression, p.params), style, p is chosen))
        except Exception:  # plotting must not fail a finished search
            continue
    for j, (label, pot) in enumerate((reference_potentials or {}).items()):
        style = dict(color="k" if j == 0 else f"C{(7 + j) % 10}", lw=1.6, ls="--", zorder=4)
        pots.append((label, pot, style, True))
    pairs = list(fitter.type_pairs)
    train = fitter.train
    fig = Figure(figsize=(4.2 * len(pairs), 4.6), dpi=120)
    axes = [fig.add_subplot(1, len(pairs), i + 1) for i in range(len(pairs))]
    for i, (a, b) in enumerate(pairs):
        ax = axes[i]
        if hasattr(train, "pair_type"):
            mask = train.pair_type == i
            rmin = float(train.r[mask].min()) if mask.any() else 1.0
        else:  # a projection: its grid starts at the shortest pair
            mask = np.zeros(1, dtype=bool)
            rmin = float(train.grid.lo[i])
        r = np.linspace(max(0.8 * rmin, 0.5), train.cutoff, 400)
        key: list[np.ndarray] = []
        for label, pot, style, is_key in pots:
            try:
                with np.errstate(all="ignore"):
                    u = np.asarray(pot.energy(r, (a, b)), dtype=float)
            except Exception:  # plotting must not fail a finished search
                continue
            ax.plot(r, u, label=label, **style)
            if is_key:
                key.append(u[r >= rmin])
        ax.axhline(0.0, color="0.6", lw=0.6)
        if mask.any():
            lo, hi = np.percentile(train.r[mask], [1, 99])
            ax.axvspan(lo, hi, color="0.92", zorder=0, label="data range (1–99 %)")
        ax.set_title(f"{a}–{b}")
        ax.set_xlabel("r (Å)")
        if i == 0:
            ax.set_ylabel("U(r) (eV), as exported")
        ax.set_ylim(*_well_ylim(key) if key else _robust_ylim(ax))
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=1 if len(pairs) < 3 else 2,
        fontsize="small",
        frameon=False,
    )
    fig.tight_layout()
    return fig


#: Largest y-range (eV) above the deepest well that a potentials panel shows.
WELL_YRANGE = 3.0


def _well_ylim(curves: Sequence[np.ndarray]) -> tuple[float, float]:
    """y-limits that show the wells of ``curves`` (the part at r >= the shortest training
    distance): from below the deepest minimum to at most :data:`WELL_YRANGE` above it."""
    ys = np.concatenate([c[np.isfinite(c)] for c in curves] or [np.zeros(1)])
    if ys.size == 0:
        return -1.0, 1.0
    lo = min(float(ys.min()), 0.0)
    hi = max(float(ys.max()), 0.0)
    hi = min(hi, lo + WELL_YRANGE)
    span = max(hi - lo, 0.05)
    return lo - 0.12 * span, hi + 0.12 * span


def _robust_ylim(ax) -> tuple[float, float]:
    ys = np.concatenate([ln.get_ydata() for ln in ax.get_lines()] or [np.zeros(1)])
    ys = ys[np.isfinite(ys)]
    if ys.size == 0:
        return -1.0, 1.0
    lo, hi = np.percentile(ys, [2, 98])
    pad = 0.1 * (hi - lo) + 1e-6
    return float(lo - pad), float(hi + pad)

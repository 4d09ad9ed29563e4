"""How well the fit-free surrogate ranks candidates by the loss the fitter reaches.

The search sends one of several drawn expressions to the fitter, the one the
surrogate (:class:`mctsff.fit.surrogate.ForceSurrogate`) scores best, so what matters
is whether its ranking agrees with the fitted loss.  This script collects every
expression a search fits on real forces (``search(surrogate=False)``: the
candidates are not chosen by the surrogate being judged), with the user's fit
settings (constraints, weights, energy weight), then scores each with

* ``as fitted``: the surrogate built from that fitter (its weights, energy rows
  and equality constraints, what ``search`` uses), and
* ``forces only``: the same surrogate on the unweighted training forces with no
  constraint (what the search used before it followed the fit's settings),

and prints, for each, Spearman's rank correlation of estimate and fitted loss
and, over random groups of ``--group-size`` fitted expressions (the draws a
choice is made among), how often the surrogate's pick is the group's best and
the pick's fitted loss over the group's best (median and mean; a uniform random
pick is the baseline row).  Also: the surrogate's cost per expression.  Markdown
table + PNG (estimate against fitted loss).

Usage::

    python benchmarks/surrogate_rank.py                      # MP2 dimers, force0, ≈ 3 min
    python benchmarks/surrogate_rank.py --constraint force0 --constraint energy0
    python benchmarks/surrogate_rank.py --weights potfit --budget 500 --png rank.png
    python benchmarks/surrogate_rank.py --baseline 7e4ef94   # also the surrogate of 7e4ef94

With ``--baseline REV`` the same expressions are also scored by the surrogate of commit ``REV``
(installed into a temporary venv, see benchmarks/_baseline.py) in the same run, and the table
gains its rows, its cost per expression and how many of its estimates the current surrogate
reproduces (to 1e-6 relative, or both below 1e-10).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling module _baseline


def collect(fitter, budget: int, seed: int) -> list[tuple[str, float]]:
    """``(expression, fitted loss)`` of every valid fit of one search (no surrogate)."""
    from mctsff.search import search

    rows: list[tuple[str, float]] = []

    def callback(res):
        if res.valid and math.isfinite(res.loss) and "pruned_from" not in res.extra:
            rows.append((res.expression, float(res.loss)))

    search(fitter, "pair", budget=budget, seed=seed, max_length=16, callback=callback,
           surrogate=False)  # fmt: skip
    return rows


def agreement(est: np.ndarray, loss: np.ndarray, size: int, groups: int, seed: int = 0) -> dict:
    """Rank correlation and best-of-``size`` pick quality of estimates ``est`` of ``loss``.

    Expressions the surrogate cannot score (``inf``) stay in the groups and are
    picked last (as the search does); ``scored`` counts the finite estimates.
    """
    from scipy.stats import spearmanr

    ok = np.isfinite(est)
    rho = float(spearmanr(est[ok], loss[ok]).statistic) if ok.sum() > 2 else math.nan
    rng = np.random.default_rng(seed)
    hits, ratios, rand = 0, [], []
    size = min(size, len(loss))
    for _ in range(groups):
        g = rng.choice(len(loss), size, replace=False)
        best = loss[g].min()
        pick = g[np.argmin(est[g])]
        hits += loss[pick] == best
        ratios.append(loss[pick] / best if best > 0 else 1.0)
        other = g[rng.integers(size)]
        rand.append(loss[other] / best if best > 0 else 1.0)
    return {
        "scored": int(ok.sum()),
        "spearman": rho,
        "pick_is_best": hits / groups,
        "median_ratio": float(np.median(ratios)),
        "mean_ratio": float(np.mean(ratios)),
        "random_median_ratio": float(np.median(rand)),
        "random_mean_ratio": float(np.mean(rand)),
        "random_is_best": 1.0 / size,
    }


def build(settings: dict):
    """The fitter and training set of ``settings`` (data, cutoff, constraints, weights,
    energy weight), as both the current code and a baseline worker build them."""
    from mctsff.data import load_dataset
    from mctsff.fit import Fitter

    ds = load_dataset(settings["data"], cutoff=settings["cutoff"])
    train, valid = ds.split(0.2, seed=0)
    weights = None if settings["weights"] == "uniform" else settings["weights"]
    fitter = Fitter(train, valid, constraints=tuple(settings["constraints"]), n_starts=3, seed=0,
                    weights=weights, energy_weight=settings["energy_weight"])  # fmt: skip
    return fitter, train


def score(fitter, train, expressions: list[str]) -> dict[str, dict]:
    """Estimates of ``expressions`` and CPU ms per expression of each surrogate variant
    (a fresh surrogate each, so the costs include building every term's columns)."""
    from mctsff.fit.surrogate import ForceSurrogate

    variants = {
        "as fitted": lambda: ForceSurrogate.from_fitter(fitter),
        "forces only": lambda: ForceSurrogate(train),
    }
    out = {}
    for name, make in variants.items():
        s = make()
        c0 = time.process_time()
        est = [float(s(e)) for e in expressions]
        out[name] = {"est": est, "ms": 1e3 * (time.process_time() - c0) / max(len(est), 1)}
    return out


def same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Estimates equal to 1e-6 relative, or both round-off (below 1e-10), or both inf."""
    both_inf = np.isinf(a) & np.isinf(b)
    with np.errstate(invalid="ignore"):
        close = np.isfinite(a - b) & (np.abs(a - b) <= 1e-6 * np.maximum(np.abs(a), np.abs(b)))
    return both_inf | close | ((a < 1e-10) & (b < 1e-10))


def _score_task(task: dict) -> dict:
    """The ``--worker`` task: score ``task["expressions"]`` with this interpreter's mctsff."""
    fitter, train = build(task["settings"])
    return {"variants": score(fitter, train, task["expressions"])}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        from _baseline import worker_main

        warnings.simplefilter("ignore")
        return worker_main(argv, {"score": _score_task})
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="water_dimers_mp2_200.extxyz",
                    help="a shipped data file (mctsff.data.data_file) or a path")  # fmt: skip
    ap.add_argument("--cutoff", type=float, default=9.0)
    ap.add_argument("--constraint", action="append", default=None,
                    help="fit constraint, repeatable (force0; 'none' for none)")  # fmt: skip
    ap.add_argument("--weights", choices=["uniform", "potfit"], default="uniform")
    ap.add_argument("--energy-weight", type=float, default=0.0)
    ap.add_argument("--budget", type=int, default=300, help="fitted expressions (300)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--group-size", type=int, default=8, help="draws per choice (8)")
    ap.add_argument("--groups", type=int, default=2000)
    ap.add_argument("--baseline", default=None, metavar="REV",
                    help="also score with the surrogate of commit REV (a venv)")  # fmt: skip
    ap.add_argument("--baseline-python", default=None,
                    help="an interpreter that already has the baseline installed")  # fmt: skip
    ap.add_argument("--png", default="surrogate_rank.png")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")

    from _baseline import baseline_or_exit, preflight

    from mctsff.data import data_file

    if args.baseline:  # a revision that does not exist fails here, not after the search
        preflight(args.baseline, args.baseline_python)
    path = Path(args.data) if Path(args.data).exists() else data_file(args.data)
    cons = tuple(c for c in (args.constraint or ["force0"]) if c.lower() != "none")
    settings = {"data": str(Path(path).resolve()), "cutoff": args.cutoff, "constraints": cons,
                "weights": args.weights, "energy_weight": args.energy_weight}  # fmt: skip
    fitter, train = build(settings)
    machine = platform.processor() or platform.machine()
    print(
        f"# surrogate ranking — {datetime.date.today()}, {machine}, {os.cpu_count()} cores, "
        f"{path.name} (cutoff {args.cutoff:g} Å, {train.n_frames} training frames), "
        f"constraints {', '.join(cons) or 'none'}, weights {args.weights}, energy weight "
        f"{args.energy_weight:g}, search seed {args.seed}, budget {args.budget}"
    )
    t0 = time.perf_counter()
    rows = collect(fitter, args.budget, args.seed)
    t_search = time.perf_counter() - t0
    loss = np.array([l for _, l in rows])
    exprs = [e for e, _ in rows]
    scored = {"": score(fitter, train, exprs)}
    if args.baseline:
        with baseline_or_exit(args.baseline, python=args.baseline_python) as base:
            task = {"task": "score", "settings": settings, "expressions": exprs}
            scored[args.baseline] = base.run(__file__, task)["variants"]
            print(f"({base.describe()})")
    print()
    results, estimates = {}, {}
    for rev, variants in scored.items():
        for name, got in variants.items():
            label = f"{name} ({rev})" if rev else name
            est = np.asarray(got["est"], dtype=float)
            estimates[label] = est
            results[label] = {**agreement(est, loss, args.group_size, args.groups), "ms": got["ms"]}
            if rev:
                results[label]["same"] = int(same(est, estimates[name]).sum())
    k = args.group_size
    extra = " | estimates the current one reproduces" if args.baseline else ""
    print(
        f"| surrogate | scored | Spearman ρ (estimate, fitted loss) | pick is the best of {k} "
        f"| pick's loss / best's, median | mean | ms per expression (CPU){extra} |"
    )
    print("|---|---|---|---|---|---|---|" + ("---|" if args.baseline else ""))
    for name, r in results.items():
        tail = ""
        if args.baseline:
            tail = f" {r['same']}/{len(rows)} |" if "same" in r else " |"
        print(
            f"| {name} | {r['scored']}/{len(rows)} | {r['spearman']:.3f} "
            f"| {r['pick_is_best']:.2f} | {r['median_ratio']:.3f} | {r['mean_ratio']:.2f} "
            f"| {r['ms']:.1f} |{tail}"
        )
    r = next(iter(results.values()))
    print(
        f"| random pick | | | {r['random_is_best']:.2f} | {r['random_median_ratio']:.3f} "
        f"| {r['random_mean_ratio']:.2f} | |" + (" |" if args.baseline else "")
    )
    print()
    print(
        f"{len(rows)} fitted expressions from one search ({t_search:.0f} s wall); "
        f"{args.groups} random groups of {k}."
    )
    if args.baseline:
        for name in scored[""]:
            ratio = results[f"{name} ({args.baseline})"]["ms"] / results[name]["ms"]
            print(f"{name}: CPU per expression, {args.baseline} / current: {ratio:.2f}×")
    plot({n: e for n, e in estimates.items() if n in scored[""]}, loss, Path(args.png))
    print(f"wrote {args.png}")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"fitted": rows, "results": results}, indent=1, default=float)
        )
        print(f"wrote {args.json}")
    return 0


def plot(estimates: dict[str, np.ndarray], loss: np.ndarray, path: Path) -> None:
    """Estimate against fitted RMSE, one panel per surrogate."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5 * len(estimates), 4), dpi=110)
    for k, (name, est) in enumerate(estimates.items()):
        ax = fig.add_subplot(1, len(estimates), k + 1)
        ok = np.isfinite(est)
        ax.loglog(np.sqrt(loss[ok]), np.maximum(est[ok], 1e-16), ".", ms=4, color=f"C{k}")
        ax.set_xlabel("fitted RMSE (loss$^{1/2}$)")
        ax.set_ylabel("surrogate estimate (relative residual)")
        ax.set_title(name)
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    sys.exit(main())

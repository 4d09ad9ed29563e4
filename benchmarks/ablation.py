"""Ablations of the MCTS search on the synthetic force-field suite, paired by seed.

Each *variant* is the default ``search(method="mcts")`` with some of its
options changed (:data:`VARIANTS`); every variant runs the same potentials and
seeds at the same budget of distinct fitted expressions as
``benchmarks/compare_methods.py`` (same data, same recovery criterion: that
script's :func:`run_one`), and is compared with the default on the runs paired
by (potential, seed): recoveries, the runs only one of the two recovered and
McNemar's exact two-sided p.  Seeds are searches' seeds; ``--first-seed``
picks the block (default 100-109, apart from ``compare_methods.py``'s 0-19;
earlier tuning checked its choices on both blocks, so neither is untouched).

By default the four potentials that separate the settings (the two one-term
forms are recovered by every variant within 300 fits) and all variants.

Usage::

    python benchmarks/ablation.py       # all variants, seeds 100-109, budget 300 (~30 min, 2 cores)
    python benchmarks/ablation.py --variants default no-mast --seeds 4 --budget 150
    python benchmarks/ablation.py --json abl.json --png abl.png
    python benchmarks/ablation.py --variants default terms --suite standard hard --seeds 3
    python benchmarks/ablation.py --variants default terms --from-json a.json b.json  # saved runs
    python benchmarks/ablation.py --variants terms no-terms --suite hard --seeds 2 --time 60
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare_methods as cm  # noqa: E402

#: name -> (what changes, keyword arguments of ``search``); ``default`` is the reference
VARIANTS: dict[str, tuple[str, dict]] = {
    "default": ("the defaults", {}),
    "no-surrogate": (
        "the rollout fitted is the most novel, not the surrogate's best novel one",
        {"surrogate": False},
    ),
    "no-cover": ("rollouts do not cover the terms of a sum", {"cover": False}),
    "no-novelty": ("plain rollouts (no novelty selection, no covering)", {"novelty": 1}),
    "no-mast": ("uniform rollout productions (MAST off)", {"mcts_options": {"mast": 0.0}}),
    "mast-0.5": ("MAST temperature 0.5 (0.2)", {"mcts_options": {"mast": 0.5}}),
    "rollouts-10": ("10 rollouts per expansion (3)", {"n_rollouts": 10}),
    "exploration-0.35": ("UCT exploration 0.35 (0.71)", {"exploration": 0.35}),
    "transplant": ("SPL module transplantation on", {"transplant": True}),
    "elite-0.3": ("elite rollouts with probability 0.3", {"elite": 0.3}),
    "no-local": ("no prune/grow local moves", {"prune": False, "grow": False}),
    "spread-uncapped": (
        "each newly met simple term tried with the 3 best front members, past the 30 % share",
        {"local_options": {"spread_share": 1.0}},
    ),
    "spread-1-uncapped": (
        "each newly met simple term tried with the best front member, past the 30 % share",
        {"local_options": {"spread_share": 1.0, "spread_hosts": 1}},
    ),
    "terms": (
        "term-library proposals: sums of the grammar's terms chosen by sparse selection, "
        "at most 20 % of the fits after the first 8",
        {"terms": True},
    ),
    "no-terms": ("no term-library proposals", {"terms": False}),
    "terms-credit": (
        "term-library proposals, their rewards backed up the tree and into MAST",
        {"terms": True, "mcts_options": {"credit": True}},
    ),
}

HARD = ["coulomb_lj", "buckingham", "screened_coulomb", "damped_dispersion"]


def run_variant(
    name: str,
    variant: str,
    seed: int,
    budget: int,
    time_limit: float | None = None,
    search_workers: int = 1,
) -> dict:
    """One MCTS search of ``variant`` on potential ``name``; the row of ``cm.run_one``
    (with ``time_limit``: on the wall clock, with ``search_workers`` fitting processes)."""
    row = cm.run_one(
        name,
        "mcts",
        seed,
        budget,
        options=VARIANTS[variant][1],
        time_limit=time_limit,
        search_workers=search_workers,
    )
    row["variant"] = variant
    return row


def time_table(rows: list[dict], variants: list[str], limits: list[float]) -> str:
    """Markdown: each variant's recoveries within each wall-clock limit and its median time
    to a recovery (of the runs that recovered)."""
    lines = [
        "| variant | "
        + " | ".join(f"within {t:g} s" for t in limits)
        + " | median s to a recovery |",
        "|---|" + "---|" * (len(limits) + 1),
    ]
    for v in variants:
        mine = [r for r in rows if r["variant"] == v]
        cells = [
            f"{sum(r['recovered'] for r in cm.within_time(mine, t))}/{len(mine)}" for t in limits
        ]
        ts = [r["time_to_recovery"] for r in mine if r["recovered"]]
        med = f"{float(np.median(ts)):.1f}" if ts else "–"
        lines.append(f"| {v} | " + " | ".join(cells) + f" | {med} |")
    return "\n".join(lines)


def compare(rows: list[dict], variant: str, reference: str = "default") -> dict:
    """Paired counts of ``variant`` against ``reference``: pairs, discordant runs, McNemar p.

    ``compare_methods.paired_comparison`` with the variants as its "methods".
    """
    runs = [{**r, "method": r["variant"]} for r in rows if r["variant"] in (variant, reference)]
    try:
        c = cm.paired_comparison(runs, variant, reference, n_boot=1)
    except ValueError:  # no (potential, seed) ran both
        return {"pairs": 0, "only_variant": 0, "only_reference": 0, "p_value": 1.0}
    return {
        "pairs": c["pairs"],
        "only_variant": c["only_a"],
        "only_reference": c["only_b"],
        "p_value": c["p_value"],
    }


def table(rows: list[dict], variants: list[str], names: list[str]) -> str:
    """Markdown table: recoveries per potential and in all, paired test against the default."""
    head = (
        "| variant | what changes | "
        + " | ".join(names)
        + " | all (95 % Wilson CI) | vs default: only variant / only default, McNemar p "
        "| median local fits | median CPU s |"
    )
    lines = [head, "|" + "---|" * (len(names) + 6)]
    for v in variants:
        mine = [r for r in rows if r["variant"] == v]
        cells = []
        for n in names:
            rs = [r for r in mine if r["potential"] == n]
            cells.append(f"{sum(r['recovered'] for r in rs)}/{len(rs)}")
        k = sum(r["recovered"] for r in mine)
        lo, hi = cm.wilson(k, len(mine))
        if v != "default" and any(r["variant"] == "default" for r in rows):
            c = compare(rows, v)
            vs = f"{c['only_variant']} / {c['only_reference']}, p = {c['p_value']:.2g}"
        else:
            vs = "reference" if v == "default" else "no default runs"
        local = float(np.median([r["n_local"] for r in mine]))
        cpu = float(np.median([r["cpu_s"] for r in mine]))
        lines.append(
            f"| {v} | {VARIANTS[v][0]} | "
            + " | ".join(cells)
            + f" | {k}/{len(mine)} ({lo:.2f}–{hi:.2f}) | {vs} | {local:.0f} | {cpu:.1f} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict], variants: list[str], path: Path) -> None:
    """Recovery rate per variant with its Wilson interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.45 * len(variants) + 1.2))
    for i, v in enumerate(variants):
        mine = [r for r in rows if r["variant"] == v]
        k, n = sum(r["recovered"] for r in mine), len(mine)
        lo, hi = cm.wilson(k, n)
        ax.errorbar(k / n, i, xerr=[[k / n - lo], [hi - k / n]], fmt="o", capsize=3)
    ax.set_yticks(range(len(variants)), variants)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("recovery rate (95 % Wilson interval)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument(
        "--potentials",
        nargs="*",
        default=None,
        choices=list(cm.ALL_POTENTIALS),
        help="potentials to run (default: the four that separate the settings)",
    )
    ap.add_argument(
        "--suite",
        nargs="*",
        default=None,
        choices=list(cm.SUITES),
        help="run the potentials of these suites of compare_methods.py instead",
    )
    ap.add_argument("--seeds", type=int, default=10, help="seeds per potential (10)")
    ap.add_argument("--first-seed", type=int, default=100, help="first seed (100)")
    ap.add_argument("--budget", type=int, default=300, help="fitted expressions (300)")
    ap.add_argument("--workers", type=int, default=2, help="parallel searches (2)")
    ap.add_argument(
        "--time",
        type=float,
        default=None,
        metavar="T",
        help="equal wall clock instead of equal budgets: every search runs T seconds with "
        "--search-workers fitting processes, one search at a time, the variants interleaved "
        "per (potential, seed); recoveries are reported against time",
    )
    ap.add_argument(
        "--search-workers", type=int, default=2, help="--time: fitting processes per search (2)"
    )
    ap.add_argument("--png", default="ablation.png", help="figure path")
    ap.add_argument("--json", default=None, help="write every run's record here")
    ap.add_argument(
        "--from-json",
        nargs="+",
        default=None,
        metavar="FILE",
        help="run nothing: print the table of the runs saved in these files (by --json), "
        "with --variants and the potentials they hold",
    )
    args = ap.parse_args(argv)
    if args.from_json:
        rows = [r for f in args.from_json for r in json.loads(Path(f).read_text())["runs"]]
        held = {r["variant"] for r in rows}
        variants = [v for v in dict.fromkeys(args.variants) if v in held]
        names = [n for n in cm.ALL_POTENTIALS if any(r["potential"] == n for r in rows)]
        print(table(rows, variants, names))
        for suite, members in cm.SUITES.items():
            sub = [r for r in rows if r["potential"] in members]
            if not sub:
                continue
            counts = ", ".join(
                f"{v} {sum(r['recovered'] for r in sub if r['variant'] == v)}/"
                f"{sum(r['variant'] == v for r in sub)}"
                for v in variants
            )
            print(f"\n{suite} suite: {counts}")
            for v in variants:
                if v != "default" and "default" in variants:
                    c = compare(sub, v)
                    print(
                        f"  {v} vs default: only {v} {c['only_variant']}, only default "
                        f"{c['only_reference']}, McNemar p = {c['p_value']:.2g}"
                    )
        return 0
    variants = list(dict.fromkeys(args.variants))
    names = list(args.potentials or [])
    for suite in args.suite or []:
        names += [n for n in cm.SUITES[suite] if n not in names]
    names = names or list(HARD)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    warnings.simplefilter("ignore")
    cm.check_grammar(names)
    machine = platform.processor() or platform.machine()
    timed = args.time is not None
    if timed and not (args.time > 0 and args.search_workers >= 1):
        raise SystemExit("--time must be a positive number of seconds, --search-workers >= 1")
    print(
        f"# MCTS ablations, synthetic pair potentials on 20 water dimers — "
        f"{datetime.date.today()}, {machine}, {os.cpu_count()} cores, "
        + (
            f"equal wall clock {args.time:g} s per search, {args.search_workers} fitting "
            f"processes each, one search at a time (load average at start "
            f"{os.getloadavg()[0]:.1f})"
            if timed
            else f"{args.workers} worker processes, budget {args.budget} fitted expressions"
        )
        + f", seeds {seeds.start}–{seeds.stop - 1}, grammar '{cm.GRAMMAR}', "
        f"max_length {cm.MAX_LENGTH}"
    )
    print()
    extra = (args.time, args.search_workers) if timed else ()
    budget = 10**9 if timed else args.budget  # with --time the clock stops every run
    jobs = [(n, v, s, budget, *extra) for s in seeds for n in names for v in variants]
    w0 = time.perf_counter()
    rows = cm.run_jobs(run_variant, jobs, 1 if timed else args.workers)
    print(table(rows, variants, names))
    print()
    if timed:
        limits = [t for t in cm.TIME_POINTS if t < args.time] + [args.time]
        print(time_table(rows, variants, limits))
        print()
    print(f"total: {len(rows)} runs, {time.perf_counter() - w0:.0f} s wall")
    plot(rows, variants, Path(args.png))
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": rows}, indent=1, default=float))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Time-to-recovery and recovery rate of known potentials by the MCTS search.

Synthetic intermolecular forces are generated from known potentials on the
shipped water-dimer geometries (20 MP2 dimers, cutoff 9 Å); the search runs with
the default grammar (``pair``) and counts a potential as *recovered* when a fitted
expression reproduces the validation forces to 1e-6 of their RMS with a
complexity no larger than the true form's (an exact, no-more-complex form).

Usage::

    python benchmarks/recovery.py                # 10 seeds, 120 s limit per run
    python benchmarks/recovery.py --seeds 3 --time 30 --potentials coulomb_lj
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time
import warnings

import numpy as np
from compare_methods import POTENTIALS as ALL_POTENTIALS  # sibling script

from mctsff.data import data_file, load_dataset
from mctsff.expr.params import Potential
from mctsff.expr.program import Program
from mctsff.fit import Fitter
from mctsff.search import search

#: the four potentials of this benchmark, as defined once in compare_methods.py
POTENTIALS = {
    k: ALL_POTENTIALS[k] for k in ("coulomb_lj", "buckingham", "morse", "screened_coulomb")
}

#: The synthetic forces come from the true form as written (no cutoff shift) and some true
#: forms (Buckingham) have no repulsive wall: fits use the same definition.
AS_GENERATED = {"cutoff_scheme": "none", "wall": None}


def run_one(name: str, seed: int, budget: int, time_limit: float, workers: int = 1) -> dict:
    """One search on one synthetic potential; returns timing and recovery."""
    expr, params = POTENTIALS[name]
    ds = load_dataset(data_file("water_dimers_mp2_sample20.extxyz"), cutoff=9.0)
    truth = Potential(expr, params, ds.species, ds.type_pairs)
    train, valid = truth.synthetic(ds).split(0.2, seed=0)
    rms = float(np.sqrt(np.mean(train.forces**2)))
    cx = Program.from_string(expr).complexity
    fitter = Fitter(train, valid, constraints=(), n_starts=3, seed=0, **AS_GENERATED)
    hit: dict = {}
    count = [0]
    t0 = time.perf_counter()

    def on_result(res):
        count[0] += 1
        if "t" not in hit and res.valid and res.rmse_valid < 1e-6 * rms and res.complexity <= cx:
            hit.update(t=time.perf_counter() - t0, expression=res.expression, n=count[0])

    result = search(
        fitter,
        "pair",
        budget=budget,
        time_limit=time_limit,
        seed=seed,
        callback=on_result,
        should_stop=lambda: "t" in hit,
        workers=workers,
    )
    return {
        "local_fits": result.n_local,
        "evals_to_recovery": hit.get("n", float("nan")),
        "name": name,
        "seed": seed,
        "recovered": bool(hit),
        "seconds": hit.get("t", float("nan")),
        "n_evaluations": result.n_evaluations,
        "wall": result.seconds,
        "found": hit.get("expression", ""),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--time", type=float, default=120.0, help="time limit per run (s)")
    ap.add_argument("--budget", type=int, default=100000, help="evaluation cap per run")
    ap.add_argument("--potentials", nargs="*", default=list(POTENTIALS))
    ap.add_argument("--workers", type=int, default=1, help="worker processes per search")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    machine = platform.processor() or platform.machine()
    print(
        f"# recovery benchmark — {datetime.date.today()}, {machine}, {os.cpu_count()} cores, "
        f"{args.workers} worker process(es) per search, time limit {args.time:g} s"
    )
    print()
    print(
        "| potential | recovered | median time to recovery (s) | median fits to recovery | runs |"
    )
    print("|---|---|---|---|---|")
    for name in args.potentials:
        rows = [run_one(name, s, args.budget, args.time, args.workers) for s in range(args.seeds)]
        ok = [r for r in rows if r["recovered"]]
        med = float(np.median([r["seconds"] for r in ok])) if ok else float("nan")
        med_n = float(np.median([r["evals_to_recovery"] for r in ok])) if ok else float("nan")
        detail = ", ".join(
            f"s{r['seed']}:{r['seconds']:.0f}s" if r["recovered"] else f"s{r['seed']}:-"
            for r in rows
        )
        print(
            f"| {name} | {len(ok)}/{len(rows)} | {med:.1f} | {med_n:.0f} | {detail} |", flush=True
        )


if __name__ == "__main__":
    main()

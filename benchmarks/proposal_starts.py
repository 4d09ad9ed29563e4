"""Term-library proposals fitted with and without the selection's constants (issue 34).

Exploratory.  Two parts:

* ``--proposals``: for each potential, the term library's first ``--top`` proposals
  (:class:`mctsff.engines.terms.TermLibrary`, ``pair`` grammar, ``max_length`` 16) fitted
  from scratch and from the selection's constants (``Fitter.fit(start=...)``); prints each
  proposal's selection loss relative to U = 0 next to the fit's from the start on the same
  training forces (its squared RMSE over their mean square), its validation RMSE relative to
  the RMS validation force both ways, and the rank of
  the first proposal that meets ``compare_methods.py``'s recovery criterion (1e-6 of the RMS,
  complexity no larger than the true form's).
* ``--search``: short MCTS searches with the proposals on (the default), the proposals fitted
  with their constants (``start``) and without (``nostart``: each proposal's constants
  dropped, everything else the same) and, with ``--variants``, the selection without
  exchanging the terms of its best sets (``noexchange``: ``TermLibrary(exchanges=0)``),
  the same seeds and budget; prints whether the true
  form was recovered, after how many fits, whether a true form (its transposition key, or
  the recovery criterion) was fitted and is on the front, and the proposals' best
  validation RMSE.

The potentials are ``compare_methods.py``'s (synthetic forces on the 20 water dimers, fits
with no cutoff shift and no wall, as generated) and ``screened_fixture``: the tests'
``screened`` fixture (``prod_c1*exp(-r/c1)/r`` generated without a shift, fitted with the
default shifted-force scheme, no wall, one start), where the true form cannot reach 1e-6
(the shift is not in the data) and "on the front" is judged by the search's transposition key.

Usage::

    python benchmarks/proposal_starts.py --proposals
    python benchmarks/proposal_starts.py --search --potentials screened_fixture ewald_lj \\
        --seeds 0 1 --budget 200 --workers 2
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import compare_methods as cm  # noqa: E402

FIXTURE = "screened_fixture"
FIXTURE_FORM = ("prod_c1*exp(-r/c1)/r", {"prod_c1[O]": -3.2, "prod_c1[H]": 1.6, "c1": 2.5})


def _setup(name: str):
    """(fitter, true expression, RMS validation force, recovery threshold)."""
    from mctsff.fit import Fitter

    if name == FIXTURE:
        from mctsff.expr.params import Potential

        ds = cm._dimers()
        truth = Potential(*FIXTURE_FORM, ds.species, ds.type_pairs)
        train, valid = truth.synthetic(ds).split(0.2, seed=0)
        fitter = Fitter(train, valid, n_starts=1, wall=None)
        rms = cm._rms(valid.forces)
        return fitter, FIXTURE_FORM[0], rms, cm.RECOVERY_TOL * rms
    train, valid = cm._splits(name)
    fitter = Fitter(train, valid, constraints=(), n_starts=3, seed=0, **cm.AS_GENERATED)
    return fitter, cm.ALL_POTENTIALS[name][0], cm.valid_rms(name), cm.recovery_threshold(name)[0]


#: whether this process's proposals go without their constants (the ``nostart`` variant)
_DROP = {"on": False}


def _drop_starts(on: bool) -> None:
    """Proposals with (``on=False``) or without their constants from now on, in this
    process (a pool's worker runs jobs of both variants)."""
    from mctsff.engines import terms

    _DROP["on"] = on
    if getattr(terms.TermLibrary, "_starts_switch", False):
        return
    original = terms.TermLibrary.proposals

    def proposals(self, stop=None):
        props = original(self, stop)
        return [dataclasses.replace(p, start={}) for p in props] if _DROP["on"] else props

    terms.TermLibrary.proposals = proposals
    terms.TermLibrary._starts_switch = True


def _exchanges(on: bool) -> None:
    """Term libraries made from now on in this process exchange the terms of their best
    sets (``on``, the default) or not (``exchanges=0``: the ``noexchange`` variant)."""
    from mctsff.engines.terms import library

    defaults = library.TermLibrary.__init__.__kwdefaults__
    _DROP.setdefault("exchanges", defaults["exchanges"])
    defaults["exchanges"] = _DROP["exchanges"] if on else 0


def proposals_table(name: str, top: int) -> dict:
    """The first ``top`` proposals fitted both ways."""
    warnings.simplefilter("ignore")
    from mctsff.engines.terms import TermLibrary
    from mctsff.expr.grammar import Grammar

    fitter, expr, rms, threshold = _setup(name)
    grammar = Grammar.load(cm.GRAMMAR)
    cx = grammar.complexity(expr)
    t0 = time.process_time()
    props = TermLibrary(grammar, fitter, max_length=cm.MAX_LENGTH).proposals()
    select_cpu = time.process_time() - t0
    rms_train = cm._rms(fitter.train.forces)
    rows = []
    for p in props[:top]:
        start = getattr(p, "start", {})
        plain = fitter.fit(p.expression)
        started = fitter.fit(p.expression, start=start) if start else plain
        ok = grammar.complexity(p.expression) <= cx
        rows.append(
            {
                "expression": p.expression,
                "rel_loss": p.rel_loss,
                "scratch": plain.rmse_valid / rms,
                "start": started.rmse_valid / rms,
                # comparable with rel_loss (the selection sees every training frame here)
                "start_train": (started.rmse_train / rms_train) ** 2,
                "hit_scratch": ok and plain.valid and plain.rmse_valid < threshold,
                "hit_start": ok and started.valid and started.rmse_valid < threshold,
            }
        )
    return {"potential": name, "select_cpu": select_cpu, "rows": rows}


def run_search(name: str, variant: str, seed: int, budget: int) -> dict:
    """One MCTS search with the proposals on, their constants kept or dropped
    (``nostart``), or the selection without its exchanges (``noexchange``)."""
    warnings.simplefilter("ignore")
    from mctsff.expr.grammar import Grammar
    from mctsff.search import search

    _drop_starts(variant == "nostart")
    _exchanges(variant != "noexchange")
    fitter, expr, rms, threshold = _setup(name)
    cx = Grammar.load(cm.GRAMMAR).complexity(expr)
    hit: dict = {}
    count = {"n": 0}

    def callback(res):
        if "pruned_from" not in res.extra:
            count["n"] += 1
        if "n" not in hit and res.valid and res.complexity <= cx and res.rmse_valid < threshold:
            hit.update(n=count["n"], expression=res.expression)

    w0, c0 = time.perf_counter(), time.process_time()
    result = search(
        fitter,
        cm.GRAMMAR,
        budget=budget,
        seed=seed,
        max_length=cm.MAX_LENGTH,
        callback=callback,
        terms=True,
        progress=False,
    )
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    engine = result.mcts
    key = engine._key(expr)

    def true_form(r) -> bool:  # the same key, or the recovery criterion (-c/r**6 as +c/r**6)
        ok = r.valid and r.complexity <= cx and r.rmse_valid < threshold
        return ok or engine._key(r.expression) == key

    true = [r for r in engine.results if true_form(r)]
    on_front = [p for p in result.front.points if true_form(p)]
    proposals = [r for r in engine.results if r.extra.get("term_library") and r.valid]
    return {
        "potential": name,
        "variant": variant,
        "seed": seed,
        "recovered": "n" in hit,
        "fits_to_recovery": hit.get("n", math.nan),
        "true_on_front": bool(on_front),
        "true_rel": min((r.rmse_valid for r in true), default=math.nan) / rms,
        "n_terms": result.n_terms,
        "proposals_best_rel": min((r.rmse_valid for r in proposals), default=math.inf) / rms,
        "proposals_below_1e-6": sum(r.rmse_valid < 1e-6 * rms for r in proposals),
        "best_rel": result.best.rmse_valid / rms if result.best is not None else math.inf,
        "best": result.best.expression if result.best is not None else "",
        "wall_s": wall,
        "cpu_s": cpu,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--proposals", action="store_true", help="fit the first proposals both ways")
    ap.add_argument("--search", action="store_true", help="short searches, start and nostart")
    ap.add_argument(
        "--potentials",
        nargs="*",
        default=None,
        choices=[*cm.ALL_POTENTIALS, FIXTURE],
        help="(default: every suite potential and the fixture for --proposals; the fixture, "
        "born_mayer_huggins and ewald_lj for --search)",
    )
    ap.add_argument("--top", type=int, default=8, help="--proposals: proposals per potential")
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1], help="--search seeds")
    ap.add_argument("--budget", type=int, default=200, help="--search: fitted expressions")
    ap.add_argument("--workers", type=int, default=2, help="searches at a time (one process each)")
    ap.add_argument(
        "--variants",
        nargs="*",
        default=["start", "nostart"],
        choices=["start", "nostart", "noexchange"],
        help="--search variants (noexchange: the selection without exchanging terms)",
    )
    args = ap.parse_args(argv)
    if not (args.proposals or args.search):
        ap.error("give --proposals and/or --search")
    if args.proposals:
        names = args.potentials or [FIXTURE, *cm.ALL_POTENTIALS]
        jobs = [(n, args.top) for n in names]
        for table in cm.run_jobs(proposals_table, jobs, args.workers):
            rows = table["rows"]
            first = {
                k: next((i + 1 for i, r in enumerate(rows) if r[f"hit_{k}"]), None)
                for k in ("scratch", "start")
            }
            print(
                f"## {table['potential']} (selection {table['select_cpu']:.1f} CPU s): first "
                f"recovering proposal, from scratch {first['scratch'] or '-'}, "
                f"from the start {first['start'] or '-'}"
            )
            for i, r in enumerate(rows, 1):
                print(
                    f"  {i}. {r['expression']}  sel {r['rel_loss']:.1e} (fit from the start "
                    f"{r['start_train']:.1e})  valid: scratch {r['scratch']:.1e}  start "
                    f"{r['start']:.1e}"
                )
        print()
    if args.search:
        names = args.potentials or [FIXTURE, "born_mayer_huggins", "ewald_lj"]
        jobs = [(n, v, s, args.budget) for n in names for s in args.seeds for v in args.variants]
        keys = (
            "recovered fits_to_recovery true_on_front true_rel n_terms proposals_best_rel "
            "proposals_below_1e-6 best_rel best wall_s cpu_s"
        ).split()
        print("| potential | variant | seed | " + " | ".join(keys) + " |")
        print("|---" * (3 + len(keys)) + "|")
        for r in cm.run_jobs(run_search, jobs, args.workers):
            cells = [r["potential"], r["variant"], str(r["seed"])]
            for k in keys:
                v = r[k]
                if isinstance(v, float):
                    v = f"{v:.2e}" if "rel" in k else f"{v:.1f}"
                cells.append(str(v))
            print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

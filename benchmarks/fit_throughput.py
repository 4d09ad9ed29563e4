"""Throughput of the fitting engine: fits/s, evaluator speed, per-expression compile cost.

Prints markdown tables (no assertions on time):

(a) candidate fits/s on the shipped water-dimer sample (force matching with the
    ``force0`` constraint), serial and with 2 worker processes;
(b) U and U' over 1e6 pairs: the postfix interpreter vs a hand-written
    ``numba.njit`` kernel of the same expression;
(c) cost of a never-seen expression: ``Program.from_string`` + first evaluation,
    and whether any kernel was (re)compiled;
(d) machine information.

``--replay`` instead replays real work (issue 31): the first 300 distinct expressions a
default ``mctsff demo`` search fitted at commit 91353c8 (benchmarks/data/demo_expressions.txt)
are fitted on the 200 MP2 dimers (cutoff 9 Å, split 0.2 seed 0, the ``force0`` constraint,
each fitter's defaults otherwise) by the current fitter and by the fitter of ``--baseline REV``
(installed into a temporary venv, see benchmarks/_baseline.py) in the same run; it prints the
CPU-seconds (``time.process_time``) per fit of each, their ratio, fits per CPU-second and the
fraction of expressions whose training loss is equal or lower with the current fitter.
With ``--profile`` a second pass fits the same expressions with the current fitter under
cProfile (the timed columns stay those of the first pass) and gives its CPU-seconds inside the
compiled kernels: the baseline's CPU-seconds per fit over those bound what any rewrite of the
Python around the kernels could gain at the present number of evaluations.
``--record-demo FILE`` recorded that list once (in the baseline venv).

Usage::

    python benchmarks/fit_throughput.py [--quick] [--workers 2]
    python benchmarks/fit_throughput.py --replay [--limit N] [--no-baseline] [--out r.json]
    python benchmarks/fit_throughput.py --replay --profile   # + the time inside the kernels
    python benchmarks/fit_throughput.py --record-demo benchmarks/data/demo_expressions.txt
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime
import math
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling module _baseline
from _baseline import DEFAULT_REV, as_before  # noqa: E402

#: Realistic candidates in the naming convention (prod_/pair_/geom_ per-type, c1… global).
CANDIDATES = [
    "prod_c1/r",
    "prod_c1/r + c2*exp(-r/c3)",
    "prod_c1/r + pair_c2/r**12 - pair_c3/r**6",
    "prod_c1/r + c2/r**12 - c3/r**6",
    "prod_c1*erfc(c2*r)/r",
    "prod_c1*erfc(c2*r)/r + c3*exp(-r/c4)",
    "c1*exp(-r/c2)",
    "c1*exp(-r/c2) - c3/r**6",
    "prod_c1/r + pair_c2*exp(-r/c3) - pair_c4/r**6",
    "c1/r**6",
    "prod_c1/r - c2/r**6",
    "c1*(exp(-2*c2*(r - c3)) - 2*exp(-c2*(r - c3)))",
    "prod_c1/r + c2*(exp(-2*c3*(r - c4)) - 2*exp(-c3*(r - c4)))",
    "c1*tanh(c2*r)/r",
    "prod_c1*tanh(c2*r)/r",
    "prod_c1/r*exp(-r/c2)",
    "prod_c1*exp(-c2*r)/r",
    "prod_c1/r + c2/r**9 - c3/r**6",
    "prod_c1/r + c2/r**8 - c3/r**4",
    "prod_c1/r + geom_c2/r**12 - geom_c3/r**6",
    "prod_c1/r + c2*exp(-c3*r**2)",
    "prod_c1*erf(c2*r)/r",
    "prod_c1/r + c2*exp(-r/c3)/r",
    "prod_c1/sqrt(r**2 + c2)",
    "prod_c1/r + c2*r*exp(-r/c3)",
    "c1*exp(-r/c2)*cos(c3*r)",
    "prod_c1/r + c2/(r**6 + c3)",
    "prod_c1/r + c2*exp(-r/c3) - c4/r**6 - c5/r**8",
    "prod_c1/r + pair_c2*exp(-r/c3)",
    "prod_c1/r + 4*c2*((c3/r)**12 - (c3/r)**6)",
    "prod_c1*erfc(c2*r)/r + c3/r**12",
    "c1*exp(-r/c2) + c3*exp(-r/c4)",
    "prod_c1/r + c2*tanh(c3*(r - c4))",
    "prod_c1/r + c2/r**2",
    "prod_c1/r + prod_c2/r**3",
    "prod_c1/r - c2*exp(-c3*(r - c4)**2)",
    "prod_c1/r*(1 - exp(-c2*r))",
    "c1/r**c2",
    "prod_c1/r + c2*exp(-r/c3)*(1 + c4*r)",
    "prod_c1*exp(-r/c2)/r + c3/r**12 - c4/r**6",
]
QUICK_CANDIDATES = CANDIDATES[:12]

DATA = "water_dimers_mp2_sample20.extxyz"
FIT_OPTIONS = {"constraints": ("force0",), "n_starts": 3}
CONSTRAINT_TOL = 1e-8

# ----------------------------------------------------------------------------- (a) fits/s
_WORKER_FITTER = None


def _make_fitter():
    from mctsff.data import data_file, load_dataset
    from mctsff.fit import Fitter

    ds = load_dataset(data_file(DATA), cutoff=9.0)
    train, valid = ds.split(0.2, seed=0)
    return Fitter(train, valid, **as_before(FIT_OPTIONS))


def _init_worker() -> None:
    """Runs once per worker: load the data and build the Fitter (kernels from the cache)."""
    global _WORKER_FITTER
    _WORKER_FITTER = _make_fitter()


def _summary(res) -> tuple[str, bool, float, float, float]:
    f0 = res.constraints.get("force0", math.inf) if res.valid else math.inf
    return (
        res.expression,
        bool(res.valid),
        float(res.rmse_valid),
        float(f0),
        res.extra.get("seconds", math.nan),
    )


def _fit_one(expr: str):
    return _summary(_WORKER_FITTER.fit(expr))


def _ping(_: int) -> int:
    time.sleep(0.2)  # long enough that every worker gets one
    return os.getpid()


def bench_fits(candidates: list[str], workers: int, repeats: int) -> dict:
    from mctsff.expr import kernels

    kernels.warmup()  # compile / load the cache in the parent before any worker starts
    t = time.perf_counter()
    fitter = _make_fitter()
    setup_s = time.perf_counter() - t
    fitter.fit(candidates[0])  # first call: lazy imports etc.

    serial = []
    cpu = []
    summaries = []
    for _ in range(repeats):
        t = time.perf_counter()
        c = time.process_time()
        summaries = [_summary(fitter.fit(e)) for e in candidates]
        cpu.append(time.process_time() - c)
        serial.append(time.perf_counter() - t)
    t_serial = min(serial)

    os.environ["NUMBA_NUM_THREADS"] = "1"  # inherited by the spawned workers
    ctx = multiprocessing.get_context("spawn")
    batch = candidates * max(1, 3 if len(candidates) < 20 else 2)
    chunk = max(1, len(batch) // (workers * 4))
    t0 = time.perf_counter()
    with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker) as pool:
        pids = set(pool.map(_ping, range(workers * 2)))
        t_start = time.perf_counter() - t0
        par = []
        par_summaries = []
        for _ in range(repeats):
            t = time.perf_counter()
            par_summaries = list(pool.map(_fit_one, batch, chunksize=chunk))
            par.append(time.perf_counter() - t)
    t_par = min(par)
    same = [repr(s[:4]) for s in par_summaries[: len(candidates)]] == [
        repr(s[:4]) for s in summaries
    ]
    return {
        "n": len(candidates),
        "setup_s": setup_s,
        "serial_fps": len(candidates) / t_serial,
        "cpu_fps": len(candidates) / min(cpu),
        "par_fps": len(batch) / t_par,
        "workers": workers,
        "worker_pids": len(pids),
        "pool_start_s": t_start,
        "chunk": chunk,
        "batch": len(batch),
        "same_results": same,
        "summaries": summaries,
    }


# ----------------------------------------------------------------------------- (b) evaluator
def bench_evaluator(n: int, repeats: int) -> dict:
    from numba import njit

    from mctsff.expr.program import Program

    @njit(cache=False, nogil=True, error_model="numpy")
    def hand(r, A, b, C, q, u, du):
        for i in range(r.shape[0]):
            x = r[i]
            e = A * math.exp(-x / b)
            inv = 1.0 / x
            i2 = inv * inv
            i6 = i2 * i2 * i2
            u[i] = e - C * i6 + q * inv
            du[i] = -e / b + 6.0 * C * i6 * inv - q * i2

    rng = np.random.default_rng(0)
    r = rng.uniform(2.5, 9.0, n)
    A, b, C, q = 1000.0, 0.3, 20.0, 1.5
    prog = Program.from_string("A*exp(-r/b) - C/r**6 + q/r")
    consts = np.array([[A, b, C, q]])
    order = [prog.constants.index(c) for c in ("A", "b", "C", "q")]
    consts = consts[:, np.argsort(order)]
    X = r[None, :]
    group = np.zeros(n, dtype=np.int64)
    u = np.empty(n)
    du = np.empty(n)
    hand(r[:8], A, b, C, q, u[:8], du[:8])  # compile outside the timing
    prog.evaluate(X[:, :8], consts, group[:8], mode=1)

    # interleaved repeats (other jobs on the machine hit both alike); wall-clock and
    # this thread's CPU time, best of each
    v_out = np.empty(n)
    d_out = np.empty(n)
    runs = {
        "interp": lambda: prog.evaluate(X, consts, group, mode=1),
        "interp_out": lambda: prog.evaluate(
            X, consts, group, mode=1, out=(v_out, d_out, None, None)
        ),
        "hand": lambda: hand(r, A, b, C, q, u, du),
    }
    wall = {name: [] for name in runs}
    cpu = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            c = time.thread_time()
            t = time.perf_counter()
            fn()
            wall[name].append(time.perf_counter() - t)
            cpu[name].append(time.thread_time() - c)
    t_interp = min(wall["interp"])
    t_hand = min(wall["hand"])
    v, d, _, _ = prog.evaluate(X, consts, group, mode=1)
    hand(r, A, b, C, q, u, du)
    err = max(
        float(np.max(np.abs(v - u) / (np.abs(u) + 1e-300))),
        float(np.max(np.abs(d - du) / (np.abs(du) + 1e-300))),
    )
    if not (np.array_equal(v, v_out) and np.array_equal(d, d_out)):
        err = math.inf  # the preallocated run must give the same numbers
    return {
        "n": n,
        "t_interp": t_interp,
        "t_hand": t_hand,
        "t_interp_out": min(wall["interp_out"]),
        "cpu_interp": min(cpu["interp"]),
        "cpu_interp_out": min(cpu["interp_out"]),
        "cpu_hand": min(cpu["hand"]),
        "max_rel_diff": err,
        "loadavg": _loadavg(),
    }


# ----------------------------------------------------------------------------- (c) compile
def _never_seen(k: int) -> list[str]:
    """Expressions no earlier part of this run (or the kernels' warm-up) used."""
    forms = [
        "c1*exp(-r/c2)*r**{a} + c3/r**{b}",
        "prod_c1*erfc(c2*r)/r**{a} - c3*tanh(r/c4)**{b}",
        "c1*sin(c2*r + {a})/r**{b} + c3",
        "pair_c1/(r**{a} + c2) - c3*exp(-c4*r**{b})",
        "c1*log(1 + c2*r**{a}) + c3*sqrt(r)**{b}",
    ]
    out = []
    i = 0
    while len(out) < k:
        f = forms[i % len(forms)]
        out.append(f.format(a=2 + i % 7, b=3 + (i * 3) % 11))
        i += 1
    return out


def _signature_counts() -> dict[str, int]:
    from mctsff.expr import kernels

    counts = {}
    for name in dir(kernels):
        obj = getattr(kernels, name)
        if hasattr(obj, "signatures") and hasattr(obj, "py_func"):
            counts[name] = len(obj.signatures)
    return counts


def bench_compile(k: int) -> dict:
    from mctsff.expr import kernels
    from mctsff.expr.params import Parameterization
    from mctsff.expr.program import Program

    kernels.warmup()
    r = np.linspace(2.5, 9.0, 1000)
    before = _signature_counts()
    t_parse, t_first, t_second = [], [], []
    for expr in _never_seen(k):
        t = time.perf_counter()
        prog = Program.from_string(expr)
        t_parse.append(time.perf_counter() - t)
        par = Parameterization(prog, ("H", "O"), (("H", "H"), ("H", "O"), ("O", "O")))
        consts, _ = par.table(np.full(par.n_params, 0.7))
        group = np.arange(r.size, dtype=np.int64) % 3
        with np.errstate(all="ignore"):
            t = time.perf_counter()
            prog.evaluate(r, consts, group, mode=kernels.MODE_ALL)
            t_first.append(time.perf_counter() - t)
            t = time.perf_counter()
            prog.evaluate(r, consts, group, mode=kernels.MODE_ALL)
            t_second.append(time.perf_counter() - t)
    after = _signature_counts()
    new = {n: after[n] - before.get(n, 0) for n in after if after[n] != before.get(n, 0)}
    return {
        "k": k,
        "parse_ms": 1e3 * statistics.mean(t_parse),
        "first_ms": 1e3 * statistics.mean(t_first),
        "second_ms": 1e3 * statistics.mean(t_second),
        "new_signatures": new,
        "n_dispatchers": len(after),
    }


# ----------------------------------------------------------------------------- (d) host
def _burn(n: int) -> float:
    t = time.perf_counter()
    s = 0
    for i in range(n):
        s += i * i
    return time.perf_counter() - t


def host_scaling(workers: int, n: int = 3 * 10**6) -> float:
    """Parallel efficiency of pure-Python work: 1.0 means ``workers`` full cores are free."""
    one = min(_burn(n) for _ in range(2))
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        list(pool.map(_burn, [1000] * workers))  # start the workers
        t = time.perf_counter()
        list(pool.map(_burn, [n] * workers))
        many = time.perf_counter() - t
    return one / many


def _loadavg() -> str:
    try:
        with open("/proc/loadavg") as fh:
            return " ".join(fh.read().split()[:3])
    except OSError:  # pragma: no cover - not on Linux
        return "n/a"


# ----------------------------------------------------------------------------- replay (issue 31)
BENCH = Path(__file__).resolve().parent
DEMO_EXPRESSIONS = BENCH / "data" / "demo_expressions.txt"
REPLAY_DATA = "water_dimers_mp2_200.extxyz"
REPLAY_OPTIONS = {"constraints": ("force0",)}
#: Relative tolerance of "equal or lower training loss".
LOSS_RTOL = 1e-9
#: A constraint residual above this counts as not satisfied (the fitter's own flag level).
FEASIBLE_TOL = 1e-7
WARMUP_EXPRESSION = "prod_c1/r + c1*exp(-r/c2)"


def read_expressions(path: str | os.PathLike[str]) -> list[str]:
    """The expressions of a list file: one per line; blank lines and ``#`` comments skipped."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise SystemExit(f"{path}: cannot read the expression list ({exc.strerror})") from None
    out = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if not out:
        raise SystemExit(f"{path}: no expressions")
    return out


def kernel_codes() -> set[tuple[str, int, str]]:
    """The (file, first line, name) of every compiled numba kernel of the mctsff modules
    imported so far: how :mod:`cProfile` names a call of one."""
    from numba.core.dispatcher import Dispatcher

    codes = set()
    for name, module in list(sys.modules.items()):
        if not (name == "mctsff" or name.startswith("mctsff.")) or module is None:
            continue
        for obj in vars(module).values():
            if isinstance(obj, Dispatcher):
                c = obj.py_func.__code__
                codes.add((c.co_filename, c.co_firstlineno, c.co_name))
    return codes


def kernel_seconds(profile, codes: set[tuple[str, int, str]]) -> float:
    """Seconds spent inside the compiled kernels ``codes`` (:func:`kernel_codes`; their own
    time) in a :class:`cProfile.Profile`."""
    import pstats

    stats = pstats.Stats(profile).stats
    return float(sum(v[2] for k, v in stats.items() if k in codes))


def replay_fits(
    expressions: list[str],
    constraints: tuple[str, ...] = ("force0",),
    defaults: bool = False,
    profile: bool = False,
) -> dict:
    """Fit each expression as the demo does; CPU and wall seconds per fit, and the outcome.

    Uses only the API that the current and the earlier fitter share, so the baseline
    worker runs the same function.  ``defaults``: the fitter's own defaults (cutoff
    scheme, wall, constraints) instead of ``constraints`` with the cutoff treated as
    91353c8 treated it; compare only against a baseline with the same defaults.
    ``profile``: every fit runs under :mod:`cProfile`, and ``kernel_s`` of each row is the
    time spent inside the compiled numba kernels (the CPU columns then include the
    profiler's overhead on the Python around them).
    """
    from mctsff.data import data_file, load_dataset
    from mctsff.fit import Fitter

    ds = load_dataset(data_file(REPLAY_DATA), cutoff=9.0)
    train, valid = ds.split(0.2, seed=0)
    options = {} if defaults else as_before({**REPLAY_OPTIONS, "constraints": constraints})
    fitter = Fitter(train, valid, **options)
    fitter.fit(WARMUP_EXPRESSION)  # lazy imports and first-call costs, not timed
    codes = kernel_codes() if profile else set()  # (the warm-up fit imported them all)
    rows = []
    c_all, t_all = time.process_time(), time.perf_counter()
    for expr in expressions:
        prof = None
        if profile:
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
        c, t = time.process_time(), time.perf_counter()
        try:
            res = fitter.fit(expr)
        except Exception as exc:  # a fitter bug must not end the benchmark
            res, error = None, f"{type(exc).__name__}: {exc}"
        cpu, wall = time.process_time() - c, time.perf_counter() - t
        row = {"expression": expr, "cpu_s": cpu, "wall_s": wall}
        if prof is not None:
            prof.disable()
            row["kernel_s"] = kernel_seconds(prof, codes)
        if res is None:
            row.update(valid=False, loss=None, rmse_train=None, constraint=None, error=error)
        else:
            viol = max(res.constraints.values(), default=0.0)
            row.update(
                valid=bool(res.valid),
                loss=_finite(res.loss) if res.valid else None,
                rmse_train=_finite(res.rmse_train) if res.valid else None,
                constraint=_finite(viol),
                n_evals=int(getattr(res, "n_evals", -1)),
                error="" if res.valid else res.reason,
            )
        rows.append(row)
    return {
        "rows": rows,
        "cpu_s": time.process_time() - c_all,
        "wall_s": time.perf_counter() - t_all,
        "n_train_pairs": int(train.n_pairs),
        "options": {"constraints": list(constraints)},
        "profiled": profile,
    }


def _finite(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _loss(row: dict) -> float:
    """A replayed fit's training loss; ``inf`` when invalid or the constraint is not met."""
    if not row.get("valid") or row.get("loss") is None:
        return math.inf
    if row.get("constraint") is not None and row["constraint"] > FEASIBLE_TOL:
        return math.inf
    return float(row["loss"])


def compare_replay(new: dict, base: dict | None) -> dict:
    """Totals of one or two replays of the same expressions (the second is the baseline)."""

    def totals(run: dict) -> dict:
        rows = run["rows"]
        cpu = sum(r["cpu_s"] for r in rows)
        evals = [r["n_evals"] for r in rows if r.get("n_evals", -1) >= 0]
        kernel = [r["kernel_s"] for r in rows if "kernel_s" in r]
        extra = {}
        if evals:  # (fits that end invalid carry no count)
            extra["evals_per_fit"] = sum(evals) / len(evals)
        if len(kernel) == len(rows):
            extra["kernel_per_fit"] = sum(kernel) / len(rows)
            extra["kernel_share"] = sum(kernel) / cpu if cpu > 0 else math.nan
        return extra | {
            "fits": len(rows),
            "cpu_s": cpu,
            "cpu_per_fit": cpu / len(rows),
            "fits_per_cpu_s": len(rows) / cpu if cpu > 0 else math.inf,
            "median_cpu_s": statistics.median(r["cpu_s"] for r in rows),
            "valid": sum(bool(r["valid"]) for r in rows),
            "feasible": sum(math.isfinite(_loss(r)) for r in rows),
        }

    out = {"new": totals(new)}
    if base is None:
        return out
    if [r["expression"] for r in new["rows"]] != [r["expression"] for r in base["rows"]]:
        raise ValueError("the two replays fitted different expressions")
    out["baseline"] = totals(base)
    out["cpu_ratio"] = out["baseline"]["cpu_s"] / out["new"]["cpu_s"]
    if "kernel_per_fit" in out["new"]:
        # with no Python around the kernels at all, the current fitter could be at most this
        # many times faster than the baseline at its present evaluations
        out["kernel_bound"] = out["baseline"]["cpu_per_fit"] / out["new"]["kernel_per_fit"]
    worse = []
    n_ok = 0
    for a, b in zip(new["rows"], base["rows"], strict=True):
        la, lb = _loss(a), _loss(b)
        if la <= lb * (1 + LOSS_RTOL) or (math.isinf(la) and math.isinf(lb)):
            n_ok += 1
        else:
            worse.append({"expression": a["expression"], "new": la, "baseline": lb})
    out["equal_or_lower"] = n_ok
    out["worse"] = sorted(worse, key=lambda w: -(w["new"] / w["baseline"]))
    return out


def replay_table(cmp: dict, baseline_rev: str | None) -> list[str]:
    """The markdown lines of a replay comparison."""
    cols = [("current fitter", cmp["new"])]
    if "baseline" in cmp:
        cols.append((f"{baseline_rev} fitter", cmp["baseline"]))
    lines = ["| | " + " | ".join(c for c, _ in cols) + " |", "|---|" + "---:|" * len(cols)]
    for label, key, fmt in (
        ("expressions fitted", "fits", "{}"),
        ("CPU-seconds in total", "cpu_s", "{:.1f}"),
        ("CPU-seconds per fit", "cpu_per_fit", "{:.4f}"),
        ("median CPU-seconds per fit", "median_cpu_s", "{:.4f}"),
        ("fits per CPU-second", "fits_per_cpu_s", "{:.2f}"),
        ("valid fits", "valid", "{}"),
        (f"valid and constraints met (residual ≤ {FEASIBLE_TOL:g})", "feasible", "{}"),
        ("evaluations per valid fit (residuals and Jacobians)", "evals_per_fit", "{:.0f}"),
        ("CPU-seconds per fit inside the compiled kernels (cProfile)", "kernel_per_fit", "{:.4f}"),
        ("share of the CPU-seconds inside the compiled kernels", "kernel_share", "{:.1%}"),
    ):
        if not any(key in t for _, t in cols):
            continue  # (a figure only a profiled replay has: "–" where one column lacks it)
        cells = (fmt.format(t[key]) if key in t else "–" for _, t in cols)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if "baseline" in cmp:
        n = cmp["new"]["fits"]
        lines += [
            "",
            f"- CPU-seconds per fit, baseline / current: **{cmp['cpu_ratio']:.2f}×** "
            "(target ≥ 10×)",
            f"- training loss equal or lower with the current fitter (within {LOSS_RTOL:g} "
            f"relative; an invalid fit or an unmet constraint counts as infinite loss): "
            f"**{cmp['equal_or_lower']}/{n} ({cmp['equal_or_lower'] / n:.1%})** (target ≥ 99 %)",
        ]
        if "kernel_bound" in cmp:
            lines.append(
                "- the baseline's CPU-seconds per fit over the current fitter's inside its "
                f"kernels: **{cmp['kernel_bound']:.2f}×**, the most the current fitter could gain "
                "over the baseline at its present evaluations if nothing but the kernels cost time"
            )
        for w in cmp["worse"][:5]:
            lines.append(f"  - higher: `{w['expression']}` {w['new']:.6g} vs {w['baseline']:.6g}")
    return lines


def record_demo(task: dict) -> dict:
    """The distinct expressions of a default ``mctsff demo`` search, in the order fitted.

    Runs the demo through its command line with one worker (the order of the fits does not
    depend on the number of workers), a budget of ``task["budget"]`` and no time limit to
    speak of, and takes ``SearchResult.mcts.evaluated`` (engine and local-move fits alike).
    """
    import mctsff.search as search_module
    from mctsff.cli import main as cli_main

    captured = {}
    original = search_module.search

    def recording(*args, **kwargs):
        result = original(*args, **kwargs)
        captured["evaluated"] = list(result.mcts.evaluated)
        return result

    search_module.search = recording
    with tempfile.TemporaryDirectory(prefix="mctsff-demo-") as tmp:
        argv = ["demo", "--budget", str(task["budget"]), "--workers", "1", "--time", "1e6"]
        argv += ["--out", str(Path(tmp) / "run"), "--no-progress"]
        code = cli_main(argv)
    if code != 0 or "evaluated" not in captured:
        raise SystemExit(f"mctsff demo failed (exit {code})")
    seen, ordered = set(), []
    for expr in captured["evaluated"]:
        if expr not in seen:
            seen.add(expr)
            ordered.append(expr)
    return {"expressions": ordered, "argv": argv[:-3] + ["--no-progress"]}


def _worker_tasks() -> dict:
    return {
        "replay": lambda task: replay_fits(
            task["expressions"],
            tuple(task.get("constraints", ("force0",))),
            bool(task.get("defaults", False)),
        ),
        "record": record_demo,
    }


def run_record(args) -> int:
    from _baseline import baseline_or_exit, resolve

    with baseline_or_exit(args.baseline, python=args.baseline_python) as base:
        got = base.run(__file__, {"task": "record", "budget": args.record_budget})
    exprs = got["expressions"][: args.record_count]
    if len(exprs) < args.record_count:
        raise SystemExit(
            f"the demo fitted only {len(exprs)} distinct expressions; raise --record-budget"
        )
    head = [
        f"# The first {len(exprs)} distinct expressions a default `mctsff demo` search fits, "
        "in order",
        f"# (commit {base.commit or resolve(args.baseline)}; `mctsff {' '.join(got['argv'])}`; "
        f"recorded {datetime.date.today().isoformat()} by",
        f"# `python benchmarks/fit_throughput.py --record-demo {args.record_demo} "
        f"--record-count {args.record_count} --record-budget {args.record_budget}`).",
        "# One expression per line; replayed by `fit_throughput.py --replay`.",
    ]
    out = Path(args.record_demo)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(head + exprs) + "\n")
    print(f"wrote {out}: {len(exprs)} expressions")
    return 0


def run_replay(args) -> int:
    import json

    exprs = read_expressions(args.expressions)
    defaults = args.replay_constraint == "defaults"
    constraints = (
        () if args.replay_constraint in ("none", "defaults") else (args.replay_constraint,)
    )
    if args.limit:
        exprs = exprs[: args.limit]
    t_all = time.perf_counter()
    base_run = None
    base_info = ""
    if not args.no_baseline:
        from _baseline import baseline_or_exit

        with baseline_or_exit(args.baseline, python=args.baseline_python) as base:
            base_run = base.run(
                __file__,
                {
                    "task": "replay",
                    "expressions": exprs,
                    "constraints": list(constraints),
                    "defaults": defaults,
                },
            )
            base_info = f"; {base.describe()}"
    new_run = replay_fits(exprs, constraints, defaults)
    if args.profile:  # a second pass: the profiler's overhead stays out of the timed columns
        profiled = replay_fits(exprs, constraints, defaults, profile=True)
        for row, prow in zip(new_run["rows"], profiled["rows"], strict=True):
            row["kernel_s"] = prow["kernel_s"]
    cmp = compare_replay(new_run, base_run)
    print(f"# fit throughput, replay of `mctsff demo` ({len(exprs)} expressions)")
    print()
    print(
        f"{REPLAY_DATA}, cutoff 9 Å, split 0.2 seed 0 ({new_run['n_train_pairs']} training "
        f"pairs), "
        + (
            "Fitter(train, valid) with its defaults"
            if defaults
            else f"Fitter(train, valid, constraints={constraints})"
        )  # fmt: skip
        + ", one process"
        + (", the kernel seconds from a second pass under cProfile" if args.profile else "")
        + f"; {_machine()}{base_info}"
    )
    print()
    print("\n".join(replay_table(cmp, args.baseline if base_run else None)))
    print()
    print(f"benchmark wall time {time.perf_counter() - t_all:.0f} s")
    if args.out:
        payload = {"comparison": cmp, "current": new_run, "baseline": base_run,
                   "baseline_rev": None if base_run is None else args.baseline,
                   "machine": _machine()}  # fmt: skip
        Path(args.out).write_text(json.dumps(payload, indent=1))
        print(f"wrote {args.out}")
    return 0


def _machine() -> str:
    return (
        f"{datetime.date.today().isoformat()}, {platform.machine()}, {os.cpu_count()} cores, "
        f"load {_loadavg()}, Python {platform.python_version()}"
    )


# ----------------------------------------------------------------------------- report
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer candidates and repeats")
    ap.add_argument("--workers", type=int, default=2, help="worker processes for (a)")
    ap.add_argument(
        "--replay",
        action="store_true",
        help="replay the recorded demo expressions with the current and the baseline fitter",
    )
    ap.add_argument(
        "--expressions",
        default=str(DEMO_EXPRESSIONS),
        help="--replay: the expression list (default benchmarks/data/demo_expressions.txt)",
    )
    ap.add_argument("--limit", type=int, default=0, help="--replay: only the first N (0: all)")
    ap.add_argument(
        "--replay-constraint",
        choices=["force0", "none", "defaults"],
        default="force0",
        help="--replay: the constraint of every fit (force0, as the demo was recorded; none: "
        "the fit without it; defaults: the fitter's own defaults, cutoff scheme and wall "
        "included -- compare with a --baseline that has them, e.g. ef21ec3)",
    )
    ap.add_argument("--baseline", default=DEFAULT_REV, help=f"baseline commit ({DEFAULT_REV})")
    ap.add_argument(
        "--baseline-python",
        default=None,
        help="an interpreter that already has the baseline installed (skips the temporary venv)",
    )
    ap.add_argument("--no-baseline", action="store_true", help="--replay: current fitter only")
    ap.add_argument("--out", default=None, help="--replay: write the results as JSON here")
    ap.add_argument(
        "--profile",
        action="store_true",
        help="--replay: a second pass of the current fitter under cProfile; also print its "
        "CPU-seconds per fit inside the compiled kernels and the speed-up over the baseline "
        "that the kernels alone would allow",
    )
    ap.add_argument(
        "--record-demo",
        metavar="FILE",
        default=None,
        help="record the distinct expressions of a default demo search at --baseline into FILE",
    )
    ap.add_argument("--record-count", type=int, default=300, help="--record-demo: how many")
    ap.add_argument(
        "--record-budget", type=int, default=400, help="--record-demo: the demo's budget"
    )
    args = ap.parse_args(argv)
    if args.limit < 0 or args.record_count < 1 or args.record_budget < args.record_count:
        ap.error("--limit must be >= 0 and --record-count <= --record-budget")
    if args.record_demo:
        return run_record(args)
    if args.replay:
        return run_replay(args)
    quick = args.quick
    t_all = time.perf_counter()

    import numba

    cands = QUICK_CANDIDATES if quick else CANDIDATES
    load_before = _loadavg()
    scaling = host_scaling(args.workers)
    a = bench_fits(cands, args.workers, repeats=1 if quick else 2)
    # many short interleaved repeats: on a shared machine the best of each is the run
    # that was not preempted
    b = bench_evaluator(10**6, repeats=7 if quick else 21)
    c = bench_compile(10 if quick else 20)

    print("# mctsff fit throughput" + (" (--quick)" if quick else ""))
    print()
    print(f"## (a) candidate fits/s: {DATA}, cutoff 9 Å, split 0.2 seed 0, {FIT_OPTIONS}")
    print()
    print("| setting | candidates | fits/s |")
    print("|---|---:|---:|")
    print(f"| serial (1 process) | {a['n']} | {a['serial_fps']:.1f} |")
    print(f"| serial, per CPU-second (process time) | {a['n']} | {a['cpu_fps']:.1f} |")
    print(
        f"| {a['workers']} worker processes (spawn, chunksize {a['chunk']}) "
        f"| {a['batch']} | {a['par_fps']:.1f} |"
    )
    print()
    n_ok = sum(1 for s in a["summaries"] if s[1])
    n_f0 = sum(1 for s in a["summaries"] if s[1] and s[3] <= CONSTRAINT_TOL)
    print(
        f"- target ≥ 50 fits/s on 2 cores: {'met' if a['par_fps'] >= 50 else 'NOT met'}; "
        f"speed-up {a['par_fps'] / a['serial_fps']:.2f}× over serial"
    )
    print(
        f"- pool start (spawn {a['worker_pids']} workers, import, load data, build Fitter): "
        f"{a['pool_start_s']:.2f} s (not in the rate); Fitter setup in the parent "
        f"{a['setup_s']:.2f} s"
    )
    print(
        f"- projection for {a['workers']} idle cores (fits per CPU-second × {a['workers']}): "
        f"{a['workers'] * a['cpu_fps']:.0f} fits/s"
    )
    print(f"- workers reproduce the serial results: {a['same_results']}")
    print(
        f"- valid fits: {n_ok}/{a['n']}; meeting force0 ≤ {CONSTRAINT_TOL:g}: "
        f"{n_f0}/{a['n']} ({n_f0 / a['n']:.0%})"
    )
    slow = sorted(a["summaries"], key=lambda s: -s[4])[:3]
    print("- slowest fits: " + "; ".join(f"`{s[0]}` {1e3 * s[4]:.0f} ms" for s in slow))
    print()
    n_rep = 7 if quick else 21
    print(f"## (b) evaluator: U and U' over {b['n']:.0e} pairs, best of {n_rep} interleaved runs")
    print()
    print("| evaluator | wall time (ms) | thread CPU time (ms) |")
    print("|---|---:|---:|")
    print(
        f"| `Program.evaluate(mode=1)` (postfix interpreter, allocates U and U') "
        f"| {1e3 * b['t_interp']:.2f} | {1e3 * b['cpu_interp']:.2f} |"
    )
    print(
        "| `Program.evaluate(mode=1, out=...)` (postfix interpreter, preallocated U and U') "
        f"| {1e3 * b['t_interp_out']:.2f} | {1e3 * b['cpu_interp_out']:.2f} |"
    )
    print(
        f"| hand-written `numba.njit` kernel (preallocated U and U') | {1e3 * b['t_hand']:.2f} "
        f"| {1e3 * b['cpu_hand']:.2f} |"
    )
    ratio = b["t_hand"] / b["t_interp"]
    ratio_out = b["t_hand"] / b["t_interp_out"]
    print()
    print(
        f"- speed ratio interpreter/njit = {ratio:.2f}× wall-clock "
        f"({b['cpu_hand'] / b['cpu_interp']:.2f}× CPU time); with preallocated outputs like the "
        f"hand kernel {ratio_out:.2f}× wall-clock "
        f"({b['cpu_hand'] / b['cpu_interp_out']:.2f}× CPU time); target ≥ 0.35×: "
        f"{'met' if ratio >= 0.35 else 'NOT met'} (allocating), "
        f"{'met' if ratio_out >= 0.35 else 'NOT met'} (preallocated)"
    )
    print(
        f"- max relative difference {b['max_rel_diff']:.1e}; load average during (b) {b['loadavg']}"
    )
    print()
    print(f"## (c) a never-seen expression ({c['k']} expressions, 1000 rows, mode 3)")
    print()
    print("| step | mean (ms) |")
    print("|---|---:|")
    print(f"| `Program.from_string` | {c['parse_ms']:.3f} |")
    print(f"| first evaluation | {c['first_ms']:.3f} |")
    print(f"| second evaluation (same expression) | {c['second_ms']:.3f} |")
    print(f"| JIT compilation | {'0 (no new signatures)' if not c['new_signatures'] else 'yes'} |")
    print()
    print(
        f"- numba dispatchers in mctsff.expr.kernels: {c['n_dispatchers']}; "
        f"new signatures compiled "
        f"during (c): {c['new_signatures'] or 'none'}"
    )
    print()
    print("## (d) machine")
    print()
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        affinity = os.cpu_count()
    print("| item | value |")
    print("|---|---|")
    print(f"| cpu count (usable) | {os.cpu_count()} ({affinity}) |")
    print(f"| cpu | {platform.processor() or platform.machine()} |")
    print(f"| python | {sys.version.split()[0]} |")
    print(f"| numba / numpy | {numba.__version__} / {np.__version__} |")
    print(f"| date | {datetime.datetime.now().isoformat(timespec='seconds')} |")
    print(f"| load average before / after | {load_before} / {_loadavg()} |")
    print(
        f"| parallel efficiency of pure-Python work on {args.workers} processes "
        f"| {scaling:.2f} (1.00 = {args.workers} idle cores) |"
    )
    print(f"| benchmark wall time | {time.perf_counter() - t_all:.1f} s |")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        from _baseline import worker_main

        sys.exit(worker_main(sys.argv[1:], _worker_tasks()))
    sys.exit(main())

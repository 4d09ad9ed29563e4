"""Nguyen-1…12 in plain-regression mode: MCTS and GP (mctsff) vs gplearn and pyoperon.

Every method gets the same wall-clock time per run (``--time`` seconds) on the
same 20 training points (:func:`mctsff.fit.regression.nguyen`, classic sampling
ranges, seed = run seed) and no other information.

* **mcts**, **gp**: ``mctsff.search.search(method=...)`` with a
  :class:`~mctsff.fit.regression.RegressionFitter` on the shipped grammars
  ``nguyen`` (tasks 1–8) and ``nguyen2`` (tasks 9–12): ``+ - * / sin cos exp
  log`` and the variables, no constants (the classic Nguyen setting;
  ``sqrt(x)`` and ``x**y`` must be built as ``exp(log(x)/(x/x+x/x))`` and
  ``exp(y*log(x))``), ``max_length`` productions (``--max-length``, 30: the
  forms of ``GRAMMAR_FORMS`` for Nguyen-3, 4 and 12 need 36, 49 and 37, see the
  ``productions`` column, so these are likely out of reach at the default), the
  default SPL reward, ``time_limit`` = the run time, and linear scaling
  (``RegressionFitter(linear_scaling=True)``, the CLI default: each expression
  ``f`` is scored as ``scale*(f) + offset`` with both solved in closed form when
  that lowers the loss, Keijzer 2003).  Model: the least complex
  member of the final Pareto front whose training RMSE is ≤ 1e-8·RMS(y), else
  the front member with the lowest training RMSE.
  MCTS runs with its regression defaults, which include building-block reuse
  (``transplant=True``: SPL module transplantation; ``elite=0.3``: rollouts
  copy sub-derivations of the 10 best expressions; ``search.OBJECTIVE_DEFAULTS``)
  and the local moves (prune, grow, wrap and substitution; ``mctsff.engines.local.LOCAL_OPTIONS``).
* **mcts-noscale**: the same MCTS without linear scaling (the ablation of
  scaling: ``RegressionFitter(linear_scaling=False)``).
* **mcts-plain**: the same MCTS (with scaling) with reuse switched off (``transplant=False,
  elite=0``), i.e. the settings ``search`` uses for force matching, where
  reuse costs recoveries (benchmarks/README.md): the ablation of reuse.
* **gplearn** (``SymbolicRegressor``): population 1000, functions ``add sub mul
  div sin cos log`` + a protected ``exp``, no constants (``const_range=None``),
  RMSE metric, other settings default; run one generation at a time
  (``warm_start``) until the time is spent or the training RMSE is ≤ 1e-10.
  Model: its ``_program``.
* **gplearn-ls**: the same gplearn with linear scaling, so that the peer gets
  what mctsff's fitter does: the fitness is the RMSE of ``a*f + b`` with
  ``a, b`` solved by least squares per program (a custom ``make_fitness``
  metric); the model is ``a*_program + b`` with ``a, b`` from the training data.
* **pyoperon** (``pyoperon.sklearn.SymbolicRegressor``): symbols ``add sub mul
  div sin cos exp log constant variable``, ``max_time`` = the run time (whole
  seconds, at least 1), one thread, other settings default (so it fits
  constants, with linear scaling).  Model: ``model_``.

Recovery (what this script calls *exact*), per run:

1. the model is turned into a sympy expression (gplearn's protected ``div``,
   ``log`` and ``exp`` become the plain functions); variables are real, and
   positive for the tasks sampled on [0, hi];
2. every float constant is rounded: to 0 when ``|c| < 1e-6``, else to the
   nearest fraction with denominator ≤ 100 when that is within
   ``1e-6·max(1, |c|)``, else left as it is;
3. **symbolic** (SRBench, La Cava et al. 2021): ``simplify(model − truth)`` is
   a constant, or ``simplify(model / truth)`` is a non-zero constant (a second
   try applies ``expand`` and ``expand_log(force=True)`` first).  When sympy
   takes more than 10 s, the numeric rule replaces it: on 200 fresh points the
   standard deviation of model − truth (or of model / truth) is ≤ 1e-8 of the
   RMS of the truth (or of the mean ratio); the ``rule`` column of ``--json``
   says which rule decided;
4. **exact** = symbolic and the (unrounded) model's RMSE against the truth on
   200 fresh points from the task's range is ≤ 1e-6·RMS(truth) (so a constant
   offset or factor found by step 3 must also be 0 or 1 up to fitting error).

Reported: per task and method the exact recoveries, per method the totals with their
95 % Wilson interval, and the check of the issue's target (at least every peer's —
gplearn, gplearn-ls, pyoperon — exact rate on every task): each task where default
MCTS trails a peer, with McNemar's exact p-value of the runs paired by seed (same
training data), so a shortfall can be told from the seed spread
(:func:`target_check`).

Usage::

    python benchmarks/nguyen.py           # 3 seeds, 10 s per run, 2 workers (5 seeds: 43 min)
    python benchmarks/nguyen.py --quick          # 1 seed, 2 s per run, ~3 min on 2 cores
    python benchmarks/nguyen.py --tasks 1 5 8 --methods mcts gplearn --seeds 5 --time 20
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import signal
import sys
import time
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
from compare_methods import _median, paired_comparison, run_jobs, wilson  # sibling script

METHODS = ("mcts", "mcts-noscale", "mcts-plain", "gp", "gplearn", "gplearn-ls", "pyoperon")
#: Extra ``search`` settings of the mctsff variants (everything else is the default).
MCTSFF_SETTINGS = {
    "mcts": {"method": "mcts"},
    "mcts-noscale": {"method": "mcts"},
    "mcts-plain": {"method": "mcts", "transplant": False, "elite": 0.0},
    "gp": {"method": "gp"},
}
#: Each truth as the grammar ``nguyen``/``nguyen2`` writes it (to count its productions).
GRAMMAR_FORMS = {
    1: "x*x*x+x*x+x",
    2: "x*x*x*x+x*x*x+x*x+x",
    3: "x*x*x*x*x+x*x*x*x+x*x*x+x*x+x",
    4: "x*x*x*x*x*x+x*x*x*x*x+x*x*x*x+x*x*x+x*x+x",
    5: "sin(x*x)*cos(x)-x/x",
    6: "sin(x)+sin(x+x*x)",
    7: "log(x+x/x)+log(x*x+x/x)",
    8: "exp(log(x)/(x/x+x/x))",
    9: "sin(x)+sin(y*y)",
    10: "sin(x)*cos(y)+sin(x)*cos(y)",
    11: "exp(y*log(x))",
    12: "x*x*x*x-x*x*x+y*y/(y/y+y/y)-y",
}
#: mctsff's regression fitter scales every expression (``scale*(f) + offset``, its
#: default) except in the ablation mcts-noscale; gplearn-ls gives gplearn the same,
#: pyoperon scales by default.
LINEAR_SCALING = {m: m != "mcts-noscale" for m in MCTSFF_SETTINGS}
SYMPY_TIMEOUT = 10.0
EXACT_TOL = 1e-6
NUMERIC_TOL = 1e-8


# ----------------------------------------------------------------------------- availability
def unavailable(method: str) -> str | None:
    """Why ``method`` cannot run here (``None`` when it can)."""
    module = {
        "gplearn": "gplearn.genetic",
        "gplearn-ls": "gplearn.genetic",
        "pyoperon": "pyoperon.sklearn",
    }.get(method)
    if module is None:
        return None
    try:
        __import__(module)
    except Exception as exc:  # ImportError, or a broken binary wheel
        return f"{method} is not usable here ({type(exc).__name__}: {exc}); pip install {method}"
    return None


# ----------------------------------------------------------------------------- sympy helpers
class _Timeout(Exception):
    pass


def _alarm(seconds: float):
    """Context manager raising :class:`_Timeout` after ``seconds`` (main thread, Unix)."""
    import contextlib

    @contextlib.contextmanager
    def cm():
        if not hasattr(signal, "setitimer"):
            yield
            return

        def handler(signum, frame):
            raise _Timeout

        old = signal.signal(signal.SIGALRM, handler)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)

    return cm()


def task_symbols(task: int) -> dict:
    """Sympy symbols of a task (positive when the task samples [0, hi])."""
    import sympy

    from mctsff.fit.regression import NGUYEN

    _, variables, (lo, _) = NGUYEN[task]
    kw = {"positive": True} if lo >= 0 else {"real": True}
    return {v: sympy.Symbol(v, **kw) for v in variables}


def round_constants(expr):
    """Round the float constants of a sympy expression (rule 2 of the module docstring)."""
    import sympy

    reps = {}
    for f in expr.atoms(sympy.Float):
        v = float(f)
        if abs(v) < 1e-6:
            reps[f] = sympy.Integer(0)
            continue
        frac = Fraction(v).limit_denominator(100)
        if abs(float(frac) - v) <= 1e-6 * max(1.0, abs(v)):
            reps[f] = sympy.Rational(frac.numerator, frac.denominator)
    return expr.xreplace(reps) if reps else expr


def _is_const(e, symbols) -> bool:
    import sympy

    return not (e.free_symbols & set(symbols)) and not e.has(sympy.nan, sympy.zoo, sympy.oo)


def symbolic_check(model, truth, symbols, X_test: np.ndarray) -> tuple[bool, str]:
    """SRBench-style check of a rounded model against the truth; returns (passed, rule)."""
    import sympy

    syms = list(symbols.values())
    try:
        with _alarm(SYMPY_TIMEOUT):
            for prep in (lambda e: e, lambda e: sympy.expand_log(sympy.expand(e), force=True)):
                d = sympy.simplify(prep(model - truth))
                if _is_const(d, syms):
                    return True, "sympy: difference"
                if truth != 0:
                    q = sympy.simplify(prep(model / truth))
                    if _is_const(q, syms) and q != 0:
                        return True, "sympy: ratio"
            return False, "sympy"
    except _Timeout:
        pass
    except Exception as exc:  # a model sympy cannot handle is not a solution
        return False, f"sympy error: {type(exc).__name__}"
    # numeric rule on fresh points
    with np.errstate(all="ignore"):
        m = _lambdify(model, symbols)(X_test)
        t = _lambdify(truth, symbols)(X_test)
        if not (np.all(np.isfinite(m)) and np.all(np.isfinite(t))):
            return False, "numeric (timeout)"
        rms_t = float(np.sqrt(np.mean(t**2))) or 1.0
        if np.std(m - t) <= NUMERIC_TOL * rms_t:
            return True, "numeric (timeout): difference"
        if np.all(t != 0):
            r = m / t
            if abs(np.mean(r)) > 0 and np.std(r) <= NUMERIC_TOL * abs(np.mean(r)):
                return True, "numeric (timeout): ratio"
    return False, "numeric (timeout)"


def _lambdify(expr, symbols):
    import sympy

    f = sympy.lambdify(list(symbols.values()), expr, modules="numpy")

    def call(X: np.ndarray) -> np.ndarray:
        out = f(*X)
        return np.broadcast_to(np.asarray(out, dtype=float), X.shape[1:]).astype(float)

    return call


# ----------------------------------------------------------------------------- runners
def _run_mctsff(method, task, seed, time_s, max_length, data, symbols):
    import sympy

    from mctsff.fit.regression import NGUYEN, RegressionFitter
    from mctsff.search import search

    grammar = "nguyen" if len(NGUYEN[task][1]) == 1 else "nguyen2"
    fitter = RegressionFitter(data, n_starts=1, seed=0, linear_scaling=LINEAR_SCALING[method])
    res = search(
        fitter,
        grammar,
        **MCTSFF_SETTINGS[method],
        budget=None,
        time_limit=time_s,
        seed=seed,
        max_length=max_length,
    )
    pts = res.front.points
    rms_y = float(np.sqrt(np.mean(data.y**2)))
    exact = [p for p in pts if p.valid and p.rmse_train <= 1e-8 * rms_y]
    pick = min(exact, key=lambda p: p.complexity) if exact else res.best
    if pick is None:
        return None, None, {"n_evaluations": res.n_evaluations}
    expr = sympy.sympify(pick.expression, locals=dict(symbols))
    expr = expr.xreplace({sympy.Symbol(k): v for k, v in pick.params.items()})

    def predict(X):
        return _lambdify(expr, symbols)(X)

    return expr, predict, {"n_evaluations": res.n_evaluations, "expression": pick.expression}


def _protected_exp(x):
    with np.errstate(over="ignore"):
        return np.exp(np.clip(x, -100.0, 100.0))


def _scaling(y: np.ndarray, f: np.ndarray, w: np.ndarray | None = None) -> tuple[float, float]:
    """``(a, b)`` minimising the (weighted) mean square of ``a*f + b - y``; ``(0, mean)`` if
    ``f`` is not finite."""
    w = np.ones_like(y) if w is None else w
    if not np.all(np.isfinite(f)):
        return 0.0, float(np.average(y, weights=w))
    sw = np.sqrt(w)
    A = np.column_stack([f, np.ones_like(f)]) * sw[:, None]
    (a, b), *_ = np.linalg.lstsq(A, y * sw, rcond=None)
    return float(a), float(b)


def _scaled_rmse(y, y_pred, w):
    """gplearn fitness: RMSE after the best linear scaling (Keijzer 2003)."""
    with np.errstate(all="ignore"):
        if not np.all(np.isfinite(y_pred)):
            return 1e300
        a, b = _scaling(y, y_pred, w)
        val = float(np.sqrt(np.average((a * y_pred + b - y) ** 2, weights=w)))
    return val if math.isfinite(val) else 1e300


def _run_gplearn(task, seed, time_s, data, symbols, scaled=False):
    import sympy
    from gplearn.fitness import make_fitness
    from gplearn.functions import make_function
    from gplearn.genetic import SymbolicRegressor

    exp = make_function(function=_protected_exp, name="exp", arity=1, wrap=False)
    metric = make_fitness(function=_scaled_rmse, greater_is_better=False, wrap=False)
    est = SymbolicRegressor(
        population_size=1000,
        generations=1,
        function_set=("add", "sub", "mul", "div", "sin", "cos", "log", exp),
        const_range=None,
        metric=metric if scaled else "rmse",
        stopping_criteria=1e-10,
        warm_start=True,
        random_state=seed,
        n_jobs=1,
    )
    X = data.X.T
    t0 = time.perf_counter()
    gen = 1
    while True:
        est.set_params(generations=gen)
        est.fit(X, data.y)
        if time.perf_counter() - t0 >= time_s or est.run_details_["best_fitness"][-1] <= 1e-10:
            break
        gen += 1
    names = list(symbols.values())
    local = {
        "add": lambda a, b: a + b,
        "sub": lambda a, b: a - b,
        "mul": lambda a, b: a * b,
        "div": lambda a, b: a / b,
        "sin": sympy.sin,
        "cos": sympy.cos,
        "log": sympy.log,
        "exp": sympy.exp,
        **{f"X{i}": s for i, s in enumerate(names)},
    }
    program = str(est._program)
    expr = sympy.sympify(program, locals=local)
    if not scaled:
        return expr, (lambda Xt: est.predict(Xt.T)), {"generations": gen, "expression": program}
    with np.errstate(all="ignore"):
        a, b = _scaling(data.y, est.predict(X))
    expr = sympy.Float(a) * expr + sympy.Float(b)
    extra = {"generations": gen, "expression": f"{a!r}*({program}) + {b!r}"}
    return expr, (lambda Xt: a * est.predict(Xt.T) + b), extra


def _run_pyoperon(task, seed, time_s, data, symbols):
    import sympy
    from pyoperon.sklearn import SymbolicRegressor

    est = SymbolicRegressor(
        allowed_symbols="add,sub,mul,div,sin,cos,exp,log,constant,variable",
        max_time=max(1, int(round(time_s))),
        random_state=seed,
        n_threads=1,
    )
    est.fit(data.X.T, data.y)
    names = list(symbols)
    text = est.get_model_string(est.model_, 17, names)
    expr = sympy.sympify(text, locals=dict(symbols))
    return expr, (lambda Xt: est.predict(Xt.T)), {"expression": text}


def run_one(task: int, method: str, seed: int, time_s: float, max_length: int) -> dict:
    """One run of one method on one task; returns recovery, accuracy and timing."""
    warnings.simplefilter("ignore")
    import sympy

    from mctsff.fit.regression import nguyen

    data, truth_text = nguyen(task, seed=seed)
    fresh, _ = nguyen(task, seed=100_000 + seed, n=200)
    symbols = task_symbols(task)
    truth = sympy.sympify(truth_text, locals=dict(symbols))
    row = {"task": task, "method": method, "seed": seed, "time_s": time_s}
    w0, c0 = time.perf_counter(), time.process_time()
    if method in MCTSFF_SETTINGS:
        model, predict, extra = _run_mctsff(method, task, seed, time_s, max_length, data, symbols)
    elif method in ("gplearn", "gplearn-ls"):
        scaled = method == "gplearn-ls"
        model, predict, extra = _run_gplearn(task, seed, time_s, data, symbols, scaled)
    else:
        model, predict, extra = _run_pyoperon(task, seed, time_s, data, symbols)
    row.update(wall_s=time.perf_counter() - w0, cpu_s=time.process_time() - c0, **extra)
    if model is None:
        return {**row, "model": "", "symbolic": False, "exact": False, "rule": "no model",
                "test_nrmse": math.inf}  # fmt: skip
    y_true = fresh.y
    with np.errstate(all="ignore"):
        y_pred = np.asarray(predict(fresh.X), dtype=float)
    rms_t = float(np.sqrt(np.mean(y_true**2))) or 1.0
    nrmse = float(np.sqrt(np.mean((y_pred - y_true) ** 2)) / rms_t)
    if not math.isfinite(nrmse):
        nrmse = math.inf
    rounded = round_constants(model)
    symbolic, rule = symbolic_check(rounded, truth, symbols, fresh.X)
    row.update(
        model=str(rounded)[:300],
        symbolic=symbolic,
        exact=bool(symbolic and nrmse <= EXACT_TOL),
        rule=rule,
        test_nrmse=nrmse,
    )
    return row


# ----------------------------------------------------------------------------- report


def table(rows: list[dict], tasks: list[int], methods: list[str]) -> str:
    """Markdown: exact recoveries per task and method, then per-method totals."""
    from mctsff.engines.gp import find_derivation
    from mctsff.fit.regression import NGUYEN

    out = [
        "| task | truth | productions | " + " | ".join(methods) + " |",
        "|---|---|---|" + "---|" * len(methods),
    ]
    for t in tasks:
        grammar = "nguyen" if len(NGUYEN[t][1]) == 1 else "nguyen2"
        d = find_derivation(grammar, GRAMMAR_FORMS[t], max_length=60)
        prods = d.n_productions if d is not None else "?"
        cells = []
        for m in methods:
            sel = [r for r in rows if r["task"] == t and r["method"] == m]
            cells.append(f"{sum(r['exact'] for r in sel)}/{len(sel)}")
        out.append(f"| Nguyen-{t} | `{NGUYEN[t][0]}` | {prods} | " + " | ".join(cells) + " |")
    out += [
        "",
        "| method | exact (95 % Wilson CI) | symbolic (SRBench) | median test NRMSE "
        "| median wall s | median CPU s |",
        "|---|---|---|---|---|---|",
    ]
    for m in methods:
        sel = [r for r in rows if r["method"] == m]
        if not sel:
            continue
        k = sum(r["exact"] for r in sel)
        lo, hi = wilson(k, len(sel))
        out.append(
            f"| {m} | {k}/{len(sel)} ({lo:.2f}–{hi:.2f}) "
            f"| {sum(r['symbolic'] for r in sel)}/{len(sel)} "
            f"| {_median(r['test_nrmse'] for r in sel):.2e} "
            f"| {_median(r['wall_s'] for r in sel):.1f} "
            f"| {_median(r['cpu_s'] for r in sel):.1f} |"
        )
    out += ["", *target_check(rows, tasks, methods)]
    return "\n".join(out)


PEERS = ("gplearn", "gplearn-ls", "pyoperon")


def target_check(rows: list[dict], tasks: list[int], methods: list[str], a: str = "mcts"):
    """Lines: the tasks where ``a`` recovers less often than a peer, with how sure that is.

    The issue's target is at least every peer's exact-recovery rate on every task.
    Runs with the same seed share the training data, so the two methods' runs pair
    by seed; McNemar's exact two-sided p-value (binomial test of the discordant
    pairs, p = 1/2) says whether a shortfall is more than the seed spread.
    """
    peers = [m for m in PEERS if m in methods]
    if a not in methods or not peers:
        return []
    lines = []
    for peer in peers:
        for t in tasks:
            # compare_methods' pairing and McNemar test, with the task as the "potential"
            runs = [
                {"method": r["method"], "potential": t, "seed": r["seed"], "recovered": r["exact"]}
                for r in rows
                if r["task"] == t and r["method"] in (a, peer)
            ]
            try:
                c = paired_comparison(runs, a, peer)
            except ValueError:  # no seed ran both
                continue
            if c["recovered_a"] >= c["recovered_b"]:
                continue
            n = c["pairs"]
            lines.append(
                f"- Nguyen-{t}: {a} {c['recovered_a']}/{n} < {peer} {c['recovered_b']}/{n} "
                f"(paired by seed: {c['only_a']} vs {c['only_b']} runs only one recovered, "
                f"McNemar exact p = {c['p_value']:.2g})"
            )
    verdict = f"target (at least every peer's rate on every task: {', '.join(peers)}): " + (
        "**met**" if not lines else f"**not met** on {len(lines)} task/peer pair(s):"
    )
    return [verdict, *lines]


def plot(rows: list[dict], tasks: list[int], methods: list[str], path: Path, title: str) -> None:
    """Grouped bars: exact recovery rate per task and method."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(6.0, 0.9 * len(tasks) + 2), 3.8), dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(tasks))
    width = 0.8 / max(len(methods), 1)
    for k, m in enumerate(methods):
        rates = []
        for t in tasks:
            sel = [r for r in rows if r["task"] == t and r["method"] == m]
            rates.append(sum(r["exact"] for r in sel) / len(sel) if sel else 0.0)
        ax.bar(x + (k - (len(methods) - 1) / 2) * width, rates, width, label=m, color=f"C{k}")
    ax.set_xticks(x, [f"N{t}" for t in tasks])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("exact recovery rate")
    ax.set_title(title, fontsize="small")
    ax.legend(ncol=len(methods), fontsize="small")
    fig.tight_layout()
    fig.savefig(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, nargs="*", default=list(range(1, 13)))
    ap.add_argument("--methods", nargs="*", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--seeds", type=int, default=None, help="runs per task and method (3; quick 1)")
    ap.add_argument("--time", type=float, default=None, help="wall seconds per run (10; quick 2)")
    ap.add_argument("--max-length", type=int, default=30, help="productions (mcts, gp)")
    ap.add_argument("--workers", type=int, default=2, help="parallel runs (2)")
    ap.add_argument("--quick", action="store_true", help="1 seed, 2 s per run")
    ap.add_argument("--png", default="nguyen.png", help="figure path")
    ap.add_argument("--json", default=None, help="write every run's record here")
    args = ap.parse_args(argv)
    seeds = args.seeds if args.seeds is not None else (1 if args.quick else 3)
    time_s = args.time if args.time is not None else (2.0 if args.quick else 10.0)
    warnings.simplefilter("ignore")

    methods = []
    for m in args.methods:
        why = unavailable(m)
        if why:
            print(f"skipping {m}: {why}")
        else:
            methods.append(m)
    versions = []
    for m in ("gplearn", "pyoperon"):
        if m in methods:
            from importlib.metadata import version

            versions.append(f"{m} {version(m)}")
    machine = platform.processor() or platform.machine()
    head = (
        f"Nguyen benchmark — {datetime.date.today()}, {machine}, {os.cpu_count()} cores "
        f"(load average {os.getloadavg()[0]:.2f} at the start), {args.workers} worker "
        f"processes, {seeds} seed(s), "
        f"{time_s:g} s wall per run, max_length {args.max_length}"
    )
    print(f"# {head}" + (f"; {', '.join(versions)}" if versions else ""))
    print()
    jobs = [
        (t, m, s, time_s, args.max_length)
        for t in args.tasks
        for s in range(seeds)
        for m in methods
    ]
    w0 = time.perf_counter()
    rows = run_jobs(run_one, jobs, args.workers)
    wall = time.perf_counter() - w0
    print(table(rows, list(args.tasks), methods))
    print()
    print(
        f"total: {len(rows)} runs, {wall:.0f} s wall, "
        f"{sum(r['cpu_s'] for r in rows):.0f} s CPU in the runs; load average over the last "
        f"15 min at the end {os.getloadavg()[2]:.2f}"
    )
    plot(rows, list(args.tasks), methods, Path(args.png), head)
    print(f"wrote {args.png}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, default=str))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

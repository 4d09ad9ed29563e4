"""Evaluate batches of candidate expressions serially, on local processes or on Dask.

The search hands :class:`Evaluator` the new distinct expressions of one
iteration; the evaluator fits them and returns the results in order, so the
search is reproducible whatever the number of workers (each fit is itself
deterministic: its starts are seeded from the fitter's seed and the expression).

* ``workers=1``: in-process; with a ``timeout``, in one worker process instead (a
  fit running in this process could not be stopped).
* ``workers=N``: a :class:`concurrent.futures.ProcessPoolExecutor` (``spawn`` or
  ``forkserver``); the fitter (with its dataset) is shipped **once** per worker
  by the pool initializer, numba kernels are compiled into the on-disk cache
  by the parent and loaded by each worker before its first task, and each
  worker runs with ``NUMBA_NUM_THREADS=1`` / ``OMP_NUM_THREADS=1`` (and BLAS
  limited to one thread by ``threadpoolctl``).
  Candidates are sent in chunks of about :data:`TASK_SECONDS` of fitting
  (sized from the mean fit time so far, one candidate per chunk at first), and
  the pool hands chunks to whichever worker is free, so one slow fit does not
  leave the other workers idle behind a static share of the batch.  Workers
  start in the background on the first call; until they are ready (≈ 1–2 s)
  batches are fitted in the calling process, so start-up costs no wall time
  (not with a ``timeout``: time limits need the workers, so the first call waits).
* ``scheduler="tcp://host:8786"`` or a ``distributed.Client``: the fitter is
  scattered to every Dask worker once (``broadcast=True``) and chunks are
  submitted as tasks (``dask`` extra).

Work besides the fits (:meth:`Evaluator.background`: a term library's selection, which
takes seconds to minutes) runs in a process of its own beside a local pool's workers, or
as a Dask task, while the workers fit; in process (one worker, no time limit) it has no
place to go and runs where its caller needs it.

A batch may carry starts: ``starts={expression: {constant: value}}`` (e.g. the constants a
term selection found, :mod:`mctsff.engines.terms`) go with their expressions to whichever
process fits them, as :meth:`~mctsff.fit.forces.Fitter.fit`'s ``start``.

Robustness: a candidate that raises comes back ``valid=False`` with the error;
a batch that exceeds ``timeout`` seconds, or a worker process that dies, costs
the candidates concerned (retried once one by one in a fresh pool), never the run.
"""

from __future__ import annotations

import functools
import math
import multiprocessing
import os
import pickle
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import CancelledError, ProcessPoolExecutor, TimeoutError
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from mctsff.config import DEFAULTS
from mctsff.fit.result import FitResult

_WORKER_FITTER = None

#: Target fitting time of one task (chunk of candidates), in seconds.
TASK_SECONDS = 0.05


@functools.cache
def _prepare_worker() -> None:
    """Once per worker process: BLAS limited to one thread, numba kernels loaded.

    BLAS may already be loaded when a worker starts, so environment variables come too
    late; the kernels are loaded from the on-disk cache now (≈ 0.3 s) rather than
    inside the worker's first fits.
    """
    from threadpoolctl import threadpool_limits

    from mctsff.expr import kernels

    threadpool_limits(limits=1)
    kernels.warmup()


def _init_worker(payload: bytes) -> None:
    """Pool initializer: unpickle the fitter once per worker process."""
    global _WORKER_FITTER
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _prepare_worker()
    _WORKER_FITTER = pickle.loads(payload)


#: Constants to start an expression's fit from, by expression (:meth:`Evaluator.submit`).
Starts = Mapping[str, Mapping[str, float]]


def fit_one(fitter, expression: str, start: Mapping[str, float] | None = None) -> FitResult:
    """Fit one expression (from ``start`` too, where given: ``fitter.fit(expression,
    start=start)``); any exception becomes an invalid result."""
    try:
        if start:
            return fitter.fit(expression, start=start)
        return fitter.fit(expression)
    except Exception as exc:  # a candidate must never end the run
        res = FitResult.invalid(expression, f"{type(exc).__name__}: {exc}")
        res.extra["traceback"] = traceback.format_exc(limit=3)
        return res


def _call_with_fitter(fn: Callable[..., Any], *args: Any) -> Any:
    """Task of the background process: ``fn(fitter, *args)`` with this worker's fitter."""
    return fn(_WORKER_FITTER, *args)


def _call_with(fn: Callable[..., Any], fitter, *args: Any) -> Any:
    """Dask task of :meth:`Evaluator.background`: prepared as a local worker is."""
    _prepare_worker()
    return fn(fitter, *args)


def _ready() -> bool:
    return _WORKER_FITTER is not None


def _fit_chunk(expressions: Sequence[str], starts: Starts | None = None) -> list[dict[str, Any]]:
    starts = starts or {}
    return [fit_one(_WORKER_FITTER, e, starts.get(e)).to_dict() for e in expressions]


def _fit_chunk_with(
    fitter, expressions: Sequence[str], starts: Starts | None = None
) -> list[dict[str, Any]]:
    """Dask task: prepared as a local worker is (one BLAS thread, kernels loaded)."""
    _prepare_worker()
    starts = starts or {}
    return [fit_one(fitter, e, starts.get(e)).to_dict() for e in expressions]


def _starts_of(chunk: Sequence[str], starts: Starts | None) -> dict[str, Any] | None:
    """The starts of a chunk's expressions (``None`` without any), sent with it."""
    if not starts:
        return None
    mine = {e: dict(starts[e]) for e in chunk if e in starts}
    return mine or None


def _chunks(items: list[str], n: int, size: int | None = None) -> list[list[str]]:
    """Split into chunks of ``size`` (default: ``n`` equal chunks), never more than n-way."""
    n = max(1, min(n, len(items)))
    most = math.ceil(len(items) / n)
    size = most if size is None else max(1, min(size, most))
    return [items[i : i + size] for i in range(0, len(items), size)]


class Batch:
    """A batch handed to :meth:`Evaluator.submit`; :meth:`result` waits for its results."""

    def __init__(
        self, evaluator: Evaluator, expressions, collect, t0: float, pooled: bool = False
    ) -> None:
        self.expressions = list(expressions)
        self._evaluator = evaluator
        self._collect = collect
        self._t0 = t0
        self._out: list[FitResult] | None = None
        self._pooled = pooled  # sent to the pool: counted in the evaluator's batches in flight
        if pooled:
            evaluator._in_flight += 1

    def result(self) -> list[FitResult]:
        """The results, in the order of the expressions (waits for the workers)."""
        if self._out is None:
            try:
                out = list(self._collect())
            finally:
                if self._pooled:
                    self._pooled = False
                    self._evaluator._in_flight -= 1
            self._evaluator._account(self.expressions, out, self._t0)
            self._out = out
        return self._out


class Evaluator:
    """Fits batches of expressions; ``evaluator(expressions) -> list[FitResult]``.

    Parameters
    ----------
    fitter
        Anything with ``fit(expression) -> FitResult`` that pickles (datasets and
        built-in constraints do; a user constraint must be a module-level function).
    workers
        Number of local worker processes (1 = in-process). ``None`` or 0 = all cores.
    scheduler
        Dask scheduler address or ``distributed.Client``; overrides ``workers``.
    timeout
        Seconds allowed per candidate in a batch (``None`` = no limit; local pools only:
        with ``workers=1`` the fits then run in one worker process, which is replaced
        when a fit overruns).
    mp_context
        ``"spawn"`` (default) or ``"forkserver"``.

    Examples
    --------
    >>> ev = Evaluator(fitter, workers=2)           # doctest: +SKIP
    >>> results = ev(["c1/r", "c1*exp(-r/c2)"])     # doctest: +SKIP
    >>> ev.close()                                  # doctest: +SKIP
    """

    def __init__(
        self,
        fitter,
        workers: int | None = DEFAULTS.parallel.workers,
        *,
        scheduler: Any = DEFAULTS.parallel.scheduler,
        timeout: float | None = DEFAULTS.parallel.timeout,
        mp_context: str = "spawn",
    ):
        self.fitter = fitter
        self.workers = int(workers or os.cpu_count() or 1)
        self.timeout = timeout
        self.mp_context = mp_context
        self.seconds = 0.0
        self.fit_seconds = 0.0
        self.n_fits = 0
        self.n_failures = 0
        self.n_in_process = 0
        self._in_flight = 0  # batches sent to the pool and not collected yet
        self._pool: ProcessPoolExecutor | None = None
        self._spare: ProcessPoolExecutor | None = None  # background work (not the fits)
        self._background: list = []
        self._starting: list = []
        self._client = None
        self._remote_fitter = None
        self._payload: bytes | None = None
        # a fit is stopped only by ending its process: a time limit needs a worker
        self._use_pool = scheduler is None and (self.workers > 1 or timeout is not None)
        if scheduler is not None:
            self._start_dask(scheduler)
        elif self._use_pool:
            try:
                self._payload = pickle.dumps(fitter, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as exc:
                raise ValueError(
                    f"the fitter cannot be sent to worker processes ({exc}); user constraints "
                    "must be module-level functions, or use workers=1"
                ) from None

    # ----------------------------------------------------------------- backends
    def _start_dask(self, scheduler) -> None:
        try:
            from distributed import Client
        except ImportError:
            raise ImportError(
                "a Dask scheduler needs the 'dask' extra: pip install 'mctsff[dask]'"
            ) from None
        self._client = scheduler if isinstance(scheduler, Client) else Client(scheduler)
        self._remote_fitter = self._client.scatter(self.fitter, broadcast=True)
        n = sum(self._client.nthreads().values())
        self.workers = max(1, n)

    def start(self, wait: bool = True) -> None:
        """Start the worker processes (done by the first call otherwise).

        Parameters
        ----------
        wait
            Block until every worker has loaded the fitter and the kernels.  Without
            waiting, batches evaluated before the workers are ready are fitted in
            this process (unless ``timeout`` is set), so start-up costs no wall time.
        """
        if self._client is not None or not self._use_pool:
            return
        if self._pool is None:
            from mctsff.expr import kernels

            kernels.warmup()  # compile into the on-disk cache here, so workers only load
            ctx = multiprocessing.get_context(self.mp_context)
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=ctx,
                initializer=_init_worker,
                initargs=(self._payload,),
            )
            self._starting = [self._pool.submit(_ready) for _ in range(self.workers)]
        if wait:
            for fut in self._starting:
                fut.result()

    @property
    def ready(self) -> bool:
        """True once the worker processes (if any) have started."""
        if self._client is not None or not self._use_pool:
            return True
        return self._pool is not None and all(f.done() for f in self._starting)

    def _pool_get(self) -> ProcessPoolExecutor:
        # every worker started before a batch is sent: time limits never include start-up
        self.start(wait=True)
        return self._pool

    def _pool_reset(self) -> None:
        if self._pool is not None:
            for p in list(getattr(self._pool, "_processes", {}).values()):
                p.terminate()
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def background(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Start ``fn(fitter, *args)`` away from the fits and return its future (``done()``,
        ``result()``, ``cancel()``), or ``None`` for an evaluator that fits in this process
        (the caller then runs it itself, when it needs it).

        Local pools run it in one more process, beside the workers, made as they are (the
        fitter shipped once, one BLAS thread), so a worker's time limit or its replacement
        never touches it; a Dask cluster runs it as a task.  ``fn`` must be a module-level
        function.  :meth:`close` ends what is still running."""
        if self._client is not None:
            fut = self._client.submit(_call_with, fn, self._remote_fitter, *args, pure=False)
        elif self._use_pool:
            if self._spare is None:
                from mctsff.expr import kernels

                kernels.warmup()  # compiled into the on-disk cache here, only loaded there
                self._spare = ProcessPoolExecutor(
                    max_workers=1,
                    mp_context=multiprocessing.get_context(self.mp_context),
                    initializer=_init_worker,
                    initargs=(self._payload,),
                )
            fut = self._spare.submit(_call_with_fitter, fn, *args)
        else:
            return None
        self._background.append(fut)
        return fut

    def close(self) -> None:
        """Stop worker processes and background work (Dask clients given by the caller
        stay open)."""
        self._pool_reset()
        for fut in self._background:
            fut.cancel()
        self._background = []
        if self._spare is not None:
            for p in list(getattr(self._spare, "_processes", {}).values()):
                p.terminate()
            self._spare.shutdown(wait=False, cancel_futures=True)
            self._spare = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ evaluate
    def __call__(self, expressions: list[str], starts: Starts | None = None) -> list[FitResult]:
        return self.submit(expressions, starts).result()

    def submit(self, expressions: Sequence[str], starts: Starts | None = None) -> Batch:
        """Start fitting a batch; :meth:`Batch.result` collects it (results in order).

        Workers keep fitting while the caller prepares the next batch, so a search can
        keep them busy across iterations.  In process (one worker), the batch is fitted
        here, now; so is a single expression when no other batch is in the pool (the
        caller would only wait for it), while one submitted beside a batch still in the
        pool goes to a worker, so a caller that keeps batches in flight (MCTS's
        ``pipeline``) is not stopped by it.  ``starts`` gives some expressions constants to
        start from (:meth:`~mctsff.fit.forces.Fitter.fit`'s ``start``), by expression.
        """
        t0 = time.perf_counter()
        exprs = list(expressions)
        if not exprs:
            return Batch(self, exprs, list, t0)
        if self._client is not None:
            return Batch(self, exprs, self._dask(exprs, starts), t0)
        first: list[FitResult] = []
        rest = exprs
        if self._use_pool and (self.timeout is not None or len(exprs) > 1 or self._in_flight):
            self.start(wait=self.timeout is not None)
            while len(first) < len(exprs) and not self.ready:
                # workers still starting: fit here meanwhile (no time limit is set)
                e = exprs[len(first)]
                first.append(fit_one(self.fitter, e, (starts or {}).get(e)))
                self.n_in_process += 1
            rest = exprs[len(first) :]
            if len(rest) > 1 or (rest and (self.timeout is not None or self._in_flight)):
                collect = self._local(rest, starts)
                return Batch(self, exprs, lambda: first + collect(), t0, pooled=True)
        out = first + [fit_one(self.fitter, e, (starts or {}).get(e)) for e in rest]
        return Batch(self, exprs, lambda: out, t0)

    def _account(self, exprs: list[str], out: list[FitResult], t0: float) -> None:
        self.seconds += time.perf_counter() - t0
        self.n_fits += len(exprs)
        self.fit_seconds += sum(float(r.extra.get("seconds", 0.0)) for r in out)

    def _split(self, exprs: list[str]) -> list[list[str]]:
        """Chunks of about TASK_SECONDS of fitting each (one candidate each at first)."""
        size = 1
        if self.n_fits and self.fit_seconds > 0:
            size = math.ceil(TASK_SECONDS / (self.fit_seconds / self.n_fits))
        return _chunks(exprs, self.workers, size)

    def _dask(
        self, exprs: list[str], starts: Starts | None = None
    ) -> Callable[[], list[FitResult]]:
        chunks = self._split(exprs)
        futures = [
            self._client.submit(
                _fit_chunk_with,
                self._remote_fitter,
                chunk,
                _starts_of(chunk, starts),
                pure=False,
            )
            for chunk in chunks
        ]

        def collect() -> list[FitResult]:
            out: list[FitResult] = []
            for fut, chunk in zip(futures, chunks, strict=True):
                try:
                    out += [FitResult.from_dict(d) for d in fut.result(timeout=self._limit(chunk))]
                except Exception as exc:
                    self.n_failures += len(chunk)
                    out += [FitResult.invalid(e, f"worker failed: {exc}") for e in chunk]
            return out

        return collect

    def _limit(self, chunk) -> float | None:
        return None if self.timeout is None else self.timeout * len(chunk)

    def _n_constants(self, expression: str) -> int:
        """Fitted constants of an expression, its expected cost (0 if the fitter cannot say)."""
        compile_ = getattr(self.fitter, "compile", None)  # Fitter, RegressionFitter
        try:
            return len(compile_(expression).constants) if compile_ is not None else 0
        except Exception:  # an expression that does not compile fails fast in the worker
            return 0

    def _local(
        self, exprs: list[str], starts: Starts | None = None
    ) -> Callable[[], list[FitResult]]:
        # longest fits first (fit time grows with the number of constants), so the
        # batch does not end with one worker busy on a long fit and the others idle
        order = sorted(range(len(exprs)), key=lambda i: -self._n_constants(exprs[i]))
        collect = self._local_ordered([exprs[i] for i in order], starts)

        def unsort() -> list[FitResult]:
            out: list[FitResult] = [None] * len(exprs)  # type: ignore[list-item]
            for i, res in zip(order, collect(), strict=True):
                out[i] = res
            return out

        return unsort

    def _local_ordered(
        self, exprs: list[str], starts: Starts | None = None
    ) -> Callable[[], list[FitResult]]:
        chunks = self._split(exprs)
        try:
            pool = self._pool_get()
            futures = [pool.submit(_fit_chunk, c, _starts_of(c, starts)) for c in chunks]
        except BrokenProcessPool:
            futures = None

        def collect() -> list[FitResult]:
            try:
                if futures is None:
                    raise BrokenProcessPool("the pool broke while the batch was sent")
                out: list[FitResult] = []
                start = time.perf_counter()
                done = 0
                for fut, chunk in zip(futures, chunks, strict=True):
                    done += len(chunk)
                    limit = None
                    if self.timeout is not None:
                        # chunk k is late once even one worker could have fitted every
                        # candidate up to and including it within the limit each
                        limit = max(0.0, start + self.timeout * done - time.perf_counter())
                    out += [FitResult.from_dict(d) for d in fut.result(timeout=limit)]
                return out
            except (BrokenProcessPool, TimeoutError, CancelledError):
                # a worker died or a candidate hung (or another batch's failure reset the
                # pool under this one): retry one by one in a fresh pool
                self._pool_reset()
                return [self._isolated(e, (starts or {}).get(e)) for e in exprs]

        return collect

    def _isolated(self, expr: str, start: Mapping[str, float] | None = None) -> FitResult:
        try:
            mine = {expr: dict(start)} if start else None
            fut = self._pool_get().submit(_fit_chunk, [expr], mine)
            return FitResult.from_dict(fut.result(timeout=self.timeout)[0])
        except TimeoutError:
            self._pool_reset()
            self.n_failures += 1
            return FitResult.invalid(expr, f"fit exceeded the time limit of {self.timeout} s")
        except BrokenProcessPool:
            self._pool_reset()
            self.n_failures += 1
            return FitResult.invalid(expr, "the worker process died while fitting this candidate")

"""Parallel evaluation: same results for any worker count; failures cost one candidate."""

import os
import time

import pytest

from mctsff.engines.parallel import Evaluator
from mctsff.fit import Fitter
from mctsff.search import search

EXPRS = ["c1/r", "prod_c1/r+c1/r**6", "c1*exp(-r/c2)", "prod_c1*erfc(c1*r)/r", "c1/r**12-c2/r**6"]


class Saboteur(Fitter):
    """Kills its worker on 'c1*exp(-r/c2)' and hangs on 'c1/r**12-c2/r**6'."""

    def fit(self, expression):
        if expression == "c1*exp(-r/c2)":
            os._exit(3)
        if expression == "c1/r**12-c2/r**6":
            time.sleep(60)
        return super().fit(expression)


@pytest.fixture(scope="module")
def split(dimers):
    return dimers.split(0.2, seed=0)


#: starts for some of EXPRS (Fitter.fit's start): one to solve from, one it refuses
STARTS = {"c1*exp(-r/c2)": {"c2": 0.3, "c1": -40.0}, "c1/r": {"zz": 1.0}}


def test_two_workers_equal_serial(split):
    """With starts too: they travel with their expressions to the workers."""
    train, valid = split
    serial = Evaluator(Fitter(train, valid))(EXPRS)
    started = Evaluator(Fitter(train, valid))(EXPRS, starts=STARTS)
    assert not started[0].valid and "zz" in started[0].reason  # the start was used
    with Evaluator(Fitter(train, valid), workers=2) as ev:
        ev.start()
        assert ev.ready
        parallel = ev(EXPRS)
        parallel_started = ev(EXPRS, starts=STARTS)
        assert ev.n_in_process == 0
    assert [r.expression for r in parallel] == EXPRS
    for a, b in zip(serial + started, parallel + parallel_started, strict=True):
        assert a.valid == b.valid and a.reason == b.reason and a.params == b.params
        assert not a.valid or a.rmse_valid == b.rmse_valid


def test_batches_are_fitted_in_process_while_workers_start(split):
    train, valid = split
    serial = Evaluator(Fitter(train, valid))(EXPRS)
    with Evaluator(Fitter(train, valid), workers=2) as ev:
        first = ev(EXPRS[:2])  # workers take seconds to import numba: fitted here
        assert ev.n_in_process == 2
        ev.start()
        rest = ev(EXPRS[2:])
        assert ev.n_in_process == 2
    for a, b in zip(serial, first + rest, strict=True):
        assert a.params == b.params and a.rmse_valid == b.rmse_valid


def test_a_single_expression_goes_to_a_worker_only_beside_a_batch_in_flight(split):
    """Alone it is fitted here (the caller would only wait); submitted while another batch
    is still in the pool (a pipelined search) it goes to a worker, and both results match
    the serial fits."""
    train, valid = split
    serial = Evaluator(Fitter(train, valid))(EXPRS)
    with Evaluator(Fitter(train, valid), workers=2) as ev:
        ev.start()
        alone = ev.submit([EXPRS[0]])
        assert not alone._pooled and ev._in_flight == 0  # fitted here, already done
        first = ev.submit(EXPRS[1:3])
        beside = ev.submit([EXPRS[3]])
        assert first._pooled and beside._pooled and ev._in_flight == 2
        got = alone.result() + first.result() + beside.result()
        assert ev._in_flight == 0
        last = ev.submit([EXPRS[4]])
        assert not last._pooled and last.result()[0].params == serial[4].params
    for a, b in zip(serial[:4], got, strict=True):
        assert a.params == b.params and a.rmse_valid == b.rmse_valid


def test_dead_worker_and_hung_fit_cost_only_their_candidate(split):
    train, valid = split
    with Evaluator(Saboteur(train, valid, constraints=()), workers=2, timeout=4) as ev:
        out = ev(EXPRS)
        by = {r.expression: r for r in out}
        assert not by["c1*exp(-r/c2)"].valid and "died" in by["c1*exp(-r/c2)"].reason
        assert not by["c1/r**12-c2/r**6"].valid and "time limit" in by["c1/r**12-c2/r**6"].reason
        for e in ("c1/r", "prod_c1/r+c1/r**6", "prod_c1*erfc(c1*r)/r"):
            assert by[e].valid
        # the evaluator keeps working afterwards
        assert ev(["c1/r**6", "c1/r**4"])[0].valid


@pytest.mark.slow
def test_fit_timeout_holds_with_one_worker(split):
    """--fit-timeout with one worker: the fits run in a worker process that is replaced."""
    train, valid = split
    exprs = ["c1/r", "c1/r**12-c2/r**6", "c1/r**6"]
    with Evaluator(Saboteur(train, valid, constraints=()), workers=1, timeout=2) as ev:
        t0 = time.perf_counter()
        out = ev(exprs)
        assert time.perf_counter() - t0 < 30  # the hung fit (60 s) was stopped
        assert ev._pool is not None  # not fitted in this process
    assert [r.valid for r in out] == [True, False, True]
    assert "time limit" in out[1].reason


@pytest.mark.slow
@pytest.mark.parametrize("pipeline", [0, 1])
def test_search_reproducible_across_worker_counts(split, pipeline):
    """The same sequence with 1 and 2 workers, also with the term selection running beside
    the fits on a background process (``terms_after`` 10)."""
    train, valid = split
    kw = {"budget": 40, "seed": 2, "pipeline": pipeline, "terms_after": 10}
    a = search(Fitter(train, valid, n_starts=2), "pair", workers=1, **kw)
    b = search(Fitter(train, valid, n_starts=2), "pair", workers=2, **kw)
    assert a.mcts.evaluated == b.mcts.evaluated
    assert [p.expression for p in a.front.points] == [p.expression for p in b.front.points]


def test_batches_in_flight_together(split):
    train, valid = split
    serial = Evaluator(Fitter(train, valid))(EXPRS)
    with Evaluator(Fitter(train, valid), workers=2) as ev:
        ev.start()
        first, second = ev.submit(EXPRS[:3]), ev.submit(EXPRS[3:])  # both queued at once
        out = second.result() + first.result()
        assert second.result() is second.result()  # collected once
    got = {r.expression: r for r in out}
    for a in serial:
        assert got[a.expression].params == a.params


def test_dask_local_cluster(split):
    distributed = pytest.importorskip("distributed", reason="the 'dask' extra is not installed")
    train, valid = split
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        ev = Evaluator(Fitter(train, valid), scheduler=client)
        out = ev(EXPRS)
        started = ev(EXPRS, starts=STARTS)
    serial = Evaluator(Fitter(train, valid))(EXPRS)
    assert [r.params for r in out] == [r.params for r in serial]
    serial_started = Evaluator(Fitter(train, valid))(EXPRS, starts=STARTS)
    assert [r.params for r in started] == [r.params for r in serial_started]
    assert [r.reason for r in started] == [r.reason for r in serial_started]


def test_unpicklable_fitter_is_refused_clearly(split):
    from mctsff.fit import Constraint

    train, valid = split
    f = Fitter(train, valid, constraints=(Constraint("x", "eq", lambda pot: 0.0),))
    with pytest.raises(ValueError, match="module-level"):
        Evaluator(f, workers=2)


def test_longest_fits_are_sent_first_and_results_come_back_in_order(split):
    from mctsff.fit.result import FitResult

    train, valid = split
    ev = Evaluator(Fitter(train, valid), workers=2)
    sent: list[list[str]] = []

    def fake(exprs, starts=None):  # stands in for the pool: records the order sent in
        sent.append(list(exprs))
        return lambda: [FitResult(e, 1.0, rmse_train=float(len(e))) for e in exprs]

    ev._local_ordered = fake
    out = ev._local(EXPRS)()
    assert [r.expression for r in out] == EXPRS
    assert [r.rmse_train for r in out] == [float(len(e)) for e in EXPRS]
    costs = [ev._n_constants(e) for e in sent[0]]
    assert costs == sorted(costs, reverse=True) and costs[0] > costs[-1]

"""Fault injection (issue 36): kill -9 while a checkpoint is written, a full disk, two
searches on one folder.  A search killed mid-write resumes from its last checkpoint to
the front of an uninterrupted run with the same seed; a full disk keeps the previous
checkpoint and says so in one line; a second search on a folder in use is refused in one
line while the first completes.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mctsff.cli import main
from mctsff.data import data_file
from mctsff.runio import LOCK_NAME

pytestmark = pytest.mark.slow

#: The child: the conftest's synthetic screened-Coulomb data, a seeded search with a
#: checkpoint after every step; KILL_AT > 0 kills the process (SIGKILL) while the
#: KILL_AT-th checkpoint is half written (its temporary file written, not yet renamed).
CHILD = textwrap.dedent(
    """
    import os, signal, sys, warnings
    warnings.simplefilter("ignore")
    from mctsff import runio
    from mctsff.data import data_file, load_dataset
    from mctsff.fit import Fitter
    from mctsff.expr.params import Potential
    from mctsff.search import search

    out, budget, kill_at = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    resume = len(sys.argv) > 4
    ds = load_dataset(data_file("water_dimers_mp2_sample20.extxyz"), cutoff=9.0)
    truth = Potential(
        "prod_c1*exp(-r/c1)/r",
        {"prod_c1[O]": -3.2, "prod_c1[H]": 1.6, "c1": 2.5},
        ds.species,
        ds.type_pairs,
    )
    train, valid = truth.synthetic(ds).split(0.2, seed=0)
    writes = 0
    real_replace = os.replace

    def replace(src, dst):
        global writes
        if str(dst).endswith("checkpoint.pkl"):
            writes += 1
            if writes == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)  # the temporary file is complete
        return real_replace(src, dst)

    runio.os.replace = replace
    fitter = Fitter(train, valid, constraints=(), n_starts=1)
    result = search(
        fitter, "pair", budget=budget, seed=4, out=out, resume=resume, checkpoint_every=0.0
    )
    print(result.n_evaluations, flush=True)
    """
)


def _child(tmp_path: Path, *args: object, timeout: float = 120) -> subprocess.CompletedProcess:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    return subprocess.run(
        [sys.executable, str(script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _front(out: Path) -> list[tuple[str, float]]:
    return [
        (p["expression"], p["rmse_valid"]) for p in json.loads((out / "pareto.json").read_text())
    ]


def test_kill_9_while_a_checkpoint_is_written_then_resume_gives_the_uninterrupted_front(tmp_path):
    # with the term proposals (on by default) the first step fits 4 of them, the tree's
    # batch and its local moves (about 20 fits), so the second checkpoint comes later
    budget = 24
    full = _child(tmp_path, tmp_path / "full", budget, 0)
    assert full.returncode == 0, full.stderr
    killed = tmp_path / "killed"
    run = _child(tmp_path, killed, budget, 2)
    assert run.returncode == -9, run.stderr  # SIGKILL inside the second checkpoint write
    # the first checkpoint is whole; the second left only a temporary file
    assert (killed / "checkpoint.pkl").exists()
    assert any(".checkpoint.pkl." in p.name for p in killed.iterdir())
    resumed = _child(tmp_path, killed, budget, 0, "resume")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.split()[-1] == full.stdout.split()[-1] == str(budget)
    assert _front(killed) == _front(tmp_path / "full")
    assert not any(".tmp" in p.name for p in killed.iterdir())  # the stale temporary is gone


def test_disk_full_keeps_the_previous_checkpoint_and_says_so_in_one_line(
    tmp_path, monkeypatch, capsys
):
    data = str(data_file("water_dimers_mp2_sample20.extxyz"))
    out = tmp_path / "run"
    args = ["search", data, "--seed", "1", "--starts", "1", "--out", str(out), "--no-progress"]
    assert main([*args, "--budget", "3"]) == 0
    before = (out / "checkpoint.pkl").read_bytes()
    capsys.readouterr()

    def full_disk(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full_disk)  # the data reach the disk at fsync
    code = main([*args, "--budget", "6", "--resume"])
    monkeypatch.undo()
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    errors = [line for line in err if line.startswith("mctsff: error:")]
    assert len(errors) == 1, err
    assert "no space left on the device" in errors[0]
    assert "the last checkpoint" in errors[0] and "is kept" in errors[0]
    assert "Traceback" not in "\n".join(err)
    assert (out / "checkpoint.pkl").read_bytes() == before  # the previous one, whole
    assert not [p for p in out.iterdir() if ".tmp" in p.name]
    assert main([*args, "--budget", "6", "--resume"]) == 0  # and it resumes


def test_a_second_search_on_a_folder_in_use_is_refused_and_the_first_completes(tmp_path, capsys):
    out = tmp_path / "run"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    first = subprocess.Popen(
        [sys.executable, str(script), str(out), "30", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (out / LOCK_NAME).exists():
            assert first.poll() is None and time.monotonic() < deadline, "the first never locked"
            time.sleep(0.05)
        data = str(data_file("water_dimers_mp2_sample20.extxyz"))
        argv = ["search", data, "--budget", "2", "--out", str(out), "--no-progress"]
        code = main([*argv, "--overwrite"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1, err
        assert "another search is writing this run folder" in err[0]
        stdout, stderr = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, stderr
    assert stdout.split()[-1] == "30"
    assert json.loads((out / "run.json").read_text())["n_evaluations"] == 30
    assert not (out / LOCK_NAME).exists()


@pytest.mark.parametrize("recovers", [True, False], ids=["space-returns", "stays-full"])
def test_disk_full_at_periodic_checkpoints_keeps_the_last_one_and_searches_on(
    tmp_path, screened, monkeypatch, recovers
):
    """The disk fills after the first periodic checkpoints (``checkpoint_every=0``: one
    after every step): each later one fails, the last whole one stays on disk and the
    search goes on to its budget with one warning line however many checkpoints fail.
    When space returns the end writes its checkpoint and the front is the fault-free
    run's; when it does not, the end says in one more line that the last one is kept."""
    import warnings

    from mctsff.fit import Fitter
    from mctsff.runfolder import read_checkpoint
    from mctsff.search import search

    train, valid = screened
    budget = 12

    def run(out: Path):
        fitter = Fitter(train, valid, constraints=(), n_starts=1)
        return search(
            fitter,
            "pair",
            budget=budget,
            seed=2,
            out=out,
            checkpoint_every=0.0,
            n_rollouts=1,
            terms=False,  # a checkpoint per tree step (proposals come in fewer, larger steps)
        )

    out = tmp_path / "full"
    real_fsync = os.fsync
    calls = {"n": 0, "failed": 0}
    kept: dict[str, bytes] = {}
    # the first checkpoint and front are written (4 fsyncs: 2 files, 2 of the folder),
    # then the disk is full for 3 file writes, or for good
    fails = 3 if recovers else 10**9

    def fsync(fd):
        calls["n"] += 1
        if calls["n"] <= 4 or calls["failed"] >= fails or not os.path.isfile(f"/proc/self/fd/{fd}"):
            return real_fsync(fd)
        # in the window: the checkpoint on disk is the last whole one, nothing half-written
        now = (out / "checkpoint.pkl").read_bytes()
        assert kept.setdefault("ckpt", now) == now
        calls["failed"] += 1
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", fsync)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # what a user sees: a repeated warning once
        result = run(out)
    monkeypatch.undo()
    assert calls["failed"] >= 3  # several periodic checkpoints failed
    assert result.n_evaluations == budget  # the search went on to its budget
    lines = [str(w.message) for w in caught if "cannot write" in str(w.message)]
    assert lines[0] == f"cannot write {out}: no space left on the device; searching on"
    assert all("\n" not in w for w in lines)
    assert not [p for p in out.iterdir() if ".tmp" in p.name]
    if recovers:
        assert len(lines) == 1, lines
        clean = tmp_path / "clean"
        run(clean)
        assert json.loads((out / "pareto.json").read_text()) == json.loads(
            (clean / "pareto.json").read_text()
        )
        assert read_checkpoint(out)["mcts"]["n_evaluations"] == budget
    else:
        assert len(lines) == 2 and "is kept" in lines[1], lines
        assert (out / "checkpoint.pkl").read_bytes() == kept["ckpt"]

"""The command line's checks of its options and run folders, in process (fast)."""

import json

import pytest

from mctsff.cli import _workers, main
from mctsff.data import data_file

DIMERS = str(data_file("water_dimers_mp2_sample20.extxyz"))
QUICK = ["--budget", "3", "--no-progress", "--no-constraints", "--starts", "1"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--budget", "0"], "argument --budget: must be >= 1, got 0"),
        (["--budget", "-5"], "argument --budget: must be >= 1, got -5"),
        (["--time", "nan"], "argument --time: must be a finite number"),
        (["--time", "0"], "argument --time: must be > 0"),
        (["--energy-weight", "nan"], "argument --energy-weight: must be a finite number"),
        (["--eta", "0"], "argument --eta: must be > 0"),
        (["--eta", "1.5"], "argument --eta: must be <= 1"),
        (["--exploration", "-5"], "argument --exploration: must be >= 0"),
        (["--max-length", "0"], "argument --max-length: must be >= 1"),
        (["--cutoff", "0"], "argument --cutoff: must be > 0"),
        (["--workers", "-1"], "argument --workers: must be >= 0"),
        (["--projection", "inf"], "argument --projection: must be a finite number"),
        (["--fit-timeout", "-1"], "argument --fit-timeout: must be > 0"),
    ],
)
def test_numeric_options_are_finite_and_in_range(args, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        main(["search", DIMERS, "--out", str(tmp_path / "run"), *args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--bound", "c1=5:1"], "--bound c1=5:1: the lower bound is above the upper one"),
        (["--bound", "c1=nan:1"], "--bound c1: 'nan' is not a finite number"),
        (["--init", "c1=nan"], "--init c1: 'nan' is not a finite number"),
        (["--init", "c1=inf"], "--init c1: 'inf' is not a finite number"),
        (["--init", "zzz=1"], "--init zzz: not a constant of the grammar"),
        (["--bound", "prod_c1[Xx]=0:1"], "--bound prod_c1[Xx]: not a constant of the grammar"),
        (["--bound", "c1=0:1", "--init", "c1=2"], "--init c1=2: outside --bound c1=0:1"),
        (["--resume", "--overwrite"], "--resume and --overwrite exclude each other"),
    ],
)
def test_fit_settings_are_checked_before_the_search(args, message, capsys, tmp_path):
    out = tmp_path / "run"
    assert main(["search", DIMERS, "--out", str(out), *QUICK, *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not out.exists()


def test_fit_names_must_be_constants_of_the_expression(capsys):
    argv = ["fit", DIMERS, "--expr", "A*exp(-r/b)", "--no-constraints", "--starts", "1"]
    assert main([*argv, "--init", "zzz=1"]) == 2
    assert "--init zzz: not a constant of --expr 'A*exp(-r/b)' (constants: A, b;" in (
        capsys.readouterr().err
    )
    assert main([*argv, "--init", "b=0.5", "--bound", "A=0:inf"]) == 0


def test_a_run_folder_is_created_once(capsys, tmp_path):
    out = tmp_path / "run"
    assert main(["search", DIMERS, "--out", str(out), *QUICK]) == 0
    first = json.loads((out / "pareto.json").read_text())
    capsys.readouterr()
    assert main(["search", DIMERS, "--out", str(out), *QUICK]) == 2
    err = capsys.readouterr().err
    assert "exists and is not empty" in err and "--overwrite" in err and err.count("\n") == 1
    assert main(["search", DIMERS, "--out", str(out), *QUICK, "--overwrite"]) == 0
    assert json.loads((out / "pareto.json").read_text()) == first  # same seed, same front
    (tmp_path / "file").write_text("x")
    assert main(["search", DIMERS, "--out", str(tmp_path / "file"), *QUICK]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_workers_are_capped_at_the_cores(capsys):
    import os

    cores = os.cpu_count() or 1
    assert _workers(1000 * cores) == cores
    assert f"capped at the {cores} cores" in capsys.readouterr().err
    assert _workers(0) == cores and _workers(1) == 1


def test_a_full_disk_at_the_end_is_one_line_and_resume_writes_the_rest(
    capsys, tmp_path, monkeypatch
):
    import errno

    from mctsff import search as search_module

    def full(out, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(out / ".run.json.x1.tmp"))

    out = tmp_path / "run"
    monkeypatch.setattr(search_module, "_write_run_info", full)
    assert main(["search", DIMERS, "--out", str(out), *QUICK]) == 1
    captured = capsys.readouterr()
    assert "expressions fitted" in captured.out and "cplx" in captured.out  # the front
    assert captured.err.count("\n") == 1 and captured.err.startswith("mctsff: error: cannot")
    assert "/run.json: no space left on the device; the checkpoint" in captured.err
    monkeypatch.undo()
    assert main(["search", DIMERS, "--out", str(out), *QUICK, "--resume"]) == 0
    assert json.loads((out / "run.json").read_text())["n_evaluations"] >= 3


def test_grammar_variables_must_be_the_datas(capsys, tmp_path):
    """A CSV column not named like the grammar's variable, or forces data with a regression
    grammar, is one error line before any fit (issue 36), not constants or an empty front."""
    csv = tmp_path / "data.csv"
    csv.write_text("t,y\n" + "".join(f"{t},{t**3 + t}\n" for t in (-1, -0.5, 0, 0.5, 1, 2)))
    out = tmp_path / "run"
    reg = ["search", str(csv), "--objective", "regression", "--grammar", "nguyen"]
    # --reference fits an expression before the search: the check comes first
    assert main([*reg, "--out", str(out), *QUICK[:3], "--reference", "x3=t**3"]) == 2
    captured = capsys.readouterr()
    assert captured.err == (
        f"mctsff: error: grammar 'nguyen' uses variables x; the data provide t (columns of "
        f"{csv}); rename the columns, or use a grammar whose '// @variables' line names them\n"
    )
    assert "reference" not in captured.out and not out.exists()
    assert main(["search", DIMERS, "--grammar", "nguyen", "--out", str(out), *QUICK]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(
        f"mctsff: error: grammar 'nguyen' uses variables x; the data provide r "
        f"(pair distances of {DIMERS}); force matching needs a grammar in r"
    )
    assert not out.exists()

"""The command line's checks of its options and run folders, in process (fast)."""

import json

import pytest

from mctsff.cli import main
from mctsff.cli.options import _workers
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
        (["--seed", "-1"], "argument --seed: must be >= 0, got -1"),  # was a numpy traceback
        (["--split-seed", "-1"], "argument --split-seed: must be >= 0, got -1"),
    ],
)
def test_numeric_options_are_finite_and_in_range(args, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        main(["search", DIMERS, "--out", str(tmp_path / "run"), *args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_md_options_without_md_rerank_are_one_line(capsys, tmp_path):
    """--md-option zzz=1 without --md-rerank was accepted and ignored (exit 0)."""
    out = str(tmp_path / "run")
    code = main(["search", DIMERS, "--out", out, *QUICK, "--md-option", "npt_ps=0.2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "md_rerank (--md-rerank N), which is 0" in err[-1], err
    assert not (tmp_path / "run" / "pareto.json").exists()


@pytest.mark.parametrize("command", [["demo"], ["fit", DIMERS, "--expr", "A/r"]])
def test_a_negative_seed_is_one_line(command, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--seed", "-1"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "argument --seed: must be >= 0, got -1" in err and err.count("\n") == 1, err


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


def _options(parser):
    """(subcommand path, action) of every option of every subcommand."""
    import argparse

    out = []

    def walk(p, path):
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, (*path, name))
            elif action.option_strings and action.help != argparse.SUPPRESS:
                out.append((path, action))

    walk(parser, ())
    return out


def test_every_option_has_help_and_shows_its_default():
    """Every option says what it does; ``-h`` shows each default that is a value (flags,
    unset options and lists show none), from SearchConfig where it is a search setting."""
    from mctsff.cli import build_parser
    from mctsff.cli.options import _HelpFormatter

    parser = build_parser()
    options = _options(parser)
    assert len(options) > 60
    missing = [f"{' '.join(p)} {a.option_strings[0]}" for p, a in options if not a.help]
    assert not missing, missing
    formatter = _HelpFormatter("mctsff")
    for path, action in options:
        shown = formatter._get_help_string(action)
        if action.default not in (None, False, [], "==SUPPRESS==") and action.nargs != 0:
            assert "default" in shown.lower(), (path, action.option_strings)
    search_help = parser._subparsers._group_actions[0].choices["search"].format_help()
    for text in ("(default: 1000)", "(default: 16)", "(default: 0.99)", "(default: mcts)"):
        assert text in " ".join(search_help.split()), text


def test_search_command_line_builds_the_config():
    """The options of ``mctsff search`` reach SearchConfig by name; unset ones keep the
    config's defaults, so the command line and search() agree."""
    from mctsff.cli import build_parser
    from mctsff.cli.search import search_config
    from mctsff.config import DEFAULTS

    parse = build_parser().parse_args
    assert search_config(parse(["search", DIMERS])) == DEFAULTS.updated(progress=True)
    args = parse(
        ["search", DIMERS, "--time", "5", "--rollouts", "4", "--fit-timeout", "2", "--quiet",
         "--novelty", "2", "--no-local-moves", "--local-option", "max_share=0.5",
         "--method", "gp", "--workers", "1", "--exploration", "0.25"]
    )  # fmt: skip
    cfg = search_config(args)
    assert (cfg.time_limit, cfg.mcts.n_rollouts, cfg.parallel.timeout) == (5.0, 4, 2.0)
    assert cfg.progress is False and cfg.mcts.novelty == 2 and cfg.method == "gp"
    assert cfg.local.prune is cfg.local.grow is False and cfg.local.max_share == 0.5
    assert cfg.mcts.exploration == 0.25 and cfg.budget == DEFAULTS.budget
    # --no-progress is the same as --quiet (kept for old command lines), also for data
    assert parse(["search", DIMERS, "--no-progress"]).quiet is True
    assert parse(["data", "water-dimers", "-n", "2", "--out", "x", "--no-progress"]).quiet


def test_a_bad_local_option_is_one_line(capsys, tmp_path):
    code = main(["search", DIMERS, "--out", str(tmp_path / "r"), *QUICK,
                 "--local-option", "max_sahre=1"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "unknown setting 'max_sahre'" in err and err.count("\n") == 1, err


def test_data_list_names_every_shipped_dataset(capsys):
    import ase.io

    from mctsff.data import DATASETS

    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    for name, file in DATASETS.items():
        assert any(line.split()[:1] == [name] and file in line for line in out.splitlines())
    sample = next(line for line in out.splitlines() if line.startswith("water-dimers-sample "))
    assert int(sample.split()[1]) == len(ase.io.read(DIMERS, ":"))  # frames counted right
    assert "MP2/aug-cc-pVDZ" in out  # the source from SOURCES.md


def test_a_shipped_dataset_is_named_and_an_existing_path_wins(capsys, tmp_path, monkeypatch):
    from mctsff.cli import build_parser

    parse = build_parser().parse_args
    assert parse(["search", "water-dimers-sample"]).data == DIMERS
    assert parse(["fit", "water-dimers"]).data == str(data_file("water_dimers_mp2_200.extxyz"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "water-dimers").write_text("")
    assert parse(["search", "water-dimers"]).data == "water-dimers"
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "water-dimerz", "--expr", "A/r"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "water-dimerz" in err and "bulk-water" in err, err


@pytest.mark.parametrize("command, extra", [("search", ["--out", "r"]), ("fit", ["--expr", "A/r"])])
def test_a_csv_without_objective_regression_is_one_line(command, extra, capsys, tmp_path):
    table = tmp_path / "table.csv"
    table.write_text("x,y\n1,2\n2,3\n3,5\n")
    assert main([command, str(table), *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "table.csv" in err and "--objective regression" in err, err


@pytest.mark.parametrize(
    "command, options",
    [
        (
            "water",
            ["--molecules", "64", "--temperature", "300", "--timestep", "0.25", "--equilibration",
             "0.2", "--npt", "0.3", "--nvt", "0.4", "--nve", "0.6"],
        ),
        ("solvent", ["--equilibration", "2", "--production", "5", "--exclude", "3"]),
    ],
)  # fmt: skip
def test_md_check_options_reach_its_protocol(command, options, capsys):
    """Every md-check option sets its protocol field (one builder for both checks); the
    settings without an option keep the protocol's defaults."""
    import dataclasses

    from mctsff.cli import build_parser
    from mctsff.cli.md_check import _md_protocol
    from mctsff.water.mdcheck import SolventProtocol, WaterProtocol

    parse = build_parser().parse_args
    kind = WaterProtocol if command == "water" else SolventProtocol
    common = ["--seed", "7", "--threads", "2", "--platform", "Reference"]
    args = parse(["md-check", command, "RUN", *options, *common])
    protocol, default = _md_protocol(args, kind), kind()
    changed = {f.name for f in dataclasses.fields(kind)}
    changed = {n for n in changed if getattr(protocol, n) != getattr(default, n)}
    assert len(changed) == len(options) // 2 + 3, changed
    assert (protocol.seed, protocol.threads, protocol.platform) == (7, 2, "Reference")
    assert _md_protocol(parse(["md-check", command, "RUN"]), kind) == default
    # both run through the one command: a missing run folder is one line
    assert main(["md-check", command, "no/such/run"]) == 2
    assert capsys.readouterr().err.strip() == "mctsff: error: no/such/run: no such run folder"


def test_an_empty_front_is_explained():
    import io
    from types import SimpleNamespace

    from mctsff.cli.search import _print_front
    from mctsff.engines.pareto import ParetoFront

    out = io.StringIO()
    _print_front(SimpleNamespace(front=ParetoFront(null_loss=0.1577), best=None), out)
    text = out.getvalue()
    assert "the front is empty" in text and "rmse_valid 0.1577" in text and "--wall 0" in text


def test_export_points_beyond_a_million_is_one_line_naming_the_option(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["export", "no-such-run", "--format", "lammps", "--points", "1000000000"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--points" in err and "must be <= 1000000" in err


@pytest.mark.parametrize(
    "command, message",
    [
        (["fit", DIMERS, "--expr", "prod_q/r", "--neutral", "prod_c1"], "--neutral prod_c1: not a "
         "constant of --expr 'prod_q/r' (its product-rule constants: prod_q)"),
        (["fit", DIMERS, "--expr", "pair_A/r", "--neutral", "pair_A"], "--neutral pair_A: not a "
         "per-type constant of the product rule"),
        (["fit", DIMERS, "--expr", "prod_q/r", "--neutral", "prod_q", "--stream",
          "--projection", "0.1"], "--neutral needs the molecules in memory: drop --stream"),
        (["search", DIMERS, "--neutral", "prod_q", *QUICK[:2]], "--neutral prod_q: not a "
         "constant of the grammar"),
    ],
)  # fmt: skip
def test_neutral_refusals_are_one_line(command, message, capsys, tmp_path):
    code = main([*command, *(["--out", str(tmp_path / "run")] if command[0] == "search" else [])])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err


def test_neutral_fit_keeps_molecules_neutral(capsys):
    """--neutral on a fit: the charges of each water sum to zero."""
    expr = "prod_q/r + A*exp(-r/b)"  # (prod_q/r alone cannot hold the wall when neutral)
    assert main(["fit", DIMERS, "--expr", expr, "--neutral", "prod_q", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    q_h, q_o = out["params"]["prod_q[H]"], out["params"]["prod_q[O]"]
    assert abs(q_h) > 0.1 and abs(q_o + 2 * q_h) < 1e-7
    assert out["constraints"]["neutral:prod_q"] < 1e-7


@pytest.mark.slow
def test_neutral_search_is_recorded_and_resumed_only_with_it(capsys, tmp_path):
    """A search records --neutral in run.json and its checkpoint (a resume without it is
    refused)."""
    run = tmp_path / "run"
    quick = [*QUICK[2:], "--budget", "1"]
    code = main(["search", DIMERS, "--out", str(run), *quick, "--neutral", "prod_c1"])
    assert code == 0, capsys.readouterr().err
    assert "neutral:prod_c1" in json.loads((run / "run.json").read_text())["constraints"]
    # a resume without --neutral is refused: the fits would not be comparable
    code = main(["search", DIMERS, "--out", str(run), *quick, "--resume", "--budget", "2"])
    assert code == 2 and "neutral:prod_c1" in capsys.readouterr().err

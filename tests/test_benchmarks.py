"""The statistics of the benchmark scripts and tiny runs of their ``main``."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _script(name: str):
    """``benchmarks/{name}.py`` imported as a module (the folder is not a package)."""
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def cm():
    return _script("compare_methods")


def _rows(outcomes: dict[tuple[str, int], tuple[bool, bool]]) -> list[dict]:
    rows = []
    for (pot, seed), (ra, rb) in outcomes.items():
        rows.append({"method": "mcts", "potential": pot, "seed": seed, "recovered": ra})
        rows.append({"method": "gp", "potential": pot, "seed": seed, "recovered": rb})
    return rows


def test_wilson_interval_matches_closed_form(cm):
    lo, hi = cm.wilson(0, 20)
    z2 = 1.959963984540054**2
    assert lo == pytest.approx(0.0, abs=1e-12)
    assert hi == pytest.approx(z2 / (20 + z2), rel=1e-9)
    lo, hi = cm.wilson(10, 20)
    assert lo < 0.5 < hi and lo == pytest.approx(1 - hi, rel=1e-9)
    assert all(math.isnan(v) for v in cm.wilson(0, 0))


def test_paired_comparison_counts_ratio_and_mcnemar(cm):
    outcomes = {
        ("a", 0): (True, True),
        ("b", 0): (True, False),
        ("a", 1): (True, False),
        ("b", 1): (False, False),
        ("a", 2): (True, False),
        ("b", 2): (False, True),
    }
    c = cm.paired_comparison(_rows(outcomes), n_boot=2000, seed=1)
    assert (c["recovered_a"], c["recovered_b"]) == (4, 2)
    assert (c["only_a"], c["only_b"], c["pairs"], c["seeds"]) == (3, 1, 6, 3)
    assert c["ratio"] == 2.0
    # McNemar exact: 3 of 4 discordant pairs one way, two-sided binomial p = 10/16
    assert c["p_value"] == pytest.approx(0.625)
    lo, hi = c["ratio_ci"]
    assert lo <= 2.0 <= hi and lo < hi
    # the seeds are the resampled units: same seed, same interval
    assert cm.paired_comparison(_rows(outcomes), n_boot=2000, seed=1)["ratio_ci"] == (lo, hi)


def test_paired_comparison_edge_cases(cm):
    same = {("a", s): (s % 2 == 0, s % 2 == 0) for s in range(6)}
    c = cm.paired_comparison(_rows(same), n_boot=500)
    assert c["ratio"] == 1.0 and c["ratio_ci"] == (1.0, 1.0) and c["p_value"] == 1.0
    only_mcts = {("a", s): (True, False) for s in range(5)}
    c = cm.paired_comparison(_rows(only_mcts), n_boot=500)
    assert c["ratio"] == math.inf and c["only_a"] == 5
    assert c["p_value"] == pytest.approx(2 / 2**5)
    with pytest.raises(ValueError, match="no runs of both"):
        cm.paired_comparison([{"method": "mcts", "potential": "a", "seed": 0, "recovered": 1}])


def test_comparison_line_states_the_target_verdict(cm):
    base = {"a": "mcts", "b": "gp", "recovered_a": 78, "recovered_b": 65, "pairs": 120,
            "seeds": 20, "n_boot": 10000, "only_a": 20, "only_b": 7, "p_value": 0.019}  # fmt: skip
    line = cm.comparison_line({**base, "ratio": 1.2, "ratio_ci": (0.97, 1.49)}, 1.5)
    assert "78 vs 65 of 120" in line and "0.97–1.49" in line and line.endswith("NOT met.")
    line = cm.comparison_line({**base, "ratio": 1.6, "ratio_ci": (1.2, 2.0)}, 1.5)
    assert "not by the CI's lower end" in line
    line = cm.comparison_line({**base, "ratio": 1.9, "ratio_ci": (1.55, 2.3)}, 1.5)
    assert line.endswith("met, CI above it.")


def test_run_jobs_reports_the_rows_as_they_come(cm):
    """``--json`` is rewritten after every run: ``on_row`` sees the rows so far, in order."""
    seen: list[list[int]] = []
    rows = cm.run_jobs(lambda x: 10 * x, [(1,), (2,), (3,)], 1, lambda r: seen.append(list(r)))
    assert rows == [10, 20, 30]
    assert seen == [[10], [10, 20], [10, 20, 30]]


@pytest.mark.slow
def test_main_prints_table_and_comparison(cm, tmp_path, capsys):
    png, out = tmp_path / "cmp.png", tmp_path / "cmp.json"
    argv = ["--seeds", "2", "--budget", "20", "--potentials", "soft_sphere", "--workers", "1"]
    assert cm.main([*argv, "--png", str(png), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| soft_sphere | 5 | mcts |" in text and "rate (95 % Wilson CI)" in text
    assert "MCTS vs GP:" in text and "of 2 paired runs" in text and "Target ratio ≥ 1.5" in text
    saved = json.loads(out.read_text())
    assert len(saved["runs"]) == 4 and saved["comparison"]["pairs"] == 2
    assert png.stat().st_size > 0


@pytest.mark.slow
def test_gp_without_the_surrogate_reproduces_the_earlier_comparison(cm, tmp_path, capsys):
    argv = ["--seeds", "1", "--budget", "12", "--potentials", "soft_sphere", "--workers", "1"]
    out = tmp_path / "cmp.json"
    assert (
        cm.main([*argv, "--no-gp-surrogate", "--png", str(tmp_path / "c.png"), "--json", str(out)])
        == 0
    )
    assert "fit-free surrogate on for MCTS only" in capsys.readouterr().out
    runs = json.loads(out.read_text())["runs"]
    assert {r["method"]: r["surrogate"] for r in runs} == {"mcts": True, "gp": False}
    assert cm.run_one("soft_sphere", "gp", 0, 12)["surrogate"] is True  # GP's default
    assert (
        cm.main([*argv, "--gp-screen", "3", "--json", str(out), "--png", str(tmp_path / "d.png")])
        == 0
    )
    assert "GP screen 3" in capsys.readouterr().out
    assert {r["method"]: r["screen"] for r in json.loads(out.read_text())["runs"]} == {
        "mcts": None,
        "gp": 3,
    }


def test_budget_curve_counts_recoveries_within_each_budget(cm):
    rows = []
    # seed s: MCTS first recovers after 10*(s+1) fits, GP after 25 fits (seed 0 only)
    for s in range(4):
        rows.append({"method": "mcts", "potential": "a", "seed": s, "budget": 40,
                     "recovered": True, "evals_to_recovery": 10 * (s + 1)})  # fmt: skip
        n_gp = 25 if s == 0 else math.nan
        rows.append({"method": "gp", "potential": "a", "seed": s, "budget": 40,
                     "recovered": s == 0, "evals_to_recovery": n_gp})  # fmt: skip
    assert [r["recovered"] for r in cm.within(rows, 20)] == [True, False, True, False] + [False] * 4
    text = cm.budget_curve(rows, [10, 30, 40], 1.5)
    lines = text.splitlines()
    assert lines[2].startswith("| 10 | 1/4 | 0/4 |")
    assert lines[3].startswith("| 30 | 3/4 | 1/4 | 3.00")
    assert lines[4].startswith("| 40 | 4/4 | 1/4 | 4.00")
    assert cm.curve_budgets(300) == [50, 100, 150, 200, 250, 300]


def test_time_curve_counts_recoveries_within_each_wall_clock_limit(cm):
    rows = []
    # seed s: MCTS first recovers after 20*(s+1) s, GP after 50 s (seed 0 only)
    for s in range(4):
        rows.append({"method": "mcts", "potential": "a", "seed": s, "time_limit": 120,
                     "recovered": True, "time_to_recovery": 20.0 * (s + 1)})  # fmt: skip
        t_gp = 50.0 if s == 0 else math.nan
        rows.append({"method": "gp", "potential": "a", "seed": s, "time_limit": 120,
                     "recovered": s == 0, "time_to_recovery": t_gp})  # fmt: skip
    got = [r["recovered"] for r in cm.within_time(rows, 45.0)]
    assert got == [True, False, True, False, False, False, False, False]
    lines = cm.time_curve(rows, [30.0, 60.0, 120.0]).splitlines()
    assert lines[2].startswith("| 30 | 1/4 | 0/4 |")
    assert lines[3].startswith("| 60 | 3/4 | 1/4 | 3.00")
    assert lines[4].startswith("| 120 | 4/4 | 1/4 | 4.00")


def test_from_json_reprints_saved_runs_within_their_budget(cm, tmp_path, capsys):
    """A recovery found by a step that ran past the budget does not count."""
    rows = []
    for s in range(2):
        for m, n in (("mcts", 15), ("gp", 25)):
            rows.append({"potential": "soft_sphere", "method": m, "seed": s, "budget": 20,
                         "recovered": True, "evals_to_recovery": n, "found": "c1/r**12",
                         "n_evaluations": 26, "n_local": 3, "best_rmse_valid": 0.0,
                         "best_rel_rmse": 0.0, "best_expression": "c1/r**12", "wall_s": 1.0,
                         "cpu_s": 1.0})  # fmt: skip
    saved = tmp_path / "runs.json"
    saved.write_text(json.dumps({"runs": rows}))
    assert cm.main(["--from-json", str(saved), "--png", str(tmp_path / "x.png")]) == 0
    text = capsys.readouterr().out
    assert "| soft_sphere | 5 | mcts | 2/2 |" in text
    assert "| soft_sphere | 5 | gp | 0/2 |" in text
    assert "MCTS vs GP: 2 vs 0 of 2 paired runs" in text
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(SystemExit, match="bad.json: not a --json file"):
        cm.main(["--from-json", str(bad)])


def test_from_json_merges_the_parts_of_a_protocol(cm, tmp_path, capsys):
    """Parts run by --first-seed merge into one comparison; overlapping or unlike parts do not."""
    paths = []
    for first in (0, 2):
        rows = []
        for s in range(first, first + 2):
            for m in ("mcts", "gp"):
                rows.append({"potential": "soft_sphere", "method": m, "seed": s, "budget": 20,
                             "recovered": m == "mcts",
                             "evals_to_recovery": 5 if m == "mcts" else 25, "found": "",
                             "n_evaluations": 20, "n_local": 0, "best_rmse_valid": 0.0,
                             "best_rel_rmse": 0.0, "best_expression": "c1/r**12", "wall_s": 1.0,
                             "cpu_s": 1.0})  # fmt: skip
        paths.append(tmp_path / f"part{first}.json")
        paths[-1].write_text(json.dumps({"runs": rows}))
    png = str(tmp_path / "x.png")
    assert cm.main(["--from-json", *map(str, paths), "--png", png]) == 0
    text = capsys.readouterr().out
    assert "part0.json, part2.json: 4 seeds" in text
    assert "| soft_sphere | 5 | mcts | 4/4 |" in text and "MCTS vs GP: 4 vs 0 of 4 paired" in text
    with pytest.raises(SystemExit, match=r"part0.json: the run .* is also in part0.json"):
        cm.main(["--from-json", str(paths[0]), str(paths[0])])
    unlike = tmp_path / "unlike.json"
    unlike.write_text(json.dumps({"runs": [dict(rows[0], seed=9, budget=40)]}))
    with pytest.raises(SystemExit, match="unlike.json: its runs differ in budget"):
        cm.main(["--from-json", str(paths[0]), str(unlike)])
    # a part whose MCTS ran pipelined (--mcts-pipeline) is another protocol; its GP rows
    # carry no pipeline and a file before the field counts as pipeline 0
    piped = tmp_path / "piped.json"
    piped.write_text(
        json.dumps({"runs": [dict(rows[0], seed=9, mcts_pipeline=1), rows[1] | {"seed": 9}]})
    )
    with pytest.raises(SystemExit, match="piped.json: its runs differ in .*MCTS pipeline"):
        cm.main(["--from-json", str(paths[0]), str(piped)])
    same = tmp_path / "same.json"
    same.write_text(
        json.dumps({"runs": [dict(rows[0], seed=9, mcts_pipeline=0), rows[1] | {"seed": 9}]})
    )
    assert cm.main(["--from-json", str(paths[0]), str(same), "--png", png]) == 0
    capsys.readouterr()
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"runs": []}))
    with pytest.raises(SystemExit, match="empty.json: no runs"):
        cm.main(["--from-json", str(empty)])


def test_first_seed_shifts_the_seeds_of_a_part(cm, monkeypatch, tmp_path, capsys):
    """--first-seed K runs seeds K … K+N-1 (the jobs handed to the runner)."""
    seen = []

    def fake_jobs(fn, jobs, workers, on_row=None):
        seen.extend(jobs)
        return []

    monkeypatch.setattr(cm, "run_jobs", fake_jobs)
    monkeypatch.setattr(cm, "report", lambda *a, **k: {})
    monkeypatch.setattr(cm, "table", lambda *a, **k: "")
    argv = ["--seeds", "2", "--first-seed", "5", "--potentials", "soft_sphere", "--budget", "3"]
    assert cm.main([*argv, "--png", str(tmp_path / "x.png")]) == 0
    assert sorted({j[2] for j in seen}) == [5, 6] and {j[1] for j in seen} == {"mcts", "gp"}
    assert "2 seeds (5–6)" in capsys.readouterr().out
    seen.clear()  # --mcts-pipeline reaches MCTS's search options only
    assert cm.main([*argv, "--mcts-pipeline", "1", "--png", str(tmp_path / "x.png")]) == 0
    assert {j[1]: j[5] for j in seen} == {"mcts": {"pipeline": 1}, "gp": None}
    assert "MCTS pipeline 1" in capsys.readouterr().out


def test_nguyen_target_check_lists_tasks_where_mcts_trails_a_peer(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))  # nguyen.py imports its sibling compare_methods
    ng = _script("nguyen")
    rows = []
    for s in range(6):
        rows.append({"task": 11, "method": "mcts", "seed": s, "exact": s == 0})
        rows.append({"task": 11, "method": "gplearn-ls", "seed": s, "exact": s < 5})
        rows.append({"task": 1, "method": "mcts", "seed": s, "exact": True})
        rows.append({"task": 1, "method": "gplearn-ls", "seed": s, "exact": False})
    lines = ng.target_check(rows, [1, 11], ["mcts", "gplearn-ls"])
    assert lines[0].endswith("**not met** on 1 task/peer pair(s):")
    # seed 0 both, seeds 1-4 only gplearn-ls: McNemar p = 2 * 0.5**4
    assert lines[1:] == [
        "- Nguyen-11: mcts 1/6 < gplearn-ls 5/6 (paired by seed: 0 vs 4 runs only one "
        "recovered, McNemar exact p = 0.12)"
    ]
    met = ng.target_check([r for r in rows if r["task"] == 1], [1], ["mcts", "gplearn-ls"])
    assert met == ["target (at least every peer's rate on every task: gplearn-ls): **met**"]
    assert ng.target_check(rows, [1], ["mcts"]) == []  # no peer ran


@pytest.fixture(scope="module")
def ablation():
    return _script("ablation")  # puts benchmarks/ on sys.path for its sibling compare_methods


def test_ablation_pairs_each_variant_with_the_default(ablation):
    outcomes = {  # (potential, seed): (default, variant)
        ("a", 0): (True, False),
        ("a", 1): (True, False),
        ("b", 0): (False, True),
        ("b", 1): (True, True),
    }
    rows = []
    for (pot, seed), (rd, rv) in outcomes.items():
        rows.append({"variant": "default", "potential": pot, "seed": seed, "recovered": rd})
        rows.append({"variant": "no-mast", "potential": pot, "seed": seed, "recovered": rv})
    c = ablation.compare(rows, "no-mast")
    assert (c["pairs"], c["only_variant"], c["only_reference"]) == (4, 1, 2)
    assert c["p_value"] == pytest.approx(1.0)  # 1 of 3 discordant pairs
    assert ablation.compare(rows[:1], "no-mast")["p_value"] == 1.0  # no pairs


@pytest.mark.slow
def test_ablation_main_runs_the_variants(ablation, tmp_path, capsys):
    png, out = tmp_path / "abl.png", tmp_path / "abl.json"
    argv = ["--variants", "default", "no-mast", "--potentials", "soft_sphere", "--seeds", "2"]
    argv += ["--budget", "20", "--workers", "1", "--png", str(png), "--json", str(out)]
    assert ablation.main(argv) == 0
    text = capsys.readouterr().out
    assert "| default | the defaults |" in text and "| reference |" in text
    assert "| no-mast | uniform rollout productions (MAST off) |" in text and "McNemar" in text
    runs = json.loads(out.read_text())["runs"]
    assert len(runs) == 4 and {r["variant"] for r in runs} == {"default", "no-mast"}
    assert {r["seed"] for r in runs} == {100, 101} and png.stat().st_size > 0


def test_ablation_from_json_prints_saved_runs_by_suite(ablation, tmp_path, capsys):
    rows = [
        {"potential": p, "variant": v, "seed": s, "recovered": v == "terms" or s == 0,
         "n_local": 0, "cpu_s": 1.0, "evals_to_recovery": 1}
        for p in ("buckingham", "ewald_lj") for v in ("default", "terms") for s in (0, 1)
    ]  # fmt: skip
    paths = [tmp_path / "a.json", tmp_path / "b.json"]
    paths[0].write_text(json.dumps({"runs": rows[:4]}))
    paths[1].write_text(json.dumps({"runs": rows[4:]}))
    argv = ["--variants", "default", "terms", "--from-json", *map(str, paths)]
    assert ablation.main(argv) == 0
    text = capsys.readouterr().out
    assert "| terms | term-library proposals" in text and "| 4/4 (" in text
    assert "standard suite: default 1/2, terms 2/2" in text
    assert "hard suite: default 1/2, terms 2/2" in text and "only terms 1, only default 0" in text


def test_ablation_time_table_counts_recoveries_within_each_limit(ablation):
    rows = [
        {"variant": "terms", "recovered": True, "time_to_recovery": 5.0},
        {"variant": "terms", "recovered": True, "time_to_recovery": 50.0},
        {"variant": "no-terms", "recovered": False, "time_to_recovery": float("nan")},
        {"variant": "no-terms", "recovered": True, "time_to_recovery": 40.0},
    ]
    text = ablation.time_table(rows, ["terms", "no-terms"], [30.0, 60.0])
    assert "| terms | 1/2 | 2/2 | 27.5 |" in text
    assert "| no-terms | 0/2 | 1/2 | 40.0 |" in text


def test_ablation_variants_are_search_settings(ablation):
    """Every variant's settings are ones ``search`` takes (a typo would only show in a run)."""
    from mctsff.config import SETTINGS
    from mctsff.search import _check_engine_options, _check_local_options

    names = {*SETTINGS, "mcts_options", "gp_options", "local_options"}
    for name, (what, opts) in ablation.VARIANTS.items():
        assert what and set(opts) <= names, name
        _check_engine_options(opts.get("mcts_options"), "mcts", "mcts")
        _check_local_options(opts.get("local_options"))


def test_hard_suite_is_derivable_and_every_term_matters(cm):
    """The registered hard suite: derivable in ``pair`` within the search's max_length,
    harder than the standard forms, and each term's forces 0.1-3 × the total's RMS."""
    info = cm.check_grammar(list(cm.HARD_SUITE))
    assert set(cm.HARD_SUITE).isdisjoint(cm.POTENTIALS)
    assert list(cm.ALL_POTENTIALS)[: len(cm.POTENTIALS)] == list(cm.POTENTIALS)  # noise draws
    assert all(9 <= n <= 14 for n, _ in info.values())
    lo, hi = cm.TERM_SHARE
    for name in cm.HARD_SUITE:
        shares = cm.term_shares(name)
        assert len(shares) >= 2, name
        assert all(lo <= x <= hi for _, x in shares), (name, shares)
    # the criterion can fail: the standard suite's Coulomb + LJ has a Coulomb term of 2 %
    assert min(x for _, x in cm.term_shares("coulomb_lj")) < lo


@pytest.mark.slow
def test_noise_perturbs_only_the_training_forces_and_loosens_recovery(cm, tmp_path, capsys):
    """--noise σ: training forces get σ × RMS noise (a fixed draw), validation forces stay
    exact, and a recovery is judged against the true form's own refitted error."""
    import numpy as np

    train0, valid0 = cm._splits("soft_sphere")
    train, valid = cm._splits("soft_sphere", 0.01)
    d = np.asarray(train.forces) - np.asarray(train0.forces)
    rms = float(np.sqrt(np.mean(np.asarray(train0.forces) ** 2)))
    assert 0.008 < float(np.sqrt(np.mean(d**2))) / rms < 0.012
    assert np.array_equal(valid.forces, valid0.forces)
    assert cm._splits("soft_sphere", 0.01) is cm._splits("soft_sphere", 0.01)  # cached
    assert np.array_equal(cm._splits("soft_sphere", 0.01)[0].forces, train.forces)
    threshold, err = cm.recovery_threshold("soft_sphere", 0.01)
    vrms = float(np.sqrt(np.mean(np.asarray(valid.forces) ** 2)))
    assert 1e-5 < err / vrms < 1e-2 and threshold == pytest.approx(cm.NOISE_FACTOR * err)
    t0, e0 = cm.recovery_threshold("soft_sphere")
    assert t0 == pytest.approx(cm.RECOVERY_TOL * vrms) and math.isnan(e0)
    # a form is the true one when it refits the noise-free forces exactly
    assert cm.exact_form("coulomb_lj", "prod_c1/r + c1/r**12 - c2/r**6", {})
    assert not cm.exact_form("coulomb_lj", "prod_c1/r**12 + prod_c2/r**6", {})
    # the verdict is cached per expression *and* starting constants
    cm.exact_form("soft_sphere", "c1/r**12", {"c1": 1.0})
    keys = [k for k in cm._DATA if k[:3] == ("exact", "soft_sphere", "c1/r**12")]
    assert (("c1", 1.0),) in [k[3] for k in keys]
    assert cm.valid_rms("soft_sphere") == pytest.approx(vrms)
    # the noiseless criterion could never be met on noisy data; the noisy one is
    row = cm.run_one("soft_sphere", "gp", 0, 20, noise=0.01)
    assert row["noise"] == 0.01 and row["recovered"] and row["best_rel_rmse"] > 1e-5
    # the restated criterion: the true form refitted is as good as the truth, by definition
    assert row["as_good"] and row["as_good_time"] >= 0.0
    assert row["as_good_found"].replace(" ", "") == "c1/r**12"
    assert cm.run_one("soft_sphere", "gp", 0, 5)["as_good"] is None  # no noise: not recorded
    line = cm.as_good_line(
        [
            {"method": "mcts", "potential": "soft_sphere", "as_good": True},
            {"method": "gp", "potential": "soft_sphere", "as_good": False},
        ],
        ["soft_sphere"],
    )
    assert "mcts 1/1 (soft_sphere 1/1); gp 0/1 (soft_sphere 0/1)" in line
    argv = ["--seeds", "1", "--budget", "12", "--potentials", "soft_sphere", "--workers", "1"]
    out = tmp_path / "noisy.json"
    png = str(tmp_path / "n.png")
    assert cm.main([*argv, "--noise", "0.01", "--png", png, "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "noise 0.01 × RMS(F) on the training forces" in text and "(threshold" in text
    assert "A model as good as the truth" in text
    assert cm.main(["--from-json", str(out), "--png", png]) == 0
    text = capsys.readouterr().out
    assert "noise 0.01 × RMS(F)" in text and "A model as good as the truth" in text


@pytest.mark.slow
def test_surrogate_rank_statistics_and_a_tiny_run(tmp_path, capsys):
    """The agreement figures of benchmarks/surrogate_rank.py, and its main on shipped data."""
    import numpy as np

    sr = _script("surrogate_rank")
    loss = np.linspace(1.0, 2.0, 30)
    perfect = sr.agreement(loss * 3, loss, 8, 200)
    assert perfect["spearman"] == pytest.approx(1.0) and perfect["pick_is_best"] == 1.0
    assert perfect["median_ratio"] == 1.0 and perfect["random_median_ratio"] > 1.0
    worst = sr.agreement(-loss, loss, 8, 200)
    assert worst["spearman"] == pytest.approx(-1.0) and worst["pick_is_best"] == 0.0
    assert worst["median_ratio"] > perfect["random_median_ratio"]
    unknown = sr.agreement(np.where(loss > 1.5, np.inf, loss), loss, 8, 200)
    assert unknown["scored"] == 15 and unknown["pick_is_best"] == 1.0  # inf is picked last
    png, out = tmp_path / "r.png", tmp_path / "r.json"
    argv = ["--data", "water_dimers_mp2_sample20.extxyz", "--budget", "12", "--groups", "50"]
    assert sr.main([*argv, "--png", str(png), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| as fitted |" in text and "| forces only |" in text and "| random pick |" in text
    assert "constraints force0" in text and png.stat().st_size > 0
    saved = json.loads(out.read_text())
    assert len(saved["fitted"]) >= 10 and set(saved["results"]) == {"as fitted", "forces only"}
    # a baseline that is this very code (given as an interpreter) reproduces every estimate
    base = ["--baseline", "HEAD", "--baseline-python", sys.executable]
    assert sr.main([*argv, *base, "--png", str(png), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    saved = json.loads(out.read_text())
    n = len(saved["fitted"])
    assert "| as fitted (HEAD) |" in text
    assert "as fitted: CPU per expression, HEAD / current:" in text
    for name in ("as fitted", "forces only"):
        assert saved["results"][f"{name} (HEAD)"]["same"] == n, name
        assert saved["results"][f"{name} (HEAD)"]["spearman"] == saved["results"][name]["spearman"]
    with pytest.raises(SystemExit, match="--baseline no-such-rev: no such commit"):
        sr.main([*argv, "--baseline", "no-such-rev"])  # before any search
    a = np.array([1.0, 1e-12, np.inf, 0.5, 1.0])
    b = np.array([1.0 + 1e-9, 1e-14, np.inf, 0.6, np.inf])
    assert sr.same(a, b).tolist() == [True, True, True, False, False]


@pytest.fixture(scope="module")
def reliability():
    return _script("fit_reliability")  # puts benchmarks/ on sys.path for its sibling _baseline


def test_reliability_cases_are_well_posed_and_deterministic(reliability):
    cases = reliability.make_cases(6, seed=3, quick=True)
    assert [c["id"] for c in cases][:2] == [
        "buckingham/dimers/none/0",
        "buckingham/dimers/force0/0",
    ]
    assert cases[0]["params"] == cases[1]["params"]  # one draw, with and without force0
    assert cases == reliability.make_cases(6, seed=3, quick=True)
    assert reliability.case_key(cases[0]) != reliability.case_key(cases[1])
    for c in cases:
        lo, hi = reliability.MIN_SHARE, reliability.MAX_SHARE
        assert all(lo <= s <= hi for s in c["shares"]) and len(c["shares"]) >= 1
    full = reliability.make_cases(48, seed=0)
    assert len(reliability.FAMILIES) >= 10 and {c["geometry"] for c in full} == {"dimers", "bulk"}
    rules = "".join(c["expression"] for c in full)
    assert "prod_" in rules and "geom_" in rules
    # a draw whose dispersion term is negligible is rejected
    fam = reliability.FAMILIES["buckingham"]
    params = dict(cases[0]["params"], **{"prod_c2[O]": 1e-3, "prod_c2[H]": 1e-3})
    ok, info = reliability.check_case(fam, params, reliability.geometry("dimers"))
    assert not ok and info["shares"][1] < reliability.MIN_SHARE


def test_reliability_criterion_on_true_and_wrong_forms(reliability):
    """Started at the true constants the fit meets the exact-optimum criterion; a form
    missing a term cannot."""
    (case,) = reliability.make_cases(1, seed=0, quick=True)
    (row,) = reliability.fit_cases([case], "truth")
    assert row["rmse_train"] <= 1e-6 * row["rms_force"]
    assert reliability.success(row, case, None)
    from mctsff.fit import Fitter

    res = Fitter(reliability.case_data(case), constraints=()).fit("prod_c1*exp(-r/c1)")
    bad = {"valid": res.valid, "rmse_train": res.rmse_train, "constraint": 0.0}
    assert res.valid and not reliability.success(bad, case, None)  # Buckingham without r^-6
    # under a constraint: judged against the reference, and the residual must be small
    ref = {"rmse_train": 0.1}
    con = dict(case, constraints=["force0"])
    ok_row = {"valid": True, "rmse_train": 0.1 + 1e-8 * case["rms_force"], "constraint": 1e-9}
    assert reliability.success(ok_row, con, ref)
    assert not reliability.success(dict(ok_row, constraint=1e-5), con, ref)
    assert not reliability.success(dict(ok_row, rmse_train=0.1 * (1 + 1e-3)), con, ref)
    assert not reliability.success(ok_row, con, None)


def test_reliability_counts_the_constrained_cases_that_can_meet_the_constraint(reliability):
    """The restated force0 half: only constrained cases whose reference is within MEETABLE ×
    RMS(F) count; unconstrained ones and those without a reference never do."""
    (case,) = reliability.make_cases(1, seed=0, quick=True)
    rms = case["rms_force"]
    near, far = (dict(case, constraints=["force0"], id=i, params=dict(case["params"], k=i))
                 for i in ("near", "far"))  # fmt: skip
    lone = dict(near, id="lone", params=dict(case["params"], k="lone"))
    refs = {reliability.case_key(near): {"rmse_train": 0.05 * rms},
            reliability.case_key(far): {"rmse_train": 0.5 * rms}}  # fmt: skip
    good = {"valid": True, "rmse_train": 0.05 * rms, "constraint": 0.0}
    worse = dict(good, rmse_train=0.06 * rms)
    cases = [case, near, far, lone]
    rows = [{"valid": True, "rmse_train": 0.0, "constraint": 0.0}, good, worse, good]
    summary = reliability.summarize(cases, {"current": rows}, refs)
    assert summary["meetable"]["cases"] == 1 and summary["meetable"]["current"] == 1
    assert summary["total"]["cases"] == 4 and summary["total"]["current"] == 3  # far too
    rows[1] = worse
    assert reliability.summarize(cases, {"current": rows}, refs)["meetable"]["current"] == 0


def test_reliability_quick_run_prints_the_table(reliability, tmp_path, capsys):
    refs, out = tmp_path / "refs.json", tmp_path / "rel.json"
    argv = ["--quick", "--cases", "4", "--no-baseline", "--ref-starts", "2"]
    assert reliability.main([*argv, "--references", str(refs), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| family | cases | success current | median s/fit current |" in text
    assert "| **all** | 4 |" in text and "criterion check:" in text and "2/2 cases" in text
    saved = json.loads(out.read_text())
    assert len(saved["runs"]["current"]) == 4 and saved["baseline"] is None
    cached = json.loads(refs.read_text())["references"]
    assert len(cached) == 2 and all(r["constraint"] <= 1e-7 for r in cached.values())
    # a second run takes the force0 references from the cache
    assert reliability.main([*argv, "--references", str(refs)]) == 0
    assert json.loads(refs.read_text())["references"].keys() == cached.keys()


@pytest.fixture(scope="module")
def throughput():
    return _script("fit_throughput")


def test_throughput_replay_without_baseline(throughput, tmp_path, capsys):
    exprs = throughput.read_expressions(throughput.DEMO_EXPRESSIONS)
    assert len(exprs) == 300 and len(set(exprs)) == 300
    out = tmp_path / "replay.json"
    assert throughput.main(["--replay", "--limit", "3", "--no-baseline", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| fits per CPU-second |" in text and "| expressions fitted | 3 |" in text
    saved = json.loads(out.read_text())
    assert [r["expression"] for r in saved["current"]["rows"]] == exprs[:3]


@pytest.mark.parametrize(
    "script, argv",
    [
        ("fit_reliability", ["--quick"]),
        ("fit_throughput", ["--replay", "--limit", "1"]),
        ("fit_throughput", ["--record-demo", "never-written.txt"]),
    ],
)
def test_a_bad_baseline_is_one_line_before_any_fit(script, argv, tmp_path, monkeypatch):
    """A revision or interpreter that does not exist stops the script at once with one line
    (SystemExit, not a BaselineError traceback), before any fit or install."""
    monkeypatch.chdir(tmp_path)
    mod = _script(script)
    with pytest.raises(SystemExit, match="^--baseline no-such-rev: no such commit in "):
        mod.main([*argv, "--baseline", "no-such-rev"])
    missing = tmp_path / "no-python"
    with pytest.raises(SystemExit, match=f"^--baseline-python {missing}: no such file$"):
        mod.main([*argv, "--baseline", "HEAD", "--baseline-python", str(missing)])
    assert not (tmp_path / "never-written.txt").exists()


def test_a_failing_baseline_worker_ends_the_script_with_its_message(tmp_path):
    """baseline_or_exit turns a BaselineError raised inside the block (a worker that fails)
    into SystemExit carrying the worker's stderr, so the script prints it and exits."""
    _script("fit_throughput")  # puts benchmarks/ on sys.path for the sibling _baseline
    import _baseline

    bad = tmp_path / "bad_worker.py"
    bad.write_text("import sys\nsys.exit('worker broke on purpose')\n")
    with pytest.raises(SystemExit) as info:
        with _baseline.baseline_or_exit("HEAD", python=sys.executable, log=lambda _: None) as b:
            b.run(bad, {"task": "x"})
    assert isinstance(info.value.code, str)
    assert "bad_worker.py --worker in the HEAD venv failed (exit 1)" in info.value.code
    assert "worker broke on purpose" in info.value.code


def test_throughput_replay_comparison(throughput):
    def run(losses, cpu):
        rows = [{"expression": f"e{i}", "valid": x is not None, "loss": x, "constraint": 0.0,
                 "cpu_s": cpu} for i, x in enumerate(losses)]  # fmt: skip
        return {"rows": rows}

    new = run([1.0, 2.0, 3.0 * (1 + 1e-12), None], 0.1)
    base = run([1.0, 1.0, 3.0, None], 1.0)
    cmp = throughput.compare_replay(new, base)
    assert cmp["cpu_ratio"] == pytest.approx(10.0) and cmp["new"]["fits_per_cpu_s"] == 10.0
    assert cmp["equal_or_lower"] == 3 and [w["expression"] for w in cmp["worse"]] == ["e1"]
    infeasible = run([0.5, 1.0, 3.0, None], 0.1)
    infeasible["rows"][0]["constraint"] = 1e-3  # lower loss, constraint not met: worse
    assert throughput.compare_replay(infeasible, base)["equal_or_lower"] == 3
    lines = "\n".join(throughput.replay_table(cmp, "91353c8"))
    assert "**10.00×**" in lines and "**3/4 (75.0%)**" in lines
    with pytest.raises(ValueError, match="different expressions"):
        throughput.compare_replay(new, run([1.0], 1.0))


def test_throughput_replay_profile_measures_the_time_inside_the_kernels(
    throughput, tmp_path, capsys
):
    """--profile: each row's kernel seconds (from a profiled second pass) are a part of its CPU
    seconds, and the bound is the baseline's CPU per fit over the current kernels' (the figures
    of the issue-31 floor)."""
    run = throughput.replay_fits(throughput.read_expressions(throughput.DEMO_EXPRESSIONS)[:2],
                                 profile=True)  # fmt: skip
    assert run["profiled"] and len(run["rows"]) == 2
    for row in run["rows"]:
        assert 0.0 < row["kernel_s"] < row["cpu_s"] and row["n_evals"] > 0
    out = tmp_path / "p.json"
    argv = ["--replay", "--limit", "2", "--no-baseline", "--profile", "--out", str(out)]
    assert throughput.main(argv) == 0
    assert (
        "| CPU-seconds per fit inside the compiled kernels (cProfile) |" in capsys.readouterr().out
    )
    saved = json.loads(out.read_text())["current"]
    assert not saved["profiled"]  # the timed pass ran without the profiler
    assert len(saved["rows"]) == 2 and all(r["kernel_s"] > 0.0 for r in saved["rows"])
    assert "_pair_jacobian" in {c[2] for c in throughput.kernel_codes()}
    rows = [{"expression": "e", "valid": True, "loss": 1.0, "constraint": 0.0, "cpu_s": 1.0,
             "n_evals": 100, "kernel_s": 0.25}]  # fmt: skip
    base = [dict(rows[0], cpu_s=0.5, n_evals=40)]
    base[0].pop("kernel_s")
    cmp = throughput.compare_replay({"rows": rows}, {"rows": base})
    assert cmp["new"]["kernel_per_fit"] == 0.25 and cmp["new"]["kernel_share"] == 0.25
    assert cmp["kernel_bound"] == pytest.approx(2.0) and cmp["baseline"]["evals_per_fit"] == 40
    lines = "\n".join(throughput.replay_table(cmp, "91353c8"))
    assert "| evaluations per valid fit (residuals and Jacobians) | 100 | 40 |" in lines
    assert "| CPU-seconds per fit inside the compiled kernels (cProfile) | 0.2500 | – |" in lines
    assert "**2.00×**, the most the current fitter could gain" in lines
    # a column without kernel times leaves the kernel rows out rather than misprinting them
    assert "inside the compiled kernels" not in "\n".join(
        throughput.replay_table(throughput.compare_replay({"rows": base}, None), None)
    )


@pytest.mark.slow
def test_a_search_stopped_at_its_recovery_recovers_when_the_full_run_does(cm):
    full = cm.run_one("soft_sphere", "mcts", 0, 30)
    stopped = cm.run_one("soft_sphere", "mcts", 0, 30, stop_at_recovery=True)
    assert full["recovered"] and not full["stopped_at_recovery"]
    assert stopped["recovered"] and stopped["stopped_at_recovery"]
    assert stopped["evals_to_recovery"] == full["evals_to_recovery"]
    assert stopped["found"] == full["found"]
    assert stopped["n_evaluations"] < full["n_evaluations"]


def test_compare_methods_no_terms_turns_the_proposals_off_for_both_methods(cm, tmp_path, capsys):
    argv = ["--seeds", "1", "--budget", "8", "--potentials", "soft_sphere", "--workers", "1"]
    out = tmp_path / "runs.json"
    png = str(tmp_path / "c.png")
    assert cm.main([*argv, "--no-terms", "--png", png, "--json", str(out)]) == 0
    assert "term-library proposals off" in capsys.readouterr().out
    runs = json.loads(out.read_text())["runs"]
    assert sorted(r["method"] for r in runs) == ["gp", "mcts"]
    assert all(r["n_terms"] == 0 for r in runs)
    assert cm.main([*argv, "--png", png, "--json", str(out)]) == 0
    assert "term-library proposals on" in capsys.readouterr().out
    assert all(r["n_terms"] > 0 for r in json.loads(out.read_text())["runs"])

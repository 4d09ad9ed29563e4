"""The run-folder format: what the writers write, the readers read back."""

import json

import pytest

from mctsff.engines.pareto import ParetoFront
from mctsff.fit.result import FitResult
from mctsff.runfolder import (
    CHECKPOINT_VERSION,
    read_checkpoint,
    read_front_points,
    read_run_info,
    write_checkpoint,
    write_front_points,
    write_run_info,
)
from mctsff.runio import RunFolderError


def test_front_run_info_and_checkpoint_round_trip(tmp_path):
    point = FitResult(
        expression="c1 / r", params={"c1": 2.5}, rmse_train=0.1, rmse_valid=0.2
    ).to_dict()
    point.pop("extra")
    write_front_points(tmp_path, [point])
    write_run_info(tmp_path, {"grammar": "pair", "cutoff": 9.0})
    write_checkpoint(tmp_path, {"front": [point]})
    assert read_front_points(tmp_path) == [point]
    assert read_run_info(tmp_path) == {"grammar": "pair", "cutoff": 9.0}
    state = read_checkpoint(tmp_path)
    assert state["version"] == CHECKPOINT_VERSION and state["front"] == [point]
    front = ParetoFront.from_json(tmp_path)  # a run folder, as the search writes it
    assert [p.params for p in front.points] == [{"c1": 2.5}]


def test_bad_files_are_one_error_naming_the_file(tmp_path):
    (tmp_path / "pareto.json").write_text('{"not": "a front"}')
    with pytest.raises(RunFolderError, match="pareto.json: expected a list"):
        read_front_points(tmp_path)
    (tmp_path / "run.json").write_text("{")
    with pytest.raises(RunFolderError, match="run.json: cannot read"):
        read_run_info(tmp_path)
    assert read_run_info(tmp_path / "nothing") == {}
    (tmp_path / "pareto.json").write_text(json.dumps({"points": []}))
    assert read_front_points(tmp_path / "pareto.json") == []


def test_deeply_nested_or_non_object_files_are_one_error_naming_the_file(tmp_path):
    """json raised RecursionError (a traceback from export) on 100000 nested brackets, and
    a run.json holding a list was read as no run.json at all."""
    (tmp_path / "pareto.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(RunFolderError, match="pareto.json: cannot read the front .nested"):
        read_front_points(tmp_path)
    (tmp_path / "run.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(RunFolderError, match="run.json: cannot read .nested too deeply"):
        read_run_info(tmp_path)
    (tmp_path / "run.json").write_text("[]")
    with pytest.raises(RunFolderError, match="run.json: not a JSON object .holds a list"):
        read_run_info(tmp_path)


@pytest.mark.parametrize(
    "data",
    [
        b"\x80\x04Nr\x00\x00\x00\x10.",  # None, memo[2**28] = it
        b"\x80\x04Nrmse_.",  # a damaged checkpoint read on into its text: memo[1600000109]
        b"(p999999999\n.",  # the text protocol's PUT
    ],
    ids=["long-binput", "from-text", "put"],
)
def test_a_memo_index_beyond_the_data_is_refused_without_filling_memory(
    tmp_path, data, memory_limit
):
    """The C unpickler zeroes a memo table up to the largest index: 10 bytes filled 4 GB."""
    path = tmp_path / "checkpoint.pkl"
    path.write_bytes(data)
    with memory_limit(1 << 30), pytest.raises(RunFolderError) as err:
        read_checkpoint(path)
    assert "memo index" in str(err.value) and "\n" not in str(err.value)


def test_a_front_read_from_a_run_folder_keeps_its_null_rmse(tmp_path):
    """``from_json`` left ``null_loss`` unset, so a front re-plotted from a run folder had
    no U = 0 band; a bare ``pareto.json`` (no ``run.json``) still reads, without one."""
    point = FitResult(expression="c1 / r", params={"c1": 2.5}, rmse_valid=0.2).to_dict()
    write_front_points(tmp_path, [point])
    assert ParetoFront.from_json(tmp_path).null_loss is None  # no run.json
    write_run_info(tmp_path, {"grammar": "pair", "null_rmse": 0.75})
    for source in (tmp_path, tmp_path / "pareto.json"):
        front = ParetoFront.from_json(source)
        assert front.null_loss == 0.75
        legend = front.figure().axes[0].get_legend()
        assert "U = 0 (0.75)" in [t.get_text() for t in legend.texts]
    write_run_info(tmp_path, {"null_rmse": "0.75"})
    with pytest.raises(RunFolderError, match="run.json: null_rmse must be a finite number"):
        ParetoFront.from_json(tmp_path)

"""The run folder of a search: the one format, with the code that writes and reads it.

:func:`mctsff.search.search` writes a run folder through this module; the exporters
(:mod:`mctsff.export.front`) and :meth:`mctsff.engines.pareto.ParetoFront.from_json`
read it through this module.  The safe-write primitives (exclusive creation, the lock,
atomic writes, the allow-list unpickler) live in :mod:`mctsff.runio`.

=================  ======================================================================
file               contents
=================  ======================================================================
``pareto.json``    the front, a JSON list sorted by complexity, one object per member:
                   ``expression`` (text in the variables and the constants),
                   ``complexity`` (grammar weight units), ``valid``, ``reason`` (why a
                   fit failed), ``rmse_train`` / ``rmse_valid`` / ``rmse_test`` (the
                   objective's units: eV/Å per force component for force matching;
                   ``NaN`` without that split), ``loss`` (the fit's training loss: the
                   weighted mean squared residual it minimised), ``params`` (constant
                   name -> value; per-type constants as ``name[El]``, eV and Å units),
                   ``constraints`` (name -> residual at the optimum), ``flags``,
                   ``n_evals``, ``species``, ``type_pairs``, ``cutoff`` (Å),
                   ``cutoff_scheme``; ``md_check`` where an MD check scored the member.
                   A ``{"points": [...]}`` object is read as the same list.
``pareto.csv``     one row per member: ``complexity``, ``score_loss`` (the loss that
                   ranks the front: the validation RMSE where there is one), the RMSEs,
                   ``selected`` (the knee rule's member), ``expression``, ``params``
                   (JSON)
``run.json``       what a reader needs to use the front: ``mctsff_version``,
                   ``grammar``, ``variables``, ``data`` (path), ``n_evaluations``,
                   ``method``, ``reference_lines`` (label -> RMSE), ``surrogate``,
                   ``settings`` (:meth:`~mctsff.config.SearchConfig.as_dict`),
                   ``null_rmse`` (U = 0 on the ranking frames), ``reuse``, ``novelty``,
                   ``cover``, ``local_moves``; force matching adds ``species``,
                   ``type_pairs``, ``cutoff`` (Å), ``cutoff_scheme``, ``wall`` (Å),
                   ``wall_shortest`` (Å per type pair: its shortest distance in the
                   training data, where the wall ends; ``null`` if never seen),
                   ``force_array``, ``constraints`` (names); regression adds
                   ``linear_scaling``
``checkpoint.pkl`` what ``resume`` continues: a pickled dict of plain containers,
                   NumPy arrays and mctsff's own classes (read by an allow-list
                   unpickler): ``version`` (:data:`CHECKPOINT_VERSION`), ``signature``
                   (what a resume must share), ``method``, ``local_options``, ``mcts``
                   (the engine's state), ``front`` (the archive as result dicts),
                   ``local_pending``, ``terms_pending`` (the term-library proposals
                   of a batch the budget or the time limit cut short)
``pareto.png``,    plots (complexity vs validation RMSE; U(r) of the best members per
``potentials.png`` type pair)
=================  ======================================================================
"""

from __future__ import annotations

import json
import math
import os
import pickle
from pathlib import Path
from typing import Any

from mctsff.runio import RunFolderError, atomic_write, load_checkpoint

__all__ = [
    "CHECKPOINT",
    "CHECKPOINT_VERSION",
    "PARETO_JSON",
    "RUN_JSON",
    "read_checkpoint",
    "read_front_points",
    "read_null_rmse",
    "read_run_info",
    "write_checkpoint",
    "write_front_points",
    "write_run_info",
]

CHECKPOINT = "checkpoint.pkl"
PARETO_JSON = "pareto.json"
RUN_JSON = "run.json"
#: Checkpoint format; 6: results carry species, type pairs, cutoff and its scheme
#: (:class:`~mctsff.fit.result.FitResult`); 5: read by an allow-list unpickler
#: (:func:`mctsff.runio.load_checkpoint`), data compared by a content hash (4: probed keys
#: with one value per constant, numbered by role; 3: one value per kind of constant; 2: sympy
#: argument tuples, 1: ``sympy.srepr``).
CHECKPOINT_VERSION = 6


# ----------------------------------------------------------------------------- writers
def write_front_points(out: str | os.PathLike[str], points: list[dict[str, Any]]) -> Path:
    """Write ``pareto.json`` (the members as dicts, in order) atomically; its path."""
    path = Path(out) / PARETO_JSON
    atomic_write(path, json.dumps(points, indent=2).encode())
    return path


def write_run_info(out: str | os.PathLike[str], info: dict[str, Any]) -> Path:
    """Write ``run.json`` atomically; its path."""
    path = Path(out) / RUN_JSON
    atomic_write(path, json.dumps(info, indent=2).encode())
    return path


def write_checkpoint(out: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Write ``checkpoint.pkl`` (``state`` with ``version`` set) atomically; its path."""
    path = Path(out) / CHECKPOINT
    state = {"version": CHECKPOINT_VERSION, **state}
    atomic_write(path, pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
    return path


# ----------------------------------------------------------------------------- readers
def read_front_points(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The members of a ``pareto.json`` file (or a run folder holding one) as dicts.

    Raises
    ------
    RunFolderError
        One line naming the file: unreadable, not JSON (or nested too deeply to read), or
        not a list of objects.
    """
    path = Path(path)
    if path.is_dir():
        path = path / PARETO_JSON
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RunFolderError(f"{path}: cannot read the front ({exc})") from None
    except RecursionError:
        raise RunFolderError(f"{path}: cannot read the front (nested too deeply)") from None
    if isinstance(data, dict) and "points" in data:
        data = data["points"]
    if not isinstance(data, list):
        raise RunFolderError(f"{path}: expected a list of front points")
    return data


def read_run_info(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """``run.json`` of ``folder`` as a dict (empty when there is none); a
    :class:`RunFolderError` naming the file when it cannot be read or is not a JSON
    object (a damaged file is not taken for a missing one)."""
    path = Path(folder) / RUN_JSON
    if not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RunFolderError(f"{path}: cannot read ({exc})") from None
    except RecursionError:
        raise RunFolderError(f"{path}: cannot read (nested too deeply)") from None
    if not isinstance(info, dict):
        raise RunFolderError(f"{path}: not a JSON object (holds a {type(info).__name__})")
    return info


def read_null_rmse(path: str | os.PathLike[str]) -> float | None:
    """``null_rmse`` of the run a front was read from (U = 0 on the ranking frames), or
    ``None``: ``path`` a run folder, or its ``pareto.json`` (``run.json`` beside it); a file
    with another name, or a folder without ``run.json`` or without the field, gives ``None``.

    Raises
    ------
    RunFolderError
        One line naming ``run.json``: unreadable, or ``null_rmse`` not a finite number >= 0.
    """
    path = Path(path)
    if not path.is_dir():
        if path.name != PARETO_JSON:
            return None
        path = path.parent
    value = read_run_info(path).get("null_rmse")
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise RunFolderError(
            f"{path / RUN_JSON}: null_rmse must be a finite number >= 0, not {value!r}"
        )
    return float(value)


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``checkpoint.pkl`` (a file, or a run folder holding one) through the allow-list
    unpickler (:func:`mctsff.runio.load_checkpoint`): no code from the file runs."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    return load_checkpoint(path)

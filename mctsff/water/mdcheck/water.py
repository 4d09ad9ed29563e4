"""The liquid-water check of a front member next to q-SPC/Fw (:func:`water_check`,
``mctsff md-check water``)."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from mctsff.water.mdcheck.base import MDCheckError
from mctsff.water.mdcheck.dft_forces import dft_force_rmse
from mctsff.water.mdcheck.rdf import (
    DFT_FILE,
    EXPERIMENT_FILE,
    EXPERIMENT_REFERENCE,
    RDF_PAIRS,
    dft_rdf,
    experimental_rdf,
    first_peak,
    rdf_distance,
)
from mctsff.water.mdcheck.report import _write_report, member_record, plot_rdfs
from mctsff.water.mdcheck.run import run_water
from mctsff.water.mdcheck.system import BOX_CUTOFF_RATIO, WaterProtocol, _box_edge


def water_check(
    run_dir: str | os.PathLike[str],
    index: int | None = None,
    *,
    protocol: WaterProtocol = WaterProtocol(),  # noqa: B008 (a frozen dataclass)
    out: str | os.PathLike[str] | None = None,
    reference_model: bool = True,
    forces: bool = True,
    progress: bool | TextIO = True,
) -> dict[str, Any]:
    """Liquid-water check of one front member next to q-SPC/Fw (``mctsff md-check water``).

    Parameters
    ----------
    run_dir
        Search run folder (``pareto.json``, ``run.json``).
    index
        Front member (0 = simplest; ``None``: the knee-rule member, as ``mctsff export``).
    protocol
        Sizes, lengths and limits (:class:`WaterProtocol`).
    out
        Folder for ``water.json`` and ``rdf.png`` (default ``RUN/md-check``; created).
    reference_model
        Also run q-SPC/Fw as published.
    forces
        Also report the force RMSE on the bulk-water DFT frames (:func:`dft_force_rmse`).
    progress
        Progress lines (stderr for ``True``).

    Returns
    -------
    dict
        What ``water.json`` holds: the member, its wall check, the protocol, per model the
        run (:func:`run_water`) with ``distance`` to experiment and DFT, the references'
        peaks, and ``dft_forces``.
    """
    from mctsff.export import ExportError, load_front_point

    stream = sys.stderr if progress is True else (progress or None)

    def log(msg: str) -> None:
        if stream is not None:
            print(msg, file=stream, flush=True)

    try:
        point = load_front_point(run_dir, index)
    except ExportError as exc:
        raise MDCheckError(str(exc)) from None
    if point.species is not None and set(point.species) - {"H", "O"}:
        raise MDCheckError(
            f"{run_dir}: front member species {list(point.species)} are not water's H and O"
        )
    rc = float(point.cutoff) if point.cutoff is not None else 9.0
    folder = Path(out) if out is not None else Path(run_dir) / "md-check"
    t0 = time.perf_counter()
    r_exp, g_exp = experimental_rdf()
    r_dft, g_dft = dft_rdf(protocol.rdf_bin)
    report: dict[str, Any] = {
        "member": member_record(point),
        "protocol": asdict(protocol),
        "references": {
            "experiment": {
                "source": EXPERIMENT_REFERENCE,
                "file": EXPERIMENT_FILE,
                "peaks": {k: first_peak(r_exp, v, k) for k, v in g_exp.items()},
            },
            "dft": {
                "source": f"{DFT_FILE} (80 frames, 64 waters; O-O RDF up to {r_dft[-1]:.2f} Å)",
                "peaks": {"O-O": first_peak(r_dft, g_dft["O-O"], "O-O")},
                "rdf": {"r": r_dft.round(4).tolist(), "O-O": g_dft["O-O"].round(5).tolist()},
            },
        },
        "models": {},
    }
    if report["member"]["wall_problem"]:
        log(f"member {point.index}: no repulsive wall ({report['member']['wall_problem']})")
    models: list[tuple[str, Any]] = [(f"member {point.index}", point)]
    if reference_model:
        models.append(("q-SPC/Fw", "q-spcfw"))
    for name, pot in models:
        log(f"{name}: {_run_label(protocol, rc)}")
        res = run_water(pot, protocol, cutoff=rc, label=name, log=log)
        if "rdf" in res:
            r = np.asarray(res["rdf"]["r"])
            res["distance"] = {
                "experiment": {
                    k: rdf_distance(r, np.asarray(res["rdf"][k]), r_exp, g_exp[k])
                    for k in RDF_PAIRS
                },
                "dft": {"O-O": rdf_distance(r, np.asarray(res["rdf"]["O-O"]), r_dft, g_dft["O-O"])},
            }
        report["models"][name] = res
    if forces:
        log("forces on the bulk-water DFT frames")
        try:
            report["dft_forces"] = dft_force_rmse(
                [("intramolecular only", None), *models], cutoff=rc, threads=protocol.threads
            )
        except MDCheckError as exc:
            report["dft_forces"] = {"error": str(exc)}
    report["seconds"] = round(time.perf_counter() - t0, 1)
    _write_report(folder, "water.json", report)
    plot_rdfs(report, folder / "rdf.png", (r_exp, g_exp), (r_dft, g_dft))
    report["files"] = [str(folder / "water.json"), str(folder / "rdf.png")]
    return report


def _run_label(protocol: WaterProtocol, cutoff: float) -> str:
    """One line describing the run of a model (molecules, lengths)."""
    n = protocol.n_molecules
    while _box_edge(n, 0.997) < BOX_CUTOFF_RATIO * cutoff:
        n += 1
    p = protocol
    return (
        f"{n} waters, {p.temperature:g} K, dt {p.timestep_fs:g} fs: NVT {p.equilibration_ps:g} ps"
        f" + NPT {p.npt_ps:g} ps + NVT {p.nvt_ps:g} ps + NVE {p.nve_ps:g} ps"
    )

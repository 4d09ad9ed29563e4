"""What the checks write and print: the JSON reports, the RDF and Ramachandran plots, and the
one-screen summaries of ``mctsff md-check``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from mctsff.water.mdcheck.angles import SOLVENT_FILE
from mctsff.water.mdcheck.base import MDCheckError
from mctsff.water.mdcheck.rdf import RDF_PAIRS


def member_record(point) -> dict[str, Any]:
    """The checked front member as the water and solvent reports record it."""
    from mctsff.export import wall_problem

    return {
        "index": point.index,
        "expression": point.expression,
        "params": point.params,
        "cutoff": point.cutoff,
        "cutoff_scheme": point.cutoff_scheme,
        "complexity": point.complexity,
        "rmse_valid": point.rmse_valid,
        "rmse_test": point.rmse_test,
        "wall_problem": wall_problem(point),
        "source": point.source,
    }


def _write_report(folder: Path, name: str, report: dict[str, Any]) -> None:
    from mctsff.runio import atomic_write, write_error

    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / name, (json.dumps(report, indent=1) + "\n").encode())
    except OSError as exc:
        raise MDCheckError(write_error(exc, folder / name)) from None


def plot_rdfs(
    report: dict[str, Any],
    path: str | os.PathLike[str],
    experiment: tuple[np.ndarray, dict[str, np.ndarray]],
    dft: tuple[np.ndarray, dict[str, np.ndarray]],
) -> None:
    """Three panels (O–O, O–H, H–H): every model's RDF, experiment, and DFT O–O."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    r_exp, g_exp = experiment
    r_dft, g_dft = dft
    for ax, pair in zip(axes, RDF_PAIRS, strict=True):
        ax.plot(r_exp, g_exp[pair], "k-", lw=2.2, alpha=0.55, label="experiment (Soper 2013)")
        if pair == "O-O":
            ax.plot(r_dft, g_dft["O-O"], color="tab:green", lw=1.4, label="DFT frames")
        for k, (name, res) in enumerate(report["models"].items()):
            if "rdf" not in res:
                continue
            tag = "" if res.get("stable") else " (unstable)"
            style = "-" if k == 0 else "--"
            ax.plot(res["rdf"]["r"], res["rdf"][pair], style, lw=1.4, label=f"{name}{tag}")
        ax.axhline(1.0, color="grey", lw=0.5)
        ax.set_xlabel("r (Å)")
        ax.set_ylabel(f"g$_{{{pair.replace('-', '')}}}$(r)")
        ax.set_title(pair + ("" if pair == "O-O" else " (intermolecular)"))
        ax.set_xlim(0.8, 9.0)
    axes[0].legend(fontsize=8)
    member = report.get("member", {})
    fig.suptitle(
        f"liquid water, 298 K: member {member.get('index')}: {member.get('expression')}", fontsize=9
    )
    _save_figure(fig, path)


def _save_figure(fig, path) -> None:
    """Lay out, write and close a figure; a write error is one :class:`MDCheckError` line."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110)
    except OSError as exc:
        from mctsff.runio import write_error

        raise MDCheckError(write_error(exc, path)) from None
    finally:
        plt.close(fig)


def water_summary(report: dict[str, Any]) -> str:
    """A table of the water check (one row per model)."""
    lines = [
        f"member {report['member']['index']}: {report['member']['expression']}"
        + (
            f"  [no wall: {report['member']['wall_problem']}]"
            if report["member"]["wall_problem"]
            else ""
        ),
        f"{'model':<14} {'stable':<7} {'density':>8} {'r_OO':>6} {'g_OO':>6} "
        f"{'rms_exp OO/OH/HH':>20} {'rms_dft OO':>10} {'drift kT/ps':>11}  failure",
    ]
    for name, res in report["models"].items():
        peaks = res.get("peaks", {}).get("O-O", {})
        dist = res.get("distance", {})
        exp = "/".join(_fmt(dist.get("experiment", {}).get(p, {}).get("rms")) for p in RDF_PAIRS)
        lines.append(
            f"{name:<14} {str(res['stable']):<7} {_fmt(res.get('density')):>8} "
            f"{_fmt(peaks.get('r')):>6} {_fmt(peaks.get('g')):>6} {exp:>20} "
            f"{_fmt(dist.get('dft', {}).get('O-O', {}).get('rms')):>10} "
            f"{_fmt(res.get('nve_drift_kT_ps_per_molecule')):>11}  "
            f"{res.get('failure') or _unsettled(res)}"
        )
    ref = report["references"]["experiment"]["peaks"]["O-O"]
    lines.append(f"experiment (Soper 2013): density 0.997, O-O peak {ref['r']} Å, g {ref['g']}")
    forces = report.get("dft_forces")
    if forces and "rmse" in forces:
        lines.append(
            "force RMSE on the DFT frames (eV/Å, + q-SPC/Fw intramolecular): "
            + ", ".join(f"{k} {v:.4f}" for k, v in forces["rmse"].items())
        )
    if forces and forces.get("molecule_rmse"):
        ref = forces["molecule_rms_dft"]
        lines.append(
            "per molecule, net force (eV/Å) / torque (eV) RMSE; intramolecular terms cancel: "
            + f"DFT RMS {ref['force']:.4f}/{ref['torque']:.4f}, "
            + ", ".join(
                f"{k} {v['force']:.4f}/{v['torque']:.4f}"
                for k, v in forces["molecule_rmse"].items()
            )
        )
    return "\n".join(lines)


def _unsettled(res: dict[str, Any]) -> str:
    """Why a stable run is not a liquid because its density is still moving, or ``""``."""
    if res.get("density_settled") is not False:
        return ""
    return (
        f"not a liquid: NPT density still moving ({res['density_drift']:+.3f} "
        f"± {res['density_drift_stderr']:.3f} g/cm³/ps)"
    )


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.3g}" if abs(x) < 1e-2 and x != 0 else f"{x:.3f}"
    return str(x)


def plot_ramachandran(report: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Scatter plots of phi/psi: explicit solvent, vacuum, vacuum + member."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref = report["reference"]
    length = f", {ref['length_ps']:g} ps" if ref.get("length_ps") else ""
    sets = [(f"explicit solvent (reference{length})", ref)]
    sets += [(k, v) for k, v in report["runs"].items() if v.get("samples")]
    fig, axes = plt.subplots(1, len(sets), figsize=(4.2 * len(sets), 4.2), squeeze=False)
    js = report.get("js_divergence_to_explicit", {})
    for ax, (name, d) in zip(axes[0], sets, strict=True):
        ax.plot(d["phi"], d["psi"], ".", ms=2, alpha=0.5)
        ax.set_xlim(-180, 180)
        ax.set_ylim(-180, 180)
        ax.set_xlabel("phi (deg)")
        ax.set_ylabel("psi (deg)")
        extra = f"\nJS(phi,psi) = {js[name]['phi-psi']:.3f}" if name in js else ""
        ax.set_title(f"{name}{extra}", fontsize=9)
    _save_figure(fig, path)


def solvent_summary(report: dict[str, Any]) -> str:
    """Divergences of the solvent check, one line per run."""
    lines = [f"member {report['member']['index']}: {report['member']['expression']}"]
    ref = report.get("reference", {})
    if "file" in ref:
        length = f", {ref['length_ps']:g} ps" if ref.get("length_ps") else ""
        lines.append(
            f"explicit-solvent reference: {ref['file']} ({ref['samples']} samples{length})"
        )
    if "fit_data_js_to_reference" in report:
        js = report["fit_data_js_to_reference"]
        lines.append(
            f"  the fit trajectory {SOLVENT_FILE} against it: JS phi / psi / phi-psi "
            f"{js['phi']:.4f} / {js['psi']:.4f} / {js['phi-psi']:.4f}"
        )
    lines.append("Jensen-Shannon divergence to explicit solvent (bits): phi / psi / phi-psi")
    for name, js in report["js_divergence_to_explicit"].items():
        lines.append(f"  {name:<24} {js['phi']:.4f} / {js['psi']:.4f} / {js['phi-psi']:.4f}")
    halves = report.get("js_divergence_between_halves", {})
    if halves:
        lines.append(
            "convergence, JS phi-psi between the halves of each run: "
            + ", ".join(f"{name} {js['phi-psi']:.4f}" for name, js in halves.items())
        )
    for name, res in report["runs"].items():
        if not res["stable"]:
            lines.append(f"  {name}: UNSTABLE: {res['failure']}")
    if "member_closer_than_vacuum" in report:
        lines.append(
            "the member moves vacuum towards explicit solvent"
            if report["member_closer_than_vacuum"]
            else "the member does not move vacuum towards explicit solvent"
        )
    return "\n".join(lines)

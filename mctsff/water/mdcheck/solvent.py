"""The implicit-solvent check (:func:`solvent_check`, ``mctsff md-check solvent``): alanine
dipeptide in vacuum with and without a front member on the pairs the fit saw, compared with
explicit solvent by its phi/psi distributions."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from mctsff.water.mdcheck.angles import (
    SOLUTE_PDB,
    _angle_histograms,
    _backbone,
    _dihedral,
    explicit_reference,
    halves_js_divergence,
    js_divergence,
    reference_angles,
)
from mctsff.water.mdcheck.base import MDCheckError, _one_line, _openmm, _Unstable
from mctsff.water.mdcheck.report import _write_report, member_record, plot_ramachandran


@dataclass(frozen=True)
class SolventProtocol:
    """Lengths of the alanine-dipeptide check (vacuum amber14, Langevin, H-bond constraints).

    Attributes
    ----------
    equilibration_ps, production_ps
        Segment lengths of each run (vacuum, vacuum + member).
    sample_ps
        Time between phi/psi samples.
    temperature, timestep_fs, friction_per_ps
        Langevin settings (300 K, 2 fs, 1/ps as the reference trajectory).
    exclude_bonds
        Pairs up to this many bonds apart get no member term (2: 1–2 and 1–3, the default of
        ``examples/alanine_dipeptide.py``; 0: every pair).
    bins
        Bins per angle of the 1-D histograms; the 2-D histogram uses half as many.
    seed, threads, platform
        As in :class:`WaterProtocol`.
    """

    equilibration_ps: float = 20.0
    production_ps: float = 1000.0
    sample_ps: float = 0.5
    temperature: float = 300.0
    timestep_fs: float = 2.0
    friction_per_ps: float = 1.0
    exclude_bonds: int = 2
    bins: int = 36
    seed: int = 0
    threads: int = 0
    platform: str = "CPU"

    def __post_init__(self) -> None:
        ok = (
            self.equilibration_ps >= 0
            and self.production_ps > 0
            and 0 < self.sample_ps <= self.production_ps
            and self.temperature > 0
            and self.timestep_fs > 0
            and self.friction_per_ps > 0
            and self.exclude_bonds >= 0
            and self.bins >= 4
            and self.threads >= 0
        )
        if not ok:
            raise MDCheckError(f"solvent protocol: bad values in {self}")


def _excluded_pairs(topology, n_bonds: int) -> list[tuple[int, int]]:
    """Atom pairs at most ``n_bonds`` covalent bonds apart (topology bonds)."""
    n = topology.getNumAtoms()
    nbr: list[set[int]] = [set() for _ in range(n)]
    for b in topology.bonds():
        nbr[b[0].index].add(b[1].index)
        nbr[b[1].index].add(b[0].index)
    pairs = set()
    for i in range(n):
        seen, front = {i}, {i}
        for _ in range(n_bonds):
            front = {k for j in front for k in nbr[j]} - seen
            seen |= front
        pairs |= {(i, j) for j in seen if j > i}
    return sorted(pairs)


def _member_pair_force(member: Any, species: Sequence[str], pairs: Sequence[tuple[int, int]]):
    """The member on explicit atom pairs: a ``CustomBondForce`` with the exporter's energy.

    OpenMM wants every nonbonded force of a system to share its exclusions, which amber's
    NonbondedForce (1–2, 1–3 and scaled 1–4 exceptions) and the fit's exclusions do not; so the
    pairs are listed, each with the per-particle values of its two atoms, and the energy string
    of :func:`mctsff.export.to_openmm` is used as it is, times ``step(rc − r)``.
    """
    openmm, _ = _openmm()
    from mctsff.export import ExportError, resolve_potential, to_openmm

    try:
        pot, rc = resolve_potential(member)
        spec = to_openmm(pot, rc)
    except (ExportError, ValueError) as exc:
        raise MDCheckError(f"cannot build the OpenMM force: {exc}") from None
    head, sep, rest = spec.energy.partition("; ")
    energy = f"mctsff_u*step({spec.cutoff_nm!r} - r); mctsff_u = {head}{sep}{rest}"
    if spec.cutoff_nm is None:
        energy = spec.energy
    force = openmm.CustomBondForce(energy)
    for name, value in spec.global_parameters.items():
        force.addGlobalParameter(name, value)
    for suffix in ("1", "2"):
        for name in spec.per_particle:
            force.addPerBondParameter(name + suffix)
    for name, (k, values) in spec.tables.items():
        force.addTabulatedFunction(name, openmm.Discrete2DFunction(k, k, list(values)))
    missing = sorted({str(s) for s in species} - set(spec.per_type_values))
    if spec.per_particle and missing:
        raise MDCheckError(f"the member has no parameters for atom types {missing}")
    for i, j in pairs:
        vi = list(spec.per_type_values[species[i]]) if spec.per_particle else []
        vj = list(spec.per_type_values[species[j]]) if spec.per_particle else []
        force.addBond(i, j, vi + vj)
    return force


def run_solute(
    member: Any,
    protocol: SolventProtocol = SolventProtocol(),
    *,
    label: str = "",
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Langevin MD of alanine dipeptide in vacuum (amber14-all), optionally plus a member.

    Parameters
    ----------
    member
        ``None`` (plain vacuum) or a front point / :class:`~mctsff.expr.params.Potential` added to
        all solute pairs more than ``protocol.exclude_bonds`` bonds apart, with its own cutoff
        and cutoff scheme (:func:`mctsff.export.add_to_system`).

    Returns
    -------
    dict
        ``phi``, ``psi`` (degrees, one per sample), ``stable``, ``failure``, timings.
    """
    openmm, unit = _openmm()
    from openmm import app

    from mctsff.data import data_file

    say = log or (lambda _msg: None)
    p = protocol
    pdb = app.PDBFile(str(data_file(SOLUTE_PDB)))
    ff = app.ForceField("amber14-all.xml")
    system = ff.createSystem(pdb.topology, nonbondedMethod=app.NoCutoff, constraints=app.HBonds)
    out: dict[str, Any] = {"label": label, "stable": False, "failure": None}
    if member is not None:
        species = [a.element.symbol for a in pdb.topology.atoms()]
        excluded = set(_excluded_pairs(pdb.topology, p.exclude_bonds) if p.exclude_bonds else [])
        n = len(species)
        pairs = [(i, j) for i in range(n) for j in range(i + 1, n) if (i, j) not in excluded]
        system.addForce(_member_pair_force(member, species, pairs))
        out["excluded_pairs"] = len(excluded)
        out["member_pairs"] = len(pairs)
    phi_idx, psi_idx = _backbone(pdb.topology)
    integ = openmm.LangevinMiddleIntegrator(
        p.temperature * unit.kelvin,
        p.friction_per_ps / unit.picosecond,
        p.timestep_fs * unit.femtosecond,
    )
    integ.setRandomNumberSeed(p.seed + 1)
    plat = openmm.Platform.getPlatformByName(p.platform)
    props = {"Threads": str(p.threads)} if p.platform == "CPU" and p.threads else {}
    ctx = openmm.Context(system, integ, plat, props)
    ctx.setPositions(pdb.positions)
    t0 = time.perf_counter()
    frames = []
    try:
        openmm.LocalEnergyMinimizer.minimize(ctx, 10.0, 1000)
        ctx.setVelocitiesToTemperature(p.temperature * unit.kelvin, p.seed + 1)
        integ.step(int(round(p.equilibration_ps * 1000 / p.timestep_fs)))
        every = max(1, int(round(p.sample_ps * 1000 / p.timestep_fs)))
        n = max(1, int(round(p.production_ps / p.sample_ps)))
        for _ in range(n):
            integ.step(every)
            x = ctx.getState(getPositions=True).getPositions(asNumpy=True)
            x = np.asarray(x.value_in_unit(unit.nanometer)) * 10.0
            if not np.all(np.isfinite(x)):
                raise _Unstable("non-finite positions (blow-up)")
            frames.append(x)
        out["stable"] = True
    except _Unstable as exc:
        out["failure"] = str(exc)
    except Exception as exc:  # OpenMM raises on NaN coordinates
        out["failure"] = f"OpenMM stopped ({_one_line(exc)})"
    if frames:
        xs = np.array(frames)
        out["phi"] = _dihedral(xs, phi_idx).round(2).tolist()
        out["psi"] = _dihedral(xs, psi_idx).round(2).tolist()
    out["samples"] = len(frames)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    say(
        f"{label}: {len(frames)} samples in {out['seconds']:.0f} s"
        + ("" if out["stable"] else f"; UNSTABLE: {out['failure']}")
    )
    return out


def solvent_check(
    run_dir: str | os.PathLike[str],
    index: int | None = None,
    *,
    protocol: SolventProtocol = SolventProtocol(),
    out: str | os.PathLike[str] | None = None,
    progress: bool | TextIO = True,
    reference: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Does the member move vacuum alanine dipeptide towards explicit solvent?

    Runs plain vacuum and vacuum + member (:func:`run_solute`) and compares their phi, psi and
    phi/psi histograms with the explicit-solvent reference (:func:`explicit_reference` of
    ``reference``: by default the shipped long series when present, else the fit trajectory)
    by the Jensen–Shannon divergence (bits, ``js_divergence_to_explicit``).  ``reference`` in
    the report says which series it is and how long.  How converged each histogram is:
    ``js_divergence_between_halves``, the divergence between the first and second half of
    each run and of the reference (:func:`halves_js_divergence`); when the reference is not
    the fit trajectory, ``fit_data_js_to_reference`` compares the fit trajectory's histograms
    with it.  Writes ``solvent.json`` and ``ramachandran.png`` to ``out`` (default
    ``RUN/md-check``).
    """
    from mctsff.export import ExportError, load_front_point

    stream = sys.stderr if progress is True else (progress or None)

    def log(msg: str) -> None:
        if stream is not None:
            print(msg, file=stream, flush=True)

    ref = explicit_reference(reference)
    phi_ref, psi_ref = ref["phi"], ref["psi"]
    try:
        point = load_front_point(run_dir, index)
    except ExportError as exc:
        raise MDCheckError(str(exc)) from None
    folder = Path(out) if out is not None else Path(run_dir) / "md-check"
    runs = {
        "vacuum": run_solute(None, protocol, label="vacuum", log=log),
        f"vacuum + member {point.index}": run_solute(
            point, protocol, label=f"vacuum + member {point.index}", log=log
        ),
    }
    h_ref = _angle_histograms(phi_ref, psi_ref, protocol.bins)
    report: dict[str, Any] = {
        "member": member_record(point),
        "protocol": asdict(protocol),
        "reference": {
            **{k: ref[k] for k in ("kind", "file", "samples", "length_ps", "sample_ps")},
            "phi": phi_ref.round(2).tolist(),
            "psi": psi_ref.round(2).tolist(),
        },
        "runs": runs,
        "js_divergence_to_explicit": {},
        "js_divergence_between_halves": {
            "reference": halves_js_divergence(phi_ref, psi_ref, protocol.bins)
        },
    }
    if ref["kind"] != "fit-data":
        h_fit = _angle_histograms(*reference_angles(), protocol.bins)
        report["fit_data_js_to_reference"] = {
            k: round(js_divergence(h_fit[k], h_ref[k]), 4) for k in h_fit
        }
    for name, res in runs.items():
        if res["samples"]:
            phi, psi = np.array(res["phi"]), np.array(res["psi"])
            h = _angle_histograms(phi, psi, protocol.bins)
            report["js_divergence_to_explicit"][name] = {
                k: round(js_divergence(h[k], h_ref[k]), 4) for k in h
            }
            halves = halves_js_divergence(phi, psi, protocol.bins)
            if halves:
                report["js_divergence_between_halves"][name] = halves
    js = report["js_divergence_to_explicit"]
    member_key = f"vacuum + member {point.index}"
    if "vacuum" in js and member_key in js:
        report["member_closer_than_vacuum"] = bool(
            js[member_key]["phi-psi"] < js["vacuum"]["phi-psi"]
        )
    _write_report(folder, "solvent.json", report)
    plot_ramachandran(report, folder / "ramachandran.png")
    report["files"] = [str(folder / "solvent.json"), str(folder / "ramachandran.png")]
    return report

"""One liquid-water MD run (:func:`run_water`): minimisation, NVT equilibration, NPT, NVT
production with RDFs, NVE drift; the stability and liquid verdicts on the way."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import numpy as np

from mctsff.water.mdcheck.base import (
    MDCheckError,
    _finite_or_none,
    _one_line,
    _openmm,
    _Unstable,
)
from mctsff.water.mdcheck.rdf import _RDF, first_peak
from mctsff.water.mdcheck.stability import (
    BOND_RANGE,
    LIQUID_DENSITY,
    MIN_DRIFT_SAMPLES,
    _block_stderr,
    _density_drift,
    _min_intermolecular,
)
from mctsff.water.mdcheck.system import (
    BOX_CUTOFF_RATIO,
    KB_KJ_MOL,
    WaterProtocol,
    _box_edge,
    _density,
    water_box,
    water_system,
)


def run_water(
    intermolecular: Any,
    protocol: WaterProtocol = WaterProtocol(),  # noqa: B008 (a frozen dataclass)
    *,
    cutoff: float | None = None,
    label: str = "",
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the liquid-water protocol with one intermolecular potential.

    Parameters
    ----------
    intermolecular
        As in :func:`water_system`.
    protocol
        Sizes, lengths, limits.
    cutoff
        Cutoff (Å) of the potential, used to size the box (and as q-SPC/Fw's real-space
        cutoff).
    label
        Name used in the progress lines.
    log
        Receives progress lines.

    Returns
    -------
    dict
        ``stable``, ``failure`` (why not, or ``None``), ``liquid``, ``density`` (mean, stderr),
        ``density_drift`` (slope in the second half of NPT, g/cm³/ps; stderr) and
        ``density_settled``,
        ``min_distance``, ``max_bond``/``min_bond``, temperatures, ``nve_drift`` (kJ/mol/ps per
        molecule and kT/ps per molecule), ``rdf`` (``r`` and g per pair type), ``peaks``,
        ``n_molecules``, ``box`` and timings.
    """
    openmm, unit = _openmm()
    say = log or (lambda _msg: None)
    p = protocol
    rc = float(cutoff) if cutoff is not None else 9.0
    n = p.n_molecules
    while _box_edge(n, 0.997) < BOX_CUTOFF_RATIO * rc:
        n += 1
    pos, edge, species, mol = water_box(n, seed=p.seed)
    t0 = time.perf_counter()
    system = water_system(intermolecular, n, edge, cutoff=rc)
    r_max = min(0.5 * edge * 0.9, 10.0)
    rdf = _RDF(species, mol, r_max, p.rdf_bin)
    out: dict[str, Any] = {
        "label": label,
        "n_molecules": n,
        "cutoff": rc,
        "protocol": asdict(p),
        "stable": False,
        "failure": None,
        "segments_done": [],
    }
    try:
        plat = openmm.Platform.getPlatformByName(p.platform)
    except Exception:
        raise MDCheckError(f"OpenMM platform {p.platform!r} is not available") from None
    props = {"Threads": str(p.threads)} if p.platform == "CPU" and p.threads else {}
    dt = p.timestep_fs * unit.femtosecond
    temp = p.temperature * unit.kelvin
    kT = KB_KJ_MOL * p.temperature
    n_dof = 3 * len(species) - 3
    o_idx = np.flatnonzero(np.array(species) == "O")
    h_idx = np.flatnonzero(np.array(species) == "H")
    h_parent = o_idx[mol[h_idx]]
    stats: dict[str, Any] = {
        "min_distance": math.inf,
        "min_bond": math.inf,
        "max_bond": 0.0,
        "max_temperature": 0.0,
    }

    def context(integrator, barostat: bool):
        forces = system
        if barostat:
            forces = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(system))
            baro = openmm.MonteCarloBarostat(p.pressure_bar * unit.bar, temp, 25)
            baro.setRandomNumberSeed(p.seed + 7)
            forces.addForce(baro)
        return openmm.Context(forces, integrator, plat, props)

    def langevin(friction: float = p.friction_per_ps):
        integ = openmm.LangevinMiddleIntegrator(temp, friction / unit.picosecond, dt)
        integ.setRandomNumberSeed(p.seed + 1)
        return integ

    def sample(ctx, segment: str, record_rdf: bool) -> dict[str, float]:
        st = ctx.getState(getPositions=True, getEnergy=True, getVelocities=False)
        x = np.asarray(st.getPositions(asNumpy=True).value_in_unit(unit.nanometer)) * 10.0
        vecs = st.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer)
        box = np.diag(np.asarray(vecs)) * 10.0
        epot = st.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        ekin = st.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole)
        if not (np.all(np.isfinite(x)) and math.isfinite(epot) and math.isfinite(ekin)):
            raise _Unstable(f"{segment}: non-finite positions or energies (blow-up)")
        t_inst = 2.0 * ekin / (n_dof * KB_KJ_MOL)
        stats["max_temperature"] = max(stats["max_temperature"], t_inst)
        if t_inst > p.max_temperature:
            raise _Unstable(f"{segment}: temperature {t_inst:.0f} K > {p.max_temperature:g} K")
        d = x[h_idx] - x[h_parent]
        d -= box * np.rint(d / box)
        bond = np.sqrt(np.einsum("ij,ij->i", d, d))
        stats["min_bond"] = min(stats["min_bond"], float(bond.min()))
        stats["max_bond"] = max(stats["max_bond"], float(bond.max()))
        if bond.min() < BOND_RANGE[0] or bond.max() > BOND_RANGE[1]:
            raise _Unstable(
                f"{segment}: O-H bond {bond.min():.3f}-{bond.max():.3f} Å outside "
                f"{BOND_RANGE[0]}-{BOND_RANGE[1]} Å"
            )
        if float(box.min()) < 2.0 * rc:
            raise _Unstable(
                f"{segment}: box edge {box.min():.2f} Å below twice the cutoff (density "
                f"{_density(n, float(np.prod(box))):.3f} g/cm³: the liquid collapses)"
            )
        if record_rdf:
            dmin = rdf.add(x, box)
        else:
            dmin = _min_intermolecular(x, box, mol, p.min_distance * 2)
        stats["min_distance"] = min(stats["min_distance"], dmin)
        if dmin < p.min_distance:
            raise _Unstable(
                f"{segment}: atoms of different molecules {dmin:.3f} Å apart "
                f"(< {p.min_distance:g} Å)"
            )
        return {
            "epot": epot,
            "etot": epot + ekin,
            "temperature": t_inst,
            "volume": float(np.prod(box)),
        }

    def segment(ctx, integ, name: str, ps: float, record_rdf: bool = False) -> list[dict]:
        steps = p.steps(ps)
        every = p.sample_steps
        rows = []
        done = 0
        t_seg = time.perf_counter()
        while done < steps:
            k = min(every, steps - done)
            try:
                integ.step(k)
            except Exception as exc:  # OpenMM raises on NaN coordinates
                raise _Unstable(f"{name}: OpenMM stopped ({_one_line(exc)})") from None
            done += k
            row = sample(ctx, name, record_rdf)
            row["t_ps"] = done * p.timestep_fs / 1000.0
            rows.append(row)
        sec = time.perf_counter() - t_seg
        out["segments_done"].append(name)
        out.setdefault("seconds_per_segment", {})[name] = round(sec, 2)
        if steps:
            say(
                f"{label}: {name} {ps:g} ps done ({sec:.0f} s, "
                f"{1000 * sec / steps:.2f} ms/step), T = "
                f"{np.mean([r['temperature'] for r in rows]):.1f} K"
            )
        return rows

    def transfer(src, dst) -> None:
        st = src.getState(getPositions=True, getVelocities=True)
        dst.setPeriodicBoxVectors(*st.getPeriodicBoxVectors())
        dst.setPositions(st.getPositions())
        dst.setVelocities(st.getVelocities())

    try:
        integ = langevin(p.equilibration_friction_per_ps)
        ctx = context(integ, barostat=False)
        ctx.setPositions(pos / 10.0)
        try:
            openmm.LocalEnergyMinimizer.minimize(ctx, 10.0, 2000)
        except Exception as exc:
            raise _Unstable(f"minimisation: OpenMM stopped ({_one_line(exc)})") from None
        sample(ctx, "minimisation", False)
        out["segments_done"].append("minimisation")
        ctx.setVelocitiesToTemperature(temp, p.seed + 1)
        segment(ctx, integ, "nvt-equilibration", p.equilibration_ps)
        integ.setFriction(p.friction_per_ps / unit.picosecond)
        if p.npt_ps > 0:
            integ2 = langevin()
            ctx2 = context(integ2, barostat=True)
            transfer(ctx, ctx2)
            rows = segment(ctx2, integ2, "npt", p.npt_ps)
            vols = np.array([r["volume"] for r in rows[len(rows) // 2 :]])
            dens = np.array([_density(n, v) for v in vols])
            out["density_trace"] = {
                "t_ps": [round(r["t_ps"], 4) for r in rows],
                "density": [round(_density(n, r["volume"]), 4) for r in rows],
            }
            out["density"] = round(float(dens.mean()), 4)
            out["density_stderr"] = round(_block_stderr(dens), 4)
            out.update(_density_drift(rows[len(rows) // 2 :], dens))
            integ = langevin()
            ctx = context(integ, barostat=False)
            transfer(ctx2, ctx)
            del ctx2
        else:
            out["density"] = round(_density(n, edge**3), 4)
            out["density_stderr"] = 0.0
        rows = segment(ctx, integ, "nvt", p.nvt_ps, record_rdf=True)
        out["temperature_nvt"] = round(float(np.mean([r["temperature"] for r in rows])), 2)
        out["epot_per_molecule"] = round(float(np.mean([r["epot"] for r in rows])) / n, 4)
        if p.nve_ps > 0:
            integ4 = openmm.VerletIntegrator(dt)
            ctx4 = context(integ4, barostat=False)
            transfer(ctx, ctx4)
            del ctx
            rows = segment(ctx4, integ4, "nve", p.nve_ps)
            t = np.array([r["t_ps"] for r in rows])
            e = np.array([r["etot"] for r in rows])
            slope = slope_se = 0.0
            if len(t) > 1:  # least-squares slope of the total energy and its standard error
                from scipy.stats import linregress

                line = linregress(t, e)
                slope, slope_se = float(line.slope), float(line.stderr)
            drift = slope / n
            drift_se = slope_se / n
            out["nve_drift_kj_mol_ps_per_molecule"] = round(drift, 6)
            out["nve_drift_kT_ps_per_molecule"] = round(drift / kT, 6)
            out["nve_drift_stderr_kT_ps_per_molecule"] = round(drift_se / kT, 6)
            out["nve_energy_fluctuation_kj_mol"] = round(float(np.std(e)), 4)
            out["temperature_nve"] = round(float(np.mean([r["temperature"] for r in rows])), 2)
            # too few samples give no standard error to judge a drift by
            out["nve_drift_judged"] = len(t) >= MIN_DRIFT_SAMPLES
            if out["nve_drift_judged"] and (abs(drift) - 2.0 * drift_se) / kT > p.max_drift:
                raise _Unstable(
                    f"nve: energy drift {drift / kT:.3g} ± {drift_se / kT:.2g} kT/ps per "
                    f"molecule (limit {p.max_drift:g})"
                )
        out["stable"] = True
    except _Unstable as exc:
        out["failure"] = str(exc)
        say(f"{label}: UNSTABLE: {exc}")
    out["min_distance"] = _finite_or_none(stats["min_distance"], 4)
    out["min_bond"] = _finite_or_none(stats["min_bond"], 4)
    out["max_bond"] = _finite_or_none(stats["max_bond"] or math.nan, 4)
    out["max_temperature"] = _finite_or_none(stats["max_temperature"] or math.nan, 1)
    dens = out.get("density")
    out["liquid"] = bool(
        out["stable"]
        and dens is not None
        and LIQUID_DENSITY[0] <= dens <= LIQUID_DENSITY[1]
        and out.get("density_settled") is not False
    )
    if rdf.frames:
        r, g = rdf.result()
        out["rdf"] = {"r": r.round(4).tolist(), **{k: v.round(5).tolist() for k, v in g.items()}}
        out["rdf_frames"] = rdf.frames
        out["peaks"] = {k: first_peak(r, v, k) for k, v in g.items()}
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out

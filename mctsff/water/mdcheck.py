"""Check found potentials where they are used: liquid-water MD and distributions (OpenMM).

Force RMSE on dimers is a proxy; the question a force-field developer asks is whether a
potential gives a stable liquid with the right structure.  :func:`water_check` answers it for a
front member of a search run (``mctsff md-check water RUN``):

* **System.**  ``n_molecules`` flexible waters (default 216) on a cubic lattice with random
  orientations at 0.997 g/cm³ (the molecule count is raised until the box edge is at least
  :data:`BOX_CUTOFF_RATIO` times the cutoff, so that the box can shrink in NPT without the
  cutoff exceeding half the box).  Intramolecular terms are q-SPC/Fw's (Paesani et al. 2006:
  harmonic O–H bonds, k_b = 1059.162 kcal/mol/Å², r₀ = 1 Å; harmonic H–O–H angle,
  k_θ = 75.90 kcal/mol/rad², θ₀ = 112°).  The intermolecular potential is the front member
  exactly as :func:`mctsff.export.add_to_system` exports it (``CustomNonbondedForce`` with the
  run's cutoff and cutoff scheme, same-molecule pairs excluded, no long-range correction).
  The reference is q-SPC/Fw as published (charges −0.84/0.42, O–O Lennard-Jones; PME with the
  same real-space cutoff).
* **Protocol** (:class:`WaterProtocol`).  Energy minimisation; NVT equilibration (Langevin,
  298 K, 1/ps, 0.5 fs); NPT (Monte Carlo barostat, 1 bar, every 25 steps; the density is the
  mean over the second half); NVT production in the last NPT box (the RDFs are sampled here);
  NVE (velocity Verlet) for the energy drift.
* **Stability.**  A run is unstable when OpenMM fails or gives non-finite numbers, when two
  atoms of different molecules come closer than ``min_distance`` (1.0 Å; the experimental
  intermolecular O–H g(r) of Soper 2013 is zero below 1.08 Å), when an O–H bond leaves
  [0.7, 1.5] Å, when the temperature exceeds ``max_temperature`` or when the NVE drift exceeds
  ``max_drift`` (kT per ps per molecule) by more than twice its standard error (the slope of a
  straight line through the total energy; on a short segment the energy's fluctuations alone
  move the slope by that much, and a run that is blowing up exceeds it by orders; with fewer
  than :data:`MIN_DRIFT_SAMPLES` samples the drift is reported, not judged).  A density
  outside 0.5–1.5 g/cm³ is reported as ``liquid: false``, and so is a density that is still
  moving: the straight line through the second half of the NPT segment changes by more than
  :data:`DENSITY_SETTLE` over that half, beyond twice its standard error (``density_settled``;
  a system without intermolecular forces expands to about 0.6 g/cm³ within 4 ps and would
  otherwise count as a liquid).
* **Structure.**  O–O, intermolecular O–H and intermolecular H–H RDFs (bin 0.02 Å, up to half
  the smallest box edge), first peak position and height, and their distance (RMS difference
  and integrated absolute difference ∫|g − g_ref| dr on the common r range) to experiment
  (Soper 2013, the shipped ``water_rdf_soper2013.tsv``) and, for O–O, to the shipped bulk-water
  DFT frames (``bulk_water_dft_80x192.extxyz``, 64 waters, RDF up to 6.2 Å).
* **Transferability** (:func:`dft_force_rmse`).  Force RMSE of the member plus the q-SPC/Fw
  intramolecular terms on the 80 bulk-water DFT frames, next to q-SPC/Fw (PME) and the
  intramolecular terms alone.

:func:`solvent_check` (``mctsff md-check solvent RUN``) runs alanine dipeptide in vacuum
(amber14-all) with and without the member on the pairs the fit saw, and compares the phi/psi
distributions with explicit solvent (Jensen–Shannon divergences).  The explicit-solvent
reference (:func:`explicit_reference`) is the shipped long phi/psi series
(:data:`LONG_REFERENCE_FILE`) when it is there, else the 300 ps trajectory the fits use
(:data:`SOLVENT_FILE`), or a file the user names (a phi/psi TSV or an extxyz of
``mctsff data solvent-forces``).

Units inside: OpenMM's nm, ps, kJ/mol; reports use Å, g/cm³, kJ/mol and eV/Å for forces.
See ``docs/md-check.md``.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from ase import units

from mctsff.water.md import KJ_MOL_NM_TO_EV_ANG  # kJ/mol/nm → eV/Å, defined once there

__all__ = [
    "BOX_CUTOFF_RATIO",
    "RDF_PAIRS",
    "MDCheckError",
    "SolventProtocol",
    "WaterProtocol",
    "dft_force_rmse",
    "dft_rdf",
    "experimental_rdf",
    "explicit_reference",
    "first_peak",
    "halves_js_divergence",
    "js_divergence",
    "plot_ramachandran",
    "plot_rdfs",
    "rdf_distance",
    "read_angles_tsv",
    "reference_angles",
    "run_solute",
    "run_water",
    "solvent_check",
    "solvent_summary",
    "trajectory_angles",
    "water_box",
    "water_check",
    "water_summary",
    "water_system",
    "write_angles_tsv",
]

#: Grams per mole of the water sites (O, H).
MASSES: dict[str, float] = {"O": 15.9994, "H": 1.008}
#: Avogadro's number (1/mol; exact since SI 2019, newer than ase.units' CODATA 2014).
AVOGADRO: float = 6.02214076e23
#: Boltzmann constant in kJ/mol/K (exact since SI 2019, as OpenMM's).
KB_KJ_MOL: float = 0.008314462618
#: Fewest NVE samples from which the energy drift is judged (a slope through fewer has no
#: useful standard error; the drift is then reported but not judged).
MIN_DRIFT_SAMPLES: int = 8
#: kcal → kJ.
KJ_PER_KCAL: float = units.kcal / units.kJ
#: Smallest box edge, in cutoffs, of the initial box (NPT may shrink it by up to ~10 %).
BOX_CUTOFF_RATIO: float = 2.2
#: Pair types of the RDFs (O–H and H–H intermolecular).
RDF_PAIRS: tuple[str, ...] = ("O-O", "O-H", "H-H")
#: Where the first peak of each RDF is looked for (Å).
PEAK_WINDOWS: dict[str, tuple[float, float]] = {
    "O-O": (2.3, 3.3),
    "O-H": (1.4, 2.5),
    "H-H": (1.9, 3.0),
}
#: Physical density range (g/cm³) of a liquid at 298 K and 1 bar for this check.
LIQUID_DENSITY: tuple[float, float] = (0.5, 1.5)
#: Largest change (g/cm³) of the NPT density across the second half of the segment (the
#: straight line through it, less twice its standard error) for the density to count as
#: settled, and the run as a liquid.
DENSITY_SETTLE: float = 0.03
#: Bounds of an intact O–H bond (Å).
BOND_RANGE: tuple[float, float] = (0.7, 1.5)
#: Experimental partial RDFs shipped with mctsff (Soper 2013).
EXPERIMENT_FILE = "water_rdf_soper2013.tsv"
EXPERIMENT_REFERENCE = (
    "A. K. Soper, ISRN Physical Chemistry 2013, 279463 (doi:10.1155/2013/279463), 298 K"
)
#: Shipped bulk-water DFT frames.
DFT_FILE = "bulk_water_dft_80x192.extxyz"


class MDCheckError(RuntimeError):
    """OpenMM is missing, or a check cannot be set up (the message says why)."""


def _openmm():
    try:
        import openmm
        from openmm import unit
    except ImportError:  # pragma: no cover - depends on the environment
        raise MDCheckError("md-check needs OpenMM: pip install openmm (or 'mctsff[md]')") from None
    return openmm, unit


# --------------------------------------------------------------------------------------------
# protocol and system
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WaterProtocol:
    """Sizes, lengths and limits of the liquid-water check.

    Attributes
    ----------
    n_molecules
        Waters in the box (raised until the box edge is ``BOX_CUTOFF_RATIO`` cutoffs).
    temperature, pressure_bar
        Thermostat (K) and barostat (bar) targets.
    timestep_fs
        Time step (0.5 fs: flexible water).
    equilibration_ps, npt_ps, nvt_ps, nve_ps
        Segment lengths (NVT equilibration, NPT, NVT production, NVE).
    sample_fs
        Time between samples (RDF frames, distances, energies).
    friction_per_ps
        Langevin friction (NPT and NVT production).
    equilibration_friction_per_ps
        Langevin friction of the NVT equilibration (strong: the minimised box heats fast).
    min_distance
        Closest allowed distance (Å) between atoms of different molecules.
    max_temperature
        Highest allowed instantaneous temperature (K).
    max_drift
        Largest allowed NVE energy drift in kT per ps per molecule (exceeded by more than
        twice the slope's standard error to count).
    rdf_bin
        RDF bin width (Å).
    seed
        Seed of the lattice orientations, velocities, thermostat and barostat.
    threads
        Threads of OpenMM's CPU platform (0: OpenMM's default).
    platform
        OpenMM platform name (``"CPU"``; ``"Reference"`` is slower; ``"CUDA"`` where present).
    """

    n_molecules: int = 216
    temperature: float = 298.0
    pressure_bar: float = 1.0
    timestep_fs: float = 0.5
    equilibration_ps: float = 1.0
    npt_ps: float = 4.0
    nvt_ps: float = 3.0
    nve_ps: float = 1.0
    sample_fs: float = 50.0
    friction_per_ps: float = 1.0
    equilibration_friction_per_ps: float = 10.0
    min_distance: float = 1.0
    max_temperature: float = 600.0
    max_drift: float = 0.05
    rdf_bin: float = 0.02
    seed: int = 0
    threads: int = 0
    platform: str = "CPU"

    def __post_init__(self) -> None:
        checks = {
            "n_molecules": self.n_molecules >= 2,
            "temperature": self.temperature > 0,
            "pressure_bar": self.pressure_bar > 0,
            "timestep_fs": self.timestep_fs > 0,
            "equilibration_ps": self.equilibration_ps >= 0,
            "npt_ps": self.npt_ps >= 0,
            "nvt_ps": self.nvt_ps > 0,
            "nve_ps": self.nve_ps >= 0,
            "sample_fs": self.sample_fs >= self.timestep_fs,
            "friction_per_ps": self.friction_per_ps > 0,
            "equilibration_friction_per_ps": self.equilibration_friction_per_ps > 0,
            "min_distance": self.min_distance > 0,
            "max_temperature": self.max_temperature > self.temperature,
            "max_drift": self.max_drift > 0,
            "rdf_bin": self.rdf_bin > 0,
            "threads": self.threads >= 0,
        }
        for name, ok in checks.items():
            value = getattr(self, name)
            if not (ok and math.isfinite(float(value))):
                raise MDCheckError(f"water protocol: bad {name} {value!r}")

    def steps(self, ps: float) -> int:
        """MD steps of a segment of ``ps`` picoseconds."""
        return int(round(ps * 1000.0 / self.timestep_fs))

    @property
    def sample_steps(self) -> int:
        """MD steps between samples."""
        return max(1, int(round(self.sample_fs / self.timestep_fs)))


def _qspcfw_intra() -> tuple[float, float, float, float]:
    """q-SPC/Fw bond and angle: (r0 Å, k_b kcal/mol/Å², θ0 degrees, k_θ kcal/mol/rad²)."""
    from mctsff.water.models import get_model

    m = get_model("q-spcfw")
    return m.r_OH, float(m.k_b), m.theta_HOH, float(m.k_theta)


def _box_edge(n_molecules: int, density: float) -> float:
    """Cubic box edge (Å) of ``n_molecules`` waters at ``density`` g/cm³."""
    mass = (MASSES["O"] + 2 * MASSES["H"]) / AVOGADRO  # g per molecule
    return float((n_molecules * mass / density * 1e24) ** (1.0 / 3.0))


def _density(n_molecules: int, volume_a3: float) -> float:
    mass = (MASSES["O"] + 2 * MASSES["H"]) / AVOGADRO
    return float(n_molecules * mass / (volume_a3 * 1e-24))


def water_box(
    n_molecules: int, density: float = 0.997, seed: int = 0
) -> tuple[np.ndarray, float, list[str], np.ndarray]:
    """A cubic box of randomly oriented q-SPC/Fw waters on a simple cubic lattice.

    Returns
    -------
    positions : ndarray, shape (3 n, 3)
        Å, ordered O, H, H per molecule.
    edge : float
        Box edge in Å.
    species : list of str
        ``["O", "H", "H", ...]``.
    mol : ndarray of int
        Molecule id per atom.
    """
    from scipy.spatial.transform import Rotation

    edge = _box_edge(n_molecules, density)
    k = math.ceil(n_molecules ** (1.0 / 3.0) - 1e-9)
    a = edge / k
    grid = np.array([(i, j, m) for i in range(k) for j in range(k) for m in range(k)], float)
    rng = np.random.default_rng(seed)
    sites = (grid[rng.permutation(len(grid))[:n_molecules]] + 0.5) * a
    r0, _, theta0, _ = _qspcfw_intra()
    half = math.radians(theta0) / 2
    local = np.array(
        [
            [0.0, 0.0, 0.0],
            [r0 * math.sin(half), 0.0, r0 * math.cos(half)],
            [-r0 * math.sin(half), 0.0, r0 * math.cos(half)],
        ]
    )
    local -= local.mean(axis=0)
    rot = Rotation.random(n_molecules, random_state=seed).as_matrix()
    pos = (np.einsum("mij,aj->mai", rot, local) + sites[:, None, :]).reshape(-1, 3)
    species = ["O", "H", "H"] * n_molecules
    mol = np.repeat(np.arange(n_molecules), 3)
    return pos, edge, species, mol


def _add_intramolecular(openmm, system, n_molecules: int) -> None:
    """q-SPC/Fw harmonic bonds and angles (OpenMM's ½k(x − x₀)² convention)."""
    r0, k_b, theta0, k_theta = _qspcfw_intra()
    bonds = openmm.HarmonicBondForce()
    angles = openmm.HarmonicAngleForce()
    kb = k_b * KJ_PER_KCAL * 100.0  # kJ/mol/nm²
    kt = k_theta * KJ_PER_KCAL
    for m in range(n_molecules):
        o, h1, h2 = 3 * m, 3 * m + 1, 3 * m + 2
        bonds.addBond(o, h1, r0 / 10.0, kb)
        bonds.addBond(o, h2, r0 / 10.0, kb)
        angles.addAngle(h1, o, h2, math.radians(theta0), kt)
    system.addForce(bonds)
    system.addForce(angles)


def water_system(
    intermolecular: Any,
    n_molecules: int,
    edge: float,
    *,
    cutoff: float | None = None,
) -> Any:
    """OpenMM ``System`` of flexible water: q-SPC/Fw intramolecular terms + ``intermolecular``.

    Parameters
    ----------
    intermolecular
        ``None`` (intramolecular terms only), ``"q-spcfw"`` (published charges and O–O
        Lennard-Jones, PME with real-space cutoff ``cutoff``), or a front point /
        :class:`~mctsff.expr.params.Potential` added by
        :func:`mctsff.export.add_to_system` (its own cutoff and cutoff scheme; same-molecule
        pairs excluded; members without a repulsive wall are accepted: the check reports
        what they do).
    n_molecules, edge
        Waters (atoms ordered O, H, H per molecule) and cubic box edge in Å.
    cutoff
        Real-space cutoff in Å for q-SPC/Fw (default 9 Å); ignored for a potential.
    """
    openmm, unit = _openmm()
    system = openmm.System()
    for _ in range(n_molecules):
        for s in ("O", "H", "H"):
            system.addParticle(MASSES[s])
    e = edge / 10.0
    system.setDefaultPeriodicBoxVectors(
        openmm.Vec3(e, 0, 0), openmm.Vec3(0, e, 0), openmm.Vec3(0, 0, e)
    )
    _add_intramolecular(openmm, system, n_molecules)
    species = ["O", "H", "H"] * n_molecules
    if intermolecular is None:
        pass
    elif isinstance(intermolecular, str):
        from mctsff.water.models import get_model

        model = get_model(intermolecular)
        nb = openmm.NonbondedForce()
        nb.setNonbondedMethod(openmm.NonbondedForce.PME)
        nb.setCutoffDistance((cutoff or 9.0) / 10.0)
        nb.setEwaldErrorTolerance(1e-5)
        nb.setUseDispersionCorrection(False)
        sig = model.sigma_OO / 10.0
        eps = model.epsilon_OO * KJ_PER_KCAL
        for s in species:
            if s == "O":
                nb.addParticle(model.q_O, sig, eps)
            else:
                nb.addParticle(model.q_H, 0.1, 0.0)
        for m in range(n_molecules):
            o, h1, h2 = 3 * m, 3 * m + 1, 3 * m + 2
            for i, j in ((o, h1), (o, h2), (h1, h2)):
                nb.addException(i, j, 0.0, 0.1, 0.0)
        system.addForce(nb)
    else:
        from mctsff.export import ExportError, add_to_system

        mol = np.repeat(np.arange(n_molecules), 3)
        try:
            add_to_system(system, intermolecular, species, mol, periodic=True, allow_no_wall=True)
        except (ExportError, ValueError) as exc:
            raise MDCheckError(f"cannot build the OpenMM force: {exc}") from None
    return system


# --------------------------------------------------------------------------------------------
# RDFs
# --------------------------------------------------------------------------------------------


class _RDF:
    """Accumulates O–O and intermolecular O–H / H–H RDFs of orthorhombic periodic frames."""

    def __init__(self, species: Sequence[str], mol: np.ndarray, r_max: float, dr: float) -> None:
        self.is_o = np.array([s == "O" for s in species])
        self.mol = np.asarray(mol)
        self.edges = np.arange(0.0, r_max + 0.5 * dr, dr)
        self.hist = {p: np.zeros(len(self.edges) - 1) for p in RDF_PAIRS}
        self.frames = 0
        n_o = int(self.is_o.sum())
        n_h = len(self.is_o) - n_o
        same_oh = same_hh = 0
        for m in np.unique(self.mol):
            sel = self.mol == m
            o, h = int((sel & self.is_o).sum()), int((sel & ~self.is_o).sum())
            same_oh += o * h
            same_hh += h * (h - 1) // 2
        self.n_pairs = {
            "O-O": n_o * (n_o - 1) / 2,
            "O-H": n_o * n_h - same_oh,
            "H-H": n_h * (n_h - 1) / 2 - same_hh,
        }

    def add(self, pos: np.ndarray, box: np.ndarray) -> float:
        """Add a frame (Å); return the closest intermolecular distance within ``r_max``."""
        from scipy.spatial import cKDTree

        wrapped = np.mod(pos, box)
        wrapped[wrapped >= box] = 0.0  # mod may round up to the edge
        tree = cKDTree(wrapped, boxsize=box)
        r_max = float(self.edges[-1])
        pairs = tree.query_pairs(r_max, output_type="ndarray")
        i, j = pairs[:, 0], pairs[:, 1]
        d = wrapped[i] - wrapped[j]
        d -= box * np.rint(d / box)
        r = np.sqrt(np.einsum("ij,ij->i", d, d))
        inter = self.mol[i] != self.mol[j]
        vol = float(np.prod(box))
        shell = 4.0 / 3.0 * math.pi * (self.edges[1:] ** 3 - self.edges[:-1] ** 3)
        oi, oj = self.is_o[i], self.is_o[j]
        kinds = {"O-O": oi & oj, "O-H": oi != oj, "H-H": ~oi & ~oj}
        for p, sel in kinds.items():
            h, _ = np.histogram(r[sel & inter], bins=self.edges)
            self.hist[p] += h / (self.n_pairs[p] * shell / vol)
        self.frames += 1
        return float(r[inter].min()) if inter.any() else math.inf

    def result(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Bin centres (Å) and g(r) per pair type."""
        r = 0.5 * (self.edges[1:] + self.edges[:-1])
        return r, {p: h / max(self.frames, 1) for p, h in self.hist.items()}


def first_peak(r: np.ndarray, g: np.ndarray, pair: str) -> dict[str, float | None]:
    """Position (Å) and height of the highest bin of ``g`` in :data:`PEAK_WINDOWS` ``[pair]``."""
    lo, hi = PEAK_WINDOWS[pair]
    sel = (r >= lo) & (r <= hi) & np.isfinite(g)
    if not sel.any():
        return {"r": None, "g": None}
    k = int(np.argmax(np.where(sel, g, -np.inf)))
    return {"r": round(float(r[k]), 4), "g": round(float(g[k]), 4)}


def rdf_distance(
    r: np.ndarray, g: np.ndarray, r_ref: np.ndarray, g_ref: np.ndarray
) -> dict[str, float | None]:
    """Distance of an RDF to a reference on their common r range.

    The reference is interpolated linearly onto ``r`` (bins inside both ranges).

    Returns
    -------
    dict
        ``rms`` (root-mean-square difference), ``iae`` (∫|g − g_ref| dr, Å) and the range
        ``r_min``, ``r_max`` used; ``None`` values when the ranges do not overlap.
    """
    lo, hi = max(float(r_ref[0]), float(r[0])), min(float(r_ref[-1]), float(r[-1]))
    sel = (r >= lo) & (r <= hi)
    if sel.sum() < 2:
        return {"rms": None, "iae": None, "r_min": None, "r_max": None}
    diff = g[sel] - np.interp(r[sel], r_ref, g_ref)
    iae = float(np.sum(np.abs(diff)) * (r[1] - r[0]))
    return {
        "rms": round(float(np.sqrt(np.mean(diff * diff))), 5),
        "iae": round(iae, 5),
        "r_min": round(float(r[sel][0]), 4),
        "r_max": round(float(r[sel][-1]), 4),
    }


def experimental_rdf() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Soper 2013's partial RDFs of water at 298 K (r in Å; O–H, H–H intermolecular)."""
    from mctsff.data import data_file

    a = np.loadtxt(data_file(EXPERIMENT_FILE))
    return a[:, 0], {"O-O": a[:, 1], "O-H": a[:, 3], "H-H": a[:, 5]}


def _nearest_o_molecules(pos: np.ndarray, is_o: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Molecule id per atom: each O its own, each H its nearest O (minimum image)."""
    o_idx = np.flatnonzero(is_o)
    mol = np.empty(len(pos), dtype=np.int64)
    mol[o_idx] = np.arange(len(o_idx))
    h_idx = np.flatnonzero(~is_o)
    d = pos[h_idx][:, None, :] - pos[o_idx][None, :, :]
    d -= box * np.rint(d / box)
    mol[h_idx] = np.argmin(np.einsum("hkc,hkc->hk", d, d), axis=1)
    return mol


def _dft_frames() -> list:
    import ase.io

    from mctsff.data import data_file

    return ase.io.read(data_file(DFT_FILE), ":")


def dft_rdf(dr: float = 0.02) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """RDFs of the shipped bulk-water DFT frames (up to half the box edge, 6.2 Å).

    Molecules: each H joins its nearest O.  Only ``"O-O"`` is used as a reference by
    :func:`water_check` (the task's DFT reference); O–H and H–H are returned too.
    """
    frames = _dft_frames()
    box = np.diag(frames[0].cell.array).copy()
    species = frames[0].get_chemical_symbols()
    is_o = np.array([s == "O" for s in species])
    mol = _nearest_o_molecules(frames[0].positions, is_o, box)
    acc = _RDF(species, mol, 0.5 * float(box.min()) - 1e-6, dr)
    for atoms in frames:
        acc.add(atoms.positions, np.diag(atoms.cell.array).copy())
    return acc.result()


# --------------------------------------------------------------------------------------------
# the MD run
# --------------------------------------------------------------------------------------------


class _Unstable(Exception):
    """The run left the physical regime (message: why)."""


def run_water(
    intermolecular: Any,
    protocol: WaterProtocol = WaterProtocol(),
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


def _density_drift(rows: Sequence[dict], dens: np.ndarray) -> dict[str, Any]:
    """Slope (g/cm³ per ps) of the NPT density over the samples it is averaged on, its
    standard error, and whether the density has settled (:data:`DENSITY_SETTLE`; ``None``,
    not judged, with fewer than :data:`MIN_DRIFT_SAMPLES` samples)."""
    t = np.array([r["t_ps"] for r in rows])
    if len(t) < MIN_DRIFT_SAMPLES:
        return {"density_drift": None, "density_drift_stderr": None, "density_settled": None}
    from scipy.stats import linregress

    line = linregress(t, dens)
    change = (abs(float(line.slope)) - 2.0 * float(line.stderr)) * float(t[-1] - t[0])
    return {
        "density_drift": round(float(line.slope), 5),
        "density_drift_stderr": round(float(line.stderr), 5),
        "density_settled": bool(change <= DENSITY_SETTLE),
    }


def _min_intermolecular(x: np.ndarray, box: np.ndarray, mol: np.ndarray, r_max: float) -> float:
    """Closest distance (Å) between atoms of different molecules (``inf`` beyond ``r_max``)."""
    from scipy.spatial import cKDTree

    wrapped = np.mod(x, box)
    wrapped[wrapped >= box] = 0.0
    pairs = cKDTree(wrapped, boxsize=box).query_pairs(r_max, output_type="ndarray")
    if len(pairs) == 0:
        return math.inf
    i, j = pairs[:, 0], pairs[:, 1]
    inter = mol[i] != mol[j]
    if not inter.any():
        return math.inf
    d = wrapped[i[inter]] - wrapped[j[inter]]
    d -= box * np.rint(d / box)
    return float(np.sqrt(np.einsum("ij,ij->i", d, d)).min())


def _block_stderr(x: np.ndarray, blocks: int = 5) -> float:
    """Standard error of the mean from ``blocks`` consecutive blocks."""
    if len(x) < 2 * blocks:
        return float(np.std(x) / math.sqrt(max(len(x) - 1, 1)))
    means = np.array([b.mean() for b in np.array_split(x, blocks)])
    return float(means.std(ddof=1) / math.sqrt(blocks))


def _finite_or_none(x: float, digits: int) -> float | None:
    return round(float(x), digits) if math.isfinite(x) else None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


# --------------------------------------------------------------------------------------------
# transferability: forces on the bulk-water DFT frames
# --------------------------------------------------------------------------------------------


def _dft_waters(atoms) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One DFT frame as whole molecules ordered O, H, H: positions, forces, cell edges (Å).

    Each H joins its nearest O (minimum image) and is placed next to it; a frame where an O
    does not get exactly two H is refused.
    """
    box = np.diag(atoms.cell.array).copy()
    pos = atoms.positions
    is_o = np.array([s == "O" for s in atoms.get_chemical_symbols()])
    mol = _nearest_o_molecules(pos, is_o, box)
    o_idx = np.flatnonzero(is_o)
    order, x = [], []
    for m, o in enumerate(o_idx):
        hs = np.flatnonzero(~is_o & (mol == m))
        if len(hs) != 2:
            raise MDCheckError(f"{DFT_FILE}: oxygen {o} has {len(hs)} hydrogens, not 2")
        order += [o, *hs]
        d = pos[hs] - pos[o]
        d -= box * np.rint(d / box)
        x += [pos[o], *(pos[o] + d)]
    forces = np.asarray(atoms.get_forces())[order]
    return np.array(x), forces, box


def dft_force_rmse(
    intermolecular: Sequence[tuple[str, Any]],
    *,
    cutoff: float = 9.0,
    frames: int | None = None,
    threads: int = 0,
) -> dict[str, Any]:
    """Force RMSE (eV/Å per component) on the shipped bulk-water DFT frames.

    Every model is the q-SPC/Fw intramolecular terms plus its intermolecular part, evaluated
    by OpenMM on a supercell of each frame large enough for the cutoff (forces of the first
    copy compared with the DFT total forces).

    Parameters
    ----------
    intermolecular
        ``(name, potential)`` pairs; a potential as in :func:`water_system` (``None``:
        intramolecular terms only, ``"q-spcfw"``: published q-SPC/Fw with PME).
    cutoff
        Cutoff (Å) that sizes the supercell (and q-SPC/Fw's real-space cutoff).
    frames
        Use the first ``frames`` frames (default all 80).
    threads
        OpenMM CPU threads (0: OpenMM's default).

    Returns
    -------
    dict
        ``{"frames", "supercell", "force_rms_dft", "rmse": {name: value}}``.
    """
    openmm, unit = _openmm()
    images = _dft_frames()[:frames]
    waters = [_dft_waters(a) for a in images]
    box0 = waters[0][2]
    k = max(1, math.ceil(2.0 * cutoff * 1.0001 / float(box0.min())))
    shifts = np.array([(a, b, c) for a in range(k) for b in range(k) for c in range(k)], float)
    n_atoms = len(waters[0][0])
    n_mol = n_atoms // 3 * len(shifts)
    plat = openmm.Platform.getPlatformByName("CPU")
    props = {"Threads": str(threads)} if threads else {}
    ref = np.concatenate([w[1] for w in waters])
    out: dict[str, Any] = {
        "data": DFT_FILE,
        "frames": len(waters),
        "supercell": k,
        "cutoff": cutoff,
        "force_rms_dft": round(float(np.sqrt(np.mean(ref * ref))), 5),
        "rmse": {},
    }
    for name, pot in intermolecular:
        system = water_system(pot, n_mol, float(box0.max()) * k, cutoff=cutoff)
        ctx = openmm.Context(system, openmm.VerletIntegrator(0.0005), plat, props)
        got = []
        for x, _, box in waters:
            big = (x[None, :, :] + (shifts * box)[:, None, :]).reshape(-1, 3)
            e = box * k / 10.0
            ctx.setPeriodicBoxVectors(
                openmm.Vec3(e[0], 0, 0), openmm.Vec3(0, e[1], 0), openmm.Vec3(0, 0, e[2])
            )
            ctx.setPositions(big / 10.0)
            f = ctx.getState(getForces=True).getForces(asNumpy=True)
            f = np.asarray(f.value_in_unit(unit.kilojoule_per_mole / unit.nanometer))
            got.append(f[:n_atoms] * KJ_MOL_NM_TO_EV_ANG)
        d = np.concatenate(got) - ref
        out["rmse"][name] = round(float(np.sqrt(np.mean(d * d))), 5)
        del ctx
    return out


# --------------------------------------------------------------------------------------------
# the check of a front member
# --------------------------------------------------------------------------------------------


def water_check(
    run_dir: str | os.PathLike[str],
    index: int | None = None,
    *,
    protocol: WaterProtocol = WaterProtocol(),
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
    from mctsff.export import ExportError, load_front_point, wall_problem

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
        "member": {
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
        },
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


# --------------------------------------------------------------------------------------------
# implicit solvent: alanine dipeptide phi/psi
# --------------------------------------------------------------------------------------------

#: Shipped explicit-solvent trajectory (the fit data) and solute.
SOLVENT_FILE = "ala2_solvent_forces.extxyz"
SOLUTE_PDB = "alanine_dipeptide.pdb"
#: Shipped longer explicit-solvent phi/psi series: the solvent check's reference when present
#: (how it was made: ``mctsff/data/SOURCES.md``).
LONG_REFERENCE_FILE = "ala2_solvent_phipsi_long.tsv"
#: Column names of a phi/psi TSV (:func:`read_angles_tsv`).
ANGLES_TSV_COLUMNS = ("time_ps", "phi_deg", "psi_deg")


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


def _dihedral(x: np.ndarray, idx: Sequence[int]) -> np.ndarray:
    """Dihedral angles (degrees) of atoms ``idx`` over frames ``x`` (n_frames, n_atoms, 3)."""
    p0, p1, p2, p3 = (x[:, i] for i in idx)
    b0, b1, b2 = p0 - p1, p2 - p1, p3 - p2
    b1n = b1 / np.linalg.norm(b1, axis=1, keepdims=True)
    v = b0 - np.sum(b0 * b1n, axis=1, keepdims=True) * b1n
    w = b2 - np.sum(b2 * b1n, axis=1, keepdims=True) * b1n
    xx = np.sum(v * w, axis=1)
    yy = np.sum(np.cross(b1n, v) * w, axis=1)
    return np.degrees(np.arctan2(yy, xx))


def _backbone(topology) -> tuple[list[int], list[int]]:
    """Atom indices of phi (C−N−CA−C) and psi (N−CA−C−N) of the middle residue."""
    res = list(topology.residues())
    if len(res) != 3:
        raise MDCheckError(f"{SOLUTE_PDB}: expected 3 residues (ACE-ALA-NME), got {len(res)}")
    names = [{a.name: a.index for a in r.atoms()} for r in res]
    try:
        phi = [names[0]["C"], names[1]["N"], names[1]["CA"], names[1]["C"]]
        psi = [names[1]["N"], names[1]["CA"], names[1]["C"], names[2]["N"]]
    except KeyError as exc:
        raise MDCheckError(f"{SOLUTE_PDB}: backbone atom {exc} missing") from None
    return phi, psi


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


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen–Shannon divergence (bits, 0…1) of two histograms (normalised here)."""
    p = np.asarray(p, float).ravel()
    q = np.asarray(q, float).ravel()
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> float:
        s = a > 0
        return float(np.sum(a[s] * np.log2(a[s] / m[s])))

    return 0.5 * kl(p) + 0.5 * kl(q)


def _angle_histograms(phi: np.ndarray, psi: np.ndarray, bins: int) -> dict[str, np.ndarray]:
    edges = np.linspace(-180.0, 180.0, bins + 1)
    edges2 = np.linspace(-180.0, 180.0, bins // 2 + 1)
    return {
        "phi": np.histogram(phi, edges)[0].astype(float),
        "psi": np.histogram(psi, edges)[0].astype(float),
        "phi-psi": np.histogram2d(phi, psi, [edges2, edges2])[0],
    }


def halves_js_divergence(phi: np.ndarray, psi: np.ndarray, bins: int) -> dict[str, float]:
    """Jensen–Shannon divergences (bits; :func:`js_divergence`) of the phi, psi and phi/psi
    histograms of the first half of a series of angles against its second half (the middle
    sample goes to the second half), rounded to 4 digits: how far the histograms are from
    converged.  Empty with fewer than two samples."""
    phi, psi = np.asarray(phi, float), np.asarray(psi, float)
    h = len(phi) // 2
    if h == 0:
        return {}
    a = _angle_histograms(phi[:h], psi[:h], bins)
    b = _angle_histograms(phi[h:], psi[h:], bins)
    return {k: round(js_divergence(a[k], b[k]), 4) for k in a}


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


def reference_angles() -> tuple[np.ndarray, np.ndarray]:
    """phi, psi (degrees) of the shipped explicit-solvent trajectory the fits use (300 frames,
    1 ps apart)."""
    from mctsff.data import data_file

    _, phi, psi = trajectory_angles(data_file(SOLVENT_FILE))
    return phi, psi


def trajectory_angles(
    path: str | os.PathLike[str],
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Times (ps; ``None`` unless every frame has ``time_ps``), phi and psi (degrees) of the
    frames of an extxyz of the shipped alanine dipeptide in its PDB atom order, such as
    ``mctsff data solvent-forces`` writes.

    Raises
    ------
    MDCheckError
        For an unreadable file, no frames, or frames whose atoms are not the shipped solute's.
    """
    import ase.io
    from openmm import app

    from mctsff.data import data_file

    topology = app.PDBFile(str(data_file(SOLUTE_PDB))).topology
    symbols = [a.element.symbol for a in topology.atoms()]
    phi_idx, psi_idx = _backbone(topology)
    try:
        frames = ase.io.read(os.fspath(path), ":", format="extxyz")
    except Exception as exc:
        raise MDCheckError(f"{path}: cannot read as extxyz ({_one_line(exc)})") from None
    if not frames:
        raise MDCheckError(f"{path}: no frames")
    for k, atoms in enumerate(frames):
        if atoms.get_chemical_symbols() != symbols:
            raise MDCheckError(
                f"{path}: frame {k}: the atoms are not {SOLUTE_PDB}'s {len(symbols)} atoms in "
                "its order (an extxyz of mctsff data solvent-forces with the default --pdb)"
            )
    xs = np.array([a.positions for a in frames])
    times = [a.info.get("time_ps") for a in frames]
    t = None
    if all(isinstance(x, int | float) for x in times):
        t = np.array(times, dtype=float)
    return t, _dihedral(xs, phi_idx), _dihedral(xs, psi_idx)


def write_angles_tsv(
    path: str | os.PathLike[str],
    time_ps: np.ndarray,
    phi: np.ndarray,
    psi: np.ndarray,
    comments: Sequence[str] = (),
) -> None:
    """Write a phi/psi series as a TSV that :func:`read_angles_tsv` reads: ``#`` comment lines,
    the header :data:`ANGLES_TSV_COLUMNS`, then one row per sample (ps to 3 decimals, degrees to
    2)."""
    lines = [f"# {c}" for c in comments]
    lines.append("\t".join(ANGLES_TSV_COLUMNS))
    lines += [f"{t:.3f}\t{a:.2f}\t{b:.2f}" for t, a, b in zip(time_ps, phi, psi, strict=True)]
    Path(path).write_text("\n".join(lines) + "\n")


def read_angles_tsv(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Times (ps), phi and psi (degrees) of a TSV written by :func:`write_angles_tsv`.

    Raises
    ------
    MDCheckError
        Naming the file and line: no header :data:`ANGLES_TSV_COLUMNS`, a row without three
        numbers, an angle outside [-180, 180], times that do not increase, or fewer than two
        rows.
    """
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise MDCheckError(f"{path}: cannot read ({_one_line(exc)})") from None
    rows: list[tuple[float, float, float]] = []
    header = False
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        cols = line.split()
        if not header:
            if tuple(cols) != ANGLES_TSV_COLUMNS:
                raise MDCheckError(
                    f"{path}: line {n}: expected the header {' '.join(ANGLES_TSV_COLUMNS)}"
                )
            header = True
            continue
        try:
            t, a, b = (float(c) for c in cols)
        except ValueError:
            raise MDCheckError(f"{path}: line {n}: expected three numbers") from None
        if not (math.isfinite(t) and -180.0 <= a <= 180.0 and -180.0 <= b <= 180.0):
            raise MDCheckError(f"{path}: line {n}: angles must lie in [-180, 180] degrees")
        if rows and t <= rows[-1][0]:
            raise MDCheckError(f"{path}: line {n}: time_ps must increase")
        rows.append((t, a, b))
    if len(rows) < 2:
        raise MDCheckError(f"{path}: fewer than two rows of angles")
    arr = np.array(rows)
    return arr[:, 0], arr[:, 1], arr[:, 2]


def explicit_reference(reference: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The explicit-solvent phi/psi series the solvent check compares with.

    Parameters
    ----------
    reference
        ``None`` or ``"auto"``: the shipped :data:`LONG_REFERENCE_FILE` when it is there, else
        the fit trajectory :data:`SOLVENT_FILE`; ``"fit-data"``: :data:`SOLVENT_FILE`; any other
        value: a file, read by :func:`read_angles_tsv` when it ends in ``.tsv`` and by
        :func:`trajectory_angles` otherwise.

    Returns
    -------
    dict
        ``kind`` (``long``, ``fit-data`` or ``file``), ``file``, ``samples``, ``length_ps`` and
        ``sample_ps`` (``None`` without times; the length counts one sample spacing per
        sample), ``phi`` and ``psi`` (arrays, degrees).
    """
    from mctsff.data import data_file
    from mctsff.data.dataset import DATA_DIR

    kind = "file"
    if reference is None or str(reference) == "auto":
        long = DATA_DIR / LONG_REFERENCE_FILE
        kind = "long" if long.is_file() else "fit-data"
        path = long if kind == "long" else data_file(SOLVENT_FILE)
    elif str(reference) == "fit-data":
        kind, path = "fit-data", data_file(SOLVENT_FILE)
    else:
        path = Path(reference)
        if not path.is_file():
            raise MDCheckError(f"--reference {reference}: no such file")
    if path.suffix == ".tsv":
        t, phi, psi = read_angles_tsv(path)
    else:
        t, phi, psi = trajectory_angles(path)
    dt = float(np.median(np.diff(t))) if t is not None and len(t) > 1 else None
    return {
        "kind": kind,
        "file": path.name if kind != "file" else str(path),
        "samples": len(phi),
        "length_ps": None if dt is None else round(float(t[-1] - t[0]) + dt, 3),
        "sample_ps": None if dt is None else round(dt, 6),
        "phi": phi,
        "psi": psi,
    }


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
    from mctsff.export import ExportError, load_front_point, wall_problem

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
        "member": {
            "index": point.index,
            "expression": point.expression,
            "params": point.params,
            "cutoff": point.cutoff,
            "cutoff_scheme": point.cutoff_scheme,
            "wall_problem": wall_problem(point),
            "source": point.source,
        },
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

"""The liquid-water check's protocol (:class:`WaterProtocol`) and its OpenMM system: a box of
randomly oriented flexible waters (:func:`water_box`) with q-SPC/Fw's intramolecular terms and
the intermolecular potential under test (:func:`water_system`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from ase import units

from mctsff.water.mdcheck.base import MDCheckError, _openmm

#: Grams per mole of the water sites (O, H).
MASSES: dict[str, float] = {"O": 15.9994, "H": 1.008}
#: Avogadro's number (1/mol; exact since SI 2019, newer than ase.units' CODATA 2014).
AVOGADRO: float = 6.02214076e23
#: Boltzmann constant in kJ/mol/K (exact since SI 2019, as OpenMM's).
KB_KJ_MOL: float = 0.008314462618
#: kcal → kJ.
KJ_PER_KCAL: float = units.kcal / units.kJ
#: Smallest box edge, in cutoffs, of the initial box (NPT may shrink it by up to ~10 %).
BOX_CUTOFF_RATIO: float = 2.2


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

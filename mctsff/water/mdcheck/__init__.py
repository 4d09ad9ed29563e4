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

Modules, imports flowing one way: ``base`` (:class:`MDCheckError`, OpenMM on demand) →
``system`` (:class:`WaterProtocol`, the water box and its OpenMM system) → ``rdf`` (RDFs and
their references) → ``stability`` (the limits and the measurements behind the verdicts) →
``run`` (:func:`run_water`) → ``dft_forces`` (:func:`dft_force_rmse`); ``angles`` (phi/psi,
divergences, the explicit-solvent reference) → ``report`` (JSON, plots, summaries) →
``water`` (:func:`water_check`) and ``solvent`` (:class:`SolventProtocol`,
:func:`solvent_check`).  This package imports the public names of all of them.
"""

from mctsff.water.mdcheck.angles import (
    ANGLES_TSV_COLUMNS,
    LONG_REFERENCE_FILE,
    SOLUTE_PDB,
    SOLVENT_FILE,
    explicit_reference,
    halves_js_divergence,
    js_divergence,
    read_angles_tsv,
    reference_angles,
    trajectory_angles,
    write_angles_tsv,
)
from mctsff.water.mdcheck.base import MDCheckError
from mctsff.water.mdcheck.dft_forces import dft_force_rmse
from mctsff.water.mdcheck.rdf import (
    DFT_FILE,
    EXPERIMENT_FILE,
    EXPERIMENT_REFERENCE,
    PEAK_WINDOWS,
    RDF_PAIRS,
    dft_rdf,
    experimental_rdf,
    first_peak,
    rdf_distance,
)
from mctsff.water.mdcheck.report import (
    plot_ramachandran,
    plot_rdfs,
    solvent_summary,
    water_summary,
)
from mctsff.water.mdcheck.run import run_water
from mctsff.water.mdcheck.solvent import SolventProtocol, run_solute, solvent_check
from mctsff.water.mdcheck.stability import (
    BOND_RANGE,
    DENSITY_SETTLE,
    LIQUID_DENSITY,
    MIN_DRIFT_SAMPLES,
)
from mctsff.water.mdcheck.system import (
    AVOGADRO,
    BOX_CUTOFF_RATIO,
    KB_KJ_MOL,
    KJ_PER_KCAL,
    MASSES,
    WaterProtocol,
    water_box,
    water_system,
)
from mctsff.water.mdcheck.water import water_check

__all__ = [
    "ANGLES_TSV_COLUMNS",
    "AVOGADRO",
    "BOND_RANGE",
    "BOX_CUTOFF_RATIO",
    "DENSITY_SETTLE",
    "DFT_FILE",
    "EXPERIMENT_FILE",
    "EXPERIMENT_REFERENCE",
    "KB_KJ_MOL",
    "KJ_PER_KCAL",
    "LIQUID_DENSITY",
    "LONG_REFERENCE_FILE",
    "MASSES",
    "MIN_DRIFT_SAMPLES",
    "PEAK_WINDOWS",
    "RDF_PAIRS",
    "SOLUTE_PDB",
    "SOLVENT_FILE",
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

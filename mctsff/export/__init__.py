"""Export a fitted pair potential to sympy, LaTeX, numpy, LAMMPS, OpenMM and ASE.

Every exporter is a small function of a :class:`mctsff.expr.params.Potential` (fitted expression +
parameter values + atom types); :func:`export` is the one entry that also accepts a point of a
search front (:func:`load_front_point`) and returns the text of the chosen format.

========================  =================================================================
format                    what it gives
========================  =================================================================
``sympy``                 :func:`to_sympy`: expression in ``r`` per type pair (or symbolic)
``latex``                 :func:`to_latex`
``python``                :func:`to_python` (source of numpy ``U(r, pair)``, ``dU_dr``),
                          :func:`to_function` (the callable)
``lammps``                :func:`to_lammps_table` (``pair_style table`` file) and
                          :func:`lammps_commands` (``pair_style`` / ``pair_coeff`` lines)
``lammps-lepton``         :func:`to_lammps_lepton` (analytic ``pair_style lepton`` commands)
``openmm``                :func:`to_openmm` → :class:`OpenMMExport` (``CustomNonbondedForce``,
                          :func:`add_to_system`, a self-contained script)
``openmm-xml``            :func:`to_openmm_xml` (ForceField XML with a ``CustomNonbondedForce``)
``ase``                   :class:`MctsffCalculator` (energy, forces, per-atom energies, stress)
========================  =================================================================

Units: mctsff works in eV and Å.  LAMMPS ``units metal`` is eV/Å; ``units real`` is
kcal/mol and Å (1 kcal/mol = :data:`KCAL_PER_MOL` eV).  OpenMM uses nm and kJ/mol
(1 eV = :data:`KJ_PER_MOL_PER_EV` kJ/mol, 1 Å = 0.1 nm); its energy string converts ``r``
inside the expression, so all parameters keep their fitted values and units.

Per-atom-type constants follow the naming rules of :mod:`mctsff.expr.params`: ``prod_q`` → q^A·q^B,
``geom_e`` → sqrt(e^A·e^B), ``arith_s`` → (s^A + s^B)/2, ``pair_k`` → k^AB.  Engines without
such rules get one table per type pair (LAMMPS) or per-particle parameters combined inside the
energy string (OpenMM; ``pair_`` constants become a lookup on a type index).

Every format writes the potential as fitted: a shifted-force potential (the default fit) is
``U(r) − U(rc) − (r − rc)·U'(rc)`` per type pair, shifted-energy ``U(r) − U(rc)``
(:func:`mctsff.expr.params.cutoff_shift`), so energy (and force) are zero at the cutoff in every
engine; ``shift=True`` (subtract U(cutoff)) is then a no-op.  A front point or fit result
without a repulsive wall (:func:`wall_problem`) is refused unless ``allow_no_wall=True``.

A potential whose constants are all global is *universal*: the same function for every pair of
atoms, whatever their types (one LAMMPS section with ``pair_coeff * *``, no per-particle
parameters in OpenMM, any chemical symbols in ASE).

Examples
--------
>>> from mctsff.expr.params import Potential
>>> pot = Potential("prod_q/r + A*exp(-r/b)", {"prod_q[H]": 1.0, "prod_q[O]": -2.0,
...                 "A": 100.0, "b": 0.3}, species=("H", "O"))
>>> print(to_sympy(pot, ("H", "O")))
100.0*exp(-3.33333333333333*r) - 2.0/r
>>> table = to_lammps_table(pot, cutoff=9.0, n=1000)
>>> table.count("N 1000 RSQ")
3

The package: :mod:`~mctsff.export.base` (units, :class:`ExportError`),
:mod:`~mctsff.export.front` (run-folder members as potentials, the wall check),
:mod:`~mctsff.export.printer`, :mod:`~mctsff.export.formula` (sympy, LaTeX, Python),
:mod:`~mctsff.export.lammps`, :mod:`~mctsff.export.openmm`, :mod:`~mctsff.export.ase` and
:mod:`~mctsff.export.command` (:func:`export`, ``mctsff export``).
"""

from mctsff.export.ase import MctsffCalculator
from mctsff.export.base import (
    ANGSTROM_PER_NM,
    DEFAULT_RLO,
    KCAL_PER_MOL,
    KJ_PER_MOL_PER_EV,
    ExportError,
)
from mctsff.export.command import FORMATS, export, run_cli
from mctsff.export.formula import to_function, to_latex, to_python, to_sympy
from mctsff.export.front import (
    FrontPoint,
    is_universal,
    load_front_point,
    resolve_potential,
    wall_problem,
)
from mctsff.export.lammps import (
    DEFAULT_POINTS,
    lammps_commands,
    lammps_table_error,
    open_lammps,
    to_lammps_lepton,
    to_lammps_table,
)
from mctsff.export.openmm import OpenMMExport, add_to_system, to_openmm, to_openmm_xml

__all__ = [
    "ANGSTROM_PER_NM",
    "DEFAULT_POINTS",
    "DEFAULT_RLO",
    "FORMATS",
    "KCAL_PER_MOL",
    "KJ_PER_MOL_PER_EV",
    "ExportError",
    "FrontPoint",
    "MctsffCalculator",
    "OpenMMExport",
    "add_to_system",
    "export",
    "is_universal",
    "lammps_commands",
    "lammps_table_error",
    "load_front_point",
    "open_lammps",
    "resolve_potential",
    "run_cli",
    "to_function",
    "to_lammps_lepton",
    "to_lammps_table",
    "to_latex",
    "to_openmm",
    "to_openmm_xml",
    "to_python",
    "to_sympy",
    "wall_problem",
]

"""Units of the engines and the one error of every exporter (:class:`ExportError`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ase import units

if TYPE_CHECKING:  # pragma: no cover
    pass


#: kJ/mol per eV (OpenMM energies; :mod:`ase.units`).
KJ_PER_MOL_PER_EV: float = units.mol / units.kJ


#: eV per kcal/mol (LAMMPS ``units real``; :mod:`ase.units`).
KCAL_PER_MOL: float = units.kcal / units.mol


#: Å per nm (OpenMM lengths).
ANGSTROM_PER_NM: float = 10.0


class ExportError(ValueError):
    """A potential or run folder that cannot be exported as asked (message says why)."""


#: Default inner radius of LAMMPS tables in Å (pairs closer than this stop LAMMPS).
DEFAULT_RLO: float = 0.5

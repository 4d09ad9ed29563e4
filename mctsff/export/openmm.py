"""OpenMM: a ``CustomNonbondedForce`` of the potential (:class:`OpenMMExport`), added to a
system (:func:`add_to_system`), written as a self-contained script, or as a ForceField XML
file (:func:`to_openmm_xml`) to combine with a force field for the bonded terms."""

from __future__ import annotations

import inspect
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from mctsff import __version__
from mctsff.expr import ops
from mctsff.expr.params import SHIFTED_SCHEMES, Potential

if TYPE_CHECKING:  # pragma: no cover
    import openmm

from mctsff.export.base import ANGSTROM_PER_NM, KJ_PER_MOL_PER_EV, ExportError
from mctsff.export.front import (
    UNIVERSAL_TYPE,
    FrontPoint,
    _at_cutoff,
    _constant_value,
    is_universal,
    resolve_potential,
)
from mctsff.export.printer import _number, _print


def _build_openmm_force(
    energy,
    global_parameters,
    per_particle,
    per_type_values,
    tables,
    species,
    mol_ids=None,
    cutoff_nm=None,
    periodic=False,
):
    """Build an ``openmm.CustomNonbondedForce`` (self-contained: only needs ``openmm``)."""
    import openmm

    force = openmm.CustomNonbondedForce(energy)
    for name, value in global_parameters.items():
        force.addGlobalParameter(name, value)
    for name in per_particle:
        force.addPerParticleParameter(name)
    for name, (n, values) in tables.items():
        force.addTabulatedFunction(name, openmm.Discrete2DFunction(n, n, list(values)))
    unknown = sorted({str(s) for s in species} - set(per_type_values)) if per_particle else []
    if unknown:
        raise ValueError(f"species {unknown} not in the potential ({sorted(per_type_values)})")
    for s in species:
        force.addParticle(list(per_type_values[str(s)]) if per_particle else [])
    if mol_ids is not None:
        if len(mol_ids) != len(species):
            raise ValueError(f"{len(mol_ids)} molecule ids for {len(species)} particles")
        members = {}
        for i, m in enumerate(mol_ids):
            members.setdefault(int(m), []).append(i)
        for group in members.values():
            for a in range(len(group)):
                for b in range(a + 1, len(group)):
                    force.addExclusion(group[a], group[b])
    if cutoff_nm is None:
        force.setNonbondedMethod(openmm.CustomNonbondedForce.NoCutoff)
    else:
        method = "CutoffPeriodic" if periodic else "CutoffNonPeriodic"
        force.setNonbondedMethod(getattr(openmm.CustomNonbondedForce, method))
        force.setCutoffDistance(cutoff_nm)
    return force


#: Per-particle parameter holding the type index (used by ``pair_`` constants).
OPENMM_TYPE_PARAMETER = "mctsff_type"


@dataclass(frozen=True)
class OpenMMExport:
    """An OpenMM ``CustomNonbondedForce`` recipe for a potential.

    Attributes
    ----------
    energy
        Energy string in kJ/mol of ``r`` in nm (``r`` is converted to Å inside).
    global_parameters
        Global constants (fitted values, eV/Å units as fitted).
    per_particle
        Per-particle parameter names (per-type constants, plus :data:`OPENMM_TYPE_PARAMETER`
        when ``pair_`` constants exist).
    per_type_values
        ``{species: values in per_particle order}``.
    tables
        ``{function name: (n_types, values)}`` for ``Discrete2DFunction`` (index ``i + n*j``).
    species
        Atom types (their index is the type index).
    cutoff_nm
        Cutoff in nm, or ``None`` for no cutoff.
    expression
        The mctsff expression.
    params
        Its fitted parameter values.
    cutoff_scheme
        How the energy string ends at the cutoff (:data:`mctsff.expr.params.CUTOFF_SCHEMES`):
        for ``"shifted-force"`` it is ``U(r) − U(rc) − (r − rc)·U'(rc)``, for
        ``"shifted-energy"`` ``U(r) − U(rc)``.
    """

    energy: str
    global_parameters: dict[str, float]
    per_particle: tuple[str, ...]
    per_type_values: dict[str, tuple[float, ...]]
    tables: dict[str, tuple[int, tuple[float, ...]]]
    species: tuple[str, ...]
    cutoff_nm: float | None
    expression: str = ""
    params: dict[str, float] = field(default_factory=dict)
    cutoff_scheme: str = "none"

    def make_force(
        self,
        species_per_particle: Sequence[str],
        mol_ids: Sequence[int] | np.ndarray | None = None,
        *,
        periodic: bool = False,
    ) -> openmm.CustomNonbondedForce:
        """A ``CustomNonbondedForce`` for particles of the given chemical symbols.

        Parameters
        ----------
        species_per_particle
            Chemical symbol of every particle of the system, in order.
        mol_ids
            Molecule id of every particle; pairs in the same molecule are excluded (the fit's
            intermolecular pairs).  ``None``: all pairs interact.
        periodic
            ``CutoffPeriodic`` instead of ``CutoffNonPeriodic`` (ignored without a cutoff).
        """
        return _build_openmm_force(
            self.energy,
            self.global_parameters,
            self.per_particle,
            self.per_type_values,
            self.tables,
            list(species_per_particle),
            None if mol_ids is None else [int(m) for m in np.asarray(mol_ids)],
            self.cutoff_nm,
            periodic,
        )

    def add_to_system(
        self,
        system: openmm.System,
        species_per_particle: Sequence[str],
        mol_ids: Sequence[int] | np.ndarray | None = None,
        *,
        periodic: bool | None = None,
        force_group: int | None = None,
    ) -> openmm.CustomNonbondedForce:
        """Add the force to ``system`` and return it.

        ``periodic=None`` follows ``system.usesPeriodicBoundaryConditions()``, i.e. the forces
        already in the system; pass ``periodic=True`` when this is the first force of a
        periodic system.
        """
        if len(species_per_particle) != system.getNumParticles():
            raise ExportError(
                f"{len(species_per_particle)} species for a system of "
                f"{system.getNumParticles()} particles"
            )
        if periodic is None:
            periodic = bool(system.usesPeriodicBoundaryConditions())
        force = self.make_force(species_per_particle, mol_ids, periodic=periodic)
        if force_group is not None:
            force.setForceGroup(int(force_group))
        system.addForce(force)
        return force

    def script(self) -> str:
        """Self-contained Python source (needs only ``openmm``) defining ``make_force``."""
        builder = inspect.getsource(_build_openmm_force)
        return "\n".join(
            [
                f'"""OpenMM force for the mctsff {__version__} pair potential',
                "U(r) = EXPRESSION (eV, Å; converted to kJ/mol, nm below), ending at the cutoff",
                "as CUTOFF_SCHEME says: shifted-force is U(r) - U(rc) - (r - rc) U'(rc),",
                "shifted-energy U(r) - U(rc), none and constraint U(r) as written.",
                "",
                "    force = make_force(species, mol_ids)   # one chemical symbol per particle",
                "    system.addForce(force)",
                '"""',
                "",
                f"EXPRESSION = {self.expression!r}",
                f"PARAMS = {self.params!r}",
                f"CUTOFF_SCHEME = {self.cutoff_scheme!r}",
                f"ENERGY = {self.energy!r}",
                f"GLOBAL_PARAMETERS = {self.global_parameters!r}",
                f"PER_PARTICLE = {self.per_particle!r}",
                f"PER_TYPE_VALUES = {self.per_type_values!r}",
                f"TABLES = {self.tables!r}",
                f"CUTOFF_NM = {self.cutoff_nm!r}",
                "",
                "",
                builder.rstrip(),
                "",
                "",
                "def make_force(species, mol_ids=None, periodic=False, cutoff_nm=CUTOFF_NM):",
                '    """CustomNonbondedForce for particles with these chemical symbols.',
                "",
                "    mol_ids: molecule id per particle (same-molecule pairs excluded) or None.",
                '    """',
                "    return _build_openmm_force(",
                "        ENERGY, GLOBAL_PARAMETERS, PER_PARTICLE, PER_TYPE_VALUES, TABLES,",
                "        list(species), mol_ids, cutoff_nm, periodic,",
                "    )",
                "",
            ]
        )


def to_openmm(
    pot: Potential,
    cutoff: float | None = None,
    *,
    shift: bool = False,
    prefix: str = "",
) -> OpenMMExport:
    """Build the OpenMM recipe of a potential.

    Parameters
    ----------
    pot
        Fitted potential (eV, Å).
    cutoff
        Cutoff in Å (``None``: ``NoCutoff``, or a shifted potential's own cutoff).
    shift
        Subtract U(cutoff) per pair (needs ``cutoff``); a no-op for a shifted-force or
        shifted-energy potential, whose shift terms the energy string always has.
    prefix
        Prefix of the global parameter names (global parameters share one namespace per
        ``Context``; use e.g. ``"mctsff_"`` next to other custom forces).

    Returns
    -------
    OpenMMExport

    Notes
    -----
    Constants become, per rule: global → global parameter; ``prod_q`` → per-particle
    parameter, ``prod_q = prod_q1*prod_q2``; ``geom_e`` → ``sqrt(geom_e1*geom_e2)``;
    ``arith_s`` → ``0.5*(arith_s1 + arith_s2)``; ``pair_k`` → a lookup on the type index
    per-particle parameter ``mctsff_type``.  A shifted potential's ``U(rc)`` and ``U'(rc)``
    are numbers for a universal potential, else such lookups, shifted at ``cutoff``.  A lookup
    is a sum of ``delta(t1 - i)*delta(t2 - j)*value`` terms in the energy string for up to
    :data:`OPENMM_INLINE_TYPES` types (compiled with the expression: about 4× faster per pair
    on OpenMM's CPU platform than a tabulated function), else a ``Discrete2DFunction``
    (``pair_k_table``, ``mctsff_U_rc``, ``mctsff_dU_rc``).
    """
    program = pot.program
    if cutoff is None and pot.scheme in SHIFTED_SCHEMES:
        cutoff = pot.cutoff
    pot = _at_cutoff(pot, cutoff)
    if shift and cutoff is None:
        raise ExportError("shift=True needs a cutoff")
    taken = set(program.constants)
    r_name = _fresh("rA", taken)
    names = {"r": r_name}
    globals_: dict[str, float] = {}
    per_particle: list[str] = []
    defs: list[str] = []
    tables: dict[str, tuple[int, tuple[float, ...]]] = {}
    universal = is_universal(pot)
    species = pot.species
    n = len(species)
    values: dict[str, list[float]] = {s: [] for s in species} if not universal else {}
    sp_index = {s: k for k, s in enumerate(species)}
    need_type = False
    for c in program.constants:
        rule = ops.constant_rule(c)
        if rule == "global":
            names[c] = prefix + c
            globals_[prefix + c] = float(pot.params[c])
        elif rule == "pair":
            need_type = True
            grid = [0.0] * (n * n)
            for a in species:
                for b in species:
                    v = _constant_value(pot, (a, b), c)
                    grid[sp_index[a] + n * sp_index[b]] = v
            defs.append(f"{c} = {_type_lookup(_fresh(f'{c}_table', taken), n, grid, tables)}")
        else:
            per_particle.append(c)
            for s in species:
                values[s].append(float(pot.params[f"{c}[{s}]"]))
            combo = {
                "product": f"{c}1*{c}2",
                "geometric": f"sqrt({c}1*{c}2)",
                "arithmetic": f"0.5*({c}1 + {c}2)",
            }[rule]
            defs.append(f"{c} = {combo}")
    u = _print(program.sympy, names, "lepton")
    if pot.scheme in SHIFTED_SCHEMES:  # U(r) - U(rc) - (r - rc) U'(rc), per type pair
        terms = []
        for shift_values, stem in ((pot.shift_a, "U_rc"), (pot.shift_b, "dU_rc")):
            if stem == "dU_rc" and pot.scheme != "shifted-force":
                continue
            if universal:
                value = _number(float(shift_values[0]))
            else:
                need_type = True
                value = _fresh(f"mctsff_{stem}", taken)
                grid = [0.0] * (n * n)
                for a in species:
                    for b in species:
                        k = pot.pair_index((a, b))
                        grid[sp_index[a] + n * sp_index[b]] = float(shift_values[k])
                value = _type_lookup(value, n, grid, tables)
            terms.append(value if stem == "U_rc" else f"({r_name} - {float(cutoff)!r})*{value}")
        u = f"({u} - " + " - ".join(terms) + ")"
    elif shift:
        u_rc = _print(program.sympy, {**names, "r": repr(float(cutoff))}, "lepton")
        u = f"({u} - {u_rc})"
    if need_type:
        per_particle.append(OPENMM_TYPE_PARAMETER)
        for s in species:
            values[s].append(float(sp_index[s]))
    energy = "; ".join([f"{KJ_PER_MOL_PER_EV!r}*{u}", f"{r_name} = {ANGSTROM_PER_NM!r}*r", *defs])
    return OpenMMExport(
        energy=energy,
        global_parameters=globals_,
        per_particle=tuple(per_particle),
        per_type_values={s: tuple(v) for s, v in values.items()},
        tables=tables,
        species=species,
        cutoff_nm=None if cutoff is None else float(cutoff) / ANGSTROM_PER_NM,
        expression=program.expression,
        params=dict(pot.params),
        cutoff_scheme=pot.scheme,
    )


#: Most atom types whose per-type-pair values :func:`to_openmm` writes into the energy string
#: (a sum of ``delta`` terms, compiled with it); more types use a ``Discrete2DFunction``, which
#: OpenMM's CPU platform evaluates about four times slower per pair.
OPENMM_INLINE_TYPES: int = 4


def _type_lookup(
    name: str, n: int, grid: Sequence[float], tables: dict[str, tuple[int, tuple[float, ...]]]
) -> str:
    """Energy-string value of a per-type-pair quantity (``grid[i + n*j]`` for types i, j).

    Up to :data:`OPENMM_INLINE_TYPES` types: ``(delta(t1 - i)*delta(t2 - j)*v + …)``;
    otherwise a ``Discrete2DFunction`` called ``name`` is added to ``tables``.
    """
    t = OPENMM_TYPE_PARAMETER
    if n > OPENMM_INLINE_TYPES:
        tables[name] = (n, tuple(float(v) for v in grid))
        return f"{name}({t}1, {t}2)"
    terms = [
        f"delta({t}1 - {i})*delta({t}2 - {j})*{_number(float(grid[i + n * j]))}"
        for i in range(n)
        for j in range(n)
        if float(grid[i + n * j]) != 0.0
    ]
    return "(" + (" + ".join(terms) if terms else "0") + ")"


def _fresh(name: str, taken: set[str]) -> str:
    out = name
    k = 1
    while out in taken:
        out = f"{name}{k}"
        k += 1
    taken.add(out)
    return out


def add_to_system(
    system: openmm.System,
    potential: Potential | FrontPoint,
    species_per_particle: Sequence[str],
    mol_ids: Sequence[int] | np.ndarray | None = None,
    *,
    cutoff: float | None = None,
    periodic: bool | None = None,
    shift: bool = False,
    prefix: str = "",
    force_group: int | None = None,
    allow_no_wall: bool = False,
) -> openmm.CustomNonbondedForce:
    """Add a potential to an OpenMM ``System`` as a ``CustomNonbondedForce``.

    Parameters
    ----------
    system
        The system; its particles in the order of ``species_per_particle``.
    potential
        Fitted potential or front point (whose cutoff is used when ``cutoff`` is None).
    species_per_particle
        Chemical symbol of every particle.
    mol_ids
        Molecule id of every particle: same-molecule pairs are excluded.
    cutoff
        Cutoff in Å; ``None`` and no cutoff on the front point: ``NoCutoff``.
    periodic
        ``CutoffPeriodic``; ``None`` follows the forces already in the system (a system
        without forces counts as non-periodic: pass ``True`` then).
    shift, prefix
        As in :func:`to_openmm`.
    force_group
        Force group of the new force.
    allow_no_wall
        Accept a front point without a repulsive wall (see :func:`export`).

    Returns
    -------
    openmm.CustomNonbondedForce
    """
    pot, rc = resolve_potential(potential, cutoff=cutoff, allow_no_wall=allow_no_wall)
    spec = to_openmm(pot, rc, shift=shift, prefix=prefix)
    return spec.add_to_system(
        system, species_per_particle, mol_ids, periodic=periodic, force_group=force_group
    )


def to_openmm_xml(
    potential: Potential | FrontPoint,
    cutoff: float | None = None,
    *,
    shift: bool = False,
    prefix: str = "",
    bond_cutoff: int = 3,
    atom_classes: Mapping[str, str] | None = None,
    allow_no_wall: bool = False,
) -> str:
    """An OpenMM ForceField XML file holding the potential as a ``<CustomNonbondedForce>``.

    The energy string, global parameters, per-particle parameters and tabulated functions are
    those of :func:`to_openmm` (the same force as :func:`add_to_system`).  The file defines no
    atom types or residues: combine it with a force field that does and holds the bonded
    terms, ``app.ForceField("bonded.xml", "mctsff.xml")``.  Each atom type of the potential
    gets an ``<Atom class="…">`` entry with its per-type constants, so an atom type of the
    other file takes them through its ``class``.

    Parameters
    ----------
    potential
        Fitted potential or front point (whose cutoff is used when ``cutoff`` is None).
    cutoff
        Cutoff in Å at which a shifted potential is shifted (default: its own).  The XML
        cannot carry the cutoff: pass the same one to ``ForceField.createSystem``
        (``nonbondedCutoff``, with ``nonbondedMethod=CutoffNonPeriodic`` or a periodic
        method); ``NoCutoff`` would apply the shifted function at every distance.
    shift, prefix
        As in :func:`to_openmm`.
    bond_cutoff
        ``bondCutoff`` of the force: atoms at most this many bonds apart do not interact
        (3: 1-2, 1-3 and 1-4 pairs; for water any value ≥ 2 excludes every same-molecule
        pair, as the intermolecular fits assume).
    atom_classes
        OpenMM atom class of each atom type of the potential (default: the type's own name,
        e.g. ``{"O": "OW", "H": "HW"}`` to match classes ``OW``/``HW``).
    allow_no_wall
        Accept a front point without a repulsive wall (see :func:`export`).

    Returns
    -------
    str
        The XML text (every name and value escaped by :mod:`xml.etree.ElementTree`).

    Raises
    ------
    ExportError
        A universal potential without atom types, an ``atom_classes`` key that is not an atom
        type or a class that is not a non-empty name, or a negative ``bond_cutoff``.
    """
    pot, rc = resolve_potential(potential, cutoff=cutoff, allow_no_wall=allow_no_wall)
    if isinstance(bond_cutoff, bool) or not isinstance(bond_cutoff, int) or bond_cutoff < 0:
        raise ExportError(f"bond_cutoff must be an integer >= 0, got {bond_cutoff!r}")
    spec = to_openmm(pot, rc, shift=shift, prefix=prefix)
    species = [s for s in spec.species if s != UNIVERSAL_TYPE]
    if not species:
        raise ExportError(
            "a universal potential without atom types: name them (species=, --species) so "
            "that the XML can give each atom class an entry"
        )
    classes = {s: s for s in species}
    unknown = sorted(set(atom_classes or {}) - set(species))
    if unknown:
        raise ExportError(f"atom_classes: {unknown} are not atom types of the potential {species}")
    for s, c in (atom_classes or {}).items():
        if not isinstance(c, str) or not c or c != c.strip() or any(ch.isspace() for ch in c):
            raise ExportError(f"atom_classes: class {c!r} of {s!r} is not a name")
        classes[s] = c
    root = ET.Element("ForceField")
    info = ET.SubElement(root, "Info")
    ET.SubElement(info, "Source").text = f"mctsff {__version__} export --format openmm-xml"
    ET.SubElement(info, "Expression").text = spec.expression
    ET.SubElement(info, "CutoffScheme").text = spec.cutoff_scheme
    if spec.cutoff_nm is not None:
        ET.SubElement(info, "Cutoff", unit="nm").text = repr(spec.cutoff_nm)
    force = ET.SubElement(
        root, "CustomNonbondedForce", energy=spec.energy, bondCutoff=str(bond_cutoff)
    )
    for name, value in spec.global_parameters.items():
        ET.SubElement(force, "GlobalParameter", name=name, defaultValue=repr(float(value)))
    for name in spec.per_particle:
        ET.SubElement(force, "PerParticleParameter", name=name)
    for name, (n, values) in spec.tables.items():
        function = ET.SubElement(
            force, "Function", name=name, type="Discrete2D", xsize=str(n), ysize=str(n)
        )
        function.text = " ".join(repr(float(v)) for v in values)
    for s in species:
        values = spec.per_type_values.get(s, ()) if spec.per_particle else ()
        ET.SubElement(
            force,
            "Atom",
            {"class": classes[s]},
            **{p: repr(float(v)) for p, v in zip(spec.per_particle, values, strict=True)},
        )
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"

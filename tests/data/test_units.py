"""Tests for mctsff.data.units: data whose distances, forces or energies do not look like Å,
eV/Å and eV raise one warning line each."""

from __future__ import annotations

import ase.io
import pytest
from ase import Atoms, units

from mctsff.data import (
    Dataset,
    UnitWarning,
    data_file,
    from_atoms,
    load_dataset,
    unit_warnings,
)


def _rescaled(images: list[Atoms], length: float, force: float) -> list[Atoms]:
    """Copies with positions and cell times ``length`` and forces times ``force``."""
    out = []
    for a in images:
        b = a.copy()
        b.positions *= length
        b.cell *= length
        for name in ("forces", "inter_forces"):
            if name in a.arrays:
                b.arrays[name] = a.arrays[name] * force
        if "forces" not in a.arrays and "inter_forces" not in a.arrays:
            b.arrays["forces"] = a.get_forces() * force
        out.append(b)
    return out


def test_shipped_data_raise_no_unit_warning(dimers: Dataset, bulk: Dataset) -> None:
    assert unit_warnings(dimers) == []
    assert unit_warnings(bulk) == []
    assert unit_warnings(load_dataset(data_file("ala2_solvent_forces.extxyz"), 6.0)) == []


@pytest.mark.parametrize(
    ("name", "cutoff", "options"),
    [
        ("water_dimers_mp2_200.extxyz", 6.0, {}),
        ("water_dimers_mp2_200.extxyz", 9.0, dict(forces="forces", energy="energy")),
        ("water_dimers_mp2_sample20.extxyz", 9.0, dict(intermolecular=False)),
        ("bulk_water_dft_80x192.extxyz", 6.0, dict(molecules="nearest-O")),
        ("ala2_solvent_forces.extxyz", 9.0, dict(molecules="bonds")),
    ],
)
def test_shipped_data_raise_no_unit_warning_whatever_the_options(name, cutoff, options) -> None:
    """Molecule ids switch the net-force test on, energies the consistency test."""
    assert unit_warnings(load_dataset(data_file(name), cutoff, **options)) == []


def _in_units(images: list[Atoms], length: float, energy: float, force: float) -> list[Atoms]:
    """Copies whose positions, energies (info E_inter) and forces are divided by the
    size of the file's unit in Å, eV and eV/Å (ase.units)."""
    out = _rescaled(images, 1.0 / length, 1.0 / force)
    for a, b in zip(images, out, strict=True):
        b.info["E_inter"] = a.info["E_inter"] / energy
    return out


_KCAL = units.kcal / units.mol
_MIXED = "energies and forces do not look like one unit system"
_FORCES = "forces do not look like eV/Å"


@pytest.mark.parametrize(
    ("file_units", "lines"),
    [
        ((1.0, 1.0, _KCAL), [_FORCES, _MIXED]),  # forces alone from kcal/mol/Å: both tests
        ((1.0, _KCAL, _KCAL), [_FORCES]),  # all in kcal/mol: consistent, but too large
        ((1.0, 1.0, units.Hartree / units.Bohr), [_MIXED]),
        ((1.0, units.Hartree, 1.0), [_MIXED]),
        # atomic units throughout: the energies match the forces, the positions tell
        ((units.Bohr, units.Hartree, units.Hartree / units.Bohr), ["positions do not look like Å"]),
    ],
    ids=["kcal-forces", "kcal", "hartree-bohr-forces", "hartree-energies", "atomic-units"],
)
def test_unit_warning_on_dimers_in_other_units(dimer_images, file_units, lines) -> None:
    length = file_units[0]
    ds = from_atoms(_in_units(dimer_images, *file_units), 9.0 / length, path="dimers.xyz")
    found = unit_warnings(ds)
    assert [w.split(" (")[0] for w in found] == [f"dimers.xyz: {w}" for w in lines]
    assert all("\n" not in w for w in found)
    named = {
        "kcal-forces": "forces in kcal/mol/Å",
        "hartree-bohr-forces": "forces in hartree/bohr",
        "hartree-energies": "energies in hartree",
    }
    for w in found:
        if "one unit system" in w:
            assert any(v in w for v in named.values())
    # the same data in eV/Å and eV raise nothing: the tests above are the units' doing
    assert unit_warnings(from_atoms(_in_units(dimer_images, 1.0, 1.0, 1.0), 9.0)) == []


def test_net_force_test_ignores_intramolecular_forces(dimer_images) -> None:
    """Total forces (with the O-H stretches) and intermolecular forces of the same dimers
    give the same net forces: both pass in eV/Å, both are caught in kcal/mol/Å."""
    images = []
    for a in dimer_images:
        b = a.copy()  # the total forces (the calculator's) as an array, as inter_forces
        b.arrays["forces"] = a.get_forces()
        images.append(b)
    for array in ("forces", "inter_forces"):
        ev = from_atoms(images, 9.0, forces=array, energy=None)
        assert unit_warnings(ev) == []
        kcal = from_atoms(_rescaled(images, 1.0, 1 / _KCAL), 9.0, forces=array, energy=None)
        (line,) = unit_warnings(kcal)
        assert "net force on a molecule" in line


def test_kcal_and_kj_per_mol_are_defined_once(dimer_images) -> None:
    """The force hint and the mix-up guesses each defined eV per kcal/mol and kJ/mol; one
    definition gives both (1 kcal = 4.184 kJ)."""
    from mctsff.data.units import _ev_per_kcal_kj_mol, _unit_mixups

    kcal, kj = _ev_per_kcal_kj_mol()
    assert kcal == _KCAL and kcal / kj == pytest.approx(4.184, rel=1e-12)
    mixups = _unit_mixups()
    assert mixups["forces in kcal/mol/Å"] == kcal and mixups["energies in kJ/mol"] == 1 / kj
    ds = from_atoms(_rescaled(dimer_images, 1.0, 1 / _KCAL), 9.0, energy=None)
    (line,) = unit_warnings(ds)
    assert f"1 kcal/mol/Å = {kcal:.4g} eV/Å, 1 kJ/mol/Å = {kj:.4g} eV/Å" in line


@pytest.mark.parametrize(
    ("length", "force", "words"),
    [
        (0.1, 1.0, ["positions", "nm?", "nearest intermolecular"]),  # positions in nm
        (1 / 0.529177, 1.0, ["positions", "bohr?"]),  # positions in bohr
    ],
)
def test_unit_warning_on_rescaled_dimers(dimer_images, length, force, words) -> None:
    images = _rescaled(dimer_images, length, force)
    ds = from_atoms(images, 9.0 * length, path="scaled.extxyz")
    lines = unit_warnings(ds)
    assert len(lines) == 1 and "\n" not in lines[0]
    assert lines[0].startswith("scaled.extxyz: ")
    for w in words:
        assert w in lines[0]


def test_unit_warning_on_bulk_in_nm_and_kcal(bulk_images) -> None:
    nm = from_atoms(_rescaled(bulk_images[:3], 0.1, 1.0), 0.4, path="nm")
    assert [w.split(" (")[0] for w in unit_warnings(nm)] == ["nm: positions do not look like Å"]
    kcal = from_atoms(_rescaled(bulk_images[:3], 1.0, 23.06), 4.0, path="kcal")
    assert [w.split(" (")[0] for w in unit_warnings(kcal)] == ["kcal: forces do not look like eV/Å"]


def test_cli_shows_a_unit_warning_and_goes_on(tmp_path, dimer_images, capsys) -> None:
    from mctsff.cli import main

    path = tmp_path / "nm.extxyz"
    ase.io.write(path, _rescaled(dimer_images[:6], 0.1, 1.0), format="extxyz")
    with pytest.warns(UnitWarning):
        load_dataset(path, 0.9)
    code = main(["fit", str(path), "--expr", "A/r**12", "--cutoff", "0.9", "--json"])
    err = capsys.readouterr().err
    assert code == 0
    lines = [ln for ln in err.splitlines() if "do not look like" in ln]
    assert len(lines) == 1 and lines[0].startswith("mctsff: warning: ") and "nm?" in lines[0]
    assert "Traceback" not in err

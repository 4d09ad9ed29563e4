"""Reading reference data into a :class:`~mctsff.data.dataset.Dataset`: a trajectory file
(:func:`load_dataset`), a file in chunks (:func:`iter_chunks`) or ``ase.Atoms`` in memory
(:func:`from_atoms`).

Files are read with :func:`ase.io.read`; every problem becomes a
:class:`~mctsff.data.validation.DataError` whose message names the file and, when relevant,
the frame (0-based index in the file) and the field, e.g.
``"water.extxyz: frame 3: array 'inter_forces' contains NaN"``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mctsff.data.dataset import Dataset
from mctsff.data.geometry import _assign_molecules, _frame_pairs
from mctsff.data.units import _warn_units
from mctsff.data.validation import (
    _bad_kind,
    _calc_keys,
    _calc_result,
    _check_cutoff,
    _error,
    _frame_selection,
    _get_energy,
    _mol_array,
    _per_atom_forces,
    _read_failure,
)

if TYPE_CHECKING:  # pragma: no cover
    import ase

__all__ = ["from_atoms", "iter_chunks", "load_dataset"]

#: Distances below this (Å) are treated as coinciding atoms, an error.
MIN_DISTANCE: float = 1e-8

_MOLECULE_METHODS = ("bonds", "nearest-o", "nearest-heavy")


def load_dataset(
    path: str | os.PathLike[str],
    cutoff: float,
    *,
    forces: str = "auto",
    energy: str | None = "auto",
    intermolecular: bool | None = None,
    molecules: str | None = None,
    frames: slice | Sequence[int] | None = None,
) -> Dataset:
    """Read a trajectory file (any format ASE reads, e.g. extxyz) into a :class:`Dataset`.

    Parameters
    ----------
    path : str or path-like
        File to read with ``ase.io.read(path, ":")``.
    cutoff : float
        Pair cutoff radius in Å, > 0; pairs with ``r < cutoff`` are kept.  For periodic frames
        it must not exceed half the smallest perpendicular width of the periodic cell.
    forces : str
        ``"auto"``: per-atom array ``inter_forces`` if frame 0 has it, else ``forces`` (array or
        calculator results).  Any other value names the per-atom array to use.
    energy : str or None
        ``"auto"``: info key ``E_inter`` if frame 0 has it, else the calculator energy if
        present, else no energies.  Any other string names an info key (or calculator result);
        ``None`` disables energies.
    intermolecular : bool or None
        Exclude pairs within the same molecule.  ``None``: ``True`` when molecule ids exist.
    molecules : str or None
        Source of molecule ids.  ``None``: per-atom array ``mol`` if frame 0 has it.
        ``"bonds"``: connected components of covalent bonds (ASE covalent radii times
        :data:`BOND_SCALE`, periodic images honoured).  ``"nearest-O"``: every H joins its
        nearest O (minimum image), every other atom is its own molecule.  ``"nearest-heavy"``:
        every H joins its nearest non-H atom.  Any other string names an integer per-atom array.
    frames : slice or sequence of int, optional
        Frames of the file to use (0-based, negative allowed); default all.

    Returns
    -------
    Dataset

    Raises
    ------
    DataError
        For a missing/unreadable/empty file, missing or malformed arrays, non-finite values,
        coinciding atoms, a bad cutoff, or molecule ids requested but unavailable.

    Warns
    -----
    UnitWarning
        One line per quantity whose values do not look like Å or eV/Å
        (:func:`unit_warnings`); the data are loaded all the same.
    """
    src = os.fspath(path)
    _check_cutoff(cutoff, src)
    if not os.path.exists(src):
        raise _error(src, "no such file")
    if os.path.isdir(src):
        raise _error(src, "is a directory, not a data file")
    try:
        import ase.io

        images = ase.io.read(src, ":")
    except Exception as exc:  # ASE raises many different types for malformed files
        raise _error(src, _read_failure(exc)) from None
    if not isinstance(images, list):
        images = [images]
    if len(images) == 0:
        raise _error(src, "file contains no frames")
    ds = from_atoms(
        images,
        cutoff,
        forces=forces,
        energy=energy,
        intermolecular=intermolecular,
        molecules=molecules,
        frames=frames,
        path=src,
    )
    _warn_units(ds)
    return ds


def iter_chunks(
    path: str | os.PathLike[str],
    cutoff: float,
    chunk_frames: int = 16,
    *,
    species: Sequence[str] | None = None,
    **options: Any,
) -> Iterator[Dataset]:
    """Stream a trajectory file as datasets of at most ``chunk_frames`` frames.

    Only one chunk of frames and its pairs is in memory at a time, so data far larger than
    memory can be summarised (e.g. by :class:`mctsff.data.projection.ForceProjection`).

    Parameters
    ----------
    path, cutoff
        As in :func:`load_dataset`.
    chunk_frames : int
        Frames per chunk (>= 1).
    species : sequence of str, optional
        Species of the whole file; default: those of the first chunk.  Every chunk gets the
        same species and type pairs.
    **options
        ``forces``, ``energy``, ``intermolecular``, ``molecules`` as in :func:`load_dataset`.

    Yields
    ------
    Dataset
        Consecutive chunks; :attr:`Dataset.frame_ids` and error messages count frames in the file.

    Warns
    -----
    UnitWarning
        As :func:`load_dataset`, judged on the first chunk.
    """
    src = os.fspath(path)
    _check_cutoff(cutoff, src)
    if not isinstance(chunk_frames, int) or chunk_frames < 1:
        raise _error(src, f"chunk_frames must be a positive integer, not {chunk_frames!r}")
    if not os.path.exists(src):
        raise _error(src, "no such file")
    import ase.io

    def frames() -> Iterator[ase.Atoms]:
        try:
            yield from ase.io.iread(src, ":")
        except Exception as exc:  # ASE raises many different types for malformed files
            raise _error(src, _read_failure(exc)) from None

    buf: list[ase.Atoms] = []
    start = 0
    fixed = tuple(species) if species is not None else None
    for atoms in frames():
        buf.append(atoms)
        if len(buf) == chunk_frames:
            ds = from_atoms(buf, cutoff, path=src, species=fixed, frame_base=start, **options)
            fixed = ds.species
            if start == 0:
                _warn_units(ds)
            yield ds
            start += len(buf)
            buf = []
    if buf:
        ds = from_atoms(buf, cutoff, path=src, species=fixed, frame_base=start, **options)
        if start == 0:
            _warn_units(ds)
        yield ds
    elif start == 0:
        raise _error(src, "file contains no frames")


def from_atoms(
    images: Sequence[ase.Atoms] | ase.Atoms,
    cutoff: float,
    *,
    forces: str = "auto",
    energy: str | None = "auto",
    intermolecular: bool | None = None,
    molecules: str | None = None,
    frames: slice | Sequence[int] | None = None,
    path: str | os.PathLike[str] | None = None,
    species: Sequence[str] | None = None,
    frame_base: int = 0,
) -> Dataset:
    """Build a :class:`Dataset` from in-memory ``ase.Atoms`` frames.

    Parameters
    ----------
    images : sequence of ase.Atoms (or one Atoms)
        Frames.  Forces are looked up in ``atoms.arrays`` then in the calculator results (for
        ``"forces"`` a live calculator is asked via ``get_forces(apply_constraint=False)``).
    cutoff, forces, energy, intermolecular, molecules, frames
        As in :func:`load_dataset`.
    path : str or path-like, optional
        Label used as :attr:`Dataset.path` and in error messages (``"<atoms>"`` when omitted).
    species : sequence of str, optional
        Fix the species (and so the type pairs) instead of taking those present, so that
        chunks of one file share type indices; a symbol outside it is an error.
    frame_base : int
        Index in the file of ``images[0]``: error messages and :attr:`Dataset.frame_ids`
        count from it (used when a file is read in chunks, see :func:`iter_chunks`).

    Returns
    -------
    Dataset
    """
    return _from_atoms(
        images, cutoff, forces, energy, intermolecular, molecules, frames, path, species, frame_base
    )


def _from_atoms(
    images, cutoff, forces, energy, intermolecular, molecules, frames, path, fixed, base
):
    src = os.fspath(path) if path is not None else "<atoms>"
    _check_cutoff(cutoff, src)
    cutoff = float(cutoff)
    if hasattr(images, "get_positions") and hasattr(images, "arrays"):
        images = [images]  # a single Atoms
    images = list(images)
    if not images:
        raise _error(src, "no frames")
    sel = _frame_selection(frames, len(images), src)
    if not isinstance(forces, str):
        raise _error(src, f"forces must be a str, got {type(forces).__name__}")
    if energy is not None and not isinstance(energy, str):
        raise _error(src, f"energy must be a str or None, got {type(energy).__name__}")
    if molecules is not None and not isinstance(molecules, str):
        raise _error(src, f"molecules must be a str or None, got {type(molecules).__name__}")

    first = images[int(sel[0])]
    # --- resolve the "auto" sources from the first selected frame ---
    if forces == "auto":
        if "inter_forces" in first.arrays or _calc_result(first, "inter_forces") is not None:
            force_name = "inter_forces"
        else:
            force_name = "forces"
    else:
        force_name = forces
    if energy == "auto":
        if _get_energy(first, "E_inter") is not None:
            energy_name: str | None = "E_inter"
        elif _get_energy(first, "energy") is not None:
            energy_name = "energy"
        else:
            energy_name = None
    else:
        energy_name = energy
    mol_method: str | None = None
    mol_array: str | None = None
    if molecules is None:
        if "mol" in first.arrays:
            mol_array = "mol"
    elif molecules.lower() in _MOLECULE_METHODS:
        mol_method = molecules.lower()
    else:
        mol_array = molecules
    has_mol = mol_method is not None or mol_array is not None
    if intermolecular is None:
        intermolecular = has_mol
    intermolecular = bool(intermolecular)
    if intermolecular and not has_mol:
        raise _error(
            src,
            "intermolecular=True needs molecule ids, but there is no per-atom array 'mol'; "
            "pass molecules='bonds', 'nearest-O' or the name of an id array",
            int(sel[0]) + base,
        )

    # --- per-frame extraction ---
    symbols_all: list[list[str]] = []
    pos_l: list[np.ndarray] = []
    frc_l: list[np.ndarray] = []
    mol_l: list[np.ndarray] = []
    ene_l: list[float] = []
    cell_l: list[np.ndarray] = []
    pbc_l: list[np.ndarray] = []
    for k in sel:
        atoms = images[int(k)]
        fid = int(k) + base  # frame number in the file, for messages
        if not (hasattr(atoms, "arrays") and hasattr(atoms, "get_chemical_symbols")):
            raise _error(src, f"not an ase.Atoms object ({type(atoms).__name__})", fid)
        n = len(atoms)
        if n == 0:
            raise _error(src, "frame has no atoms", fid)
        symbols_all.append(atoms.get_chemical_symbols())
        pos = np.array(atoms.get_positions(), dtype=np.float64)
        if not np.isfinite(pos).all():
            raise _error(src, f"array 'positions' contains {_bad_kind(pos)}", fid)
        pos_l.append(pos)
        frc_l.append(_per_atom_forces(atoms, force_name, src, fid))
        if energy_name is not None:
            e = _get_energy(atoms, energy_name)
            if e is None:
                raise _error(
                    src,
                    f"no energy {energy_name!r} (info keys: {sorted(atoms.info)}, "
                    f"calculator results: {_calc_keys(atoms)})",
                    fid,
                )
            try:
                e = float(e)
            except (TypeError, ValueError) as exc:
                raise _error(src, f"energy {energy_name!r} is not a number: {e!r}", fid) from exc
            if not math.isfinite(e):
                raise _error(src, f"energy {energy_name!r} is {e}", fid)
            ene_l.append(e)
        cell = np.array(atoms.get_cell()[:], dtype=np.float64)
        pbc = np.array(atoms.get_pbc(), dtype=bool)
        if not np.isfinite(cell).all():
            raise _error(src, "cell contains non-finite values", fid)
        cell_l.append(cell)
        pbc_l.append(pbc)
        if mol_array is not None:
            mol_l.append(_mol_array(atoms, mol_array, src, fid))
        elif mol_method is not None:
            mol_l.append(_assign_molecules(mol_method, pos, atoms.numbers, cell, pbc, src, fid))

    # --- species and types ---
    species = tuple(sorted({s for syms in symbols_all for s in syms}))
    if fixed is not None:
        extra = sorted(set(species) - set(fixed))
        if extra:
            raise _error(src, f"species {extra} not among the fixed species {tuple(fixed)}")
        species = tuple(sorted(set(fixed)))
    t_index = {s: k for k, s in enumerate(species)}
    nt = len(species)
    type_pairs = tuple((species[a], species[b]) for a in range(nt) for b in range(a, nt))
    tp_matrix = np.empty((nt, nt), dtype=np.int64)
    k = 0
    for a in range(nt):
        for b in range(a, nt):
            tp_matrix[a, b] = tp_matrix[b, a] = k
            k += 1

    # --- pairs per frame ---
    counts = np.array([len(p) for p in pos_l], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    pi_l, pj_l, r_l, u_l, pf_l = [], [], [], [], []
    for f, fid in enumerate(sel):
        fid = int(fid) + base
        i, j, d, r = _frame_pairs(pos_l[f], cell_l[f], pbc_l[f], cutoff, src, fid, strict=True)
        if intermolecular:
            m = mol_l[f]
            keep = m[i] != m[j]
            i, j, d, r = i[keep], j[keep], d[keep], r[keep]
        close = r < MIN_DISTANCE
        if close.any():
            q = int(np.argmax(close))
            raise _error(
                src,
                f"atoms {int(i[q])} and {int(j[q])} coincide (r = {float(r[q]):.3g} Å)",
                fid,
            )
        pi_l.append(i + offsets[f])
        pj_l.append(j + offsets[f])
        r_l.append(r)
        u_l.append(d / r[:, None])
        pf_l.append(np.full(len(r), f, dtype=np.int64))

    atom_type = np.fromiter(
        (t_index[s] for syms in symbols_all for s in syms), dtype=np.int64, count=int(offsets[-1])
    )
    pair_i = np.concatenate(pi_l).astype(np.int64)
    pair_j = np.concatenate(pj_l).astype(np.int64)
    periodic = any(bool(p.any()) for p in pbc_l)
    return Dataset(
        path=os.fspath(path) if path is not None else None,
        species=species,
        type_pairs=type_pairs,
        cutoff=cutoff,
        n_frames=len(sel),
        force_array=force_name,
        atom_frame=np.repeat(np.arange(len(sel), dtype=np.int64), counts),
        atom_type=atom_type,
        positions=np.ascontiguousarray(np.concatenate(pos_l)),
        forces=np.ascontiguousarray(np.concatenate(frc_l)),
        mol=np.concatenate(mol_l).astype(np.int64) if mol_l else None,
        energies=np.array(ene_l, dtype=np.float64) if energy_name is not None else None,
        frame_offsets=offsets,
        cells=np.stack(cell_l) if periodic else None,
        pair_i=pair_i,
        pair_j=pair_j,
        r=np.ascontiguousarray(np.concatenate(r_l), dtype=np.float64),
        u=np.ascontiguousarray(np.concatenate(u_l), dtype=np.float64).reshape(-1, 3),
        pair_type=tp_matrix[atom_type[pair_i], atom_type[pair_j]].astype(np.int64),
        pair_frame=np.concatenate(pf_l),
        frame_ids=np.asarray(sel, dtype=np.int64) + base,
        intermolecular=intermolecular,
        pbc=np.stack(pbc_l) if periodic else None,
    )

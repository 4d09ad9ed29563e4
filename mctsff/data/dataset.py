"""Reference data for force matching: frames, atoms, reference forces and pair lists.

A :class:`Dataset` holds every frame of a training set as flat, concatenated arrays
(atoms of all frames one after the other) together with the list of atom pairs inside the
cutoff radius, their distances ``r`` and unit vectors ``u``.  A pair potential ``U(r)`` then
gives the force on atom ``i`` as ``F_i = sum_j -U'(r_ij) u_ij`` with ``u_ij = (x_i - x_j)/r_ij``,
which is all the fitting code needs.

Units follow ASE: positions in Å, energies in eV, forces in eV/Å.

Files are read with :func:`ase.io.read`; :func:`load_dataset` wraps every problem into a
:class:`DataError` whose message names the file and, when relevant, the frame (0-based index in
the file) and the field, e.g. ``"water.extxyz: frame 3: array 'inter_forces' contains NaN"``.

The example data shipped with the package live in :data:`DATA_DIR`; use :func:`data_file`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import ase

__all__ = [
    "BOND_SCALE",
    "DATASETS",
    "DATA_DIR",
    "DataError",
    "Dataset",
    "UnitWarning",
    "data_file",
    "dataset_path",
    "from_atoms",
    "holdout_frames",
    "iter_chunks",
    "load_dataset",
    "shipped_datasets",
    "split_frames",
    "unit_warnings",
]

#: Folder with the example data files shipped with the package.
DATA_DIR: Path = Path(__file__).resolve().parent

#: Factor on ASE's covalent radii (``natural_cutoffs``) used by ``molecules="bonds"``.
#: 1.2 keeps stretched O–H bonds of liquid water (up to ~1.14 Å) bonded while H-bonds
#: (O···H ≳ 1.4 Å) are not.
BOND_SCALE: float = 1.2

#: Distances below this (Å) are treated as coinciding atoms, an error.
MIN_DISTANCE: float = 1e-8

# Frames with more atoms than this use a k-d tree (_tree_pairs) instead of all i<j pairs.
_DIRECT_MAX_ATOMS = 2000

_MOLECULE_METHODS = ("bonds", "nearest-o", "nearest-heavy")


#: Median nearest-neighbour distance over the covalent bond length of the pair (ASE
#: covalent radii) outside which positions do not look like Å: about 1 in Å (bonded
#: neighbours, ions, metals), 0.1 in nm, 1.9 in bohr.
UNIT_BOND_RATIO: tuple[float, float] = (0.5, 1.6)
#: Median nearest intermolecular distance (Å) outside which positions do not look like Å.
UNIT_INTER_DISTANCE: tuple[float, float] = (1.0, 10.0)
#: RMS reference force component (eV/Å) above which forces do not look like eV/Å (the
#: 80 shipped bulk-water DFT frames: 0.82; in kcal/mol/Å they would read 18.8).
UNIT_MAX_RMS_FORCE: float = 10.0
#: Frames looked at by :func:`unit_warnings` (spread over the data).
UNIT_FRAMES: int = 5
#: RMS component (eV/Å) of the net force on a molecule above which forces do not look
#: like eV/Å.  Intramolecular forces cancel in the sum over a molecule's atoms, so the net
#: force is intermolecular whether the file holds total or intermolecular forces (shipped
#: data: 0.14 water dimers, 0.26 the 20 dimers, 0.28 bulk water DFT, 0.29 the solvated
#: alanine dipeptide's molecules; in kcal/mol/Å they would read 3.2 to 6.7).
UNIT_MAX_RMS_MOLECULE_FORCE: float = 1.5
#: Energy/force consistency (:func:`unit_warnings`): at most this many non-periodic frames
#: of at most :data:`UNIT_CONSISTENCY_ATOMS` atoms, at least :data:`UNIT_CONSISTENCY_MIN`.
UNIT_CONSISTENCY_FRAMES: int = 60
UNIT_CONSISTENCY_ATOMS: int = 200
UNIT_CONSISTENCY_MIN: int = 10
#: The energies' variance (beyond per-species offsets) the pair model fitted to the forces
#: must explain before its energy scale is judged.
UNIT_CONSISTENCY_R2: float = 0.7
#: Factor between the energies and the pair model fitted to the forces outside which they
#: do not look like one unit system (consistent shipped dimers: 1.2 to 1.3).
UNIT_CONSISTENCY_RATIO: float = 4.0
#: Decay lengths (Å) of the exponential radial basis of the consistency model (with 1/r).
_UNIT_BASIS_DECAY: tuple[float, ...] = (0.3, 0.6, 1.2, 2.4)
_NOBLE_GASES = frozenset({"He", "Ne", "Ar", "Kr", "Xe", "Rn"})


class UnitWarning(UserWarning):
    """Data whose distances or forces do not look like Å and eV/Å (see :func:`unit_warnings`)."""


class DataError(ValueError):
    """Invalid or unreadable reference data.

    The message always names the file (or ``<atoms>`` for in-memory frames) and, when relevant,
    the 0-based frame index in the file and the offending field.
    """


def data_file(name: str) -> Path:
    """Path of an example data file shipped with the package.

    Parameters
    ----------
    name : str
        File name inside :data:`DATA_DIR`, e.g. ``"water_dimers_mp2_sample20.extxyz"``.

    Returns
    -------
    pathlib.Path
        Absolute path of the file.

    Raises
    ------
    DataError
        If the file does not exist.
    """
    path = DATA_DIR / name
    if not path.is_file():
        available = sorted(p.name for p in DATA_DIR.iterdir() if p.is_file())
        raise DataError(f"{name}: no such data file in {DATA_DIR}; available: {available}")
    return path


#: Short names of the shipped datasets (``mctsff data list``; what ``mctsff fit`` and
#: ``mctsff search`` accept instead of a path): name -> file in :data:`DATA_DIR`.
DATASETS: dict[str, str] = {
    "water-dimers": "water_dimers_mp2_200.extxyz",
    "water-dimers-sample": "water_dimers_mp2_sample20.extxyz",
    "bulk-water": "bulk_water_dft_80x192.extxyz",
    "ala2-solvent": "ala2_solvent_forces.extxyz",
}


def dataset_path(name_or_path: str | os.PathLike) -> str:
    """The file a command line's data argument names.

    Parameters
    ----------
    name_or_path : str or path-like
        A path, or the short name of a shipped dataset (:data:`DATASETS`).  A path that
        exists wins over a name.

    Returns
    -------
    str
        The path as given when it exists, else the shipped file of the name.

    Raises
    ------
    DataError
        Neither an existing path nor a shipped name (the message lists the names).
    """
    text = os.fspath(name_or_path)
    if os.path.exists(text):
        return text
    if text in DATASETS:
        return str(data_file(DATASETS[text]))
    raise DataError(
        f"{text}: no such file, nor a shipped dataset (names: {', '.join(DATASETS)}; "
        "mctsff data list)"
    )


def _count_frames(path: Path) -> int:
    """Frames of an (ext)xyz file, counted from the atom-count lines without parsing them."""
    n = 0
    with path.open("rb") as fh:
        while line := fh.readline():
            if not line.strip():
                continue
            atoms = int(line)
            for _ in range(atoms + 1):
                fh.readline()
            n += 1
    return n


def _sources() -> dict[str, str]:
    """Entry of each file in ``DATA_DIR/SOURCES.md`` (``- `file` — text``), one line each."""
    entries: dict[str, str] = {}
    current = None
    for line in (DATA_DIR / "SOURCES.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("- `"):
            name, _, text = line[3:].partition("`")
            current = name
            entries[name] = text.lstrip(" —-")
        elif current is not None and line.startswith("  "):
            entries[current] += " " + line.strip()
        else:
            current = None
    return entries


def shipped_datasets() -> list[dict[str, Any]]:
    """The shipped datasets of :data:`DATASETS`: ``name``, ``file`` (path), ``frames``,
    ``bytes`` and ``source`` (their entry in ``SOURCES.md``)."""
    sources = _sources()
    rows = []
    for name, file in DATASETS.items():
        path = data_file(file)
        rows.append(
            dict(
                name=name,
                file=path,
                frames=_count_frames(path),
                bytes=path.stat().st_size,
                source=sources.get(file, ""),
            )
        )
    return rows


def _error(src: str, msg: str, frame: int | None = None) -> DataError:
    if frame is None:
        return DataError(f"{src}: {msg}")
    return DataError(f"{src}: frame {frame}: {msg}")


# --------------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """Frames of reference data with their pair lists, as flat concatenated arrays.

    Treat instances and their arrays as immutable; the derived datasets returned by
    :meth:`subset`, :meth:`split` and :meth:`with_forces` hold new arrays.

    Attributes
    ----------
    path : str or None
        File the data came from (``None`` for in-memory frames).
    species : tuple of str
        Sorted unique chemical symbols, e.g. ``("H", "O")``.
    type_pairs : tuple of tuple of str
        Unordered type pairs in upper-triangular order over ``species``:
        ``(("H", "H"), ("H", "O"), ("O", "O"))``.
    cutoff : float
        Pair cutoff radius in Å (pairs have ``r < cutoff``).
    n_frames : int
        Number of frames.
    force_array : str
        Name of the per-atom array the reference forces came from (``"synthetic"`` after
        :meth:`with_forces`).
    atom_frame : ndarray of int64, shape (n_atoms,)
        Frame (index into this dataset) of each atom.
    atom_type : ndarray of int64, shape (n_atoms,)
        Index into ``species`` of each atom.
    positions : ndarray of float64, shape (n_atoms, 3)
        Cartesian positions in Å as stored in the file (not wrapped).
    forces : ndarray of float64, shape (n_atoms, 3)
        Reference forces in eV/Å.
    mol : ndarray of int64, shape (n_atoms,), or None
        Molecule id of each atom within its frame.
    energies : ndarray of float64, shape (n_frames,), or None
        Reference energies in eV.
    frame_offsets : ndarray of int64, shape (n_frames + 1,)
        Atoms of frame ``f`` are ``frame_offsets[f]:frame_offsets[f + 1]``.
    cells : ndarray of float64, shape (n_frames, 3, 3), or None
        Cell vectors (rows) of each frame when any frame is periodic, else ``None``.
    pair_i, pair_j : ndarray of int64, shape (n_pairs,)
        Global atom indices of each pair, ``pair_i < pair_j``, both in the same frame.  Pairs
        are ordered by frame, then ``pair_i``, then ``pair_j``.
    r : ndarray of float64, shape (n_pairs,)
        Pair distance in Å (minimum image when periodic).
    u : ndarray of float64, shape (n_pairs, 3)
        Unit vector ``(x_i - x_j) / r`` (minimum image).
    pair_type : ndarray of int64, shape (n_pairs,)
        Index into ``type_pairs``.
    pair_frame : ndarray of int64, shape (n_pairs,)
        Frame of each pair (non-decreasing).
    frame_ids : ndarray of int64, shape (n_frames,)
        Index of each frame in the original file / image list.
    intermolecular : bool
        Whether same-molecule pairs were excluded.
    pbc : ndarray of bool, shape (n_frames, 3), or None
        Periodic directions of each frame when any frame is periodic, else ``None``.
    """

    path: str | None
    species: tuple[str, ...]
    type_pairs: tuple[tuple[str, str], ...]
    cutoff: float
    n_frames: int
    force_array: str
    atom_frame: np.ndarray
    atom_type: np.ndarray
    positions: np.ndarray
    forces: np.ndarray
    mol: np.ndarray | None
    energies: np.ndarray | None
    frame_offsets: np.ndarray
    cells: np.ndarray | None
    pair_i: np.ndarray
    pair_j: np.ndarray
    r: np.ndarray
    u: np.ndarray
    pair_type: np.ndarray
    pair_frame: np.ndarray
    frame_ids: np.ndarray
    intermolecular: bool = False
    pbc: np.ndarray | None = None

    # ---- sizes ---------------------------------------------------------------------------
    @property
    def n_atoms(self) -> int:
        """Total number of atoms over all frames."""
        return int(self.positions.shape[0])

    @property
    def n_pairs(self) -> int:
        """Total number of pairs over all frames."""
        return int(self.r.shape[0])

    @property
    def n_types(self) -> int:
        """Number of chemical species."""
        return len(self.species)

    @property
    def periodic(self) -> bool:
        """Whether any frame is periodic."""
        return self.cells is not None

    @property
    def pair_offsets(self) -> np.ndarray:
        """int64 (n_frames + 1,): pairs of frame ``f`` are ``pair_offsets[f]:pair_offsets[f+1]``."""
        return np.searchsorted(self.pair_frame, np.arange(self.n_frames + 1)).astype(np.int64)

    @property
    def _src(self) -> str:
        return self.path if self.path is not None else "<atoms>"

    def type_pair_index(self, a: str, b: str) -> int:
        """Index into :attr:`type_pairs` of the unordered pair of species ``a`` and ``b``.

        Parameters
        ----------
        a, b : str
            Chemical symbols; the order does not matter.

        Returns
        -------
        int
            ``index(a, b) == index(b, a)``.

        Raises
        ------
        DataError
            If a symbol is not among :attr:`species`.
        """
        for s in (a, b):
            if s not in self.species:
                raise _error(self._src, f"unknown species {s!r}; species are {self.species}")
        key = tuple(sorted((a, b)))
        return self.type_pairs.index(key)  # type: ignore[arg-type]

    # ---- derived datasets ----------------------------------------------------------------
    def subset(self, frames: Sequence[int] | slice | np.ndarray) -> Dataset:
        """Dataset with only the given frames, atoms and pairs re-indexed.

        Parameters
        ----------
        frames : sequence of int, slice or boolean mask
            Frame indices into this dataset (negative indices allowed), in the order wanted.
            ``species`` and ``type_pairs`` are kept, so type indices stay comparable.

        Returns
        -------
        Dataset

        Raises
        ------
        DataError
            If an index is out of range or the selection is empty.
        """
        sel = _frame_selection(frames, self.n_frames, self._src)
        fo = self.frame_offsets
        po = self.pair_offsets
        n_at = fo[sel + 1] - fo[sel]
        n_pr = po[sel + 1] - po[sel]
        new_fo = np.concatenate([[0], np.cumsum(n_at)]).astype(np.int64)
        atoms = _concat_ranges(fo[sel], n_at)
        pairs = _concat_ranges(po[sel], n_pr)
        new_frame_of_pair = np.repeat(np.arange(len(sel), dtype=np.int64), n_pr)
        shift = np.repeat(new_fo[:-1] - fo[sel], n_pr)
        return dataclasses.replace(
            self,
            n_frames=len(sel),
            atom_frame=np.repeat(np.arange(len(sel), dtype=np.int64), n_at),
            atom_type=self.atom_type[atoms],
            positions=self.positions[atoms],
            forces=self.forces[atoms],
            mol=None if self.mol is None else self.mol[atoms],
            energies=None if self.energies is None else self.energies[sel],
            frame_offsets=new_fo,
            cells=None if self.cells is None else self.cells[sel],
            pbc=None if self.pbc is None else self.pbc[sel],
            pair_i=self.pair_i[pairs] + shift,
            pair_j=self.pair_j[pairs] + shift,
            r=self.r[pairs],
            u=self.u[pairs],
            pair_type=self.pair_type[pairs],
            pair_frame=new_frame_of_pair,
            frame_ids=self.frame_ids[sel],
        )

    def split(self, valid_fraction: float = 0.2, seed: int = 0) -> tuple[Dataset, Dataset | None]:
        """Deterministic train/validation split by frame.

        Frames are permuted with ``numpy.random.default_rng(seed).permutation(n_frames)``; the
        first ``round(n_frames * valid_fraction)`` go to validation (at least 1 when
        ``valid_fraction > 0`` and ``n_frames >= 2``, at most ``n_frames - 1``).  Each part keeps
        the original frame order.

        Parameters
        ----------
        valid_fraction : float
            Fraction of frames for validation, ``0 <= valid_fraction < 1``.
        seed : int
            Seed of the permutation.

        Returns
        -------
        (Dataset, Dataset or None)
            ``(train, valid)``; ``(self, None)`` when no frame goes to validation.
        """
        train, valid = split_frames(self.n_frames, valid_fraction, seed, self._src)
        if valid is None:
            return self, None
        return self.subset(train), self.subset(valid)

    def split_holdout(
        self, valid_fraction: float = 0.2, test_fraction: float = 0.2, seed: int = 0
    ) -> tuple[Dataset, Dataset | None, Dataset | None]:
        """Deterministic train/validation/test split by frame (:func:`holdout_frames`).

        The test frames are meant to be seen by nothing but the final report: not by the
        fit, the search or the choice of a model.  With ``test_fraction=0`` this is
        :meth:`split` (same frames for the same seed).

        Parameters
        ----------
        valid_fraction, test_fraction : float
            Fractions of all frames for validation and test, each in ``[0, 1)``, sum < 1.
        seed : int
            Seed of the permutation (independent of any search seed).

        Returns
        -------
        (Dataset, Dataset or None, Dataset or None)
            ``(train, valid, test)``; a part without frames is ``None``.
        """
        train, valid, test = holdout_frames(
            self.n_frames, valid_fraction, test_fraction, seed, self._src
        )
        if valid is None and test is None:
            return self, None, None
        return (
            self.subset(train),
            None if valid is None else self.subset(valid),
            None if test is None else self.subset(test),
        )

    def with_forces(self, forces: np.ndarray, energies: np.ndarray | None = None) -> Dataset:
        """Same frames and pairs with replaced reference forces (and energies).

        Parameters
        ----------
        forces : array_like, shape (n_atoms, 3)
            New reference forces in eV/Å, finite.
        energies : array_like, shape (n_frames,), optional
            New reference energies in eV.  When omitted the result has ``energies=None`` (the
            old energies would not match the new forces).

        Returns
        -------
        Dataset
            With ``force_array="synthetic"``.
        """
        src = self._src
        f = np.array(forces, dtype=np.float64, copy=True)
        if f.shape != (self.n_atoms, 3):
            raise _error(src, f"forces must have shape ({self.n_atoms}, 3), got {f.shape}")
        bad = ~np.isfinite(f).all(axis=1)
        if bad.any():
            k = int(self.frame_ids[self.atom_frame[np.argmax(bad)]])
            raise _error(src, f"array 'forces' contains {_bad_kind(f[bad])}", k)
        e = None
        if energies is not None:
            e = np.array(energies, dtype=np.float64, copy=True)
            if e.shape != (self.n_frames,):
                raise _error(src, f"energies must have shape ({self.n_frames},), got {e.shape}")
            bad_e = ~np.isfinite(e)
            if bad_e.any():
                k = int(self.frame_ids[np.argmax(bad_e)])
                raise _error(src, f"energy contains {_bad_kind(e[bad_e])}", k)
        return dataclasses.replace(self, forces=f, energies=e, force_array="synthetic")

    # ---- reporting ------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Plain-Python description of the dataset (JSON-serialisable).

        Returns
        -------
        dict
            Keys ``path``, ``n_frames``, ``n_atoms``, ``n_pairs``, ``species``, ``type_pairs``,
            ``pairs_per_type`` (``{"H-O": count, ...}``), ``r_min``, ``r_max`` (``None`` without
            pairs), ``cutoff``, ``force_array``, ``energies``, ``intermolecular``,
            ``molecules``, ``periodic``, ``force_rms``.
        """
        counts = np.bincount(self.pair_type, minlength=len(self.type_pairs))
        return {
            "path": self.path,
            "n_frames": self.n_frames,
            "n_atoms": self.n_atoms,
            "n_pairs": self.n_pairs,
            "species": list(self.species),
            "type_pairs": [f"{a}-{b}" for a, b in self.type_pairs],
            "pairs_per_type": {
                f"{a}-{b}": int(c) for (a, b), c in zip(self.type_pairs, counts, strict=True)
            },
            "r_min": float(self.r.min()) if self.n_pairs else None,
            "r_max": float(self.r.max()) if self.n_pairs else None,
            "cutoff": self.cutoff,
            "force_array": self.force_array,
            "energies": self.energies is not None,
            "intermolecular": self.intermolecular,
            "molecules": self.mol is not None,
            "periodic": self.periodic,
            "force_rms": float(np.sqrt(np.mean(self.forces**2))) if self.n_atoms else 0.0,
        }

    def __repr__(self) -> str:
        return (
            f"Dataset(path={self.path!r}, n_frames={self.n_frames}, n_atoms={self.n_atoms}, "
            f"n_pairs={self.n_pairs}, species={self.species}, cutoff={self.cutoff}, "
            f"force_array={self.force_array!r}, intermolecular={self.intermolecular}, "
            f"periodic={self.periodic})"
        )


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


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


def split_frames(
    n_frames: int, valid_fraction: float, seed: int, src: str = "<atoms>"
) -> tuple[np.ndarray, np.ndarray | None]:
    """Frame indices of the deterministic train/validation split (see :meth:`Dataset.split`).

    Returns
    -------
    (ndarray, ndarray or None)
        Sorted training and validation frame indices; validation is ``None`` when empty.
    """
    f = float(valid_fraction)
    if not (0.0 <= f < 1.0):
        raise _error(src, f"valid_fraction must be in [0, 1), got {valid_fraction!r}")
    n = int(n_frames)
    n_valid = round(n * f)
    if f > 0 and n >= 2:
        n_valid = max(n_valid, 1)
    n_valid = min(n_valid, n - 1)
    if n_valid <= 0:
        return np.arange(n), None
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_valid:]), np.sort(perm[:n_valid])


def holdout_frames(
    n_frames: int,
    valid_fraction: float,
    test_fraction: float,
    seed: int,
    src: str = "<atoms>",
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Frame indices of the deterministic train/validation/test split.

    Frames are permuted with ``numpy.random.default_rng(seed).permutation(n_frames)``; the
    first ``round(n_frames * test_fraction)`` go to test, the next
    ``round(n_frames * valid_fraction)`` to validation, the rest to training.  A positive
    fraction gets at least one frame where the frames allow it, and training keeps at least
    one.  With ``test_fraction=0`` the validation frames are those of :func:`split_frames`.

    Returns
    -------
    (ndarray, ndarray or None, ndarray or None)
        Sorted training, validation and test frame indices; an empty part is ``None``.
    """
    fv, ft = float(valid_fraction), float(test_fraction)
    for name, f in (("valid_fraction", fv), ("test_fraction", ft)):
        if not (0.0 <= f < 1.0):
            raise _error(src, f"{name} must be in [0, 1), got {f!r}")
    if fv + ft >= 1.0:
        raise _error(src, f"valid_fraction + test_fraction must be < 1, got {fv!r} + {ft!r}")
    n = int(n_frames)
    n_test = round(n * ft)
    if ft > 0 and n >= 2:
        n_test = max(n_test, 1)
    n_test = max(min(n_test, n - 1), 0)
    n_valid = round(n * fv)
    if fv > 0 and n - n_test >= 2:
        n_valid = max(n_valid, 1)
    n_valid = max(min(n_valid, n - n_test - 1), 0)
    perm = np.random.default_rng(seed).permutation(n)
    test = np.sort(perm[:n_test])
    valid = np.sort(perm[n_test : n_test + n_valid])
    train = np.sort(perm[n_test + n_valid :])
    return train, (valid if valid.size else None), (test if test.size else None)


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


# --------------------------------------------------------------------------------------------
# unit sanity
# --------------------------------------------------------------------------------------------


def _nearest_bond_ratios(ds: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-neighbour distance of each atom of up to :data:`UNIT_FRAMES` frames, and its
    ratio to the covalent bond length of the pair (noble-gas atoms and neighbours left out;
    neighbours searched within 6 file units, or half the periodic cell width if less)."""
    from ase.data import atomic_numbers, covalent_radii

    radius = np.array([covalent_radii[atomic_numbers.get(s, 0)] for s in ds.species])
    noble = np.array([s in _NOBLE_GASES for s in ds.species])
    frames = np.unique(np.linspace(0, ds.n_frames - 1, UNIT_FRAMES).round().astype(np.int64))
    dists, ratios = [], []
    for f in frames:
        a, b = int(ds.frame_offsets[f]), int(ds.frame_offsets[f + 1])
        if b - a < 2 or b - a > 5 * _DIRECT_MAX_ATOMS:
            continue
        pos = ds.positions[a:b]
        periodic = ds.pbc is not None and bool(ds.pbc[f].any())
        cell = ds.cells[f] if periodic else np.zeros((3, 3))
        pbc = ds.pbc[f] if periodic else np.zeros(3, dtype=bool)
        try:
            cut = 6.0
            if periodic:  # one image of each neighbour: at most half the cell width
                cut = min(cut, 0.5 * float(_periodic_basis(cell, pbc, "", int(f))[2].min()))
            i, j, _, r = _frame_pairs(pos, cell, pbc, cut, "", int(f), strict=True)
        except DataError:
            continue
        t = ds.atom_type[a:b]
        keep = ~(noble[t[i]] | noble[t[j]])
        i, j, r = i[keep], j[keep], r[keep]
        if not len(r):
            continue
        near = np.full(b - a, np.inf)
        np.minimum.at(near, i, r)
        np.minimum.at(near, j, r)
        # the neighbour's type: the partner of the pair that is the nearest one
        partner = np.full(b - a, -1)
        hit_i = r == near[i]
        partner[i[hit_i]] = j[hit_i]
        hit_j = r == near[j]
        partner[j[hit_j]] = i[hit_j]
        has = np.isfinite(near) & (partner >= 0)
        bond = radius[t[has]] + radius[t[partner[has]]]
        dists.append(near[has])
        ratios.append(near[has] / np.where(bond > 0, bond, np.nan))
    if not dists:
        return np.empty(0), np.empty(0)
    return np.concatenate(dists), np.concatenate(ratios)


def _molecule_net_forces(ds: Dataset) -> np.ndarray:
    """Net reference force (n_molecules, 3) on each molecule of each frame (empty without
    molecule ids): intramolecular forces cancel in it."""
    if ds.mol is None or not ds.forces.size:
        return np.empty((0, 3))
    key = np.stack([ds.atom_frame, ds.mol], axis=1)
    _, which = np.unique(key, axis=0, return_inverse=True)
    which = which.ravel()
    net = np.zeros((int(which.max()) + 1, 3))
    np.add.at(net, which, ds.forces)
    return net


def _energy_scale(ds: Dataset) -> float | None:
    """:func:`_fitted_energy_scale`, or ``None`` where its numbers overflow."""
    with np.errstate(all="ignore"):
        try:
            scale = _fitted_energy_scale(ds)
        except np.linalg.LinAlgError:  # e.g. positions so large that distances overflow
            return None
    return scale if scale is not None and math.isfinite(scale) else None


def _fitted_energy_scale(ds: Dataset) -> float | None:
    """Factor between the reference energies and those of a pair potential fitted to the
    reference forces (1 for consistent units, up to the model's error), or ``None`` when
    it cannot be judged.

    The model is linear: per type pair ``1/r`` and ``exp(-r/λ)`` for λ in
    ``_UNIT_BASIS_DECAY``, summed over every pair of the frame (no cutoff; same-molecule
    pairs left out for intermolecular data), fitted to the forces by least squares; the
    energies are then regressed on its energies plus per-species offsets.  Only
    non-periodic frames of at most :data:`UNIT_CONSISTENCY_ATOMS` atoms count (up to
    :data:`UNIT_CONSISTENCY_FRAMES` spread over the data, at least
    :data:`UNIT_CONSISTENCY_MIN`), and only a model explaining :data:`UNIT_CONSISTENCY_R2`
    of the energies' variance is judged.
    """
    if ds.energies is None or not ds.forces.size:
        return None
    sizes = np.diff(ds.frame_offsets)
    ok = (sizes >= 2) & (sizes <= UNIT_CONSISTENCY_ATOMS)
    if ds.pbc is not None:
        ok &= ~ds.pbc.any(axis=1)
    ok &= np.isfinite(ds.energies)
    cand = np.flatnonzero(ok)
    if len(cand) < UNIT_CONSISTENCY_MIN:
        return None
    pick = np.linspace(0, len(cand) - 1, min(UNIT_CONSISTENCY_FRAMES, len(cand)))
    frames = cand[np.unique(pick.round().astype(np.int64))]
    n_types = len(ds.species)
    n_basis = 1 + len(_UNIT_BASIS_DECAY)
    n_cols = n_basis * len(ds.type_pairs)
    gram, rhs = np.zeros((n_cols, n_cols)), np.zeros(n_cols)  # normal equations of the forces
    energy_rows, counts = [], []
    for f in frames:
        a, b = int(ds.frame_offsets[f]), int(ds.frame_offsets[f + 1])
        pos, t = ds.positions[a:b], ds.atom_type[a:b]
        i, j = np.triu_indices(b - a, 1)
        if ds.intermolecular and ds.mol is not None:
            keep = ds.mol[a:b][i] != ds.mol[a:b][j]
            i, j = i[keep], j[keep]
        d = pos[i] - pos[j]
        r = np.linalg.norm(d, axis=1)
        u = d / r[:, None]
        lo, hi = np.minimum(t[i], t[j]), np.maximum(t[i], t[j])
        tp = lo * n_types - lo * (lo - 1) // 2 + (hi - lo)  # upper-triangular pair index
        values = [(1.0 / r, 1.0 / r**2)]  # U and -dU/dr of each basis function
        values += [(np.exp(-r / lam), np.exp(-r / lam) / lam) for lam in _UNIT_BASIS_DECAY]
        g = np.zeros((3, (b - a) * n_cols))
        e = np.zeros(n_cols)
        for k, (phi, dphi) in enumerate(values):
            col = k * len(ds.type_pairs) + tp
            at = np.concatenate([i * n_cols + col, j * n_cols + col])
            push = dphi[:, None] * u  # the force on i; -push on j
            for axis in range(3):
                weights = np.concatenate([push[:, axis], -push[:, axis]])
                g[axis] += np.bincount(at, weights, minlength=g.shape[1])
            e += np.bincount(col, phi, minlength=n_cols)
        g = g.reshape(3, b - a, n_cols).transpose(1, 0, 2).reshape(-1, n_cols)
        gram += g.T @ g
        rhs += g.T @ ds.forces[a:b].ravel()
        energy_rows.append(e)
        counts.append(np.bincount(t, minlength=n_types))
    if not (np.isfinite(gram).all() and np.isfinite(rhs).all()):
        return None
    norm = np.sqrt(np.diag(gram))
    norm[norm == 0] = 1.0
    coef = np.linalg.lstsq(gram / np.outer(norm, norm), rhs / norm, rcond=1e-12)[0] / norm
    model = np.array(energy_rows) @ coef
    offsets = np.array(counts, dtype=float)
    ref_e = ds.energies[frames]
    base = ref_e - offsets @ np.linalg.lstsq(offsets, ref_e, rcond=None)[0]
    design = np.column_stack([model, offsets])
    sol = np.linalg.lstsq(design, ref_e, rcond=None)[0]
    rest = ref_e - design @ sol
    spread = float(np.sum(base**2))
    if spread <= 0 or 1.0 - float(np.sum(rest**2)) / spread < UNIT_CONSISTENCY_R2:
        return None
    return float(sol[0])


def _ev_per_kcal_kj_mol() -> tuple[float, float]:
    """eV per kcal/mol and per kJ/mol (:mod:`ase.units`, imported here on first use as
    everywhere in this module: importing it does not load ase)."""
    from ase import units

    return units.kcal / units.mol, units.kJ / units.mol


def _unit_mixups() -> dict[str, float]:
    """The factor :func:`_energy_scale` gives for each mix-up of units (ase.units)."""
    from ase import units

    kcal, kj = _ev_per_kcal_kj_mol()
    return {
        "forces in kcal/mol/Å": kcal,
        "forces in kJ/mol/Å": kj,
        "forces in hartree/bohr": units.Hartree / units.Bohr,
        "forces in Ry/bohr": units.Rydberg / units.Bohr,
        "energies in hartree": 1.0 / units.Hartree,
        "energies in Ry": 1.0 / units.Rydberg,
        "energies in kcal/mol": 1.0 / kcal,
        "energies in kJ/mol": 1.0 / kj,
    }


def unit_warnings(ds: Dataset) -> list[str]:
    """One line per quantity of ``ds`` that does not look like Å, eV or eV/Å.

    * positions: the median nearest-neighbour distance, over the covalent bond length of
      the pair (ASE's covalent radii), outside :data:`UNIT_BOND_RATIO` (about 0.1 for
      nm, 1.9 for bohr), or for intermolecular data the median nearest intermolecular
      distance outside :data:`UNIT_INTER_DISTANCE` Å;
    * forces: an RMS force component above :data:`UNIT_MAX_RMS_FORCE` eV/Å, or, with
      molecule ids, an RMS component of the net force on a molecule (intermolecular
      whatever the file holds: intramolecular forces cancel in it) above
      :data:`UNIT_MAX_RMS_MOLECULE_FORCE` eV/Å (e.g. kcal/mol/Å, 23 times eV/Å);
    * energies against forces: a pair potential fitted to the forces of the
      non-periodic frames (:func:`_fitted_energy_scale`) whose energies must be scaled by more
      than :data:`UNIT_CONSISTENCY_RATIO` (or less than its inverse) to match the
      reference energies: the two are in different units (e.g. forces in hartree/bohr
      with energies in eV); the line names the mix-ups that give such a factor.

    Noble-gas atoms are left out of the bond-length test (their nearest neighbours are
    not bonded).  An empty list means nothing looked wrong; it proves nothing.
    """
    from ase import units

    src = ds.path or "<atoms>"
    out: list[str] = []
    hints: list[str] = []
    dist, ratio = _nearest_bond_ratios(ds)
    ratio = ratio[np.isfinite(ratio)]
    if len(ratio):
        med = float(np.median(ratio))
        lo, hi = UNIT_BOND_RATIO
        if not lo <= med <= hi:
            guess = "nm" if med < lo else "bohr" if med < 2.5 else "another unit"
            hints.append(
                f"the median nearest-neighbour distance {float(np.median(dist)):.3g} is "
                f"{med:.2g} times the covalent bond length of the pair ({guess}?)"
            )
    if ds.intermolecular and ds.n_pairs:
        near = np.full(ds.n_atoms, np.inf)
        np.minimum.at(near, ds.pair_i, ds.r)
        np.minimum.at(near, ds.pair_j, ds.r)
        near = near[np.isfinite(near)]
        lo, hi = UNIT_INTER_DISTANCE
        med = float(np.median(near)) if len(near) else lo
        if not lo <= med <= hi:
            hints.append(f"the median nearest intermolecular distance is {med:.3g} Å")
    if hints:
        out.append(
            f"{src}: positions do not look like Å ({'; '.join(hints)}); mctsff reads "
            f"positions in Å (1 nm = {units.nm:g} Å, 1 bohr = {units.Bohr:.4g} Å)"
        )
    force_hints: list[str] = []
    if ds.forces.size:
        rms = float(np.sqrt(np.mean(np.square(ds.forces))))
        if rms > UNIT_MAX_RMS_FORCE:
            force_hints.append(f"RMS force component {rms:.3g}, above {UNIT_MAX_RMS_FORCE:g}")
        net = _molecule_net_forces(ds)
        rms_net = float(np.sqrt(np.mean(np.square(net)))) if len(net) else 0.0
        if rms_net > UNIT_MAX_RMS_MOLECULE_FORCE:
            force_hints.append(
                f"RMS component of the net force on a molecule {rms_net:.3g}, above "
                f"{UNIT_MAX_RMS_MOLECULE_FORCE:g}"
            )
    if force_hints:
        kcal, kj = _ev_per_kcal_kj_mol()
        out.append(
            f"{src}: forces do not look like eV/Å ({'; '.join(force_hints)}); mctsff reads "
            f"eV/Å (1 kcal/mol/Å = {kcal:.4g} eV/Å, 1 kJ/mol/Å = {kj:.4g} eV/Å, "
            f"1 hartree/bohr = {units.Hartree / units.Bohr:.4g} eV/Å)"
        )
    scale = _energy_scale(ds)
    if scale is not None and not 1 / UNIT_CONSISTENCY_RATIO <= scale <= UNIT_CONSISTENCY_RATIO:
        mixups = _unit_mixups()
        if scale > 0:
            near = sorted(mixups, key=lambda k: abs(math.log(mixups[k] / scale)))[:2]
            guess = " or ".join(k for k in near if abs(math.log(mixups[k] / scale)) < math.log(2))
        else:
            guess = ""
        out.append(
            f"{src}: energies and forces do not look like one unit system (the energies are "
            f"{scale:.3g} times those of a pair potential fitted to the forces"
            f"{'; ' + guess + '?' if guess else ''}); mctsff reads eV and eV/Å"
        )
    return out


def _warn_units(ds: Dataset) -> None:
    for message in unit_warnings(ds):
        warnings.warn(message, UnitWarning, stacklevel=3)


# --------------------------------------------------------------------------------------------
# helpers: validation and field access
# --------------------------------------------------------------------------------------------


def _read_failure(exc: BaseException) -> str:
    """One line for an exception ASE raised reading a file (a MemoryError passes)."""
    if isinstance(exc, MemoryError):
        raise exc
    if isinstance(exc, UnicodeDecodeError):
        from mctsff.runio import not_text

        return f"cannot read file ({not_text(exc)})"
    detail = " ".join(str(exc).split())[:200]
    return f"cannot read file ({type(exc).__name__}: {detail})"


def _check_cutoff(cutoff: Any, src: str) -> None:
    if isinstance(cutoff, bool) or not isinstance(cutoff, int | float | np.integer | np.floating):
        raise _error(src, f"cutoff must be a number, got {cutoff!r}")
    if not (math.isfinite(float(cutoff)) and float(cutoff) > 0):
        raise _error(src, f"cutoff must be a finite number > 0, got {cutoff!r}")


def _bad_kind(a: np.ndarray) -> str:
    return "NaN" if np.isnan(a).any() else "inf"


def _frame_selection(frames: Any, n: int, src: str) -> np.ndarray:
    """Normalise a frame selection to an int64 index array (non-empty, in range)."""
    if frames is None:
        sel = np.arange(n, dtype=np.int64)
    elif isinstance(frames, slice):
        sel = np.arange(n, dtype=np.int64)[frames]
    else:
        arr = np.asarray(frames)
        if arr.dtype == bool:
            if arr.shape != (n,):
                raise _error(src, f"boolean frame mask must have shape ({n},), got {arr.shape}")
            sel = np.flatnonzero(arr).astype(np.int64)
        else:
            if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
                raise _error(src, f"frames must be a slice or a sequence of int, got {frames!r}")
            sel = arr.astype(np.int64)
            bad = (sel < -n) | (sel >= n)
            if bad.any():
                raise _error(
                    src, f"frame index {int(sel[np.argmax(bad)])} out of range for {n} frames"
                )
            sel = np.where(sel < 0, sel + n, sel)
    if sel.size == 0:
        raise _error(src, "no frames selected")
    return sel


def _concat_ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + c)`` for each start ``s`` and count ``c``."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    before = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return (np.repeat(starts - before, counts) + np.arange(total)).astype(np.int64)


def _calc_results(atoms: ase.Atoms) -> dict[str, Any]:
    calc = getattr(atoms, "calc", None)
    res = getattr(calc, "results", None) if calc is not None else None
    return res if isinstance(res, dict) else {}


def _calc_result(atoms: ase.Atoms, name: str) -> Any:
    return _calc_results(atoms).get(name)


def _calc_keys(atoms: ase.Atoms) -> list[str]:
    return sorted(_calc_results(atoms))


def _available_arrays(atoms: ase.Atoms) -> list[str]:
    n = len(atoms)
    names = {k for k in atoms.arrays if k not in ("numbers", "positions")}
    for k, v in _calc_results(atoms).items():
        if np.ndim(v) >= 1 and len(v) == n:
            names.add(k)
    return sorted(names)


def _per_atom_forces(atoms: ase.Atoms, name: str, src: str, fid: int) -> np.ndarray:
    n = len(atoms)
    value = atoms.arrays.get(name)
    if value is None:
        value = _calc_result(atoms, name)
    if value is None and name == "forces" and getattr(atoms, "calc", None) is not None:
        try:
            value = atoms.get_forces(apply_constraint=False)
        except Exception:  # no forces available from this calculator
            value = None
    if value is None:
        raise _error(
            src,
            f"no per-atom array {name!r}; available arrays: {_available_arrays(atoms)}",
            fid,
        )
    try:
        f = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise _error(src, f"array {name!r} is not numeric", fid) from exc
    if f.shape != (n, 3):
        raise _error(src, f"array {name!r} has shape {f.shape}, expected ({n}, 3)", fid)
    if not np.isfinite(f).all():
        raise _error(src, f"array {name!r} contains {_bad_kind(f)}", fid)
    return f


def _get_energy(atoms: ase.Atoms, name: str) -> Any:
    if name in atoms.info:
        return atoms.info[name]
    value = _calc_result(atoms, name)
    if value is not None:
        return value
    if name == "energy" and getattr(atoms, "calc", None) is not None:
        try:
            return atoms.get_potential_energy()
        except Exception:  # calculator without energies
            return None
    return None


def _mol_array(atoms: ase.Atoms, name: str, src: str, fid: int) -> np.ndarray:
    n = len(atoms)
    if name not in atoms.arrays:
        raise _error(
            src,
            f"no per-atom molecule-id array {name!r}; available arrays: "
            f"{_available_arrays(atoms)} (or use molecules='bonds' / 'nearest-O')",
            fid,
        )
    raw = np.asarray(atoms.arrays[name])
    if raw.shape != (n,):
        raise _error(src, f"array {name!r} has shape {raw.shape}, expected ({n},)", fid)
    if np.issubdtype(raw.dtype, np.integer):
        return raw.astype(np.int64)
    try:
        val = raw.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise _error(src, f"array {name!r} is not integer molecule ids", fid) from exc
    if not np.isfinite(val).all() or np.any(val != np.rint(val)):
        raise _error(src, f"array {name!r} is not integer molecule ids", fid)
    return val.astype(np.int64)


# --------------------------------------------------------------------------------------------
# helpers: geometry
# --------------------------------------------------------------------------------------------

_TRIU_CACHE: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _triu(n: int) -> tuple[np.ndarray, np.ndarray]:
    hit = _TRIU_CACHE.get(n)
    if hit is None:
        i, j = np.triu_indices(n, 1)
        hit = (i.astype(np.int64), j.astype(np.int64))
        if len(_TRIU_CACHE) > 16:
            _TRIU_CACHE.clear()
        _TRIU_CACHE[n] = hit
    return hit


def _periodic_basis(
    cell: np.ndarray, pbc: np.ndarray, src: str, fid: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Periodic lattice vectors, their dual vectors and the perpendicular widths.

    Returns ``(A, B, w)``: ``A`` (m, 3) the periodic cell rows, ``B`` (3, m) with
    ``A @ B = I`` and columns in span(A), ``w`` (m,) the widths ``1 / |B[:, k]|`` (distance
    between lattice planes spanned by the other periodic vectors).

    Any displacement ``v`` with ``|v| < min(w) / 2`` has fractional coordinates ``v @ B`` in
    (-1/2, 1/2), so wrapping with ``rint`` recovers the unique image closer than ``min(w) / 2``
    for any (also triclinic) cell.
    """
    A = cell[np.asarray(pbc, dtype=bool)]
    lengths = np.linalg.norm(A, axis=1)
    if np.any(lengths <= 0):
        raise _error(src, f"periodic cell vector of zero length (cell {cell.tolist()})", fid)
    gram = A @ A.T
    s = np.linalg.svd(A, compute_uv=False)
    if s.min() <= 1e-10 * s.max():
        raise _error(src, f"periodic cell vectors are degenerate (cell {cell.tolist()})", fid)
    B = A.T @ np.linalg.inv(gram)
    w = 1.0 / np.linalg.norm(B, axis=0)
    return A, B, w


def _ase_pairs(
    pos: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float | Sequence[float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs i<j via ASE's neighbour list: returns i, j and d = x_i - x_j (image)."""
    from ase import Atoms
    from ase.neighborlist import neighbor_list

    atoms = Atoms(numbers=np.ones(len(pos), dtype=int), positions=pos, cell=cell, pbc=pbc)
    i, j, D = neighbor_list("ijD", atoms, cutoff)
    keep = i < j
    i, j, d = i[keep].astype(np.int64), j[keep].astype(np.int64), -D[keep]
    order = np.lexsort((j, i))
    return i[order], j[order], np.ascontiguousarray(d[order])


def _tree_pairs(
    pos: np.ndarray, cutoff: float, periodic: tuple[np.ndarray, np.ndarray, np.ndarray] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs i<j with ``r < cutoff`` (minimum image) from a k-d tree (scipy's ``cKDTree``):
    memory grows with the atoms and the pairs only, however the atoms are spread (a bin
    grid over a frame with one far atom, or a large sparse cell, can need gigabytes).

    ``periodic`` is :func:`_periodic_basis`'s ``(A, B, w)`` for a cutoff at most half the
    smallest width.  The tree then holds each atom's wrapped fractional coordinates along
    the periodic vectors times the widths ``w`` (a torus of sides ``w``) and its Cartesian
    coordinates across them; a displacement ``v`` maps to ``v @ T`` there, so pairs within
    ``cutoff * |T|`` of the tree (its own minimum image) include every pair within
    ``cutoff``, which the Cartesian minimum image then selects.  Returns i, j and
    ``d = x_i - x_j``, ordered by ``i`` then ``j``.
    """
    from scipy.spatial import cKDTree

    if periodic is None:
        pairs = cKDTree(pos).query_pairs(cutoff, output_type="ndarray")
        i, j = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)
        d = pos[i] - pos[j]
    else:
        A, B, w = periodic
        m = len(w)
        q = np.linalg.qr(A.T, mode="complete")[0]
        T = np.hstack([B * w, q[:, m:]])  # the tree's coordinates of a displacement
        y = pos @ T
        y[:, :m] = np.mod(y[:, :m], w)
        y[:, :m] = np.where(y[:, :m] >= w, 0.0, y[:, :m])  # mod's round-off up to w itself
        box = np.concatenate([w, np.zeros(3 - m)])  # 0: not periodic
        radius = cutoff * float(np.linalg.norm(T, 2)) * (1 + 1e-12)
        pairs = cKDTree(y, boxsize=box).query_pairs(radius, output_type="ndarray")
        i, j = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)
        d = pos[i] - pos[j]
        d -= np.rint(d @ B) @ A
    order = np.lexsort((j, i))
    return i[order], j[order], np.ascontiguousarray(d[order])


def _frame_pairs(
    pos: np.ndarray,
    cell: np.ndarray,
    pbc: np.ndarray,
    cutoff: float,
    src: str,
    fid: int,
    *,
    strict: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All pairs i<j of one frame with ``r < cutoff``.

    Returns frame-local ``i, j``, displacements ``d = x_i - x_j`` (minimum image) and ``r``.
    Frames of up to ``_DIRECT_MAX_ATOMS`` atoms compare every pair, larger ones go through
    a k-d tree (:func:`_tree_pairs`).  With ``strict`` a periodic cutoff above half the
    smallest cell width is an error; otherwise such frames go through ASE's neighbour list
    (which then may return several images).
    """
    n = len(pos)
    periodic = bool(np.any(pbc))
    A = B = w = None
    use_ase = False
    if periodic:
        A, B, w = _periodic_basis(cell, pbc, src, fid)
        half = 0.5 * float(w.min())
        if cutoff > half:
            if strict:
                raise _error(
                    src,
                    f"cutoff {cutoff:g} Å exceeds half the smallest perpendicular cell width "
                    f"({half:.6g} Å = {float(w.min()):.6g}/2); use a cutoff <= {half:.6g} Å "
                    "or a larger cell",
                    fid,
                )
            use_ase = True
    if n > _DIRECT_MAX_ATOMS and not use_ase:
        i, j, d = _tree_pairs(pos, cutoff, (A, B, w) if periodic else None)
        r = np.sqrt(np.einsum("ij,ij->i", d, d))
        keep = r < cutoff
        return i[keep], j[keep], d[keep], r[keep]
    if use_ase:
        i, j, d = _ase_pairs(pos, cell, pbc, cutoff)
        r = np.sqrt(np.einsum("ij,ij->i", d, d))
        keep = r < cutoff
        return i[keep], j[keep], d[keep], r[keep]
    i, j = _triu(n)
    d = pos[i] - pos[j]
    if periodic:
        d -= np.rint(d @ B) @ A
    r = np.sqrt(np.einsum("ij,ij->i", d, d))
    keep = r < cutoff
    return i[keep], j[keep], d[keep], r[keep]


def _assign_molecules(
    method: str,
    pos: np.ndarray,
    numbers: np.ndarray,
    cell: np.ndarray,
    pbc: np.ndarray,
    src: str,
    fid: int,
) -> np.ndarray:
    """Molecule ids of one frame by covalent bonds or nearest heavy atom."""
    n = len(pos)
    numbers = np.asarray(numbers)
    if method == "bonds":
        from ase.data import covalent_radii
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        rc = covalent_radii[numbers] * BOND_SCALE
        i, j, _, r = _frame_pairs(pos, cell, pbc, 2.0 * float(rc.max()), src, fid, strict=False)
        bonded = r < rc[i] + rc[j]
        i, j = i[bonded], j[bonded]
        graph = coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n))
        _, labels = connected_components(graph, directed=False)
        return labels.astype(np.int64)

    is_h = numbers == 1
    target = (numbers == 8) if method == "nearest-o" else ~is_h
    label = "O" if method == "nearest-o" else "non-H"
    mol = np.full(n, -1, dtype=np.int64)
    roots = np.flatnonzero(~is_h)
    mol[roots] = np.arange(len(roots))
    h_idx = np.flatnonzero(is_h)
    t_idx = np.flatnonzero(target)
    if len(h_idx) == 0:
        return mol
    if len(t_idx) == 0:
        raise _error(src, f"molecules={method!r}: frame has H atoms but no {label} atom", fid)
    periodic = bool(np.any(pbc))
    if periodic:
        A, B, w = _periodic_basis(cell, pbc, src, fid)
        half = 0.5 * float(w.min())
    chunk = max(1, 1_000_000 // len(t_idx))
    for start in range(0, len(h_idx), chunk):
        hs = h_idx[start : start + chunk]
        d = pos[hs][:, None, :] - pos[t_idx][None, :, :]
        if periodic:
            d -= np.rint(d @ B) @ A
        r2 = np.einsum("hkc,hkc->hk", d, d)
        best = np.argmin(r2, axis=1)
        if periodic:
            # rint gives the true minimum image for distances below half the cell width;
            # rows whose nearest candidate is farther are redone with ASE's exact find_mic.
            far = np.flatnonzero(r2[np.arange(len(hs)), best] >= half * half)
            if far.size:
                from ase.geometry import find_mic

                for row in far:
                    dd = pos[hs[row]][None, :] - pos[t_idx]
                    _, dist = find_mic(dd, cell, pbc)
                    best[row] = int(np.argmin(dist))
        mol[hs] = mol[t_idx[best]]
    return mol

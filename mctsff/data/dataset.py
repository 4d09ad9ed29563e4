"""Reference data for force matching: frames, atoms, reference forces and pair lists.

A :class:`Dataset` holds every frame of a training set as flat, concatenated arrays
(atoms of all frames one after the other) together with the list of atom pairs inside the
cutoff radius, their distances ``r`` and unit vectors ``u``.  A pair potential ``U(r)`` then
gives the force on atom ``i`` as ``F_i = sum_j -U'(r_ij) u_ij`` with ``u_ij = (x_i - x_j)/r_ij``,
which is all the fitting code needs.  Its frames split deterministically into training,
validation and test (:func:`split_frames`, :func:`holdout_frames`).

Units follow ASE: positions in Å, energies in eV, forces in eV/Å.  Datasets are read by
:mod:`mctsff.data.readers` (:func:`~mctsff.data.readers.load_dataset`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mctsff.data.validation import _bad_kind, _error, _frame_selection

__all__ = ["Dataset", "holdout_frames", "split_frames"]


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


def _concat_ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + c)`` for each start ``s`` and count ``c``."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    before = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return (np.repeat(starts - before, counts) + np.arange(total)).astype(np.int64)

"""Reference data: datasets of frames and forces, and the shipped files.

Modules, imports flowing one way: :mod:`~mctsff.data.validation` (:class:`DataError`, the
checks and field look-ups on ``ase.Atoms`` frames) → :mod:`~mctsff.data.files` (the shipped
files and datasets by name: :func:`data_file`, :func:`dataset_path`, ``mctsff data list``) and
:mod:`~mctsff.data.geometry` (pairs within the cutoff, molecule ids) →
:mod:`~mctsff.data.units` (unit sanity warnings, :func:`unit_warnings`) →
:mod:`~mctsff.data.dataset` (:class:`Dataset`: distances, unit vectors, type pairs, the frame
of each pair, intermolecular pairs within the cutoff; its train/validation/test splits) →
:mod:`~mctsff.data.readers` (:func:`load_dataset` turns an extxyz file, or ASE atoms, into a
:class:`Dataset`).  :mod:`~mctsff.data.projection`: the grid projection of the
force-matching loss, for data too large for memory
(:class:`~mctsff.data.projection.ForceProjection`).

The shipped files (water dimers at MP2, bulk-water DFT frames, alanine-dipeptide solvent
forces, the Soper 2013 RDFs) live in this folder; ``SOURCES.md`` says where each comes from.
"""

from mctsff.data.dataset import Dataset, holdout_frames, split_frames
from mctsff.data.files import DATA_DIR, DATASETS, data_file, dataset_path, shipped_datasets
from mctsff.data.geometry import BOND_SCALE
from mctsff.data.readers import from_atoms, iter_chunks, load_dataset
from mctsff.data.units import UnitWarning, unit_warnings
from mctsff.data.validation import DataError

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

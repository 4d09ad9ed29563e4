"""Reference data: datasets of frames and forces, and the shipped files.

- :mod:`~mctsff.data.dataset`: :func:`load_dataset` turns an extxyz file (or ASE atoms) into
  the pairs a fit needs (:class:`Dataset`: distances, unit vectors, type pairs, the frame of
  each pair, intermolecular pairs within the cutoff), its train/validation/test splits, unit
  sanity warnings, and the shipped datasets by name (:func:`dataset_path`, ``mctsff data
  list``).
- :mod:`~mctsff.data.projection`: the grid projection of the force-matching loss, for data
  too large for memory (:class:`~mctsff.data.projection.ForceProjection`).

The shipped files (water dimers at MP2, bulk-water DFT frames, alanine-dipeptide solvent
forces, the Soper 2013 RDFs) live in this folder; ``SOURCES.md`` says where each comes from.
"""

from mctsff.data.dataset import (
    BOND_SCALE,
    DATA_DIR,
    DATASETS,
    DataError,
    Dataset,
    UnitWarning,
    data_file,
    dataset_path,
    from_atoms,
    holdout_frames,
    iter_chunks,
    load_dataset,
    shipped_datasets,
    split_frames,
    unit_warnings,
)

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

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

from mctsff.data.dataset import *  # noqa: F403  (the public names of dataset, one list)
from mctsff.data.dataset import __all__  # noqa: F401

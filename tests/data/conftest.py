"""Fixtures of the mctsff.data tests: the shipped water dimers and bulk water, as frames and
as datasets."""

from __future__ import annotations

import ase.io
import pytest
from ase import Atoms

from mctsff.data import Dataset, data_file, load_dataset

DIMERS = "water_dimers_mp2_sample20.extxyz"
BULK = "bulk_water_dft_80x192.extxyz"


@pytest.fixture(scope="module")
def dimer_images() -> list[Atoms]:
    return ase.io.read(data_file(DIMERS), ":")


@pytest.fixture(scope="module")
def bulk_images() -> list[Atoms]:
    return ase.io.read(data_file(BULK), ":")


@pytest.fixture(scope="module")
def dimers() -> Dataset:
    return load_dataset(data_file(DIMERS), 20.0)


@pytest.fixture(scope="module")
def bulk() -> Dataset:
    return load_dataset(data_file(BULK), 6.0)

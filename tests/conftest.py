"""Shared fixtures: the shipped water-dimer geometries."""

import pytest

from mctsff.data import data_file, load_dataset


@pytest.fixture(scope="session")
def dimers():
    """20 MP2 water dimers, intermolecular pairs within 9 Å."""
    return load_dataset(data_file("water_dimers_mp2_sample20.extxyz"), cutoff=9.0)

"""Shared fixtures: the shipped water-dimer geometries."""

import pytest

from mctsff.data import data_file, load_dataset
from mctsff.expr.params import Potential


@pytest.fixture(scope="session")
def dimers():
    """20 MP2 water dimers, intermolecular pairs within 9 Å."""
    return load_dataset(data_file("water_dimers_mp2_sample20.extxyz"), cutoff=9.0)


@pytest.fixture(scope="session")
def screened(dimers):
    """Synthetic screened-Coulomb forces on the dimers, split 0.2 (seed 0)."""
    truth = Potential(
        "prod_c1*exp(-r/c1)/r",
        {"prod_c1[O]": -3.2, "prod_c1[H]": 1.6, "c1": 2.5},
        dimers.species,
        dimers.type_pairs,
    )
    return truth.synthetic(dimers).split(0.2, seed=0)

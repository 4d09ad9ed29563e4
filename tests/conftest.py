"""Shared fixtures: the shipped water-dimer geometries; a memory limit for a block."""

import contextlib
import resource
from pathlib import Path

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


@pytest.fixture
def memory_limit():
    """``with memory_limit(extra):`` at most ``extra`` bytes more address space for this
    process while the block runs (a larger allocation raises MemoryError at once instead
    of exhausting the machine); Linux only (``/proc/self/status``), else a skip."""
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc/self/status (Linux)")

    @contextlib.contextmanager
    def limit(extra: int):
        with open("/proc/self/status") as fh:
            size = next(int(ln.split()[1]) * 1024 for ln in fh if ln.startswith("VmSize:"))
        old = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (size + extra, old[1]))
        try:
            yield
        finally:
            resource.setrlimit(resource.RLIMIT_AS, old)

    return limit

"""Chemist's flags on fitted potentials: charges, neutrality, dispersion sign, decay."""

import pytest

from mctsff.expr.params import Potential
from mctsff.fit import Fitter
from mctsff.fit.plausibility import molecule_compositions, plausibility_flags

WATER = [{"H": 2, "O": 1}]


def _flags(expr, params, cutoff=9.0, r_min=1.5):
    pot = Potential(expr, params, ("H", "O"))
    return plausibility_flags(pot, cutoff=cutoff, r_min=r_min, compositions=WATER)


def test_physical_water_charges_and_dispersion_pass():
    q = 3.79  # sqrt(14.4): prod_q values in sqrt(eV Å)
    flags = _flags(
        "prod_q/r + pair_A*exp(-r/b) - geom_c/r**6",
        {
            "prod_q[O]": -0.84 * q,
            "prod_q[H]": 0.42 * q,
            "pair_A[H-H]": 1.0,
            "pair_A[H-O]": 1.0,
            "pair_A[O-O]": 1.0,
            "b": 0.3,
            "geom_c[O]": 20.0,
            "geom_c[H]": 1.0,
        },
    )
    assert flags == []


@pytest.mark.parametrize(
    "params, fragment",
    [
        ({"prod_q[O]": 1.0, "prod_q[H]": 0.5}, "all have one sign"),
        ({"prod_q[O]": -1.0, "prod_q[H]": 0.2}, "H2O with net charge"),
    ],
)
def test_charges_of_a_coulomb_term(params, fragment):
    flags = _flags("14.4*prod_q/r", params)
    assert len(flags) == 1 and fragment in flags[0]


def test_repulsive_dispersion_is_flagged_per_pair():
    flags = _flags(
        "c1/r**12 - pair_c6/r**6",
        {"c1": 1e4, "pair_c6[H-H]": -1.0, "pair_c6[H-O]": 2.0, "pair_c6[O-O]": 3.0},
    )
    assert flags == ["dispersion term r**-6 is repulsive for H-H"]
    # written as LJ with a product inside, the r**-6 part is still read
    lj = _flags("4*c*((s/r)**12 - (s/r)**6)", {"c": -0.1, "s": 3.0})
    assert sum("dispersion" in f for f in lj) == 3


def test_a_potential_that_does_not_decay_is_flagged():
    flags = _flags("c*r*exp(-r/b)", {"c": 1.0, "b": 50.0})
    assert len(flags) == 3 and all("does not decay" in f for f in flags)
    assert _flags("c*exp(-r/b)", {"c": 1.0, "b": 0.5}) == []


def test_compositions_and_the_fit_report_them(dimers):
    assert molecule_compositions(dimers) == [{"H": 2, "O": 1}]
    res = Fitter(dimers, wall=None).fit("prod_q/r")
    assert any("charges prod_q" in f for f in res.flags)  # 1/r alone is far from neutral water


def test_a_power_of_a_sum_with_a_huge_exponent_is_read_without_expanding_it(memory_limit):
    """``(1 - exp(-c*r))**6999912`` (a Morse-like wall with a damaged exponent) expands
    into 7 million terms: it took 45 s and 5.6 GB before failing.  It is read as one
    term, and the flags of the other top-level terms stand."""
    import time

    t0 = time.perf_counter()
    with memory_limit(1 << 30):
        flags = _flags(
            "prod_q/r + c1*(1 - exp(-c2*r))**6999912/r**12 + geom_c/r**6",
            {
                "prod_q[O]": 1.0,
                "prod_q[H]": 0.5,
                "c1": 1.0,
                "c2": 2.0,
                "geom_c[O]": -2.0,
                "geom_c[H]": 1.0,
            },
        )
    assert time.perf_counter() - t0 < 5.0
    assert any("all have one sign" in f for f in flags)
    assert any("repulsive" in f or "dispersion" in f for f in flags), flags
    # a product of sums small enough is still expanded into its terms
    flags = _flags("(prod_q + c1*r**5)/r", {"prod_q[O]": 1.0, "prod_q[H]": 0.5, "c1": 1.0})
    assert any("all have one sign" in f for f in flags)

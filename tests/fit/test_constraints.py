"""The neutrality constraint (mctsff.fit.constraints.neutrality) and its checks."""

import dataclasses

import numpy as np
import pytest

from mctsff.data import data_file, load_dataset
from mctsff.expr.params import Parameterization
from mctsff.expr.program import Program
from mctsff.fit import FitConfigError, Fitter, neutrality
from mctsff.fit.constraints import constraint_values, potential_at
from mctsff.fit.plausibility import molecule_compositions

SPECIES = ("H", "O")
PAIRS = (("H", "H"), ("H", "O"), ("O", "O"))


@pytest.fixture(scope="module")
def dimers():
    return load_dataset(data_file("water_dimers_mp2_sample20.extxyz"), cutoff=9.0)


def _values(c, expr, theta_of):
    par = Parameterization(Program.from_string(expr), SPECIES, PAIRS)
    theta = np.array([theta_of.get(n, 0.7) for n in par.names])
    return par, constraint_values(c, potential_at(par, theta), par, theta)


def test_neutrality_is_linear_with_an_exact_jacobian_and_ignores_forms_without_it():
    c = neutrality("prod_q", [{"H": 2, "O": 1}, {"H": 4, "O": 2}, {"O": 1, "H": 2}])
    par, (val, jac) = _values(c, "prod_q/r + A*exp(-r/b)", {"prod_q[H]": 0.5, "prod_q[O]": -0.8})
    # one row per distinct composition: H2O (0.5*2 - 0.8) and H4O2 (0.5*4 - 1.6)
    assert c.kind == "eq" and c.name == "neutral:prod_q"
    np.testing.assert_allclose(val, [0.2, 0.4], atol=1e-15)
    h, o = par.names.index("prod_q[H]"), par.names.index("prod_q[O]")
    expected = np.zeros((2, par.n_params))
    expected[0, h], expected[0, o], expected[1, h], expected[1, o] = 2.0, 1.0, 4.0, 2.0
    np.testing.assert_array_equal(jac, expected)
    # an expression without prod_q is not constrained: zero values, zero Jacobian
    _, (val, jac) = _values(c, "prod_c1/r + A*exp(-r/b)", {})
    assert not val.any() and not jac.any()


def test_compositions_come_from_every_frame_and_count_single_atoms(dimers):
    c = neutrality("prod_q", dimers)
    assert [dict(row) for row in c.linear] == [{"prod_q[H]": 2.0, "prod_q[O]": 1.0}]
    mol = dimers.mol.copy()
    last = int(dimers.frame_offsets[-1]) - 1  # the last frame's last atom (an H) on its own
    assert dimers.species[dimers.atom_type[last]] == "H"
    mol[last] = mol.max() + 1
    ions = dataclasses.replace(dimers, mol=mol)
    water, oh, h = {"H": 2, "O": 1}, {"H": 1, "O": 1}, {"H": 1}
    assert molecule_compositions(ions, max_frames=None, singles=True) == [water, oh, h]
    assert molecule_compositions(ions) == [water]  # the flags read the first frames only
    # OH and a lone H besides H2O: only zero charges make all three neutral
    with pytest.raises(FitConfigError, match=r"molecules H2O, HO, H\)"):
        neutrality("prod_q", ions)


@pytest.mark.parametrize(
    "name, molecules, fragment",
    [
        ("pair_A", [{"H": 2, "O": 1}], "not a per-type constant of the product rule"),
        ("geom_c1", [{"H": 2, "O": 1}], "not a per-type constant of the product rule"),
        ("prod_q", [{"Ar": 1}], "no charges but zeros make every molecule neutral"),
        ("prod_q", [{"H": 2, "O": 1}, {"H": 1, "O": 1}], "molecules H2O, HO"),
        ("prod_q", [], "the data have no molecules"),
    ],
)
def test_neutrality_refuses_what_it_cannot_impose(name, molecules, fragment):
    with pytest.raises(FitConfigError, match=fragment):
        neutrality(name, molecules)


def test_neutrality_needs_molecule_ids(dimers):
    no_ids = dataclasses.replace(dimers, mol=None)
    with pytest.raises(FitConfigError, match="no molecule ids"):
        neutrality("prod_q", no_ids)


def test_a_fit_keeps_every_water_neutral(dimers):
    train, valid = dimers.split(0.2, seed=0)
    expr = "prod_q/r + A*exp(-r/b)"
    free = Fitter(train, valid, n_starts=1).fit(expr)
    res = Fitter(train, valid, n_starts=1, constraints=[neutrality("prod_q", dimers)]).fit(expr)
    q_h, q_o = res.params["prod_q[H]"], res.params["prod_q[O]"]
    assert res.valid and abs(q_h) > 0.1 and abs(q_o + 2 * q_h) <= 1e-7
    assert res.constraints["neutral:prod_q"] <= 1e-7
    assert abs(free.params["prod_q[O]"] + 2 * free.params["prod_q[H]"]) > 1e-3  # it did act

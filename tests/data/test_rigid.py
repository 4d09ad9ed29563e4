"""Rigid-body patterns of molecules (mctsff.data.rigid)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mctsff.data import data_file, load_dataset
from mctsff.data.rigid import rigid_basis


@pytest.fixture(scope="module")
def dimers():
    return load_dataset(data_file("water_dimers_mp2_sample20.extxyz"), 9.0)


def _internal_forces(ds, rng) -> np.ndarray:
    """Equal and opposite forces along every intramolecular pair (bonds, H-H): forces a
    molecule exerts on itself."""
    f = np.zeros((ds.n_atoms, 3))
    for frame in range(ds.n_frames):
        atoms = np.flatnonzero(ds.atom_frame == frame)
        for m in np.unique(ds.mol[atoms]):
            idx = atoms[ds.mol[atoms] == m]
            for a in range(len(idx)):
                for b in range(a + 1, len(idx)):
                    i, j = idx[a], idx[b]
                    u = ds.positions[j] - ds.positions[i]
                    s = rng.normal()
                    f[i] += s * u
                    f[j] -= s * u
    return f


def test_patterns_are_orthonormal_and_miss_internal_forces(dimers):
    rb = rigid_basis(dimers)
    assert rb.n_components == 3 * dimers.n_atoms
    assert rb.QT.shape == (6 * 2 * dimers.n_frames, 3 * dimers.n_atoms)  # 6 per water
    gram = (rb.QT @ rb.QT.T).toarray()
    np.testing.assert_allclose(gram, np.eye(gram.shape[0]), atol=1e-12)
    inner = _internal_forces(dimers, np.random.default_rng(0))
    assert np.abs(rb(inner.ravel())).max() < 1e-12 * np.abs(inner).max()
    # a net force on one molecule is kept whole: |Q.T d| = |d| for a translation
    d = np.zeros((dimers.n_atoms, 3))
    d[dimers.mol == 0] = [0.3, -0.1, 0.2]
    d[dimers.atom_frame != 0] = 0.0
    np.testing.assert_allclose(np.linalg.norm(rb(d.ravel())), np.linalg.norm(d))
    assert set(np.unique(rb.row_frame)) == set(range(dimers.n_frames))


def test_a_molecule_split_by_a_periodic_boundary_has_the_same_patterns():
    bulk = load_dataset(
        data_file("bulk_water_dft_80x192.extxyz"), 6.0, molecules="nearest-O", frames=[0]
    )
    rb = rigid_basis(bulk)
    cell = bulk.cells[0]
    moved = bulk.positions.copy()
    moved[0] += cell[0]  # one atom one box length away: the same molecule, split
    shifted = dataclasses.replace(bulk, positions=moved)
    q2 = rigid_basis(shifted).QT
    # the same projector (a basis of the same span)
    np.testing.assert_allclose((q2.T @ q2 - rb.QT.T @ rb.QT).toarray(), 0.0, atol=1e-9)


def test_without_molecule_ids_it_says_so():
    bulk = load_dataset(data_file("bulk_water_dft_80x192.extxyz"), 6.0, frames=[0])
    with pytest.raises(ValueError, match="molecule ids"):
        rigid_basis(bulk)

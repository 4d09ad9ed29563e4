"""Tests for mctsff.data: loading reference data and building pair lists (readers, dataset,
geometry, validation; the fixtures are in conftest.py)."""

from __future__ import annotations

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.neighborlist import neighbor_list

from mctsff.data import DataError, Dataset, data_file, from_atoms, load_dataset

DIMERS = data_file("water_dimers_mp2_sample20.extxyz")
BULK = data_file("bulk_water_dft_80x192.extxyz")


def _brute_pairs(pos, cell=None, pbc=(False, False, False), cutoff=np.inf, nimg=2):
    """Reference pair list by explicit loops over images: {(i, j): r} with i < j."""
    pbc = np.asarray(pbc, dtype=bool)
    ranges = [range(-nimg, nimg + 1) if p else range(1) for p in pbc]
    shifts = np.array([[a, b, c] for a in ranges[0] for b in ranges[1] for c in ranges[2]])
    out = {}
    n = len(pos)
    for i in range(n):
        for j in range(i + 1, n):
            d = pos[i] - pos[j]
            if cell is not None:
                cand = d[None, :] + shifts @ np.asarray(cell)
            else:
                cand = d[None, :]
            rr = np.linalg.norm(cand, axis=1)
            for k in np.flatnonzero(rr < cutoff):
                out.setdefault((i, j), []).append(rr[k])
    return out


def _pairs_of(ds: Dataset, frame: int) -> dict[tuple[int, int], float]:
    lo = ds.frame_offsets[frame]
    sel = ds.pair_frame == frame
    return {
        (int(i - lo), int(j - lo)): float(r)
        for i, j, r in zip(ds.pair_i[sel], ds.pair_j[sel], ds.r[sel], strict=True)
    }


# --------------------------------------------------------------------------------------------
# dimers
# --------------------------------------------------------------------------------------------


def test_dimer_basic_shapes(dimers: Dataset) -> None:
    ds = dimers
    assert ds.n_frames == 20
    assert ds.n_atoms == 120
    assert ds.species == ("H", "O")
    assert ds.type_pairs == (("H", "H"), ("H", "O"), ("O", "O"))
    assert ds.n_types == 2
    assert ds.intermolecular is True  # mol ids exist
    assert ds.cells is None and not ds.periodic
    assert ds.force_array == "inter_forces"
    np.testing.assert_array_equal(ds.frame_offsets, np.arange(21) * 6)
    np.testing.assert_array_equal(ds.frame_ids, np.arange(20))
    np.testing.assert_array_equal(ds.atom_frame, np.repeat(np.arange(20), 6))
    for name in ("atom_frame", "atom_type", "pair_i", "pair_j", "pair_type", "pair_frame"):
        assert getattr(ds, name).dtype == np.int64, name
    for name in ("positions", "forces", "r", "u"):
        assert getattr(ds, name).dtype == np.float64, name
    assert ds.u.shape == (ds.n_pairs, 3)
    # 3 x 3 intermolecular pairs per frame with a large cutoff
    np.testing.assert_array_equal(np.bincount(ds.pair_frame, minlength=20), np.full(20, 9))
    assert ds.n_pairs == 180
    np.testing.assert_array_equal(ds.pair_offsets, np.arange(21) * 9)
    assert np.all(ds.pair_i < ds.pair_j)
    assert np.all(ds.atom_frame[ds.pair_i] == ds.pair_frame)
    assert np.all(ds.atom_frame[ds.pair_j] == ds.pair_frame)
    assert np.all(ds.mol[ds.pair_i] != ds.mol[ds.pair_j])
    np.testing.assert_allclose(np.einsum("ij,ij->i", ds.u, ds.u), 1.0, rtol=0, atol=1e-12)
    assert ds.type_pair_index("H", "O") == ds.type_pair_index("O", "H") == 1
    with pytest.raises(DataError, match="C"):
        ds.type_pair_index("C", "O")


def test_dimer_matches_bruteforce_and_ase(dimers: Dataset, dimer_images: list[Atoms]) -> None:
    ds = dimers
    for f, atoms in enumerate(dimer_images):
        pos = atoms.positions
        mol = atoms.arrays["mol"]
        ref = {k: v[0] for k, v in _brute_pairs(pos).items() if mol[k[0]] != mol[k[1]]}
        got = _pairs_of(ds, f)
        assert got.keys() == ref.keys()
        for k, r in ref.items():
            assert got[k] == pytest.approx(r, abs=1e-12)
        lo = ds.frame_offsets[f]
        sel = ds.pair_frame == f
        d = pos[ds.pair_i[sel] - lo] - pos[ds.pair_j[sel] - lo]
        np.testing.assert_allclose(ds.u[sel] * ds.r[sel, None], d, atol=1e-12)
        syms = atoms.get_chemical_symbols()
        for i, j, t in zip(
            ds.pair_i[sel] - lo, ds.pair_j[sel] - lo, ds.pair_type[sel], strict=True
        ):
            assert ds.type_pairs[t] == tuple(sorted((syms[i], syms[j])))
        np.testing.assert_array_equal(ds.forces[lo : lo + 6], atoms.arrays["inter_forces"])
        np.testing.assert_array_equal(ds.positions[lo : lo + 6], pos)
        assert ds.energies[f] == atoms.info["E_inter"]
        np.testing.assert_array_equal(ds.mol[lo : lo + 6], mol)


def test_dimer_small_cutoff_and_total_forces(dimer_images: list[Atoms]) -> None:
    ds = load_dataset(DIMERS, 3.0, forces="forces", energy="energy")
    assert 0 < ds.n_pairs < 180
    assert ds.r.max() < 3.0
    assert ds.force_array == "forces"
    ref_f = np.concatenate([a.get_forces() for a in dimer_images])
    np.testing.assert_array_equal(ds.forces, ref_f)
    np.testing.assert_array_equal(ds.energies, [a.get_potential_energy() for a in dimer_images])
    # all pairs (intramolecular too) with intermolecular=False
    full = load_dataset(DIMERS, 20.0, intermolecular=False, energy=None)
    assert full.n_pairs == 20 * 15
    assert full.energies is None
    assert full.intermolecular is False
    assert full.mol is not None


def test_inter_forces_sum_to_zero(dimers: Dataset) -> None:
    sums = np.zeros((dimers.n_frames, 3))
    np.add.at(sums, dimers.atom_frame, dimers.forces)
    assert np.abs(sums).max() < 1e-3
    assert np.abs(dimers.forces).mean() > 1e-3  # not trivially zero


def test_frames_selection_and_from_atoms(dimer_images: list[Atoms]) -> None:
    ds = load_dataset(DIMERS, 20.0, frames=[5, 2, -1])
    np.testing.assert_array_equal(ds.frame_ids, [5, 2, 19])
    assert ds.energies[0] == dimer_images[5].info["E_inter"]
    ds2 = load_dataset(DIMERS, 20.0, frames=slice(0, 4))
    np.testing.assert_array_equal(ds2.frame_ids, np.arange(4))
    fa = from_atoms(dimer_images[:4], 20.0)
    assert fa.path is None
    np.testing.assert_array_equal(fa.r, ds2.r)
    np.testing.assert_array_equal(fa.forces, ds2.forces)
    one = from_atoms(dimer_images[0], 20.0)
    assert one.n_frames == 1 and one.n_pairs == 9


# --------------------------------------------------------------------------------------------
# periodic
# --------------------------------------------------------------------------------------------


def test_bulk_loads_every_frame() -> None:
    """(Its load time is a benchmark's business, not a test's: a shared machine's load
    failed a wall-clock bound here.)"""
    ds = load_dataset(BULK, 6.0)
    assert ds.n_frames == 80 and ds.n_atoms == 80 * 192


def test_bulk_matches_ase_neighbor_list(bulk: Dataset, bulk_images: list[Atoms]) -> None:
    ds = bulk
    assert ds.periodic and ds.cells.shape == (80, 3, 3)
    assert ds.mol is None and ds.intermolecular is False
    assert ds.force_array == "forces"
    assert ds.energies is not None and np.isfinite(ds.energies).all()
    for f in (0, 41, 79):
        atoms = bulk_images[f]
        i, j, d = neighbor_list("ijd", atoms, 6.0)
        keep = i < j
        ref = dict(zip(zip(i[keep].tolist(), j[keep].tolist(), strict=True), d[keep], strict=True))
        assert len(ref) == keep.sum()  # each pair has one image under the half-box rule
        got = _pairs_of(ds, f)
        assert got.keys() == ref.keys()
        keys = sorted(ref)
        np.testing.assert_allclose([got[k] for k in keys], [ref[k] for k in keys], atol=1e-10)
        np.testing.assert_array_equal(
            ds.forces[ds.frame_offsets[f] : ds.frame_offsets[f + 1]], atoms.get_forces()
        )
    np.testing.assert_allclose(np.einsum("ij,ij->i", ds.u, ds.u), 1.0, atol=1e-12)


def test_bulk_cutoff_above_half_box() -> None:
    with pytest.raises(DataError) as exc:
        load_dataset(BULK, 7.0)
    msg = str(exc.value)
    assert "bulk_water_dft_80x192.extxyz" in msg
    assert "frame 0" in msg
    assert "7" in msg and "6.22" in msg


def _random_frame(cell, pbc, n=40, seed=0):
    rng = np.random.default_rng(seed)
    cell = np.asarray(cell, dtype=float)
    frac = rng.random((n, 3))
    pos = frac @ cell + rng.normal(scale=0.5, size=(n, 3))  # some atoms outside the cell
    atoms = Atoms(f"H{n // 2}O{n - n // 2}", positions=pos, cell=cell, pbc=pbc)
    atoms.calc = SinglePointCalculator(atoms, forces=rng.normal(size=(n, 3)), energy=1.5)
    return atoms


@pytest.mark.parametrize(
    ("cell", "pbc", "cutoff"),
    [
        ([[8.0, 0, 0], [3.5, 7.0, 0], [-2.0, 2.5, 7.5]], (True, True, True), 3.1),
        ([[8.0, 0, 0], [3.5, 7.0, 0], [-2.0, 2.5, 7.5]], (True, False, True), 3.4),
        ([[6.0, 0, 0], [0, 0, 0], [0, 0, 0]], (True, False, False), 2.9),
    ],
)
def test_triclinic_and_mixed_pbc_match_ase(cell, pbc, cutoff) -> None:
    atoms = _random_frame(cell, pbc)
    ds = from_atoms([atoms], cutoff)
    i, j, d = neighbor_list("ijd", atoms, cutoff)
    keep = i < j
    ref = dict(zip(zip(i[keep].tolist(), j[keep].tolist(), strict=True), d[keep], strict=True))
    got = _pairs_of(ds, 0)
    assert got.keys() == ref.keys()
    keys = sorted(ref)
    np.testing.assert_allclose([got[k] for k in keys], [ref[k] for k in keys], atol=1e-10)
    # independent brute force over explicit images
    brute = _brute_pairs(atoms.positions, atoms.cell[:], pbc, cutoff)
    assert all(len(v) == 1 for v in brute.values())
    assert got.keys() == brute.keys()
    for k, v in brute.items():
        assert got[k] == pytest.approx(v[0], abs=1e-10)
    # u is the image displacement direction: x_i - x_j + integer combination of cell vectors
    d = ds.u * ds.r[:, None] - (ds.positions[ds.pair_i] - ds.positions[ds.pair_j])
    per = np.asarray(pbc)
    n_shift = d @ np.linalg.pinv(np.asarray(cell, dtype=float)[per])
    np.testing.assert_allclose(n_shift, np.rint(n_shift), atol=1e-9)
    assert ds.pbc.shape == (1, 3) and ds.pbc[0].tolist() == list(pbc)


@pytest.mark.parametrize(
    ("cell", "pbc", "cutoff"),
    [
        ([[20.0, 0, 0], [8.75, 17.5, 0], [-5.0, 6.25, 18.75]], (True, True, True), 3.1),
        ([[20.0, 0, 0], [8.75, 17.5, 0], [-5.0, 6.25, 18.75]], (True, False, True), 3.4),
    ],
    ids=["triclinic", "mixed"],
)
def test_frames_above_the_direct_size_match_ase(cell, pbc, cutoff) -> None:
    """Frames of more than 2000 atoms go through the k-d tree: the pairs of ASE."""
    atoms = _random_frame(cell, pbc, n=2100)
    ds = from_atoms([atoms], cutoff)
    i, j, d = neighbor_list("ijd", atoms, cutoff)
    keep = i < j
    order = np.lexsort((j[keep], i[keep]))
    assert keep.sum() > 10_000
    np.testing.assert_array_equal(ds.pair_i, i[keep][order])
    np.testing.assert_array_equal(ds.pair_j, j[keep][order])
    np.testing.assert_allclose(ds.r, d[keep][order], atol=1e-10)


@pytest.mark.parametrize(
    ("far", "cell", "pbc"),
    [
        ([1e6, 0, 0], None, False),  # one atom far away: a bin grid spans it
        ([0, 0, 0], np.eye(3) * 1e4, True),  # a sparse 10 µm periodic box
        ([0, 0, 0], np.eye(3) * 1e4, (True, False, False)),
    ],
    ids=["far-atom", "sparse-box", "sparse-slab"],
)
def test_a_large_frame_with_atoms_far_apart_loads_in_little_memory(
    far, cell, pbc, memory_limit
) -> None:
    """2100 atoms in a 25 Å cluster (across the periodic boundary) and one far atom (ASE's
    bin grid asked for about 10 GiB here): the brute-force minimum-image pairs."""
    rng = np.random.default_rng(1)
    pos = np.vstack([rng.uniform(-12.5, 12.5, (2100, 3)), far])
    atoms = Atoms("H1050O1051", positions=pos, cell=cell, pbc=pbc)
    atoms.calc = SinglePointCalculator(atoms, forces=rng.normal(size=(2101, 3)))
    with memory_limit(1 << 30):
        ds = from_atoms([atoms], 4.0)
    i, j = np.triu_indices(len(pos), 1)
    d = pos[i] - pos[j]
    if cell is not None:
        per = np.asarray(atoms.pbc)
        d[:, per] -= np.rint(d[:, per] / 1e4) * 1e4
    r = np.linalg.norm(d, axis=1)
    near = r < 4.0
    np.testing.assert_array_equal(ds.pair_i, i[near])
    np.testing.assert_array_equal(ds.pair_j, j[near])
    np.testing.assert_allclose(ds.r, r[near], atol=1e-10)


def test_triclinic_cutoff_rule_uses_perpendicular_width() -> None:
    # all cell vectors are >= 7.2 Å long, but the planes spanned by a and c are 4 Å apart
    cell = [[8.0, 0, 0], [6.0, 4.0, 0], [0, 0, 9.0]]
    atoms = _random_frame(cell, True)
    with pytest.raises(DataError, match=r"frame 0: cutoff 3 .*\(2 Å = 4/2\)"):
        from_atoms([atoms], 3.0)
    assert from_atoms([atoms], 1.99).n_pairs > 0


@pytest.mark.parametrize("method", ["nearest-O", "bonds", "nearest-heavy"])
def test_bulk_molecules(method: str) -> None:
    ds = load_dataset(BULK, 6.0, molecules=method)
    assert ds.intermolecular is True
    o_type = ds.species.index("O")
    for f in range(ds.n_frames):
        lo, hi = ds.frame_offsets[f], ds.frame_offsets[f + 1]
        mol = ds.mol[lo:hi]
        types = ds.atom_type[lo:hi]
        ids, counts = np.unique(mol, return_counts=True)
        assert len(ids) == 64
        assert np.all(counts == 3)
        for m in ids:
            assert np.sum(types[mol == m] == o_type) == 1
    assert ds.r.min() > 1.2  # no intramolecular O-H or H-H pair left
    full = load_dataset(BULK, 6.0)
    assert full.r.min() < 1.2
    assert full.n_pairs - ds.n_pairs == ds.n_frames * 64 * 3


def test_bulk_nearest_and_bonds_agree() -> None:
    a = load_dataset(BULK, 5.0, molecules="nearest-O", energy=None)
    b = load_dataset(BULK, 5.0, molecules="bonds", energy=None)
    np.testing.assert_array_equal(a.mol, b.mol)
    np.testing.assert_array_equal(a.pair_i, b.pair_i)


# --------------------------------------------------------------------------------------------
# subset / split / with_forces / summary
# --------------------------------------------------------------------------------------------


def test_split_deterministic_disjoint(dimers: Dataset) -> None:
    tr, va = dimers.split(0.2, seed=3)
    tr2, va2 = dimers.split(0.2, seed=3)
    np.testing.assert_array_equal(tr.frame_ids, tr2.frame_ids)
    np.testing.assert_array_equal(va.frame_ids, va2.frame_ids)
    assert va.n_frames == 4 and tr.n_frames == 16
    assert set(tr.frame_ids) & set(va.frame_ids) == set()
    assert sorted(set(tr.frame_ids) | set(va.frame_ids)) == list(range(20))
    _, va3 = dimers.split(0.2, seed=4)
    assert set(va3.frame_ids) != set(va.frame_ids)
    assert dimers.split(0.0) == (dimers, None)
    assert dimers.split(0.01)[1].n_frames == 1  # at least one frame
    small = dimers.subset([0, 1])
    tr_s, va_s = small.split(0.9)
    assert tr_s.n_frames == 1 and va_s.n_frames == 1
    with pytest.raises(DataError):
        dimers.split(1.0)


def test_subset_reindexes(bulk: Dataset) -> None:
    sub = bulk.subset([7, 3])
    np.testing.assert_array_equal(sub.frame_ids, [7, 3])
    assert sub.n_atoms == 2 * 192
    np.testing.assert_array_equal(sub.frame_offsets, [0, 192, 384])
    assert sub.pair_i.min() >= 0 and sub.pair_j.max() < sub.n_atoms
    assert np.all(sub.atom_frame[sub.pair_i] == sub.pair_frame)
    assert np.all(sub.atom_frame[sub.pair_j] == sub.pair_frame)
    assert np.all(np.diff(sub.pair_frame) >= 0)
    for new, old in ((0, 7), (1, 3)):
        a = slice(bulk.frame_offsets[old], bulk.frame_offsets[old + 1])
        b = slice(sub.frame_offsets[new], sub.frame_offsets[new + 1])
        np.testing.assert_array_equal(sub.positions[b], bulk.positions[a])
        np.testing.assert_array_equal(sub.forces[b], bulk.forces[a])
        assert _pairs_of(sub, new) == _pairs_of(bulk, old)
        np.testing.assert_array_equal(sub.cells[new], bulk.cells[old])
        assert sub.energies[new] == bulk.energies[old]
    # displacement consistency after re-indexing
    d = sub.positions[sub.pair_i] - sub.positions[sub.pair_j] - sub.u * sub.r[:, None]
    frac = np.einsum("pc,pcd->pd", d, np.linalg.inv(sub.cells[sub.pair_frame]))
    np.testing.assert_allclose(frac, np.rint(frac), atol=1e-9)
    assert sub.species == bulk.species
    with pytest.raises(DataError, match="out of range"):
        bulk.subset([80])
    with pytest.raises(DataError):
        bulk.subset([])


def test_with_forces_and_summary(dimers: Dataset) -> None:
    new = np.ones((dimers.n_atoms, 3))
    ds = dimers.with_forces(new, energies=np.arange(20.0))
    assert ds.force_array == "synthetic"
    np.testing.assert_array_equal(ds.forces, new)
    np.testing.assert_array_equal(ds.energies, np.arange(20.0))
    assert ds.r is dimers.r
    assert dimers.forces[0, 0] != 1.0 or dimers.forces[0, 1] != 1.0  # original untouched
    assert dimers.with_forces(new).energies is None
    with pytest.raises(DataError, match="water_dimers_mp2_sample20.extxyz"):
        dimers.with_forces(np.ones((dimers.n_atoms, 2)))
    with pytest.raises(DataError, match="energies"):
        dimers.with_forces(new, energies=np.zeros(3))
    bad = new.copy()
    bad[13] = np.nan  # atom 13 lies in frame 2
    with pytest.raises(DataError, match="frame 2: array 'forces' contains NaN"):
        dimers.with_forces(bad)
    s = dimers.summary()
    assert s["n_frames"] == 20 and s["n_atoms"] == 120 and s["n_pairs"] == 180
    assert s["pairs_per_type"] == {"H-H": 80, "H-O": 80, "O-O": 20}
    assert s["species"] == ["H", "O"]
    assert s["periodic"] is False and s["force_array"] == "inter_forces"
    assert 1.4 <= s["r_min"] < s["r_max"] < 20.0
    assert "n_pairs=180" in repr(dimers)


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------


def test_missing_file(tmp_path) -> None:
    with pytest.raises(DataError, match="nope.extxyz"):
        load_dataset(tmp_path / "nope.extxyz", 5.0)


def test_empty_and_garbage_file(tmp_path) -> None:
    empty = tmp_path / "empty.extxyz"
    empty.write_text("")
    with pytest.raises(DataError, match="empty.extxyz"):
        load_dataset(empty, 5.0)
    garbage = tmp_path / "garbage.extxyz"
    garbage.write_text("3\nnot a header\nX 1 2\n")
    with pytest.raises(DataError, match="garbage.extxyz"):
        load_dataset(garbage, 5.0)


def test_nan_in_forces(tmp_path, dimer_images: list[Atoms]) -> None:
    images = [a.copy() for a in dimer_images[:4]]
    for a, src in zip(images, dimer_images[:4], strict=True):
        a.calc = SinglePointCalculator(a, forces=src.get_forces(), energy=0.0)
    images[3].arrays["inter_forces"][2, 1] = np.nan
    path = tmp_path / "nanforce.extxyz"
    ase.io.write(path, images)
    with pytest.raises(DataError) as exc:
        load_dataset(path, 10.0)
    msg = str(exc.value)
    assert "nanforce.extxyz" in msg and "frame 3" in msg and "inter_forces" in msg
    assert "NaN" in msg
    # the total forces of the same file are fine
    assert load_dataset(path, 10.0, forces="forces").n_frames == 4


def test_unknown_array_and_energy() -> None:
    with pytest.raises(DataError) as exc:
        load_dataset(DIMERS, 5.0, forces="nonexistent")
    msg = str(exc.value)
    assert "water_dimers_mp2_sample20.extxyz" in msg and "frame 0" in msg
    assert "nonexistent" in msg and "inter_forces" in msg  # lists what is available
    with pytest.raises(DataError, match="frame 0.*no_such_key"):
        load_dataset(DIMERS, 5.0, energy="no_such_key")
    with pytest.raises(DataError, match="resid"):
        load_dataset(DIMERS, 5.0, molecules="resid")


def test_missing_array_in_later_frame(dimer_images: list[Atoms]) -> None:
    images = [a.copy() for a in dimer_images[:3]]
    del images[2].arrays["inter_forces"]
    with pytest.raises(DataError, match="frame 2.*inter_forces"):
        from_atoms(images, 5.0, path="made_up.extxyz")


def test_wrong_shapes(dimer_images: list[Atoms]) -> None:
    a = dimer_images[0].copy()
    a.new_array("f2", np.zeros((6, 2)))
    with pytest.raises(DataError, match=r"<atoms>: frame 0: array 'f2' has shape \(6, 2\)"):
        from_atoms([a], 5.0, forces="f2")
    b = dimer_images[1].copy()
    b.calc = SinglePointCalculator(b, forces=np.zeros((5, 3)))
    with pytest.raises(DataError, match=r"x.xyz: frame 1: array 'forces' has shape \(5, 3\)"):
        from_atoms([dimer_images[0], b], 5.0, forces="forces", energy=None, path="x.xyz")


def test_bad_cutoff() -> None:
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(DataError, match="water_dimers_mp2_sample20.extxyz.*cutoff"):
            load_dataset(DIMERS, bad)


def test_intermolecular_without_mol() -> None:
    with pytest.raises(DataError) as exc:
        load_dataset(BULK, 5.0, intermolecular=True)
    msg = str(exc.value)
    assert "bulk_water_dft_80x192.extxyz" in msg and "frame 0" in msg and "mol" in msg


def test_coinciding_atoms() -> None:
    atoms = Atoms("H3", positions=[[0, 0, 0], [1, 0, 0], [1, 0, 0]])
    atoms.calc = SinglePointCalculator(atoms, forces=np.zeros((3, 3)))
    with pytest.raises(DataError, match="frame 0: atoms 1 and 2 coincide"):
        from_atoms([atoms], 3.0, path="dup.xyz")
    # periodic image coincidence
    per = Atoms("H2", positions=[[0, 0, 0], [5, 0, 0]], cell=[5, 5, 5], pbc=True)
    per.calc = SinglePointCalculator(per, forces=np.zeros((2, 3)))
    with pytest.raises(DataError, match="atoms 0 and 1 coincide"):
        from_atoms([per], 2.0)


def test_split_holdout_gives_disjoint_train_valid_test_frames(dimers):
    train, valid, test = dimers.split_holdout(0.2, 0.2, seed=0)
    ids = [set(part.frame_ids.tolist()) for part in (train, valid, test)]
    assert [len(s) for s in ids] == [12, 4, 4]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert ids[0] | ids[1] | ids[2] == set(range(dimers.n_frames))
    # the same seed, the same split; another seed, other test frames
    again = dimers.split_holdout(0.2, 0.2, seed=0)[2]
    assert again.frame_ids.tolist() == test.frame_ids.tolist()
    assert dimers.split_holdout(0.2, 0.2, seed=1)[2].frame_ids.tolist() != test.frame_ids.tolist()
    # no test frames: exactly the two-way split
    _, v2 = dimers.split(0.2, seed=3)
    tr3, v3, t3 = dimers.split_holdout(0.2, 0.0, seed=3)
    assert t3 is None and v3.frame_ids.tolist() == v2.frame_ids.tolist()
    with pytest.raises(DataError, match="valid_fraction \\+ test_fraction"):
        dimers.split_holdout(0.5, 0.5)
    with pytest.raises(DataError, match="test_fraction"):
        dimers.split_holdout(0.2, -0.1)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (bytes(range(256)) * 8, ["not UTF-8 text", "byte 0x"]),
        ("1\nPROPERTIES=species:S:1:pos:R:3 é\nO 0 0 0\n".encode("latin-1"), ["byte 0xe9"]),
    ],
    ids=["binary", "latin-1"],
)
def test_a_data_file_that_is_not_text_is_one_error_naming_it(tmp_path, data, words) -> None:
    path = tmp_path / "bad.extxyz"
    path.write_bytes(data)
    with pytest.raises(DataError) as exc:
        load_dataset(path, 5.0)
    message = str(exc.value)
    assert "\n" not in message and message.startswith(str(path))
    for w in words:
        assert w in message

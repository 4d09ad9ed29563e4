"""Water-dimer reference data: sampling, QM backends (tblite, PySCF), writer, resume."""

import io

import ase.io
import numpy as np
import pytest

from mctsff.data import load_dataset
from mctsff.water.qm import (
    DimerSampling,
    QMError,
    compute_dimer,
    done_indices,
    generate_water_dimers,
    sample_water_dimer,
)


def test_sampling_follows_the_published_distributions():
    s = DimerSampling()
    r_oo, r_oh, ang = [], [], []
    for k in range(300):
        at = sample_water_dimer(k, seed=3)
        assert at.get_chemical_symbols() == ["O", "H", "H", "O", "H", "H"]
        assert list(at.arrays["mol"]) == [0, 0, 0, 1, 1, 1]
        d = at.get_all_distances()
        assert d[:3, 3:].min() >= s.min_distance
        assert at.info["min_inter_dist"] == pytest.approx(d[:3, 3:].min())
        assert at.info["R_OO"] == pytest.approx(d[0, 3])
        r_oo.append(d[0, 3])
        for o, h1, h2 in ((0, 1, 2), (3, 4, 5)):
            r_oh += [d[o, h1], d[o, h2]]
            ang.append(at.get_angle(h1, o, h2))
    r_oo, r_oh, ang = map(np.asarray, (r_oo, r_oh, ang))
    assert r_oh.min() >= 0.9572 - 0.05 and r_oh.max() <= 0.9572 + 0.05
    assert ang.min() >= 104.52 - 5 - 1e-9 and ang.max() <= 104.52 + 5 + 1e-9
    assert r_oo.min() >= 2.4 and r_oo.max() <= 8.0
    near = np.mean((r_oo >= 2.6) & (r_oo <= 4.0))
    assert 0.7 < near < 0.9  # 70 % drawn near + part of the 30 % far draws land there too
    # deterministic per (seed, index)
    np.testing.assert_array_equal(
        sample_water_dimer(7, seed=3).positions, sample_water_dimer(7, seed=3).positions
    )
    assert not np.allclose(sample_water_dimer(7, seed=4).positions, r_oo[7])


def test_unknown_method():
    with pytest.raises(QMError, match="unknown method"):
        compute_dimer(sample_water_dimer(0), method="ccsd")


@pytest.fixture(scope="module")
def xtb_file(tmp_path_factory):
    pytest.importorskip("tblite", reason="GFN2-xTB tests need tblite (pip install tblite)")
    path = tmp_path_factory.mktemp("qm") / "dimers.extxyz"
    info = generate_water_dimers(path, 4, method="xtb", seed=1, progress=False)
    assert info["n_computed"] == 4
    return path


def test_writer_round_trips_through_ase_and_load_dataset(xtb_file):
    frames = ase.io.read(xtb_file, ":")
    assert [f.info["idx"] for f in frames] == [0, 1, 2, 3]
    for f in frames:
        assert f.info["method"] == "xtb"
        for key in ("E_inter", "E_monoA", "E_monoB", "R_OO", "min_inter_dist"):
            assert np.isfinite(f.info[key])
        e_dimer = f.get_potential_energy()
        assert f.info["E_inter"] == pytest.approx(
            e_dimer - f.info["E_monoA"] - f.info["E_monoB"], abs=1e-9
        )
        assert f.arrays["inter_forces"].shape == (6, 3)
        # geometry is the sampled one
        np.testing.assert_allclose(
            f.positions, sample_water_dimer(f.info["idx"], 1).positions, atol=1e-7
        )
    ds = load_dataset(xtb_file, 9.0)
    assert ds.force_array == "inter_forces" and ds.intermolecular
    assert ds.n_frames == 4 and ds.n_pairs == 4 * 9
    np.testing.assert_allclose(
        ds.forces, np.concatenate([f.arrays["inter_forces"] for f in frames])
    )
    np.testing.assert_allclose(ds.energies, [f.info["E_inter"] for f in frames])
    total = load_dataset(xtb_file, 9.0, forces="forces")
    assert not np.allclose(total.forces, ds.forces)  # intramolecular forces are removed


def test_intermolecular_forces_obey_newtons_third_law(xtb_file):
    for f in ase.io.read(xtb_file, ":"):
        fi = f.arrays["inter_forces"]
        a, b = fi[:3].sum(0), fi[3:].sum(0)
        np.testing.assert_allclose(a, -b, atol=1e-6)
        assert np.abs(fi).max() > 1e-4  # and they are not trivially zero


def test_resume_skips_done_and_repairs_a_cut_frame(xtb_file, tmp_path):
    path = tmp_path / "d.extxyz"
    path.write_text(xtb_file.read_text())
    log = io.StringIO()
    info = generate_water_dimers(path, 6, method="xtb", seed=1, progress=log)
    assert info["n_skipped"] == 4 and info["n_computed"] == 2
    assert "4 of 6 dimers already done" in log.getvalue()
    assert done_indices(path) == set(range(6))
    # an interrupted write leaves half a frame: it is cut off and recomputed
    text = path.read_text()
    path.write_text(text + text.split("\n", 5)[0] + "\n" + text.split("\n", 5)[1][:40])
    info = generate_water_dimers(path, 7, method="xtb", seed=1, progress=log)
    assert info["n_computed"] == 1
    frames = ase.io.read(path, ":")
    assert sorted(f.info["idx"] for f in frames) == list(range(7))
    # appending another method is refused
    with pytest.raises(QMError, match="refusing"):
        generate_water_dimers(path, 8, method="hf", basis="sto-3g", progress=False)


def test_parallel_workers_match_serial(xtb_file, tmp_path):
    path = tmp_path / "p.extxyz"
    generate_water_dimers(path, 4, method="xtb", seed=1, workers=2, progress=False)
    ser = {f.info["idx"]: f for f in ase.io.read(xtb_file, ":")}
    par = ase.io.read(path, ":")
    assert sorted(f.info["idx"] for f in par) == [0, 1, 2, 3]
    for f in par:
        g = ser[f.info["idx"]]
        np.testing.assert_allclose(f.arrays["inter_forces"], g.arrays["inter_forces"], atol=1e-8)


def test_pyscf_mp2_forces_are_minus_gradient():
    pytest.importorskip("pyscf", reason="MP2 tests need PySCF (pip install pyscf)")
    at = sample_water_dimer(0, seed=2)
    res = compute_dimer(at, method="mp2", basis="sto-3g")
    assert res.info["scf_converged"] and res.info["frozen_core"]
    fi = res.arrays["inter_forces"]
    np.testing.assert_allclose(fi[:3].sum(0), -fi[3:].sum(0), atol=1e-5)
    # one finite-difference component of the dimer energy (eV, Å)
    h = 1e-3
    e = []
    for s in (h, -h):
        b = at.copy()
        b.positions[3, 0] += s
        e.append(compute_dimer(b, method="mp2", basis="sto-3g").get_potential_energy())
    assert res.get_forces()[3, 0] == pytest.approx(-(e[0] - e[1]) / (2 * h), abs=2e-4)


def test_cli_water_dimers(tmp_path, capsys):
    pytest.importorskip("tblite", reason="GFN2-xTB tests need tblite (pip install tblite)")
    from mctsff.cli import main

    out = tmp_path / "cli.extxyz"
    argv = ["data", "water-dimers", "-n", "2", "--method", "xtb", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    assert "2 dimers computed, 0 already there" in capsys.readouterr().out
    assert main(argv[:3] + ["3"] + argv[4:]) == 0
    assert "1 dimers computed, 2 already there" in capsys.readouterr().out
    assert main(argv[:5] + ["hf"] + argv[6:]) == 2
    assert "refusing" in capsys.readouterr().err

"""md-check: liquid-water MD of a potential (short runs on OpenMM's CPU platform).

The short protocol (64 waters, 5.5 Å cutoff, 0.5 ps in all) runs in seconds; it cannot give
converged structure, but it separates a physical liquid from a collapsing one.
"""

import json
import math

import numpy as np
import pytest

pytest.importorskip("openmm", reason="md-check needs OpenMM (pip install openmm)")

from mctsff import mdcheck as mc  # noqa: E402
from mctsff.cli import main  # noqa: E402
from mctsff.models import model_potential  # noqa: E402
from mctsff.params import Potential  # noqa: E402

CUTOFF = 5.5  # 64 waters: box 12.4 Å >= 2.2 cutoffs
SHORT = mc.WaterProtocol(
    n_molecules=64,
    equilibration_ps=0.1,
    npt_ps=0.2,
    nvt_ps=0.1,
    nve_ps=0.1,
    sample_fs=25.0,
    threads=1,
)


def test_qspcfw_liquid_is_stable_at_a_physical_density():
    res = mc.run_water("q-spcfw", SHORT, cutoff=CUTOFF)
    assert res["stable"], res["failure"]
    assert res["n_molecules"] == 64
    assert 0.8 < res["density"] < 1.2
    assert res["liquid"]
    assert res["min_distance"] > 1.2  # hydrogen bonds, no overlaps
    assert 0.85 < res["min_bond"] and res["max_bond"] < 1.2
    assert abs(res["nve_drift_kT_ps_per_molecule"]) < SHORT.max_drift
    peak = res["peaks"]["O-O"]
    assert 2.6 < peak["r"] < 3.0 and peak["g"] > 2.0


def test_published_potential_through_the_exporter_matches_pme_structure():
    """q-SPC/Fw's intermolecular form as a mctsff Potential (CustomNonbondedForce, shifted
    force) also gives a stable liquid: the exporter path runs in MD."""
    base = model_potential("q-spcfw")
    pot = Potential(
        base.program,
        base.params,
        base.species,
        base.type_pairs,
        cutoff=CUTOFF,
        scheme="shifted-force",
    )
    res = mc.run_water(pot, SHORT, cutoff=CUTOFF)
    assert res["stable"], res["failure"]
    assert 0.8 < res["density"] < 1.2


def test_attractive_potential_without_wall_is_unstable():
    broken = Potential("-C/r**6", {"C": 50.0}, ("H", "O"), cutoff=CUTOFF, scheme="shifted-force")
    res = mc.run_water(broken, SHORT, cutoff=CUTOFF)
    assert not res["stable"]
    assert not res["liquid"]
    assert "nve" not in res["segments_done"]
    assert any(w in res["failure"] for w in ("apart", "bond", "non-finite", "OpenMM", "box"))


def test_rdf_distance_and_peaks_on_the_experimental_reference():
    r, g = mc.experimental_rdf()
    assert mc.first_peak(r, g["O-O"], "O-O") == {"r": 2.79, "g": 2.4953}
    same = mc.rdf_distance(r, g["O-O"], r, g["O-O"])
    assert same["rms"] == 0.0 and same["iae"] == 0.0
    shifted = mc.rdf_distance(r, np.interp(r - 0.1, r, g["O-O"]), r, g["O-O"])
    assert shifted["rms"] > 0.1 and shifted["iae"] > 0.1
    assert mc.rdf_distance(r + 20.0, g["O-O"], r, g["O-O"])["rms"] is None


def test_dft_rdf_and_forces():
    r, g = mc.dft_rdf()
    assert r[-1] < 6.3  # half the 12.445 Å box
    assert 2.6 < mc.first_peak(r, g["O-O"], "O-O")["r"] < 3.0
    out = mc.dft_force_rmse([("intra", None), ("q", "q-spcfw")], cutoff=CUTOFF, frames=2)
    assert out["supercell"] == 1 and out["frames"] == 2
    # the q-SPC/Fw bonds and angles explain part of the DFT forces (eV/Å)
    assert out["rmse"]["intra"] < out["force_rms_dft"]
    assert math.isfinite(out["rmse"]["q"]) and out["rmse"]["q"] < 2 * out["force_rms_dft"]


def write_run(tmp_path, expr, params):
    point = {"expression": expr, "complexity": 7, "params": params, "rmse_valid": 0.05}
    (tmp_path / "pareto.json").write_text(json.dumps([point]))
    run = {"species": ["H", "O"], "type_pairs": [["H", "H"], ["H", "O"], ["O", "O"]]}
    run.update(cutoff=CUTOFF, variables=["r"], cutoff_scheme="shifted-force", wall=0.5)
    (tmp_path / "run.json").write_text(json.dumps(run))
    return tmp_path


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["md-check", "water", str(tmp_path / "missing")]) == 2
    assert "no such run folder" in capsys.readouterr().err
    run = write_run(tmp_path, "A/r**12", {"A": 1.0})
    assert main(["md-check", "water", str(run), "--index", "3"]) == 2
    assert "out of range" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_water_check_writes_report_and_plot(tmp_path, capsys):
    base = model_potential("q-spcfw")
    run = write_run(tmp_path, str(base.program.expression), dict(base.params))
    args = ["md-check", "water", str(run), "--index", "0", "--molecules", "64"]
    args += ["--equilibration", "0.1", "--npt", "0.1", "--nvt", "0.1", "--nve", "0.05"]
    args += ["--threads", "1", "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "q-SPC/Fw" in out and "wrote" in out
    report = json.loads((run / "md-check" / "water.json").read_text())
    assert set(report["models"]) == {"member 0", "q-SPC/Fw"}
    assert report["member"]["cutoff_scheme"] == "shifted-force"
    assert report["models"]["member 0"]["stable"]
    dist = report["models"]["q-SPC/Fw"]["distance"]
    assert set(dist["experiment"]) == {"O-O", "O-H", "H-H"} and "O-O" in dist["dft"]
    assert set(report["dft_forces"]["rmse"]) == {"intramolecular only", "member 0", "q-SPC/Fw"}
    assert (run / "md-check" / "rdf.png").stat().st_size > 10_000

"""Alanine dipeptide's backbone angles: phi/psi of frames, their histograms and Jensen–Shannon
divergences, phi/psi TSV files, and the explicit-solvent reference series
(:func:`explicit_reference`)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mctsff.water.mdcheck.base import MDCheckError, _one_line

#: Shipped explicit-solvent trajectory (the fit data) and solute.
SOLVENT_FILE = "ala2_solvent_forces.extxyz"
SOLUTE_PDB = "alanine_dipeptide.pdb"
#: Shipped longer explicit-solvent phi/psi series: the solvent check's reference when present
#: (how it was made: ``mctsff/data/SOURCES.md``).
LONG_REFERENCE_FILE = "ala2_solvent_phipsi_long.tsv"
#: Column names of a phi/psi TSV (:func:`read_angles_tsv`).
ANGLES_TSV_COLUMNS = ("time_ps", "phi_deg", "psi_deg")


def _dihedral(x: np.ndarray, idx: Sequence[int]) -> np.ndarray:
    """Dihedral angles (degrees) of atoms ``idx`` over frames ``x`` (n_frames, n_atoms, 3)."""
    p0, p1, p2, p3 = (x[:, i] for i in idx)
    b0, b1, b2 = p0 - p1, p2 - p1, p3 - p2
    b1n = b1 / np.linalg.norm(b1, axis=1, keepdims=True)
    v = b0 - np.sum(b0 * b1n, axis=1, keepdims=True) * b1n
    w = b2 - np.sum(b2 * b1n, axis=1, keepdims=True) * b1n
    xx = np.sum(v * w, axis=1)
    yy = np.sum(np.cross(b1n, v) * w, axis=1)
    return np.degrees(np.arctan2(yy, xx))


def _backbone(topology) -> tuple[list[int], list[int]]:
    """Atom indices of phi (C−N−CA−C) and psi (N−CA−C−N) of the middle residue."""
    res = list(topology.residues())
    if len(res) != 3:
        raise MDCheckError(f"{SOLUTE_PDB}: expected 3 residues (ACE-ALA-NME), got {len(res)}")
    names = [{a.name: a.index for a in r.atoms()} for r in res]
    try:
        phi = [names[0]["C"], names[1]["N"], names[1]["CA"], names[1]["C"]]
        psi = [names[1]["N"], names[1]["CA"], names[1]["C"], names[2]["N"]]
    except KeyError as exc:
        raise MDCheckError(f"{SOLUTE_PDB}: backbone atom {exc} missing") from None
    return phi, psi


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen–Shannon divergence (bits, 0…1) of two histograms (normalised here)."""
    p = np.asarray(p, float).ravel()
    q = np.asarray(q, float).ravel()
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> float:
        s = a > 0
        return float(np.sum(a[s] * np.log2(a[s] / m[s])))

    return 0.5 * kl(p) + 0.5 * kl(q)


def _angle_histograms(phi: np.ndarray, psi: np.ndarray, bins: int) -> dict[str, np.ndarray]:
    edges = np.linspace(-180.0, 180.0, bins + 1)
    edges2 = np.linspace(-180.0, 180.0, bins // 2 + 1)
    return {
        "phi": np.histogram(phi, edges)[0].astype(float),
        "psi": np.histogram(psi, edges)[0].astype(float),
        "phi-psi": np.histogram2d(phi, psi, [edges2, edges2])[0],
    }


def halves_js_divergence(phi: np.ndarray, psi: np.ndarray, bins: int) -> dict[str, float]:
    """Jensen–Shannon divergences (bits; :func:`js_divergence`) of the phi, psi and phi/psi
    histograms of the first half of a series of angles against its second half (the middle
    sample goes to the second half), rounded to 4 digits: how far the histograms are from
    converged.  Empty with fewer than two samples."""
    phi, psi = np.asarray(phi, float), np.asarray(psi, float)
    h = len(phi) // 2
    if h == 0:
        return {}
    a = _angle_histograms(phi[:h], psi[:h], bins)
    b = _angle_histograms(phi[h:], psi[h:], bins)
    return {k: round(js_divergence(a[k], b[k]), 4) for k in a}


def reference_angles() -> tuple[np.ndarray, np.ndarray]:
    """phi, psi (degrees) of the shipped explicit-solvent trajectory the fits use (300 frames,
    1 ps apart)."""
    from mctsff.data import data_file

    _, phi, psi = trajectory_angles(data_file(SOLVENT_FILE))
    return phi, psi


def trajectory_angles(
    path: str | os.PathLike[str],
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Times (ps; ``None`` unless every frame has ``time_ps``), phi and psi (degrees) of the
    frames of an extxyz of the shipped alanine dipeptide in its PDB atom order, such as
    ``mctsff data solvent-forces`` writes.

    Raises
    ------
    MDCheckError
        For an unreadable file, no frames, or frames whose atoms are not the shipped solute's.
    """
    import ase.io
    from openmm import app

    from mctsff.data import data_file

    topology = app.PDBFile(str(data_file(SOLUTE_PDB))).topology
    symbols = [a.element.symbol for a in topology.atoms()]
    phi_idx, psi_idx = _backbone(topology)
    try:
        frames = ase.io.read(os.fspath(path), ":", format="extxyz")
    except Exception as exc:
        raise MDCheckError(f"{path}: cannot read as extxyz ({_one_line(exc)})") from None
    if not frames:
        raise MDCheckError(f"{path}: no frames")
    for k, atoms in enumerate(frames):
        if atoms.get_chemical_symbols() != symbols:
            raise MDCheckError(
                f"{path}: frame {k}: the atoms are not {SOLUTE_PDB}'s {len(symbols)} atoms in "
                "its order (an extxyz of mctsff data solvent-forces with the default --pdb)"
            )
    xs = np.array([a.positions for a in frames])
    times = [a.info.get("time_ps") for a in frames]
    t = None
    if all(isinstance(x, int | float) for x in times):
        t = np.array(times, dtype=float)
    return t, _dihedral(xs, phi_idx), _dihedral(xs, psi_idx)


def write_angles_tsv(
    path: str | os.PathLike[str],
    time_ps: np.ndarray,
    phi: np.ndarray,
    psi: np.ndarray,
    comments: Sequence[str] = (),
) -> None:
    """Write a phi/psi series as a TSV that :func:`read_angles_tsv` reads: ``#`` comment lines,
    the header :data:`ANGLES_TSV_COLUMNS`, then one row per sample (ps to 3 decimals, degrees to
    2)."""
    lines = [f"# {c}" for c in comments]
    lines.append("\t".join(ANGLES_TSV_COLUMNS))
    lines += [f"{t:.3f}\t{a:.2f}\t{b:.2f}" for t, a, b in zip(time_ps, phi, psi, strict=True)]
    Path(path).write_text("\n".join(lines) + "\n")


def read_angles_tsv(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Times (ps), phi and psi (degrees) of a TSV written by :func:`write_angles_tsv`.

    Raises
    ------
    MDCheckError
        Naming the file and line: no header :data:`ANGLES_TSV_COLUMNS`, a row without three
        numbers, an angle outside [-180, 180], times that do not increase, or fewer than two
        rows.
    """
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise MDCheckError(f"{path}: cannot read ({_one_line(exc)})") from None
    rows: list[tuple[float, float, float]] = []
    header = False
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        cols = line.split()
        if not header:
            if tuple(cols) != ANGLES_TSV_COLUMNS:
                raise MDCheckError(
                    f"{path}: line {n}: expected the header {' '.join(ANGLES_TSV_COLUMNS)}"
                )
            header = True
            continue
        try:
            t, a, b = (float(c) for c in cols)
        except ValueError:
            raise MDCheckError(f"{path}: line {n}: expected three numbers") from None
        if not (math.isfinite(t) and -180.0 <= a <= 180.0 and -180.0 <= b <= 180.0):
            raise MDCheckError(f"{path}: line {n}: angles must lie in [-180, 180] degrees")
        if rows and t <= rows[-1][0]:
            raise MDCheckError(f"{path}: line {n}: time_ps must increase")
        rows.append((t, a, b))
    if len(rows) < 2:
        raise MDCheckError(f"{path}: fewer than two rows of angles")
    arr = np.array(rows)
    return arr[:, 0], arr[:, 1], arr[:, 2]


def explicit_reference(reference: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The explicit-solvent phi/psi series the solvent check compares with.

    Parameters
    ----------
    reference
        ``None`` or ``"auto"``: the shipped :data:`LONG_REFERENCE_FILE` when it is there, else
        the fit trajectory :data:`SOLVENT_FILE`; ``"fit-data"``: :data:`SOLVENT_FILE`; any other
        value: a file, read by :func:`read_angles_tsv` when it ends in ``.tsv`` and by
        :func:`trajectory_angles` otherwise.

    Returns
    -------
    dict
        ``kind`` (``long``, ``fit-data`` or ``file``), ``file``, ``samples``, ``length_ps`` and
        ``sample_ps`` (``None`` without times; the length counts one sample spacing per
        sample), ``phi`` and ``psi`` (arrays, degrees).
    """
    from mctsff.data import data_file
    from mctsff.data.files import DATA_DIR

    kind = "file"
    if reference is None or str(reference) == "auto":
        long = DATA_DIR / LONG_REFERENCE_FILE
        kind = "long" if long.is_file() else "fit-data"
        path = long if kind == "long" else data_file(SOLVENT_FILE)
    elif str(reference) == "fit-data":
        kind, path = "fit-data", data_file(SOLVENT_FILE)
    else:
        path = Path(reference)
        if not path.is_file():
            raise MDCheckError(f"--reference {reference}: no such file")
    if path.suffix == ".tsv":
        t, phi, psi = read_angles_tsv(path)
    else:
        t, phi, psi = trajectory_angles(path)
    dt = float(np.median(np.diff(t))) if t is not None and len(t) > 1 else None
    return {
        "kind": kind,
        "file": path.name if kind != "file" else str(path),
        "samples": len(phi),
        "length_ps": None if dt is None else round(float(t[-1] - t[0]) + dt, 3),
        "sample_ps": None if dt is None else round(dt, 6),
        "phi": phi,
        "psi": psi,
    }

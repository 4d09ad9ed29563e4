"""Radial distribution functions: the accumulator over periodic frames, first peaks, the
distance between two RDFs, and the references (experiment: Soper 2013; the shipped bulk-water
DFT frames)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: Pair types of the RDFs (O–H and H–H intermolecular).
RDF_PAIRS: tuple[str, ...] = ("O-O", "O-H", "H-H")
#: Where the first peak of each RDF is looked for (Å).
PEAK_WINDOWS: dict[str, tuple[float, float]] = {
    "O-O": (2.3, 3.3),
    "O-H": (1.4, 2.5),
    "H-H": (1.9, 3.0),
}
#: Experimental partial RDFs shipped with mctsff (Soper 2013).
EXPERIMENT_FILE = "water_rdf_soper2013.tsv"
EXPERIMENT_REFERENCE = (
    "A. K. Soper, ISRN Physical Chemistry 2013, 279463 (doi:10.1155/2013/279463), 298 K"
)
#: Shipped bulk-water DFT frames.
DFT_FILE = "bulk_water_dft_80x192.extxyz"


class _RDF:
    """Accumulates O–O and intermolecular O–H / H–H RDFs of orthorhombic periodic frames."""

    def __init__(self, species: Sequence[str], mol: np.ndarray, r_max: float, dr: float) -> None:
        self.is_o = np.array([s == "O" for s in species])
        self.mol = np.asarray(mol)
        self.edges = np.arange(0.0, r_max + 0.5 * dr, dr)
        self.hist = {p: np.zeros(len(self.edges) - 1) for p in RDF_PAIRS}
        self.frames = 0
        n_o = int(self.is_o.sum())
        n_h = len(self.is_o) - n_o
        same_oh = same_hh = 0
        for m in np.unique(self.mol):
            sel = self.mol == m
            o, h = int((sel & self.is_o).sum()), int((sel & ~self.is_o).sum())
            same_oh += o * h
            same_hh += h * (h - 1) // 2
        self.n_pairs = {
            "O-O": n_o * (n_o - 1) / 2,
            "O-H": n_o * n_h - same_oh,
            "H-H": n_h * (n_h - 1) / 2 - same_hh,
        }

    def add(self, pos: np.ndarray, box: np.ndarray) -> float:
        """Add a frame (Å); return the closest intermolecular distance within ``r_max``."""
        from scipy.spatial import cKDTree

        wrapped = np.mod(pos, box)
        wrapped[wrapped >= box] = 0.0  # mod may round up to the edge
        tree = cKDTree(wrapped, boxsize=box)
        r_max = float(self.edges[-1])
        pairs = tree.query_pairs(r_max, output_type="ndarray")
        i, j = pairs[:, 0], pairs[:, 1]
        d = wrapped[i] - wrapped[j]
        d -= box * np.rint(d / box)
        r = np.sqrt(np.einsum("ij,ij->i", d, d))
        inter = self.mol[i] != self.mol[j]
        vol = float(np.prod(box))
        shell = 4.0 / 3.0 * math.pi * (self.edges[1:] ** 3 - self.edges[:-1] ** 3)
        oi, oj = self.is_o[i], self.is_o[j]
        kinds = {"O-O": oi & oj, "O-H": oi != oj, "H-H": ~oi & ~oj}
        for p, sel in kinds.items():
            h, _ = np.histogram(r[sel & inter], bins=self.edges)
            self.hist[p] += h / (self.n_pairs[p] * shell / vol)
        self.frames += 1
        return float(r[inter].min()) if inter.any() else math.inf

    def result(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Bin centres (Å) and g(r) per pair type."""
        r = 0.5 * (self.edges[1:] + self.edges[:-1])
        return r, {p: h / max(self.frames, 1) for p, h in self.hist.items()}


def first_peak(r: np.ndarray, g: np.ndarray, pair: str) -> dict[str, float | None]:
    """Position (Å) and height of the highest bin of ``g`` in :data:`PEAK_WINDOWS` ``[pair]``."""
    lo, hi = PEAK_WINDOWS[pair]
    sel = (r >= lo) & (r <= hi) & np.isfinite(g)
    if not sel.any():
        return {"r": None, "g": None}
    k = int(np.argmax(np.where(sel, g, -np.inf)))
    return {"r": round(float(r[k]), 4), "g": round(float(g[k]), 4)}


def rdf_distance(
    r: np.ndarray, g: np.ndarray, r_ref: np.ndarray, g_ref: np.ndarray
) -> dict[str, float | None]:
    """Distance of an RDF to a reference on their common r range.

    The reference is interpolated linearly onto ``r`` (bins inside both ranges).

    Returns
    -------
    dict
        ``rms`` (root-mean-square difference), ``iae`` (∫|g − g_ref| dr, Å) and the range
        ``r_min``, ``r_max`` used; ``None`` values when the ranges do not overlap.
    """
    lo, hi = max(float(r_ref[0]), float(r[0])), min(float(r_ref[-1]), float(r[-1]))
    sel = (r >= lo) & (r <= hi)
    if sel.sum() < 2:
        return {"rms": None, "iae": None, "r_min": None, "r_max": None}
    diff = g[sel] - np.interp(r[sel], r_ref, g_ref)
    iae = float(np.sum(np.abs(diff)) * (r[1] - r[0]))
    return {
        "rms": round(float(np.sqrt(np.mean(diff * diff))), 5),
        "iae": round(iae, 5),
        "r_min": round(float(r[sel][0]), 4),
        "r_max": round(float(r[sel][-1]), 4),
    }


def experimental_rdf() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Soper 2013's partial RDFs of water at 298 K (r in Å; O–H, H–H intermolecular)."""
    from mctsff.data import data_file

    a = np.loadtxt(data_file(EXPERIMENT_FILE))
    return a[:, 0], {"O-O": a[:, 1], "O-H": a[:, 3], "H-H": a[:, 5]}


def _nearest_o_molecules(pos: np.ndarray, is_o: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Molecule id per atom: each O its own, each H its nearest O (minimum image)."""
    o_idx = np.flatnonzero(is_o)
    mol = np.empty(len(pos), dtype=np.int64)
    mol[o_idx] = np.arange(len(o_idx))
    h_idx = np.flatnonzero(~is_o)
    d = pos[h_idx][:, None, :] - pos[o_idx][None, :, :]
    d -= box * np.rint(d / box)
    mol[h_idx] = np.argmin(np.einsum("hkc,hkc->hk", d, d), axis=1)
    return mol


def _dft_frames() -> list:
    import ase.io

    from mctsff.data import data_file

    return ase.io.read(data_file(DFT_FILE), ":")


def dft_rdf(dr: float = 0.02) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """RDFs of the shipped bulk-water DFT frames (up to half the box edge, 6.2 Å).

    Molecules: each H joins its nearest O.  Only ``"O-O"`` is used as a reference by
    :func:`water_check` (the task's DFT reference); O–H and H–H are returned too.
    """
    frames = _dft_frames()
    box = np.diag(frames[0].cell.array).copy()
    species = frames[0].get_chemical_symbols()
    is_o = np.array([s == "O" for s in species])
    mol = _nearest_o_molecules(frames[0].positions, is_o, box)
    acc = _RDF(species, mol, 0.5 * float(box.min()) - 1e-6, dr)
    for atoms in frames:
        acc.add(atoms.positions, np.diag(atoms.cell.array).copy())
    return acc.result()

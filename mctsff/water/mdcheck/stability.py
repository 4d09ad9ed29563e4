"""The limits a water run is judged by (bonds, NVE samples, liquid density, settled density)
and the small measurements behind the verdicts: the NPT density's drift, the closest
intermolecular approach, block standard errors."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

#: Fewest NVE samples from which the energy drift is judged (a slope through fewer has no
#: useful standard error; the drift is then reported but not judged).
MIN_DRIFT_SAMPLES: int = 8
#: Physical density range (g/cm³) of a liquid at 298 K and 1 bar for this check.
LIQUID_DENSITY: tuple[float, float] = (0.5, 1.5)
#: Largest change (g/cm³) of the NPT density across the second half of the segment (the
#: straight line through it, less twice its standard error) for the density to count as
#: settled, and the run as a liquid.
DENSITY_SETTLE: float = 0.03
#: Bounds of an intact O–H bond (Å).
BOND_RANGE: tuple[float, float] = (0.7, 1.5)


def _density_drift(rows: Sequence[dict], dens: np.ndarray) -> dict[str, Any]:
    """Slope (g/cm³ per ps) of the NPT density over the samples it is averaged on, its
    standard error, and whether the density has settled (:data:`DENSITY_SETTLE`; ``None``,
    not judged, with fewer than :data:`MIN_DRIFT_SAMPLES` samples)."""
    t = np.array([r["t_ps"] for r in rows])
    if len(t) < MIN_DRIFT_SAMPLES:
        return {"density_drift": None, "density_drift_stderr": None, "density_settled": None}
    from scipy.stats import linregress

    line = linregress(t, dens)
    change = (abs(float(line.slope)) - 2.0 * float(line.stderr)) * float(t[-1] - t[0])
    return {
        "density_drift": round(float(line.slope), 5),
        "density_drift_stderr": round(float(line.stderr), 5),
        "density_settled": bool(change <= DENSITY_SETTLE),
    }


def _min_intermolecular(x: np.ndarray, box: np.ndarray, mol: np.ndarray, r_max: float) -> float:
    """Closest distance (Å) between atoms of different molecules (``inf`` beyond ``r_max``)."""
    from scipy.spatial import cKDTree

    wrapped = np.mod(x, box)
    wrapped[wrapped >= box] = 0.0
    pairs = cKDTree(wrapped, boxsize=box).query_pairs(r_max, output_type="ndarray")
    if len(pairs) == 0:
        return math.inf
    i, j = pairs[:, 0], pairs[:, 1]
    inter = mol[i] != mol[j]
    if not inter.any():
        return math.inf
    d = wrapped[i[inter]] - wrapped[j[inter]]
    d -= box * np.rint(d / box)
    return float(np.sqrt(np.einsum("ij,ij->i", d, d)).min())


def _block_stderr(x: np.ndarray, blocks: int = 5) -> float:
    """Standard error of the mean from ``blocks`` consecutive blocks."""
    if len(x) < 2 * blocks:
        return float(np.std(x) / math.sqrt(max(len(x) - 1, 1)))
    means = np.array([b.mean() for b in np.array_split(x, blocks)])
    return float(means.std(ddof=1) / math.sqrt(blocks))

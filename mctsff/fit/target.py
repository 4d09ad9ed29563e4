"""The arrays of one dataset that the force-matching residual needs (:class:`Target`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mctsff.data.projection import ForceProjection
from mctsff.data.rigid import RigidBasis, rigid_basis
from mctsff.expr import kernels
from mctsff.expr.params import (
    shift_maps,
    shifted_sums,
)
from mctsff.expr.program import Program


@dataclass
class Target:
    """Arrays of one dataset the residual needs (flat, contiguous)."""

    r: np.ndarray
    u: np.ndarray
    pair_i: np.ndarray
    pair_j: np.ndarray
    pair_type: np.ndarray
    pair_frame: np.ndarray
    forces: np.ndarray  # (n_atoms*3,)
    n_atoms: int
    n_frames: int
    energies: np.ndarray | None
    cutoff: float
    #: with ``match="rigid"``: the molecules' rigid-body patterns; force errors are compared
    #: by their rigid-body coordinates (:mod:`mctsff.data.rigid`)
    rigid: RigidBasis | None = None

    @classmethod
    def from_dataset(cls, ds, match: str = "atoms") -> Target:
        """The target of ``ds``; ``match="rigid"`` compares the molecules' net forces and
        torques (:func:`~mctsff.data.rigid.rigid_basis`, which needs molecule ids)."""
        return cls(
            r=np.ascontiguousarray(ds.r, dtype=np.float64),
            u=np.ascontiguousarray(ds.u, dtype=np.float64),
            pair_i=np.ascontiguousarray(ds.pair_i, dtype=np.int64),
            pair_j=np.ascontiguousarray(ds.pair_j, dtype=np.int64),
            pair_type=np.ascontiguousarray(ds.pair_type, dtype=np.int64),
            pair_frame=np.ascontiguousarray(ds.pair_frame, dtype=np.int64),
            forces=np.ascontiguousarray(ds.forces, dtype=np.float64).ravel(),
            n_atoms=int(ds.n_atoms),
            n_frames=int(ds.n_frames),
            energies=None if ds.energies is None else np.asarray(ds.energies, dtype=np.float64),
            cutoff=float(ds.cutoff),
            rigid=rigid_basis(ds) if match == "rigid" else None,
        )

    def compared(self, d: np.ndarray) -> np.ndarray:
        """What a fit compares of force errors ``d`` (flat per component, or a Jacobian's
        rows): ``d`` itself, or its rigid-body coordinates with ``match="rigid"``."""
        return d if self.rigid is None else self.rigid(d)

    def rmse_of(self, d: np.ndarray) -> float:
        """RMSE per force component of the force errors ``d`` as compared (with
        ``match="rigid"``: of their rigid-body projection)."""
        if self.rigid is None:
            return rms(d)
        with np.errstate(all="ignore"):
            c = self.rigid(d)
            val = math.sqrt(float(c @ c) / max(self.rigid.n_components, 1))
        return val if math.isfinite(val) else math.inf

    def shift_maps(self, n_type_pairs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:func:`~mctsff.expr.params.shift_maps` of this target (built once)."""
        maps = getattr(self, "_maps", None)
        if maps is None or maps[0].shape[1] != n_type_pairs:
            maps = shift_maps(self, n_type_pairs)
            self._maps = maps
        return maps

    def shifted(self, shift, F, J=None, E=None, EJ=None):
        """Forces, Jacobian, energies and their Jacobian of the shifted potential.

        ``shift`` is ``(a, b, da, db, rc)`` (:func:`~mctsff.fit.constraints.scheme_shift`)
        or ``None`` (unchanged).
        """
        if shift is None:
            return F, J, E, EJ
        a, b, da, db, _ = shift
        maps = self.shift_maps(a.size)
        F, E2 = shifted_sums(maps, a, b, F, E)
        if J is not None:
            J, EJ = shifted_sums(maps, da, db, J, EJ if E is not None and E.size else None)
        return F, J, E2, EJ

    def predict(self, prog: Program, consts: np.ndarray, energies: bool = False):
        f, e = kernels.pair_forces(
            prog.code,
            prog.literals,
            self.r,
            consts,
            self.pair_type,
            self.pair_i,
            self.pair_j,
            self.u,
            self.pair_frame,
            self.n_atoms,
            self.n_frames if energies else 0,
            prog.max_stack,
        )
        return f.ravel(), e

    def predict_jac(self, prog: Program, consts: np.ndarray, T: np.ndarray, energies: bool):
        f, J, e, eJ = kernels.pair_jacobian(
            prog.code,
            prog.literals,
            self.r,
            consts,
            T,
            self.pair_type,
            self.pair_i,
            self.pair_j,
            self.u,
            self.pair_frame,
            self.n_atoms,
            self.n_frames if energies else 0,
            prog.max_stack,
        )
        return f.ravel(), J, e, eJ


def rms(d: np.ndarray) -> float:
    """Root mean square of force errors; ``inf`` when not finite."""
    with np.errstate(all="ignore"):
        val = float(np.sqrt(np.mean(d * d)))
    return val if math.isfinite(val) else math.inf


def as_target(data, match: str = "atoms"):
    """Validation data as an exact target, a projection, or None."""
    if data is None or isinstance(data, ForceProjection):
        return data
    return Target.from_dataset(data, match) if data.n_pairs else None


def potfit_weights(forces: np.ndarray, eps: float = 0.1) -> np.ndarray:
    """potfit-style per-component weights u = 1/(|F⁰| + ε)², normalised to mean 1."""
    w = 1.0 / (np.abs(forces) + eps) ** 2
    return w / w.mean()

"""Constraints on a fitted potential, and the shift of the cutoff scheme.

Built-in constraints are evaluated at points per type pair with analytic Jacobians
(:func:`point_values`): ``force0`` (U'(rc) = 0), ``energy0`` (U(rc) = 0), the repulsive
wall (U' ≤ −F from the wall radius to a fraction of each pair's shortest distance, U' ≤ 0
from there to that distance)
and a repulsive core; linear equalities on named parameters (neutral molecules,
:func:`neutrality`) have exact Jacobians too;
a user's :class:`Constraint` takes a function of a :class:`~mctsff.expr.params.Potential`,
differentiated by central differences (:func:`constraint_values`).
:func:`scheme_shift` gives the cutoff scheme's shift of every type pair's potential.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mctsff.expr import kernels, ops
from mctsff.expr.params import (
    SHIFTED_SCHEMES,
    Parameterization,
    Potential,
    cutoff_shift,
)
from mctsff.expr.program import Program
from mctsff.fit.plausibility import formula, molecule_compositions


class FitConfigError(ValueError):
    """Invalid fitting option (the message names the option)."""


#: Default largest acceptable constraint residual (``FitOptions.constraint_tol``).
CONSTRAINT_TOL = 1e-8
#: A constraint counts as met up to this multiple of the tolerance: the level at which a fit
#: flags it, ranks its solutions as feasible, and a front member's wall fails.
MET = 10.0


@dataclass
class Constraint:
    """A constraint on the fitted potential.

    Parameters
    ----------
    name
        Label used in reports.
    kind
        ``"eq"`` for c(θ) = 0 or ``"ineq"`` for g(θ) ≤ 0.
    fun
        ``fun(potential) -> float | array`` evaluated on a :class:`~mctsff.expr.params.Potential`
        (parameters in ``potential.params``; ``potential.energy(r, pair)``,
        ``potential.derivative(r, pair)``).  Its Jacobian is taken by central
        finite differences.  Built-in constraints use analytic Jacobians instead.

    Examples
    --------
    Pin the O–O minimum of a water potential at 2.9 Å:

    >>> c = Constraint("min_OO", "eq", lambda pot: pot.derivative(2.9, ("O", "O")))
    """

    name: str
    kind: str = "eq"
    fun: Callable | None = None
    # built-in analytic constraints: U(r)=0 or U'(r) (=0 / <=0) at points per type pair
    r_points: np.ndarray | None = None
    derivative: bool = False
    # points of each type pair (in the parameterization's pair order), instead of r_points
    pair_points: tuple[np.ndarray, ...] | None = None
    # a constant added to the value at each point (aligned with r_points; repeated for every
    # type pair like them): the wall's U' + F ≤ 0 at its innermost points
    offset: np.ndarray | None = None
    # a linear constraint on named parameters: one row per value, each {parameter: weight};
    # value = Σ weight·θ[parameter] (parameters the expression lacks count as absent)
    linear: tuple[Mapping[str, float], ...] | None = None

    def __post_init__(self):
        if self.kind not in ("eq", "ineq"):
            raise FitConfigError(f"constraint {self.name!r}: kind must be 'eq' or 'ineq'")
        if (
            self.fun is None
            and self.r_points is None
            and self.pair_points is None
            and self.linear is None
        ):
            raise FitConfigError(f"constraint {self.name!r}: needs fun, r_points or linear")
        if self.pair_points is not None and self.r_points is None:
            self.r_points = np.concatenate([np.asarray(p, float) for p in self.pair_points])
        if self.offset is not None:
            self.offset = np.asarray(self.offset, dtype=np.float64).ravel()
            if self.r_points is None or self.offset.shape != np.shape(self.r_points):
                raise FitConfigError(f"constraint {self.name!r}: one offset per point")

    def points(self, n_pairs: int) -> tuple[np.ndarray, np.ndarray]:
        """A built-in constraint's distances and type-pair indices, every point for every pair.

        Parameters
        ----------
        n_pairs
            Number of type pairs of the parameterization.

        Returns
        -------
        r, group
            ``r_points`` repeated for each type pair, and the pair index of each entry,
            as :meth:`mctsff.expr.program.Program.evaluate` takes them.

        Examples
        --------
        >>> r, g = force_zero_at(9.0).points(2)
        >>> r.tolist(), g.tolist()
        ([9.0, 9.0], [0, 1])
        """
        if self.r_points is None:
            raise FitConfigError(f"constraint {self.name!r}: a function constraint has no points")
        if self.pair_points is not None:
            if len(self.pair_points) != n_pairs:
                raise FitConfigError(
                    f"constraint {self.name!r}: points for {len(self.pair_points)} type pairs, "
                    f"the data have {n_pairs}"
                )
            pts = [np.asarray(p, dtype=np.float64) for p in self.pair_points]
            r = np.concatenate(pts) if pts else np.zeros(0)
            group = np.repeat(np.arange(n_pairs, dtype=np.int64), [p.size for p in pts])
            return r, group
        r_points = np.asarray(self.r_points, dtype=np.float64)
        r = np.tile(r_points, n_pairs)
        group = np.repeat(np.arange(n_pairs, dtype=np.int64), len(r_points))
        return r, group


def repulsive_wall(
    r_wall: float,
    r_shortest: Sequence[float],
    force: float,
    reach: float,
    n: int = 12,
    extra: Sequence[Sequence[float]] | None = None,
) -> Constraint:
    """A strictly repulsive wall: U' ≤ −``force`` from ``r_wall`` up to ``reach`` times each
    type pair's shortest distance in the data, and U' ≤ 0 from there to that distance.

    The potential of every type pair then rises monotonically as two atoms come closer
    than anything the data show, and between ``reach``·r_shortest and ``r_wall`` it pushes
    them apart with at least ``force`` (eV/Å): a barrier of at least
    ``force`` × (``reach``·r_shortest − ``r_wall``) (eV) where U' ≤ −``force`` holds between
    the points (a force that grows monotonically towards ``r_wall``, as every repulsion
    does).  A bound at ``r_wall`` alone is met by a steep term of negligible height
    (c/r⁸ with U(0.5 Å) = 0.06 eV), and U' ≤ 0 alone by a flat potential (a Coulomb term
    whose charges the fit set to zero).  ``n`` points per type pair, spaced geometrically
    from ``r_wall`` to r_shortest, plus ``reach``·r_shortest (the strict points are those at
    or below it, ``r_wall`` always); none for a pair whose shortest distance is at or below
    ``r_wall`` or unknown (not finite).  The constraint's value at each point is U' + offset
    (the offset is ``force`` at the strict points, 0 elsewhere), ≤ 0 where it holds.
    ``extra`` adds points per type pair (those within ``[r_wall, r_shortest]`` count): where
    a dense check found a fit breaking the wall between the ``n`` points.

    Examples
    --------
    >>> c = repulsive_wall(0.5, [1.6, 0.4], force=1.0, reach=0.5, n=4)
    >>> r, g = c.points(2)
    >>> [round(float(x), 3) for x in c.pair_points[0]], sorted(set(g.tolist()))
    ([0.5, 0.737, 0.8, 1.086, 1.6], [0])
    >>> c.offset.tolist()
    [1.0, 1.0, 1.0, 0.0, 0.0]
    """
    if not (math.isfinite(force) and force >= 0):
        raise FitConfigError(f"wall force must be a finite number >= 0 in eV/Å, not {force!r}")
    if not (math.isfinite(reach) and 0 <= reach <= 1):
        raise FitConfigError(f"wall reach must be a fraction in [0, 1], not {reach!r}")
    pts, offsets = [], []
    for k, rs in enumerate(map(float, r_shortest)):
        if not (math.isfinite(rs) and rs > r_wall):
            pts.append(np.zeros(0))
            continue
        edge = max(r_wall, reach * rs)
        p = np.unique(np.append(np.geomspace(r_wall, rs, n), edge))
        if extra is not None and len(extra[k]):
            more = np.asarray(extra[k], dtype=np.float64)
            p = np.unique(np.append(p, more[(more >= r_wall) & (more <= rs)]))
        pts.append(p)
        offsets.append(np.where(p <= edge, float(force), 0.0))
    offset = np.concatenate(offsets) if offsets else np.zeros(0)
    return Constraint("wall", "ineq", derivative=True, pair_points=tuple(pts), offset=offset)


def force_zero_at(rc: float) -> Constraint:
    """U'(rc) = 0 for every type pair (force vanishes at the cutoff)."""
    return Constraint("force0", "eq", r_points=np.array([rc]), derivative=True)


def energy_zero_at(rc: float) -> Constraint:
    """U(rc) = 0 for every type pair."""
    return Constraint("energy0", "eq", r_points=np.array([rc]), derivative=False)


def repulsive_core(r_core: float, n: int = 8) -> Constraint:
    """U'(r) ≤ 0 (repulsive force) at ``n`` points in [r_core/2, r_core] for every pair."""
    return Constraint(
        "repulsive", "ineq", r_points=np.linspace(0.5 * r_core, r_core, n), derivative=True
    )


def neutrality(name: str, molecules) -> Constraint:
    """Every molecule neutral: Σ over its atoms of ``name[type]`` = 0, one equality per
    distinct molecule composition.

    ``name`` is a per-type constant of the product rule (``prod_q``: the pair's prefactor
    is ``prod_q[A]·prod_q[B]``, so ``prod_q[A]`` is type A's charge up to one common
    scale and sign, which neutrality does not see).  The constraint is linear, with an
    exact Jacobian; an expression without ``name`` gets one row of zeros (it is not
    constrained), so a search may impose it on every candidate.  Named
    ``"neutral:<name>"``.

    Parameters
    ----------
    name
        The per-type constant (``prod_q``, ``prod_c1``).
    molecules
        A :class:`~mctsff.data.Dataset` with molecule ids (its distinct compositions
        over all frames, single atoms included), or compositions ``[{"H": 2, "O": 1}]``.

    Raises
    ------
    FitConfigError
        One line: ``name`` is not a product-rule constant, the data have no molecule
        ids, or no assignment but all zeros makes every molecule neutral (one species
        only; H2O and OH together).

    Examples
    --------
    >>> c = neutrality("prod_q", [{"H": 2, "O": 1}])
    >>> c.name, [dict(row) for row in c.linear]
    ('neutral:prod_q', [{'prod_q[H]': 2.0, 'prod_q[O]': 1.0}])
    >>> try:
    ...     neutrality("prod_q", [{"Ar": 1}])
    ... except FitConfigError as exc:
    ...     print(exc)
    neutral prod_q: no charges but zeros make every molecule neutral (molecules Ar)
    """
    name = str(name).strip()
    if ops.constant_rule(name) != "product" or not name.isidentifier():
        raise FitConfigError(
            f"neutral {name}: not a per-type constant of the product rule (prod_q, prod_c1)"
        )
    if isinstance(molecules, Iterable) and not hasattr(molecules, "atom_type"):
        comps = []
        for c in molecules:  # distinct compositions, in order
            if dict(c) not in comps:
                comps.append(dict(c))
    elif getattr(molecules, "mol", None) is None:
        raise FitConfigError(
            f"neutral {name}: the data have no molecule ids (a per-atom 'mol' array, or "
            "molecules='bonds' / --molecules bonds)"
        )
    else:
        comps = molecule_compositions(molecules, max_frames=None, singles=True)
    if not comps:
        raise FitConfigError(f"neutral {name}: the data have no molecules")
    species = sorted({s for c in comps for s in c})
    A = np.array([[float(c.get(s, 0)) for s in species] for c in comps])
    if np.linalg.matrix_rank(A) >= len(species):
        formulas = ", ".join(formula(c) for c in comps[:6])
        raise FitConfigError(
            f"neutral {name}: no charges but zeros make every molecule neutral "
            f"(molecules {formulas}{', ...' if len(comps) > 6 else ''})"
        )
    rows = tuple({f"{name}[{s}]": float(n) for s, n in sorted(c.items())} for c in comps)
    return Constraint(f"neutral:{name}", "eq", linear=rows)


def parse_constraint(spec: str | Constraint, cutoff: float) -> Constraint:
    """Constraint from a CLI-style spec.

    ``force0`` (U'(rc)=0), ``energy0`` (U(rc)=0), ``repulsive:R`` (U' ≤ 0 on [R/2, R]).
    """
    if isinstance(spec, Constraint):
        return spec
    name, _, arg = str(spec).partition(":")
    name = name.strip().lower()
    if name in ("force0", "f0", "force_zero"):
        return force_zero_at(cutoff)
    if name in ("energy0", "u0", "energy_zero"):
        return energy_zero_at(cutoff)
    if name == "repulsive":
        try:
            r_core = float(arg) if arg else 1.0
        except ValueError:
            raise FitConfigError(f"constraint {spec!r}: 'repulsive:R' needs a number R") from None
        return repulsive_core(r_core)
    raise FitConfigError(
        f"unknown constraint {spec!r}; use force0, energy0, repulsive:R or a Constraint object"
    )


def point_values(c: Constraint, prog: Program, consts, T, r, group, jac: bool = True, shift=None):
    """A built-in constraint's values U or U' at its points, and (with ``jac``) their Jacobian.

    ``T`` is the parameterization's derivative tensor (constants per type pair by θ); the
    Jacobian rows are ``None`` without ``jac``.  ``shift`` is ``(a, b, da, db, rc)`` of
    :func:`~mctsff.expr.params.cutoff_shift` (the values of the shifted potential), or ``None``.
    The constraint's ``offset`` (if any) is added to the values.
    """
    val, J = _point_values(c, prog, consts, T, r, group, jac, shift)
    if c.offset is None:
        return val, J
    return val + np.resize(c.offset, np.shape(val)), J


def _point_values(c: Constraint, prog: Program, consts, T, r, group, jac: bool, shift):
    if not jac:
        mode = kernels.MODE_D if c.derivative else kernels.MODE_VALUE
        v, d, _, _ = prog.evaluate(r, consts, group, mode=mode)
        val, J = (d if c.derivative else v), None
    else:
        v, d, g, h = prog.evaluate(r, consts, group, mode=kernels.MODE_ALL)
        Tg = T[group]  # (n, K, M)
        val, J = (
            (d, np.einsum("nk,nkm->nm", h, Tg))
            if c.derivative
            else (v, np.einsum("nk,nkm->nm", g, Tg))
        )
    if shift is None:
        return val, J
    # U_s = U − a − (r − rc)·b,  U_s' = U' − b  (per type pair)
    a, b, da, db, rc = shift
    if c.derivative:
        return val - b[group], (None if J is None else J - db[group])
    val = val - a[group] - (r - rc) * b[group]
    return val, (None if J is None else J - da[group] - (r - rc)[:, None] * db[group])


def constraint_values(c: Constraint, pot: Potential, par: Parameterization, theta):
    """Constraint values and Jacobian rows (n_values, n_params)."""
    if c.linear is not None:
        index = {n: m for m, n in enumerate(par.names)}
        A = np.zeros((len(c.linear), np.size(theta)))
        for i, row in enumerate(c.linear):
            for p, w in row.items():
                if p in index:
                    A[i, index[p]] += float(w)
        return A @ np.asarray(theta, dtype=np.float64), A
    if c.r_points is not None:
        r, group = c.points(len(par.type_pairs))
        consts, T = par.table(theta)
        shift = scheme_shift(par.program, consts, T, pot.cutoff, pot.scheme)
        return point_values(c, par.program, consts, T, r, group, shift=shift)
    val = np.atleast_1d(np.asarray(c.fun(pot), dtype=np.float64))
    jac = np.empty((val.size, theta.size))
    for m in range(theta.size):
        step = 1e-6 * max(1.0, abs(theta[m]))
        tp = theta.copy()
        tm = theta.copy()
        tp[m] += step
        tm[m] -= step
        vp = np.atleast_1d(c.fun(potential_at(par, tp)))
        vm = np.atleast_1d(c.fun(potential_at(par, tm)))
        jac[:, m] = (vp - vm) / (2 * step)
    return val, jac


def potential_at(par: Parameterization, theta, cutoff=None, scheme="none") -> Potential:
    params = dict(zip(par.names, theta, strict=True))
    return Potential(par.program, params, par.species, par.type_pairs, cutoff=cutoff, scheme=scheme)


def scheme_shift(prog, consts, T, cutoff, scheme):
    """``(a, b, da, db, rc)`` of the scheme's shift, or ``None`` where it shifts nothing."""
    if scheme not in SHIFTED_SCHEMES:
        return None
    a, b, da, db = cutoff_shift(prog, consts, T, cutoff, scheme)
    return a, b, da, db, float(cutoff)

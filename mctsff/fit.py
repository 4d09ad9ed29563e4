"""Force matching: fit the constants of an expression to reference forces.

Predicted force on atom i: F_i = −Σ_j U'(r_ij)·(x_i − x_j)/r_ij over the dataset's
pairs (intermolecular ones within the cutoff).  The residual vector is

    res = w ⊙ (F_pred − F_ref) / sqrt(3N)          (+ optional energy rows)

so ``Σ res²`` is the (weighted) mean square force error.  Constants are fitted
by bound-constrained Levenberg–Marquardt (:func:`levenberg_marquardt`) with the
analytic Jacobian from the kernels, from several seeded starts.  Linear
prefactors are solved exactly at every start; with ``pair_start=True``,
per-type prefactors (``q[A]·q[B]``) get one more start, factored from a fit with
one prefactor per type pair (:meth:`_Problem._typed_start`).

Constraints are handled by an augmented Lagrangian: each equality c(θ) = 0
adds the rows sqrt(μ)·(c + λ/μ) to the least-squares problem, each
inequality g(θ) ≤ 0 adds sqrt(μ)·max(0, g + ν/μ); after each inner solve
the multipliers are updated (λ ← λ + μc, ν ← max(0, ν + μg)) and μ grows
when the violation did not shrink enough, until every residual is below
``constraint_tol``.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.linalg.lapack import dgesv as _dgesv

from mctsff import kernels, ops, scan
from mctsff.params import (
    CUTOFF_SCHEMES,
    SHIFTED_SCHEMES,
    Parameterization,
    Potential,
    cutoff_shift,
    shift_maps,
    shifted_sums,
)
from mctsff.plausibility import molecule_compositions, plausibility_flags
from mctsff.program import ExpressionError, Program
from mctsff.projection import ForceProjection, ProjectionError
from mctsff.result import FitResult

#: Largest augmented-Lagrangian penalty before a constraint is declared infeasible.
MU_MAX = 1e10
#: Errors of the numerics that make a start (or a refinement) fail rather than the fit.
NUMERIC_ERRORS = (ValueError, np.linalg.LinAlgError, FloatingPointError, ZeroDivisionError)
#: Relative decrease of the loss at which the relaxed fit of :meth:`_Problem._typed_start`
#: stops (it only gives a start; 1e-12 was no better on 600 candidates, and slower).
RELAXED_FTOL = 1e-9
#: Default radius (Å) down to which every type pair's potential must be repulsive.
WALL_RADIUS = 0.5
#: Pairs of the training frames the scan of nonlinear constants evaluates (frames spread
#: evenly; the starts it picks are then solved on the whole training set).
SCAN_PAIRS = 512
#: Local minima of the scan polished briefly on the scan's frames (when the scan runs on
#: a subset of them), best first.
SCAN_POLISH = 8
#: Evaluations each of those polishes may take.
SCAN_POLISH_NFEV = 40
#: Relative decrease of the loss at which every start of the default fit stops before
#: the best is solved to convergence.
LOOSE_FTOL = 1e-6
#: Evaluations each loose solve of the default fit may take.
LOOSE_NFEV = 60
#: Starts of the default fit solved to convergence after the loose solves: the best
#: ones, the lowest loss, and any within :data:`TIE` of the best.
FINAL_POLISH = 2
#: Starts whose loose loss is within this relative margin of the best are also solved
#: to convergence.
TIE = 1e-3
#: Weight of the constraint rows in the scan's prefactor solve: a violation of
#: ``constraint_tol`` costs this share of the zero model's loss.
PENALTY_SHARE = 1e-4
#: Length scales (Å) tried for length-like constants by successive starts.
LENGTH_LADDER = (3.0, 0.3, 1.5, 6.0, 0.6, 2.2, 4.5, 0.15)


class FitConfigError(ValueError):
    """Invalid fitting option (the message names the option)."""


# ----------------------------------------------------------------------------- constraints
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
        ``fun(potential) -> float | array`` evaluated on a :class:`~mctsff.params.Potential`
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

    def __post_init__(self):
        if self.kind not in ("eq", "ineq"):
            raise FitConfigError(f"constraint {self.name!r}: kind must be 'eq' or 'ineq'")
        if self.fun is None and self.r_points is None and self.pair_points is None:
            raise FitConfigError(f"constraint {self.name!r}: needs fun or r_points")
        if self.pair_points is not None and self.r_points is None:
            self.r_points = np.concatenate([np.asarray(p, float) for p in self.pair_points])

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
            as :meth:`mctsff.program.Program.evaluate` takes them.

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


def repulsive_wall(r_wall: float, r_shortest: Sequence[float], n: int = 12) -> Constraint:
    """U'(r) ≤ 0 from ``r_wall`` up to each type pair's shortest distance in the data.

    The potential of every type pair then rises monotonically as two atoms come closer
    than anything the data show, down to ``r_wall``: atoms cannot fall into each other
    in MD.  ``n`` points per type pair, spaced geometrically; none for a pair whose
    shortest distance is at or below ``r_wall``.

    Examples
    --------
    >>> c = repulsive_wall(0.5, [1.5, 0.4])
    >>> r, g = c.points(2)
    >>> float(r.min()), float(r.max()), sorted(set(g.tolist()))
    (0.5, 1.5, [0])
    """
    pts = tuple(
        np.geomspace(r_wall, float(rs), n) if float(rs) > r_wall else np.zeros(0)
        for rs in r_shortest
    )
    return Constraint("wall", "ineq", derivative=True, pair_points=pts)


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


# ----------------------------------------------------------------------------- objective
@dataclass
class _Target:
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

    @classmethod
    def from_dataset(cls, ds) -> _Target:
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
        )

    def shift_maps(self, n_type_pairs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:func:`~mctsff.params.shift_maps` of this target (built once)."""
        maps = getattr(self, "_maps", None)
        if maps is None or maps[0].shape[1] != n_type_pairs:
            maps = shift_maps(self, n_type_pairs)
            self._maps = maps
        return maps

    def shifted(self, shift, F, J=None, E=None, EJ=None):
        """Forces, Jacobian, energies and their Jacobian of the shifted potential.

        ``shift`` is ``(a, b, da, db, rc)`` (:func:`_shift`) or ``None`` (unchanged).
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


def _rms(d: np.ndarray) -> float:
    """Root mean square of force errors; ``inf`` when not finite."""
    with np.errstate(all="ignore"):
        val = float(np.sqrt(np.mean(d * d)))
    return val if math.isfinite(val) else math.inf


def _as_target(data):
    """Validation data as an exact target, a projection, or None."""
    if data is None or isinstance(data, ForceProjection):
        return data
    return _Target.from_dataset(data) if data.n_pairs else None


def potfit_weights(forces: np.ndarray, eps: float = 0.1) -> np.ndarray:
    """potfit-style per-component weights u = 1/(|F⁰| + ε)², normalised to mean 1."""
    w = 1.0 / (np.abs(forces) + eps) ** 2
    return w / w.mean()


# ----------------------------------------------------------------------------- fitter
@dataclass
class FitOptions:
    """Options of :class:`Fitter` (see there)."""

    constraints: Sequence[str | Constraint] = ()
    cutoff_scheme: str = "shifted-force"
    wall: float | None = WALL_RADIUS
    n_starts: int = 3
    seed: int = 0
    weights: str | np.ndarray | None = None
    energy_weight: float = 0.0
    energy_offset: bool = True
    bounds: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    initial: Mapping[str, float] = field(default_factory=dict)
    constraint_tol: float = 1e-8
    max_outer: int = 30
    max_nfev: int = 200
    max_fit_nfev: int = 3000
    mu0: float = 1e4
    n_refine: int = 2
    complexity_weights: Mapping[str, float] | None = None
    variables: tuple[str, ...] = ("r",)
    projection: float | ForceProjection | None = None
    pair_start: bool = False
    scan: bool = True


class Fitter:
    """Fit expressions to one dataset by force matching.

    Load the data once, then call :meth:`fit` for as many expressions as needed.

    Parameters
    ----------
    train
        Training :class:`~mctsff.data.Dataset`, or a
        :class:`~mctsff.projection.ForceProjection` of data too large for memory (built with
        :meth:`~mctsff.projection.ForceProjection.split_file`): then every residual and the
        reported ``rmse_train`` are projected (unweighted; no energy term) and
        ``extra["projection"]`` carries the error bound.
    valid
        Optional validation dataset or projection (same species); reported as ``rmse_valid``.
    constraints
        Constraint specs (``"force0"``, ``"energy0"``, ``"repulsive:R"``) or
        :class:`Constraint` objects (none by default). ``force0``/``energy0`` act at the
        dataset cutoff, on the potential as the cutoff scheme shifts it.
    cutoff_scheme
        How the potential ends at the cutoff, as MD engines do it (one of
        :data:`~mctsff.params.CUTOFF_SCHEMES`): ``"shifted-force"`` (default) fits, reports
        and exports ``U(r) − U(rc) − (r − rc)·U'(rc)`` per type pair, so energy and force
        are zero at the cutoff for any form and a Coulomb term keeps its charges;
        ``"shifted-energy"`` fits ``U(r) − U(rc)`` (the force jumps at rc);
        ``"constraint"`` imposes U'(rc) = 0 on the form itself (the ``force0``
        constraint, as the originating study did: a bare Coulomb term can meet it only
        with zero charges); ``"none"`` uses the expression as written.
    wall
        Radius in Å (default :data:`WALL_RADIUS`) down to which every type pair's
        potential must be repulsive (U' ≤ 0) below the shortest distance of that pair in
        the training data: the ``wall`` inequality constraint
        (:func:`repulsive_wall`), imposed by the augmented Lagrangian and reported like
        any constraint.  ``None`` switches it off.
    n_starts
        Number of seeded starts; the best constrained optimum is kept.
    seed
        Seed of the start generator (results are reproducible).
    pair_start
        Give an expression with per-type prefactors (``prod_q/r``,
        ``geom_e*exp(-r/b)``) one more start: the best start refitted with one
        prefactor per type pair, in which U is linear, factored back into per-type
        values (default False).  Random per-type starts can end with the wrong
        relative signs of ``q[A]`` and ``q[B]``: the exact
        ``prod_c1*exp(-r/c1) - prod_c2/r**6`` on Buckingham forces stayed at 7e-2 of
        the force RMS from 3 or 8 starts and reaches round-off with this one.  Off by
        default because it did not pay in the search: fits of per-type forms took
        33 % (real dimers) to 80 % (synthetic benchmark searches) longer, and
        recoveries at equal budget did not change (benchmarks/README.md).
    weights
        ``None`` (uniform), ``"potfit"`` (1/(|F⁰|+0.1)²) or an array ``(n_atoms, 3)``
        for the training set.
    energy_weight
        Weight of the energy residual (eV) relative to the force residual (eV/Å);
        0 disables it. Needs energies in the dataset.
    energy_offset
        Subtract the mean energy difference (fit energies up to a constant).
    bounds
        ``{param_name: (lo, hi)}``; a base name (``"prod_q"``) applies to all its types.
    initial
        ``{param_name: value}`` start values (base names allowed).
    constraint_tol
        Largest acceptable constraint residual.
    max_outer
        Augmented-Lagrangian outer iterations.
    max_nfev
        Residual evaluations per inner solve.
    max_fit_nfev
        Residual evaluations per candidate over all starts and outer iterations;
        a fit that reaches it returns its best point so far (with its constraint
        residuals reported and flagged), so no candidate can stall a search.  The
        relaxed fit behind the extra start of per-type prefactors (at most
        ``max_nfev`` evaluations) is reported in ``nfev`` but not counted here, so it
        takes nothing from the constrained refinement.
    projection
        ``None`` (default): exact pair-wise residuals.  A grid spacing in Å (e.g. ``0.05``)
        or a prebuilt :class:`~mctsff.projection.ForceProjection` of ``train``: the
        optimiser works on the projected residual (F = M·g, one row per grid node instead
        of three per atom, so a fit costs the same for 1e3 or 1e7 pairs).  The reported
        RMSEs stay exact; ``extra["projection"]`` gives the projected and exact loss at the
        optimum and the projection's error bound there.  Force rows only
        (``energy_weight`` must be 0).

    Examples
    --------
    >>> from mctsff.data import data_file, load_dataset
    >>> ds = load_dataset(data_file("water_dimers_mp2_sample20.extxyz"), cutoff=9.0)
    >>> train, valid = ds.split(0.2, seed=0)
    >>> res = Fitter(train, valid).fit("prod_q/r + A*exp(-r/b)")
    >>> res.valid, sorted(res.params)
    (True, ['A', 'b', 'prod_q[H]', 'prod_q[O]'])
    """

    def __init__(self, train, valid=None, **options):
        unknown = set(options) - set(FitOptions.__dataclass_fields__)
        if unknown:
            raise FitConfigError(f"unknown fit option(s): {', '.join(sorted(unknown))}")
        self.options = FitOptions(**options)
        o = self.options
        if o.n_starts < 1:
            raise FitConfigError("n_starts must be >= 1")
        if o.energy_weight < 0:
            raise FitConfigError("energy_weight must be >= 0")
        self.train = train
        self.valid = valid
        self.cutoff = float(train.cutoff)
        self.species = tuple(train.species)
        self.type_pairs = tuple(tuple(p) for p in train.type_pairs)
        if valid is not None and tuple(valid.species) != self.species:
            raise FitConfigError(
                f"validation species {tuple(valid.species)} differ from training {self.species}"
            )
        if o.cutoff_scheme not in CUTOFF_SCHEMES:
            raise FitConfigError(
                f"cutoff_scheme must be one of {', '.join(CUTOFF_SCHEMES)}, not {o.cutoff_scheme!r}"
            )
        specs = list(o.constraints)
        if o.cutoff_scheme == "constraint" and not any(
            (c.name if isinstance(c, Constraint) else str(c)) in ("force0", "f0", "force_zero")
            for c in specs
        ):
            specs.insert(0, "force0")
        self.constraints = [parse_constraint(c, self.cutoff) for c in specs]
        self.scheme = o.cutoff_scheme
        self.compositions = molecule_compositions(train) if hasattr(train, "mol") else []
        self.variables_are_distances = tuple(o.variables) == ("r",)
        if o.wall is not None:
            if not (isinstance(o.wall, int | float) and math.isfinite(o.wall) and o.wall > 0):
                raise FitConfigError(f"wall must be a radius > 0 in Å or None, not {o.wall!r}")
            shortest = _shortest_distances(train, len(self.type_pairs))
            wall = repulsive_wall(float(o.wall), shortest)
            if wall.r_points.size and not any(c.name == "wall" for c in self.constraints):
                self.constraints.append(wall)
        self._valid = _as_target(valid)
        if isinstance(train, ForceProjection):
            self._init_projected(train)
            return
        self._train = _Target.from_dataset(train)
        if self._train.r.size == 0:
            raise FitConfigError("the training set has no pairs within the cutoff")
        n_rows = self._train.forces.size
        if o.weights is None:
            w = np.ones(n_rows)
        elif isinstance(o.weights, str):
            if o.weights != "potfit":
                raise FitConfigError(
                    f"weights must be None, 'potfit' or an array, not {o.weights!r}"
                )
            w = potfit_weights(self._train.forces)
        else:
            w = np.asarray(o.weights, dtype=np.float64).ravel()
            if w.shape != (n_rows,) or not np.all(np.isfinite(w)) or np.any(w < 0):
                raise FitConfigError(
                    f"weights must be a finite non-negative array of shape ({n_rows // 3}, 3)"
                )
        self._w = w / math.sqrt(n_rows)
        self._use_energy = o.energy_weight > 0
        if self._use_energy and self._train.energies is None:
            raise FitConfigError("energy_weight > 0 but the dataset has no energies")
        self._ew = math.sqrt(o.energy_weight / max(self._train.n_frames, 1))
        self._proj = self._projection(o.projection, w)
        self._seed_seq = np.random.SeedSequence(o.seed)
        self.r_min = float(self._train.r.min())
        self.loss_zero = float(np.sum((self._w * self._train.forces) ** 2))
        self._data = (self._train, self._w, self._ew, self._proj)
        self._scan_data = self._subset_data(train, w) if self._proj is None else self._data
        kernels.warmup()

    def _init_projected(self, train: ForceProjection) -> None:
        """Training set given only as a projection (e.g. streamed from a large file)."""
        o = self.options
        for bad, why in (
            (o.projection is not None, "projection must be unset when train is a projection"),
            (o.weights is not None, "weights are fixed when a projection is built"),
            (o.energy_weight > 0, "projection serves force rows only; set energy_weight=0"),
        ):
            if bad:
                raise FitConfigError(why)
        self._train = None
        self._proj = train
        self.r_min = float(np.min(train.grid.lo))
        self.loss_zero = float(train.c)
        self._data = self._scan_data = (None, None, 0.0, train)
        self._use_energy = False
        self._seed_seq = np.random.SeedSequence(o.seed)
        kernels.warmup()

    def _subset_data(self, train, w):
        """Residual data of the scan: frames spread evenly over the training set, at most
        :data:`SCAN_PAIRS` pairs (all of it when it is that small or cannot be subset)."""
        if self._train.r.size <= SCAN_PAIRS or not hasattr(train, "subset"):
            return self._data
        po = np.asarray(train.pair_offsets)
        per_frame = np.diff(po)
        n = train.n_frames
        k = max(1, min(n, int(round(n * SCAN_PAIRS / max(self._train.r.size, 1)))))
        frames = np.unique(np.linspace(0, n - 1, k).round().astype(np.int64))
        frames = frames[per_frame[frames] > 0]
        if frames.size == 0 or frames.size == n:
            return self._data
        sub = train.subset(frames)
        fo = np.asarray(train.frame_offsets)
        atoms = np.concatenate([np.arange(fo[f], fo[f + 1]) for f in frames])
        ws = w.reshape(-1, 3)[atoms].ravel()
        target = _Target.from_dataset(sub)
        ew = math.sqrt(self.options.energy_weight / max(target.n_frames, 1))
        return (target, ws / math.sqrt(ws.size), ew, None)

    def _projection(self, spec, w) -> ForceProjection | None:
        if spec is None:
            return None
        if self._use_energy:
            raise FitConfigError("projection serves force rows only; set energy_weight=0")
        if isinstance(spec, ForceProjection):
            if spec.n_rows != self._train.forces.size or spec.n_pairs != self._train.r.size:
                raise FitConfigError(
                    f"the projection summarises {spec.n_pairs} pairs and {spec.n_rows} force "
                    f"components, the training set has {self._train.r.size} and "
                    f"{self._train.forces.size}: build it from the same training set"
                )
            return spec
        try:
            return ForceProjection.from_dataset(self.train, spec, weights=w)
        except ProjectionError as exc:
            raise FitConfigError(f"projection: {exc}") from None

    # ------------------------------------------------------------------ helpers
    def compile(self, expression: str | Program) -> Program:
        """Compile an expression with the fitter's variables and complexity weights."""
        if isinstance(expression, Program):
            return expression
        return Program.from_string(
            expression, self.options.variables, self.options.complexity_weights
        )

    def _bounds(self, par: Parameterization) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = par.default_bounds()
        for key, (a, b) in self.options.bounds.items():
            hit = False
            for m, name in enumerate(par.names):
                if name == key or par.base_name(name) == key:
                    lo[m], hi[m] = float(a), float(b)
                    hit = True
            if not hit and key not in par.program.constants:
                continue  # bounds for constants this expression doesn't use
        return lo, hi

    def _starts(self, par: Parameterization, lo, hi, expr: str) -> list[np.ndarray]:
        """Seeded start points.

        Start 0 is the user's initial values (1.0 where none is given).  Later
        starts put length constants (``r/b``, ``r - r0``) on a ladder of
        physical length scales (:data:`LENGTH_LADDER`, jittered), inverse-length
        constants on its reciprocals, and draw the remaining nonlinear
        constants log-normally around 1 with random signs.  Linear prefactors
        are solved exactly afterwards, so their start does not matter.
        """
        o = self.options
        seed = int.from_bytes(expr.encode()[-16:].ljust(16, b"\0"), "little") % (2**32)
        rng = np.random.default_rng([o.seed, seed])
        prog = par.program
        base = np.ones(par.n_params)
        given = np.zeros(par.n_params, dtype=bool)
        kind = []
        for m, name in enumerate(par.names):
            b = par.base_name(name)
            for key in (name, b):
                if key in o.initial:
                    base[m] = o.initial[key]
                    given[m] = True
                    break
            kind.append(
                "length"
                if b in prog.length_constants
                else "inverse"
                if b in prog.inverse_length_constants
                else "other"
            )
        starts = [base]
        for s in range(1, o.n_starts):
            x = base.copy()
            scale = LENGTH_LADDER[(s - 1) % len(LENGTH_LADDER)]
            for m in range(par.n_params):
                if given[m] and s == 1:
                    continue
                jitter = math.exp(rng.normal(0.0, 0.15))
                if kind[m] == "length":
                    x[m] = scale * jitter
                elif kind[m] == "inverse":
                    x[m] = jitter / scale
                else:
                    x[m] = base[m] * math.exp(rng.normal(0.0, 1.0))
                    if rng.random() < 0.3:
                        x[m] = -x[m]
            starts.append(x)
        out = []
        for x in starts:
            with np.errstate(invalid="ignore"):
                x = np.where(np.isfinite(lo), np.maximum(x, lo + 1e-9 * (1 + np.abs(lo))), x)
                x = np.where(np.isfinite(hi), np.minimum(x, hi - 1e-9 * (1 + np.abs(hi))), x)
            out.append(x)
        return out

    # ------------------------------------------------------------------ the fit
    def fit(self, expression: str | Program) -> FitResult:
        """Fit one expression; never raises for a bad candidate (returns ``valid=False``).

        Raises
        ------
        ExpressionError
            Only when the expression text itself cannot be compiled.
        """
        t0 = time.perf_counter()
        prog = self.compile(expression)
        par = Parameterization(prog, self.species, self.type_pairs)
        text = prog.expression
        if not self._use_energy:
            constant = r_independent_terms(prog)
            if constant:
                return FitResult.invalid(
                    text,
                    f"{' + '.join(constant)} does not depend on "
                    f"{'/'.join(prog.variables)}: it gives no force, so forces cannot fit "
                    "it (a fit would only scale the round-off of its derivative as written)",
                    prog.complexity,
                )
        if par.n_params == 0:
            return self._evaluate_fixed(prog, par, t0)
        lo, hi = self._bounds(par)
        problem = _Problem(self, prog, par)
        losses = []
        candidates = []

        def explore(start: Callable[[], np.ndarray | None]) -> None:
            """Explore from ``start()`` (``None``: no start) and record its loss."""
            try:
                with np.errstate(all="ignore"):
                    x0 = start()
                    sol = None if x0 is None else problem.explore(x0, lo, hi)
            except NUMERIC_ERRORS:
                sol = None
            losses.append(math.inf if sol is None else sol[1])
            if sol is not None:
                candidates.append(sol)

        if self.options.scan:
            return self._fit_scanned(prog, par, problem, lo, hi, t0)
        for x0 in self._starts(par, lo, hi, text):
            explore(lambda x0=x0: x0)
        if problem._typed and candidates:
            # one more start: per-type prefactors factored from per-pair ones (see _typed_start)
            best_start = min(candidates, key=lambda s: s[1])[0]
            explore(lambda: problem._typed_start(best_start, lo, hi))
        candidates.sort(key=lambda s: s[1])
        best = None
        # constrained refinement from the best starts until one is feasible
        for x, _ in candidates[: self.options.n_refine]:
            try:
                with np.errstate(all="ignore"):
                    sol = problem.solve(x, lo, hi)
            except NUMERIC_ERRORS:
                sol = None
            if sol is not None and (
                best is None or _better(sol, best, self.options.constraint_tol)
            ):
                best = sol
            if best is not None and best[2] <= self.options.constraint_tol * 10:
                break
            if best is not None and problem.nfev >= self.options.max_fit_nfev:
                break
        if best is None:
            return FitResult.invalid(
                text, "evaluation not finite from every start", prog.complexity
            )
        theta, loss, viol, mults = best
        nfev = problem.nfev + problem.relaxed_nfev
        return self._result(prog, par, theta, loss, lo, hi, nfev, t0, losses, mults)

    def _fit_scanned(self, prog, par, problem, lo, hi, t0) -> FitResult:
        """The default fit: starts from the scan and the ladder, polished loosely, the best
        to the end.

        Every start of :meth:`_Problem.scan_starts` and of the seeded ladder of
        :meth:`_starts` (``n_starts`` of each) is solved to a relative decrease of
        :data:`LOOSE_FTOL` in at most :data:`LOOSE_NFEV` evaluations without constraints,
        then with them from there (linearised for the scan's starts, by the augmented
        Lagrangian's continuation for the ladder's and the best scan start); the
        :data:`FINAL_POLISH` best of them (feasible first, then lowest loss), the lowest
        loss of all and any other within :data:`TIE` of the best's loss are then solved
        to convergence.
        """
        o = self.options
        text = prog.expression
        ladder = [x for x in self._starts(par, lo, hi, text) if np.all(np.isfinite(x))]
        starts = problem.scan_starts(ladder[0], lo, hi) if ladder else []
        given = {par.base_name(n) for n in par.names} | set(par.names)
        if ladder and given & set(o.initial):  # the user's own start is always one of them
            starts.insert(0, ladder[0])

        def run(x0, ftol, n=LOOSE_NFEV):
            try:
                with np.errstate(all="ignore"):
                    if self.constraints:
                        return problem.solve(x0, lo, hi, ftol=ftol, max_iter=n)
                    sol = problem.explore(x0, lo, hi, tol=ftol, max_iter=n)
                    return None if sol is None else (sol[0], sol[1], 0.0, {})
            except NUMERIC_ERRORS:
                return None

        def freed(x0):
            """The unconstrained loose optimum from ``x0``, then the constraints by the
            linearised solve from there (a start that meets a wall first would stop on it
            short of the basin its unconstrained descent reaches)."""
            if not self.constraints:
                return run(x0, LOOSE_FTOL)
            try:
                with np.errstate(all="ignore"):
                    free = problem.explore(x0, lo, hi, tol=LOOSE_FTOL, max_iter=LOOSE_NFEV)
                    if free is None:
                        return None
                    return problem.solve(free[0], lo, hi, ftol=LOOSE_FTOL, max_iter=LOOSE_NFEV)
            except NUMERIC_ERRORS:
                return None

        def continued(x0):
            """The unconstrained optimum from ``x0``, then every constraint by the augmented
            Lagrangian's continuation (which slides along a constraint that pins a
            nonlinear constant, as force0 pins LJ's sigma, where linearised steps would
            zero the prefactors instead; from there, a wall constraint's active set is
            often a better basin than the linearised solves reach)."""
            if not self.constraints:
                return run(x0, LOOSE_FTOL)
            try:
                with np.errstate(all="ignore"):
                    free = problem.explore(x0, lo, hi, tol=LOOSE_FTOL, max_iter=LOOSE_NFEV)
                    if free is None:
                        return None
                    return problem._solve(free[0], lo, hi, [], LOOSE_FTOL, LOOSE_NFEV)
            except NUMERIC_ERRORS:
                return None

        # the scan's starts, and the seeded ladder's (ranges on a ladder of length scales,
        # other constants log-normal with random signs: on real data the best basin is
        # sometimes one no grid point leads to, e.g. a saturated tanh(c*r) at large |c|)
        loose = [sol for x0 in starts if (sol := freed(x0)) is not None]
        extra = ladder + (starts[:1] if self.constraints else [])
        loose += [sol for x0 in extra if (sol := continued(x0)) is not None]
        losses = [sol[1] for sol in loose]
        if not loose:
            return FitResult.invalid(
                text, "evaluation not finite from every start", prog.complexity
            )
        tol = o.constraint_tol
        ranked = sorted(loose, key=lambda sol: _rank(sol, tol))
        top = ranked[0]
        # a loose solve may stop short of its constraints: the lowest loss of all is
        # finished too
        lowest = min(range(len(ranked)), key=lambda n: ranked[n][1])
        best = None
        for n, sol in enumerate(ranked):
            if (
                n >= FINAL_POLISH
                and n != lowest
                and not (
                    _feasible(sol, tol) == _feasible(top, tol) and sol[1] <= top[1] * (1 + TIE)
                )
            ):
                continue
            final = run(sol[0], 1e-15 if self.constraints else 1e-12, n=None)
            if final is None:
                continue
            if best is None or _better(final, best, tol):
                best = final
        if best is None:
            return FitResult.invalid(
                text, "evaluation not finite from every start", prog.complexity
            )
        theta, loss, viol, mults = best
        nfev = problem.nfev + problem.relaxed_nfev
        return self._result(prog, par, theta, loss, lo, hi, nfev, t0, losses, mults)

    def _evaluate_fixed(self, prog, par, t0) -> FitResult:
        theta = np.zeros(0)
        with np.errstate(all="ignore"):
            problem = _Problem(self, prog, par)
            res = problem.residual_plain(theta)
        if res is None:
            return FitResult.invalid(prog.expression, "evaluation not finite", prog.complexity)
        loss = float(res @ res)
        return self._result(prog, par, theta, loss, np.zeros(0), np.zeros(0), 1, t0, [loss], {})

    def potential(self, expression: str | Program, params: Mapping[str, float]) -> Potential:
        """A :class:`Potential` on this dataset's types, shifted by the fit's cutoff scheme."""
        return Potential(
            self.compile(expression),
            params,
            self.species,
            self.type_pairs,
            cutoff=self.cutoff,
            scheme=self.scheme,
        )

    def rmse(self, prog: Program, par: Parameterization, theta: np.ndarray, target) -> float:
        """Unweighted force RMSE per component on a target (projected for a projection)."""
        consts, _ = par.table(theta)
        if isinstance(target, ForceProjection):
            with np.errstate(all="ignore"):
                shift = _shift(prog, consts, None, self.cutoff, self.scheme)
                res, _ = _projected_rows(target, prog, consts, None, shift)
                val = math.sqrt(max(float(res @ res) + target.c_perp, 0.0))
            return val if math.isfinite(val) else math.inf
        return _rms(self._force_error(prog, consts, target))

    def _force_error(self, prog: Program, consts: np.ndarray, target: _Target) -> np.ndarray:
        """Predicted minus reference forces on an exact target (flat)."""
        with np.errstate(all="ignore"):
            f, _ = target.predict(prog, consts)
            shift = _shift(prog, consts, None, self.cutoff, self.scheme)
            f = target.shifted(shift, f)[0]
        return f - target.forces

    def _result(self, prog, par, theta, loss, lo, hi, nfev, t0, losses, mults) -> FitResult:
        params = {n: float(v) for n, v in zip(par.names, theta, strict=True)}
        pot = self.potential(prog, params)
        cons = {}
        flags = []
        for c in self.constraints:
            val = _constraint_values(c, pot, par, theta)[0]
            resid = (
                float(np.max(np.abs(val)))
                if c.kind == "eq"
                else float(np.max(np.maximum(val, 0.0)))
            )
            cons[c.name] = resid
            if not resid <= self.options.constraint_tol * 10:
                flags.append(f"constraint {c.name} not satisfied (residual {resid:.2e})")
        consts, _ = par.table(theta)
        d_train = None  # exact force errors, computed once for the RMSE and the projection check
        if self._train is not None:
            d_train = self._force_error(prog, consts, self._train)
            rmse_train = _rms(d_train)
        else:
            rmse_train = self.rmse(prog, par, theta, self._proj)
        rmse_valid = self.rmse(prog, par, theta, self._valid) if self._valid else math.nan
        extra = {}
        if self._proj is not None:
            extra["projection"], loss = self._projection_check(prog, consts, loss, d_train)
            losses = [x + self._proj.c_perp for x in losses]
        flags += _parameter_flags(prog, par, theta, lo, hi, self.cutoff)
        if self.variables_are_distances:
            with np.errstate(all="ignore"):
                flags += plausibility_flags(
                    pot, cutoff=self.cutoff, r_min=self.r_min, compositions=self.compositions
                )
        flags += overfit_flags(rmse_train, rmse_valid)
        valid = math.isfinite(rmse_train)
        return FitResult(
            expression=prog.expression,
            complexity=prog.complexity,
            valid=valid,
            rmse_train=rmse_train,
            rmse_valid=rmse_valid,
            loss=float(loss),
            params=params,
            constraints=cons,
            flags=flags,
            n_evals=int(nfev),
            reason="" if valid else "non-finite training RMSE",
            species=tuple(self.species),
            type_pairs=tuple(tuple(p) for p in self.type_pairs),
            cutoff=float(self.cutoff) if self.cutoff is not None else math.nan,
            cutoff_scheme=self.scheme,
            extra={
                "start_losses": [float(x) for x in losses],
                "multipliers": {k: [float(x) for x in np.ravel(v)] for k, v in mults.items()},
                "seconds": time.perf_counter() - t0,
                "cutoff": self.cutoff,
                "cutoff_scheme": self.scheme,
                **extra,
            },
        )

    def _projection_check(self, prog, consts, loss, d_train) -> tuple[dict, float]:
        """Projected vs exact weighted loss at the optimum, and the error bound there."""
        proj = self._proj
        with np.errstate(all="ignore"):
            projected = float(loss) + proj.c_perp
            bound = proj.error_bound(prog, consts)
            if d_train is None:  # no pairs in memory: the projection is all there is
                exact = rel = None
            else:
                exact = float(np.sum((self._w * d_train) ** 2))
                rel = abs(projected - exact) / exact if exact > 0 else abs(projected - exact)
        info = {
            **proj.describe(),
            "loss_projected": projected,
            "loss_exact": exact,
            "rel_error": rel,
            "interp_error": bound["interp_error"],
            "bound_sqrt_loss": bound["bound_sqrt_loss"],
            "loss_rel_bound": bound["loss_rel_bound"],
        }
        return info, exact if exact is not None and math.isfinite(exact) else projected


def _shortest_distances(train, n_type_pairs: int) -> list[float]:
    """Shortest distance of each type pair in a dataset (or a projection's first grid node);
    ``inf`` for a pair the data never show."""
    if isinstance(train, ForceProjection):
        lo = np.asarray(train.grid.lo, dtype=float)
        n = np.asarray(train.grid.n)
        return [float(x) if k > 4 else math.inf for x, k in zip(lo, n, strict=True)]
    r = np.asarray(train.r, dtype=float)
    t = np.asarray(train.pair_type, dtype=np.int64)
    out = np.full(n_type_pairs, np.inf)
    if r.size:
        np.minimum.at(out, t, r)
    return [float(x) for x in out]


def r_independent_terms(prog: Program) -> list[str]:
    """Additive terms of ``U`` that depend on none of the variables (e.g. ``c1*r/r``).

    Read from sympy's form of the expression, which cancels ``r/r``, ``r**2/r**2`` and
    ``exp(-r/c)*exp(r/c)`` as it is built.  Such a term has no force, but the kernels
    differentiate the expression as written, so its derivative is round-off of the
    order of the constant times the machine epsilon: a force-only fit can make that
    noise fit the data with a huge constant (``c1*r/r`` with ``c1 ≈ -9e14`` on the
    water dimers beat the zero-force model on the validation set).  Constant terms are
    meaningful only where energies are fitted, so :meth:`Fitter.fit` refuses them
    for force-only fits.

    Examples
    --------
    >>> from mctsff.program import Program
    >>> r_independent_terms(Program.from_string("c1*r/r + c2/r**6"))
    ['c1']
    >>> r_independent_terms(Program.from_string("c1*exp(-r/c2)"))
    []
    """
    variables = {prog.symbols[v] for v in prog.variables}
    expr = prog.sympy
    terms = expr.args if expr.is_Add else (expr,)
    return [str(t) for t in terms if not (t.free_symbols & variables)]


def _feasible(sol, tol) -> bool:
    return sol[2] <= tol * 10


def _rank(sol, tol) -> tuple[int, float]:
    """Sort key of ``_better``: feasible first, by loss; the others by violation."""
    return (0, sol[1]) if _feasible(sol, tol) else (1, sol[2])


def _better(a, b, tol) -> bool:
    """Prefer feasible solutions, then lower loss (infeasible ones: lower violation)."""
    return _rank(a, tol) < _rank(b, tol)


def bound_flags(names, theta, lo, hi) -> list[str]:
    """Warnings for parameters that ended on a finite bound (within 1e-6 relative)."""
    flags = []
    for m, name in enumerate(names):
        for bound, label in ((lo[m], "lower"), (hi[m], "upper")):
            if math.isfinite(bound) and abs(theta[m] - bound) <= 1e-6 * max(1.0, abs(bound)):
                flags.append(f"{name} at its {label} bound {bound:g}")
    return flags


def overfit_flags(rmse_train: float, rmse_valid: float) -> list[str]:
    """Warning when the validation RMSE exceeds twice the training RMSE."""
    if (
        math.isfinite(rmse_valid)
        and rmse_valid > 2.0 * rmse_train
        and rmse_valid - rmse_train > 1e-6
    ):
        return [f"overfit: validation RMSE {rmse_valid:.3g} > 2x training RMSE {rmse_train:.3g}"]
    return []


def _parameter_flags(prog, par, theta, lo, hi, cutoff) -> list[str]:
    flags = []
    for m, name in enumerate(par.names):
        x = theta[m]
        flags += bound_flags([name], theta[m : m + 1], lo[m : m + 1], hi[m : m + 1])
        base = par.base_name(name)
        if base in prog.length_constants and abs(x) >= 0.9 * cutoff:
            flags.append(
                f"range parameter {name} = {x:.3g} is comparable to the cutoff {cutoff:g}"
                " (constraints may be met by stretching the range: likely overfit)"
            )
        if base in prog.inverse_length_constants and x != 0 and 1.0 / abs(x) >= 0.9 * cutoff:
            flags.append(
                f"range parameter 1/{name} = {1 / abs(x):.3g} is comparable to the cutoff"
                f" {cutoff:g} (likely overfit)"
            )
    return flags


def _point_values(c: Constraint, prog: Program, consts, T, r, group, jac: bool = True, shift=None):
    """A built-in constraint's values U or U' at its points, and (with ``jac``) their Jacobian.

    ``T`` is the parameterization's derivative tensor (constants per type pair by θ); the
    Jacobian rows are ``None`` without ``jac``.  ``shift`` is ``(a, b, da, db, rc)`` of
    :func:`~mctsff.params.cutoff_shift` (the values of the shifted potential), or ``None``.
    """
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


def _constraint_values(c: Constraint, pot: Potential, par: Parameterization, theta):
    """Constraint values and Jacobian rows (n_values, n_params)."""
    if c.r_points is not None:
        r, group = c.points(len(par.type_pairs))
        consts, T = par.table(theta)
        shift = _shift(par.program, consts, T, pot.cutoff, pot.scheme)
        return _point_values(c, par.program, consts, T, r, group, shift=shift)
    val = np.atleast_1d(np.asarray(c.fun(pot), dtype=np.float64))
    jac = np.empty((val.size, theta.size))
    for m in range(theta.size):
        step = 1e-6 * max(1.0, abs(theta[m]))
        tp = theta.copy()
        tm = theta.copy()
        tp[m] += step
        tm[m] -= step
        vp = np.atleast_1d(c.fun(_with_theta(par, tp)))
        vm = np.atleast_1d(c.fun(_with_theta(par, tm)))
        jac[:, m] = (vp - vm) / (2 * step)
    return val, jac


def _diagonal_factors(par: Parameterization, theta, values) -> np.ndarray | None:
    """θ with product-rule slots factored from the diagonal of their per-pair values.

    ``q[A] = sqrt(|k[A-A]|)``, the sign of each type relative to the first type taken from
    ``k[first-A]``: a second factorisation next to the leading eigenvector's, which is
    pulled by the off-diagonal values (and their errors) when the per-pair optimum is
    far from rank one.  ``None`` when no slot is a product.
    """
    theta = np.array(theta, dtype=float)
    done = False
    sp = {s: i for i, s in enumerate(par.species)}
    for k, vals in values.items():
        name = par.program.constants[k]
        if ops.constant_rule(name) != "product":
            continue
        S = len(par.species)
        M = np.zeros((S, S))
        for p, (a, b) in enumerate(par.type_pairs):
            M[sp[a], sp[b]] = M[sp[b], sp[a]] = vals[p]
        q = np.sqrt(np.abs(np.diag(M)))
        sign = np.where(M[0] < 0, -1.0, 1.0)
        sign[0] = 1.0
        for s_i, s_name in enumerate(par.species):
            theta[par.names.index(f"{name}[{s_name}]")] = sign[s_i] * q[s_i]
        done = True
    return theta if done else None


def _projected_rows(proj: ForceProjection, prog, consts, T, shift):
    """A projection's residual ``R g − z`` and (with ``T``) its Jacobian, for ``g = U'`` at
    its grid nodes shifted by ``shift`` (:func:`_shift`; ``None``: unshifted)."""
    if shift is None:
        return proj.residual(prog, consts, T)
    g, dg = proj.grid_values(prog, consts, T)
    grp = proj.group_nodes
    res = proj.R @ (g - shift[1][grp]) - proj.z
    return res, (None if dg is None else proj.R @ (dg - shift[3][grp]))


def _shift(prog, consts, T, cutoff, scheme):
    """``(a, b, da, db, rc)`` of the scheme's shift, or ``None`` where it shifts nothing."""
    if scheme not in SHIFTED_SCHEMES:
        return None
    a, b, da, db = cutoff_shift(prog, consts, T, cutoff, scheme)
    return a, b, da, db, float(cutoff)


def _with_theta(par: Parameterization, theta, cutoff=None, scheme="none") -> Potential:
    params = dict(zip(par.names, theta, strict=True))
    return Potential(par.program, params, par.species, par.type_pairs, cutoff=cutoff, scheme=scheme)


class _Problem:
    """Residuals/Jacobians of one expression, and the augmented-Lagrangian loop."""

    def __init__(self, fitter: Fitter, prog: Program, par: Parameterization, data=None):
        self.f = fitter
        self.prog = prog
        self.par = par
        self.data = fitter._data if data is None else data
        self.nfev = 0
        self.relaxed_nfev = 0  # evaluations of the relaxed fit (_typed_start)
        self.lin = par.linear_mask()
        # per-type prefactors for the extra start (read only when the option asks for it)
        o = fitter.options
        self._typed = par.typed_prefactors() if (o.pair_start or o.scan) else ()
        self._relaxed = None  # see _relaxation
        self._key = None
        self._table = None
        self._shift_cache = None
        # built-in constraints: evaluation points of every type pair, fixed per expression
        P = len(par.type_pairs)
        self._points = [None if c.r_points is None else c.points(P) for c in fitter.constraints]

    def shift(self, theta, jac: bool = True):
        """The cutoff scheme's shift at θ (:func:`_shift`), or ``None``; cached for the
        last θ (one with Jacobians also serves a call without)."""
        key = theta.tobytes()
        cached = self._shift_cache
        if cached is not None and cached[0] == key and (cached[1] or not jac):
            return cached[2]
        consts, T = self.table(theta)
        out = _shift(self.prog, consts, T if jac else None, self.f.cutoff, self.f.scheme)
        self._shift_cache = (key, jac, out)
        return out

    def table(self, theta):
        """Constant table and derivative tensor, cached for the last θ."""
        key = theta.tobytes()
        if key != self._key:
            self._table = self.par.table(theta)
            self._key = key
        return self._table

    # force (+energy) rows
    def _rows(self, theta, jac: bool):
        f = self.f
        t, w, ew, proj = self.data
        consts, T = self.table(theta)
        shift = self.shift(theta, jac)
        if proj is not None:
            self.nfev += 1
            return _projected_rows(proj, self.prog, consts, T if jac else None, shift)
        if jac:
            F, J, E, EJ = t.predict_jac(self.prog, consts, T, f._use_energy)
        else:
            F, E = t.predict(self.prog, consts, f._use_energy)
            J = EJ = None
        F, J, E, EJ = t.shifted(shift, F, J, E, EJ)
        self.nfev += 1
        res = w * (F - t.forces)
        if jac:
            J = w[:, None] * J
        if f._use_energy:
            dE = E - t.energies
            if f.options.energy_offset:
                dE = dE - dE.mean()
                if jac:
                    EJ = EJ - EJ.mean(axis=0)
            res = np.concatenate([res, ew * dE])
            if jac:
                J = np.vstack([J, ew * EJ])
        return res, J

    def residual_plain(self, theta):
        res, _ = self._rows(theta, False)
        return res if np.all(np.isfinite(res)) else None

    def _cons(self, theta, jac: bool = True):
        """Constraint values and (with ``jac``, else ``None``) Jacobians at θ."""
        pot = None
        vals, jacs = [], []
        for c, pts in zip(self.f.constraints, self._points, strict=True):
            if pts is not None:
                consts, T = self.table(theta)
                shift = self.shift(theta, jac)
                v, J = _point_values(c, self.prog, consts, T, *pts, jac=jac, shift=shift)
                vals.append(v)
                jacs.append(J)
                continue
            if pot is None:
                pot = _with_theta(self.par, theta, self.f.cutoff, self.f.scheme)
            v, J = _constraint_values(c, pot, self.par, theta)
            vals.append(v)
            jacs.append(J)
        return vals, jacs

    def _linear_start(self, x0, lo, hi):
        """``x0`` with the linear prefactors solved exactly (``None`` if not finite there)."""
        res0, J0 = self._rows(x0, True)
        if not (np.all(np.isfinite(res0)) and np.all(np.isfinite(J0))):
            return None
        x = x0.copy()
        if self.lin.any():
            # F is linear in these parameters: one exact linear solve from the start
            step = _lstsq(J0[:, self.lin], -res0)
            x[self.lin] = np.clip(x[self.lin] + step, lo[self.lin], hi[self.lin])
            if not np.all(np.isfinite(self._rows(x, False)[0])):
                x = x0.copy()
        return x

    def _relaxation(self):
        """The same expression with each per-type prefactor made one constant per type
        pair (``prod_q`` → ``pair_prod_q``), its problem, and how its parameters map back."""
        par = self.par
        consts = self.prog.constants
        text = self.prog.expression
        taken = set(consts)
        renamed = {}
        for k in self._typed:
            name = f"pair_{consts[k]}"
            while name in taken:  # the user's expression already has a constant so named
                name += "_"
            taken.add(name)
            renamed[k] = name
            text = re.sub(rf"\b{consts[k]}\b", name, text)
        prog = self.f.compile(text)
        rpar = Parameterization(prog, par.species, par.type_pairs)
        index = {n: m for m, n in enumerate(rpar.names)}
        common = [(m, index[n]) for m, n in enumerate(par.names) if n in index]
        pairs = {
            k: [index[f"{renamed[k]}[{a}-{b}]"] for a, b in par.type_pairs] for k in self._typed
        }
        return _Problem(self.f, prog, rpar), rpar.default_bounds(), common, pairs

    def _typed_start(self, x0, lo, hi):
        """A start within ``[lo, hi]`` whose per-type prefactors (``q[A]·q[B]``, …) are
        factored from a fit with one prefactor per type pair, begun at ``x0`` (``None``
        when that fails).

        The forces are linear in each per-pair value, so the relaxed fit starts from the
        exact per-pair values at ``x0``'s other constants and has none of the sign
        ambiguity of per-type values; the per-type values closest to its per-pair
        values (:meth:`~mctsff.params.Parameterization.factored`) then start this fit
        near its optimum when the combining rule can represent it.  From random
        per-type starts the exact ``prod_c1*exp(-r/c1) - prod_c2/r**6`` on Buckingham
        forces ended at 7e-2 of the force RMS (3 or 8 starts; ``q[H]`` and ``q[O]`` of
        opposite sign, so the repulsion could not be ``q[A]·q[B] > 0``).
        """
        if self._relaxed is None:
            self._relaxed = self._relaxation()
        relaxed, (rlo, rhi), common, pairs = self._relaxed
        C, _ = self.table(x0)
        xr = np.zeros(relaxed.par.n_params)
        rlo, rhi = rlo.copy(), rhi.copy()
        for m, j in common:  # the shared constants keep this fit's (the user's) bounds
            xr[j] = x0[m]
            rlo[j], rhi[j] = lo[m], hi[m]
        for k, idx in pairs.items():
            xr[idx] = C[:, k]
        sol = relaxed.explore(np.clip(xr, rlo, rhi), rlo, rhi, tol=RELAXED_FTOL)
        self.relaxed_nfev += relaxed.nfev  # reported, not counted against max_fit_nfev
        relaxed.nfev = 0
        if sol is None:
            return None
        xr = sol[0]
        x = x0.copy()
        for m, j in common:
            x[m] = xr[j]
        x = self.par.factored(x, {k: xr[idx] for k, idx in pairs.items()})
        return None if x is None else np.clip(x, lo, hi)

    def solve_linear(self, x0, lo, hi):
        """``x0`` with every linear prefactor solved exactly, and the loss there.

        The forces are affine in the linear prefactors, so one Jacobian at ``x0`` gives
        the exact least-squares prefactors; built-in equality constraints (``force0``,
        ``energy0``), affine in them too, enter as penalty rows weighted so that a
        violation of ``constraint_tol`` costs :data:`PENALTY_SHARE` of the zero model's
        loss.  Returns ``(x, loss)``, or ``None`` where the residual is not finite.
        """
        res0, J0 = self._rows(x0, True)
        if not (np.all(np.isfinite(res0)) and np.all(np.isfinite(J0))):
            return None
        lin = self.lin
        x = x0.copy()
        if not lin.any():
            return x, float(res0 @ res0)
        A = J0[:, lin]
        rows, offs = [], []
        for c, pts in zip(self.f.constraints, self._points, strict=True):
            if pts is not None and c.kind == "eq":
                consts, T = self.table(x0)
                v, Jc = _point_values(c, self.prog, consts, T, *pts, shift=self.shift(x0))
                rows.append(Jc[:, lin])
                offs.append(v - Jc[:, lin] @ x0[lin])
        b = -res0 + A @ x0[lin]  # the prefactors solve A·a ≈ b
        if rows:
            # the constraint is |c| <= tol, not c = 0: penalty rows cost (|c|/tol)² x 1e-4
            # of the zero model's loss, so a term that has died out before the cutoff
            # (c ~ 1e-100 per unit prefactor) keeps its prefactor
            w = math.sqrt(PENALTY_SHARE * self.f.loss_zero) / self.f.options.constraint_tol
            C = np.vstack(rows)
            c0 = np.concatenate(offs)
            if not (np.all(np.isfinite(C)) and np.all(np.isfinite(c0))):
                return None
            a = _lstsq(np.vstack([A, w * C]), np.concatenate([b, -w * c0]))
        else:
            a = _lstsq(A, b)
        x[lin] = np.clip(a, lo[lin], hi[lin])
        d = res0 + A @ (x[lin] - x0[lin])
        loss = float(d @ d)
        return (x, loss) if math.isfinite(loss) else None

    def scan_starts(self, x0, lo, hi) -> list[np.ndarray]:
        """Starts from a scan of the nonlinear constants with exact prefactors (best first).

        Per-type prefactors (``q[A]·q[B]``) are relaxed to one value per type pair, in
        which U is linear; the nonlinear constants are laid on physical grids
        (:func:`mctsff.scan.grid`), on the scan's frames (:data:`SCAN_PAIRS`); at each grid
        point the prefactors are solved exactly (:meth:`solve_linear`); up to
        :data:`SCAN_POLISH` local minima of that reduced loss are polished briefly there
        and ranked (on a small training set, where the scan uses all of it, the picks are
        refined by the relaxed problem's local solver instead); the per-pair prefactors of
        the best are factored back into per-type values
        (:meth:`~mctsff.params.Parameterization.factored` and :func:`_diagonal_factors`,
        the sign of each type chosen by the factorisation).  At most ``n_starts`` starts.
        """
        n_keep = self.f.options.n_starts
        if self._typed:
            if self._relaxed is None:
                self._relaxed = self._relaxation()
            relaxed, (rlo, rhi), common, pairs = self._relaxed
            rlo, rhi = rlo.copy(), rhi.copy()
            xr0 = np.ones(relaxed.par.n_params)
            for m, j in common:
                xr0[j] = x0[m]
                rlo[j], rhi[j] = lo[m], hi[m]
        else:
            relaxed, rlo, rhi, xr0 = self, lo, hi, x0
        mask = ~relaxed.lin
        axes = scan.axes_for(relaxed.par.names, relaxed.par.base_name, mask, relaxed.prog)
        points = scan.grid(axes, np.clip(xr0, rlo, rhi), rlo, rhi, self.f.cutoff, self.f.r_min)
        solved, losses = [], []
        scanner = relaxed
        if self.f._scan_data is not self.f._data and len(points) > 1:
            scanner = _Problem(self.f, relaxed.prog, relaxed.par, data=self.f._scan_data)
        for p in points:
            try:
                with np.errstate(all="ignore"):
                    sol = scanner.solve_linear(p, rlo, rhi)
            except NUMERIC_ERRORS:
                sol = None
            solved.append(p if sol is None else sol[0])
            losses.append(math.inf if sol is None else sol[1])
        picks = scan.local_minima(points, losses, mask)
        polished = scanner is not relaxed and mask.any()
        if polished:
            # a short polish on the scan's frames ranks the local minima (a narrow basin's
            # grid neighbour can sit above a broad basin's)
            ranked = []
            for i in picks[:SCAN_POLISH]:
                try:
                    with np.errstate(all="ignore"):
                        sol = scanner.explore(
                            solved[i], rlo, rhi, tol=LOOSE_FTOL, max_iter=SCAN_POLISH_NFEV
                        )
                except NUMERIC_ERRORS:
                    sol = None
                if sol is not None:
                    solved[i] = sol[0]
                    ranked.append((sol[1], i))
            picks = [i for _, i in sorted(ranked)] or picks
        picks = picks[:n_keep]
        if scanner is not relaxed:
            self.relaxed_nfev += scanner.nfev
            # the picks' prefactors, solved again on the whole training set
            for i in picks:
                try:
                    with np.errstate(all="ignore"):
                        sol = relaxed.solve_linear(solved[i], rlo, rhi)
                except NUMERIC_ERRORS:
                    sol = None
                if sol is not None:
                    solved[i] = sol[0]
        if relaxed is not self:
            relaxed_nfev = relaxed.nfev
        # a user's function constraint names per-type parameters the relaxed problem lacks
        cons = self.f.constraints
        pointwise = bool(cons) and all(c.r_points is not None for c in cons)
        starts = []
        for i in picks:
            x = solved[i]
            if relaxed is not self:
                sol = None
                try:
                    with np.errstate(all="ignore"):
                        if not polished:  # (a polish on the scan's frames is enough to factor)
                            sol = (
                                relaxed.solve(x, rlo, rhi, ftol=RELAXED_FTOL)
                                if pointwise
                                else relaxed.explore(x, rlo, rhi, tol=RELAXED_FTOL)
                            )
                except NUMERIC_ERRORS:
                    sol = None
                xr = x if sol is None else sol[0]
                x = x0.copy()
                for m, j in common:
                    x[m] = xr[j]
                values = {k: xr[idx] for k, idx in pairs.items()}
                for xf in (self.par.factored(x, values), _diagonal_factors(self.par, x, values)):
                    if xf is not None and not any(np.array_equal(xf, y) for y in starts):
                        starts.append(np.clip(xf, lo, hi))
                continue
            starts.append(x)
        if relaxed is not self:
            self.relaxed_nfev += relaxed.nfev - relaxed_nfev
            relaxed.nfev = relaxed_nfev
        return starts[:n_keep]

    def explore(self, x0, lo, hi, tol: float | None = None, max_iter: int | None = None):
        """One start without constraints: exact linear prefactors, then a loose solve."""
        x = self._linear_start(x0, lo, hi)
        if x is None:
            return None
        if tol is None:
            tol = 1e-12 if not self.f.constraints else 1e-7
        x, res, _ = levenberg_marquardt(
            lambda th: self._rows(th, False)[0],
            lambda th: self._rows(th, True),
            x,
            lo,
            hi,
            max_iter=self.f.options.max_nfev if max_iter is None else max_iter,
            ftol=tol,
        )
        loss = float(res @ res)
        return (x, loss) if math.isfinite(loss) else None

    def solve(self, x0, lo, hi, ftol: float = 1e-15, max_iter: int | None = None):
        """Constrained solve from ``x0``. Returns (θ, loss, violation, multipliers).

        Every constraint (equalities and inequalities) is linearised in each step of
        :func:`constrained_levenberg_marquardt`: no penalty parameter and no outer loop.
        Where that leaves a constraint unmet (an ill-conditioned one), the
        augmented-Lagrangian outer loop takes them all, from where the first pass ended.
        """
        cons = self.f.constraints
        if not cons:
            x = x0.copy()
            res, _ = self._rows(x, False)
            return x, float(res @ res), 0.0, {}
        sol = self._solve(x0, lo, hi, list(range(len(cons))), ftol, max_iter)
        if sol is not None and sol[2] > self.f.options.constraint_tol:
            again = self._solve(sol[0], lo, hi, [], ftol, max_iter)
            # feasible here means within constraint_tol itself (not the 10x reported as met)
            if again is not None and _better(again, sol, 0.1 * self.f.options.constraint_tol):
                sol = again
        return sol

    def _solve(self, x0, lo, hi, inner, ftol, max_iter=None):
        """:meth:`solve` with the constraints ``inner`` (indices) kept by the inner
        solver, the others by the augmented Lagrangian."""
        o = self.f.options
        x = x0.copy()
        cons = self.f.constraints
        kinds = [c.kind for c in cons]
        al = [i for i in range(len(cons)) if i not in inner]
        vals, jacs = self._cons(x)
        if not all(np.all(np.isfinite(v)) for v in vals):
            return None
        # scale each AL constraint by its gradient norm at the start, so that one
        # insensitive to θ (e.g. 6C/rc^7) is not lost in the loss
        scales = {
            i: np.maximum(np.linalg.norm(jacs[i], axis=1), 1e-8 * (1.0 + np.abs(vals[i])))
            for i in al
        }

        def inner_cons(th, jac=True):
            vs, Js = self._cons(th, jac)
            v = np.concatenate([vs[i] for i in inner])
            return v, (np.vstack([Js[i] for i in inner]) if jac else None)

        ineq_rows = np.concatenate(
            [np.full(vals[i].size, kinds[i] == "ineq") for i in inner] or [np.zeros(0, bool)]
        )

        def solver(fun, fun_jac, x):
            if inner:
                return constrained_levenberg_marquardt(
                    fun,
                    fun_jac,
                    inner_cons,
                    x,
                    lo,
                    hi,
                    max_iter=o.max_nfev if max_iter is None else max_iter,
                    ftol=ftol,
                    ctol=0.1 * o.constraint_tol,
                    ineq=ineq_rows,
                )
            n = o.max_nfev if max_iter is None else max_iter
            return levenberg_marquardt(fun, fun_jac, x, lo, hi, max_iter=n, ftol=ftol)

        lam = {i: np.zeros_like(vals[i]) for i in al}
        mu = o.mu0
        prev_viol = math.inf
        for _outer in range(max(1, o.max_outer) if al else 1):

            def fun(th, lam=lam, mu=mu):
                r, _ = self._rows(th, False)
                if not al:
                    return r
                vs, _ = self._cons(th, jac=False)
                extra = [_al_rows(vs[i] / scales[i], lam[i], mu, kinds[i]) for i in al]
                return np.concatenate([r, *extra])

            def fun_jac(th, lam=lam, mu=mu):
                r, J = self._rows(th, True)
                if not al:
                    return r, J
                vs, Js = self._cons(th)
                rows = [_al_rows(vs[i] / scales[i], lam[i], mu, kinds[i]) for i in al]
                jac = [
                    _al_jac(vs[i] / scales[i], Js[i] / scales[i][:, None], lam[i], mu, kinds[i])
                    for i in al
                ]
                return np.concatenate([r, *rows]), np.vstack([J, *jac])

            x, res, _ = solver(fun, fun_jac, x)
            if not np.all(np.isfinite(res)):
                return None
            vals, _ = self._cons(x, jac=False)
            viol = max(_violation(v, k) for v, k in zip(vals, kinds, strict=True))
            if not math.isfinite(viol):
                return None
            if viol <= o.constraint_tol or not al:
                break
            if self.nfev >= o.max_fit_nfev:
                break  # evaluation cap per candidate: report what was reached
            for i in al:
                v = vals[i] / scales[i]
                lam[i] = lam[i] + mu * v if kinds[i] == "eq" else np.maximum(0.0, lam[i] + mu * v)
            if viol > 0.25 * prev_viol:
                if mu >= MU_MAX:
                    break  # the constraint cannot be met by this expression
                mu *= 10.0
            prev_viol = viol
        res, J = self._rows(x, True)
        loss = float(res @ res)
        if not math.isfinite(loss):
            return None
        vals, jacs = self._cons(x)
        viol = max(_violation(v, k) for v, k in zip(vals, kinds, strict=True))
        mults = {}
        if inner:
            # least-squares multipliers of the binding rows (an inequality row well
            # inside its bound has none)
            bind = [
                np.ones(vals[i].size, bool) if kinds[i] == "eq" else vals[i] >= -o.constraint_tol
                for i in inner
            ]
            C = np.vstack([jacs[i][b] for i, b in zip(inner, bind, strict=True)])
            with np.errstate(all="ignore"):
                nu = (
                    np.linalg.lstsq(C.T, -(J.T @ res), rcond=1e-12)[0]
                    if np.isfinite(C).all() and C.shape[0]
                    else np.full(C.shape[0], np.nan)
                )
            start = 0
            for i, b in zip(inner, bind, strict=True):
                m = np.zeros(vals[i].size)
                m[b] = nu[start : start + int(b.sum())]
                mults[cons[i].name] = m
                start += int(b.sum())
        for i in al:
            mults[cons[i].name] = lam[i] / scales[i]
        return x, loss, viol, mults


def _lstsq(A: np.ndarray, b: np.ndarray, rcond: float = 1e-13) -> np.ndarray:
    """Minimum-norm least-squares solution of ``A x ≈ b`` for a few columns.

    Solved through the column-scaled normal equations and a symmetric eigensolve (a
    pseudo-inverse dropping eigenvalues below ``rcond`` of the largest): for tall
    matrices with a handful of columns this costs a fraction of ``numpy.linalg.lstsq``,
    whose LAPACK driver may also start BLAS threads, and it is exact enough for a
    start that a local solver then polishes.
    """
    n = A.shape[1]
    if n == 0:
        return np.zeros(0)
    scale = np.sqrt(np.einsum("ij,ij->j", A, A))
    scale = np.where(scale > 0, scale, 1.0)
    As = A / scale
    G = As.T @ As
    w, V = np.linalg.eigh(G)
    keep = w > rcond * max(float(w[-1]), 1e-300)
    g = V.T @ (As.T @ b)
    y = np.zeros(n)
    y[keep] = g[keep] / w[keep]
    return (V @ y) / scale


def levenberg_marquardt(
    fun, fun_jac, x0, lo, hi, *, max_iter=200, ftol=1e-12, xtol=1e-14, gtol=1e-10
):
    """Bound-constrained Levenberg–Marquardt for small dense problems.

    Marquardt scaling with Nielsen's damping update; variables at a bound whose
    gradient pushes outwards are frozen for the step, the step is projected onto
    the box ``[lo, hi]``, and a non-finite trial point counts as a failed step.
    Stops when the relative decrease of ``Σres²`` falls below ``ftol`` on an
    accepted step, when the step is below ``xtol`` relative to ``x``, when every
    free column of J is orthogonal to the residual to within ``gtol`` (the
    cosine test of MINPACK), or after ``max_iter`` evaluations.

    Parameters
    ----------
    fun
        ``x -> residual vector``.
    fun_jac
        ``x -> (residual vector, Jacobian)``.

    Returns
    -------
    x, residual, n_evaluations
    """
    x = np.clip(np.asarray(x0, dtype=np.float64), lo, hi)
    r, J = fun_jac(x)
    nev = 1
    if not (np.isfinite(r).all() and np.isfinite(J).all()):
        return x, r, nev
    f = float(r @ r)
    A = J.T @ J
    g = J.T @ r
    damp = 1e-3 * max(float(A.diagonal().max(initial=0.0)), 1e-300)
    nu = 2.0
    has_bounds = bool(np.isfinite(lo).any() or np.isfinite(hi).any())
    while nev < max_iter:
        diag = A.diagonal()
        if has_bounds:
            # projected gradient: freeze components pushing against an active bound
            free = ~(((x <= lo) & (g > 0)) | ((x >= hi) & (g < 0)))
            if not free.any():
                break
            if free.all():
                free = None  # same numbers as masking with an all-True mask, less work
        else:
            free = None
        gf = g if free is None else g[free]
        df = diag if free is None else diag[free]
        # cosine between each free column and the residual
        if (np.abs(gf) <= gtol * np.sqrt(df * f)).all():
            break
        Af = A if free is None else A[np.ix_(free, free)]
        d = np.maximum(df, 1e-12 * max(float(df.max()), 1e-300))
        lhs = Af.copy()
        lhs.flat[:: lhs.shape[0] + 1] += damp * d  # the diagonal
        # LAPACK's LU solve called directly: np.linalg.solve costs ~25 µs of wrapping
        _, _, sf, info = _dgesv(lhs, -gf, overwrite_a=1, overwrite_b=0)
        if info != 0 or not np.isfinite(sf).all():  # singular: damp harder
            damp *= nu
            nu *= 2.0
            if not damp <= 1e30:  # hopeless (or a non-finite J): stop, never spin
                break
            continue
        if free is None:
            step = sf
        else:
            step = np.zeros_like(x)
            step[free] = sf
        x_new = np.clip(x + step, lo, hi) if has_bounds else x + step
        step = x_new - x
        if math.sqrt(step @ step) <= xtol * (math.sqrt(x @ x) + xtol):
            break
        r_new = fun(x_new)
        nev += 1
        f_new = float(r_new @ r_new)
        pred = -(2.0 * float(step @ g) + float(step @ A @ step))
        if math.isfinite(f_new) and f_new < f and pred > 0:
            rho = (f - f_new) / pred
            converged = (f - f_new) <= ftol * f
            x = x_new
            r, J = fun_jac(x)
            nev += 1
            if not (np.isfinite(r).all() and np.isfinite(J).all()):
                break
            f = float(r @ r)
            A = J.T @ J
            g = J.T @ r
            damp *= max(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3)
            nu = 2.0
            if converged:
                break
        else:
            damp *= nu
            nu *= 2.0
            if damp > 1e30:
                break
    return x, r, nev


def constrained_levenberg_marquardt(
    fun, fun_jac, cons, x0, lo, hi, *, max_iter=200, ftol=1e-15, xtol=1e-14, ctol=1e-9, ineq=None
):
    """Levenberg–Marquardt with constraints ``|c(x)| ≤ ctol`` (``c(x) ≤ ctol`` on the rows
    of ``ineq``) linearised at every step.

    An equality constraint is met when ``|c| ≤ ctol`` (the band the fit reports against),
    so a constraint row binds only where the step would leave the band: each step first
    solves the damped Gauss–Newton model ``‖J s + r‖² + λ sᵀDs`` alone, then, for the
    rows outside the band (now or after the step), the KKT system with ``C s = −c`` on
    those rows (on the variables not held at a bound), so the iterates move onto the
    constraint surface in one or two steps: no penalty parameter and no outer loop.  A
    term that has died out before the constraint's point (``c ~ 1e-100`` per unit of its
    prefactor) therefore never forces its prefactor to zero.  A step is accepted when
    it lowers the merit ``‖r‖² + ρ Σ max(0, |c| − ctol)`` (``ρ`` twice the largest
    multiplier seen); the damping follows Nielsen's update on the merit's actual over
    predicted decrease.  Stops on a relative decrease of ``‖r‖²`` below ``ftol`` inside
    the band, a relative step below ``xtol``, or after ``max_iter`` evaluations; a last
    minimum-norm Newton step on the rows still outside the band then cleans up, where
    it costs the fit nothing.

    Parameters
    ----------
    fun, fun_jac
        As for :func:`levenberg_marquardt`.
    cons
        ``(x, jac) -> (c, C)``: constraint values ``(n_c,)`` and, with ``jac``, their
        Jacobian ``(n_c, n)`` (else ``None``).
    ineq
        Boolean mask ``(n_c,)`` of the inequality rows ``c ≤ 0`` (``None``: all are
        equalities).  An inequality row binds (as ``C s = −c``) only in a step that would
        leave its band, so one inside its bound never holds the step back: an active set
        recomputed in every step.

    Returns
    -------
    x, residual, n_evaluations
    """

    x = np.clip(np.asarray(x0, dtype=np.float64), lo, hi)
    r, J = fun_jac(x)
    c, C = cons(x, True)
    eq = np.ones(c.size, bool) if ineq is None else ~np.asarray(ineq, bool)

    def signed(v):
        """Distance past the bound: |c| on equality rows, c on inequality rows."""
        return np.where(eq, np.abs(v), v)

    def excess(v):
        return float(np.maximum(signed(v) - ctol, 0.0).sum())

    nev = 1
    if not (np.isfinite(r).all() and np.isfinite(J).all() and np.isfinite(c).all()):
        return x, r, nev
    f = float(r @ r)
    A = J.T @ J
    g = J.T @ r
    damp = 1e-3 * max(float(A.diagonal().max(initial=0.0)), 1e-300)
    nu = 2.0
    rho = 0.0
    n = x.size
    while nev < max_iter:
        free = ~(((x <= lo) & (g > 0)) | ((x >= hi) & (g < 0)))
        if not free.any():
            break
        fi = np.flatnonzero(free)
        Af = A[np.ix_(fi, fi)]
        d = np.maximum(Af.diagonal(), 1e-12 * max(float(Af.diagonal().max()), 1e-300))
        H = Af.copy()
        H[np.arange(fi.size), np.arange(fi.size)] += damp * d
        Cf = C[:, fi]
        active = signed(c) > ctol
        sol = None
        for _ in range(3):  # grow the set of binding rows until the step stays in the band
            k = int(active.sum())
            if k > fi.size:  # more binding rows than free variables: keep the worst
                worst = np.argsort(-signed(c) * active)[: fi.size]
                active = np.zeros_like(active)
                active[worst] = True
                k = fi.size
            kkt = np.zeros((fi.size + k, fi.size + k))
            kkt[: fi.size, : fi.size] = H
            kkt[: fi.size, fi.size :] = Cf[active].T
            kkt[fi.size :, : fi.size] = Cf[active]
            rhs = np.concatenate([-g[fi], -c[active]])
            _, _, sol, info = _dgesv(kkt, rhs, overwrite_a=1, overwrite_b=0)
            if info != 0 or not np.isfinite(sol).all():
                sol = None
                break
            pred_c = c + Cf @ sol[: fi.size]
            more = (signed(pred_c) > ctol) & ~active
            if not more.any() or k == fi.size:
                break
            active |= more
        if sol is None:
            damp *= nu
            nu *= 2.0
            if not damp <= 1e30:
                break
            continue
        step = np.zeros(n)
        step[fi] = sol[: fi.size]
        mult = sol[fi.size :]
        rho = max(rho, 2.0 * float(np.max(np.abs(mult), initial=0.0)))
        x_new = np.clip(x + step, lo, hi)
        step = x_new - x
        if math.sqrt(step @ step) <= xtol * (math.sqrt(x @ x) + xtol):
            break
        r_new = fun(x_new)
        c_new, _ = cons(x_new, False)
        nev += 1
        f_new = float(r_new @ r_new)
        e_old, e_new = excess(c), excess(c_new)
        pred = -(2.0 * float(step @ g) + float(step @ A @ step)) + rho * (
            e_old - excess(c + C @ step)
        )
        ared = (f + rho * e_old) - (f_new + rho * e_new)
        if math.isfinite(f_new) and np.isfinite(c_new).all() and ared > 0 and pred > 0:
            ratio = ared / pred
            converged = (f - f_new) <= ftol * f and e_new == 0.0
            x = x_new
            r, J = fun_jac(x)
            c, C = cons(x, True)
            nev += 1
            if not (np.isfinite(r).all() and np.isfinite(J).all() and np.isfinite(C).all()):
                break
            f = float(r @ r)
            A = J.T @ J
            g = J.T @ r
            damp *= max(1.0 / 3.0, 1.0 - (2.0 * ratio - 1.0) ** 3)
            nu = 2.0
            if converged:
                break
        else:
            damp *= nu
            nu *= 2.0
            if damp > 1e30:
                break
    # clean-up: minimum-norm Newton steps on the rows outside the band, where free
    for _ in range(3):
        out = signed(c) > 0.1 * ctol
        if not (np.isfinite(c).all() and out.any()) or excess(c) == 0.0:
            break
        free = (x > lo) & (x < hi)
        if not free.any():
            break
        s_f = np.linalg.lstsq(C[np.ix_(out, free)], -c[out], rcond=1e-14)[0]
        x_new = x.copy()
        x_new[free] += s_f
        x_new = np.clip(x_new, lo, hi)
        c_new, _ = cons(x_new, True)
        if not (np.isfinite(c_new).all() and excess(c_new) < excess(c)):
            break
        r_new = fun(x_new)
        nev += 1
        f_old = float(r @ r)
        if not (np.isfinite(r_new).all() and float(r_new @ r_new) <= f_old * (1 + 1e-6) + 1e-300):
            break  # the constraint cannot be cleaned up without giving up the fit
        x, r = x_new, r_new
        c, C = cons(x, True)
    return x, r, nev


def _violation(v, kind) -> float:
    if kind == "eq":
        return float(np.max(np.abs(v))) if v.size else 0.0
    return float(np.max(np.maximum(v, 0.0))) if v.size else 0.0


def _al_rows(v, lam, mu, kind):
    s = math.sqrt(mu)
    if kind == "eq":
        return s * (v + lam / mu)
    return s * np.maximum(0.0, v + lam / mu)


def _al_jac(v, J, lam, mu, kind):
    s = math.sqrt(mu)
    if kind == "eq":
        return s * J
    active = (v + lam / mu) > 0
    return s * J * active[:, None]


__all__ = [
    "Constraint",
    "ExpressionError",
    "FitConfigError",
    "FitOptions",
    "Fitter",
    "energy_zero_at",
    "force_zero_at",
    "parse_constraint",
    "potfit_weights",
    "repulsive_core",
]

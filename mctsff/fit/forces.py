"""Force matching: :class:`Fitter` fits the constants of an expression to reference forces.

The default fit (:meth:`Fitter.fit`): starts from a scan of the nonlinear constants and
from a seeded ladder, each solved loosely, the best solved to convergence under the
constraints (:mod:`mctsff.fit.problem`); the result is a
:class:`~mctsff.fit.result.FitResult` with training and validation RMSEs, the constraint
residuals and the flags a chemist would want (parameters at a bound, plausibility).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from mctsff.data.projection import ForceProjection, ProjectionError
from mctsff.expr import kernels
from mctsff.expr.params import (
    CUTOFF_SCHEMES,
    Parameterization,
    Potential,
)
from mctsff.expr.program import Program
from mctsff.fit.constraints import (
    CONSTRAINT_TOL,
    MET,
    Constraint,
    FitConfigError,
    constraint_values,
    parse_constraint,
    point_values,
    repulsive_wall,
    scheme_shift,
)
from mctsff.fit.plausibility import molecule_compositions, plausibility_flags
from mctsff.fit.problem import (
    LOOSE_FTOL,
    NUMERIC_ERRORS,
    Problem,
    is_better,
    is_feasible,
    projected_rows,
    rank_key,
)
from mctsff.fit.result import FitResult
from mctsff.fit.target import Target, as_target, potfit_weights

#: Default radius (Å) down to which every type pair's potential must be repulsive.
WALL_RADIUS = 0.5

#: Force (eV/Å) with which every type pair's potential must push two atoms apart at the
#: wall radius (U'(r_wall) ≤ −WALL_FORCE; :func:`~mctsff.fit.constraints.repulsive_wall`),
#: so that a flat potential (zero charges on a Coulomb term) is no wall.  1 eV/Å is the
#: scale of the thermal forces on atoms in liquid water (the RMS force component of the
#: shipped DFT frames, ``bulk_water_dft_80x192.extxyz``, is 0.8 eV/Å): an atom that reaches
#: the wall radius is pushed back at least as hard as the liquid pushes it about, and any
#: repulsive term of a real potential at 0.5 Å exceeds it many times (q-SPC/Fw's H–H
#: Coulomb term: 9.7 eV/Å).  The numerical wall check of export and md-check
#: (:func:`mctsff.export.wall_problem`) applies the same bound.
WALL_FORCE = 1.0

#: What a fit compares: every atom's force (``"atoms"``), or each molecule's net force and
#: torque (``"rigid"``: the rigid-body part of the force errors, in which intramolecular
#: forces have no share, so total forces of a condensed phase are a target as they are;
#: :mod:`mctsff.data.rigid`).
MATCHES = ("atoms", "rigid")
#: Points per type pair at which a fit's wall is checked (the fit imposes it at 12; a
#: narrow well between two of them, e.g. -c*exp(-a*r**2) at large a, is found here and
#: its points are added to the fit's, :meth:`Fitter._wall_exchange`).
WALL_CHECK = 400
#: Rounds of that exchange of points per fit.
WALL_ROUNDS = 8
#: Points added per type pair and round (the largest local maxima of the violation).
WALL_ADD = 4
#: Fraction of each type pair's shortest distance in the data up to which the wall is
#: strict: U' ≤ −WALL_FORCE from the wall radius to WALL_REACH × r_shortest, U' ≤ 0 from
#: there to r_shortest, so every pair has a barrier of at least
#: WALL_FORCE × (WALL_REACH × r_shortest − r_wall) (all 200 shipped MP2 water dimers,
#: r_wall 0.5 Å: H–H 0.24 eV, H–O 0.40 eV, O–O 0.81 eV).  Why one half: the shortest
#: distance between atoms of different molecules in data sampled at thermal energies is a
#: van der Waals contact, about the sum of the two van der Waals radii; at half of it two
#: atoms overlap as in a chemical bond or closer (covalent / van der Waals radius 0.26 H,
#: 0.45 C, 0.46 N, 0.43 O; Cordero et al. 2008, Bondi 1964), a range no non-bonded pair
#: ever samples and where every physical repulsion pushes far harder than WALL_FORCE:
#: Lennard-Jones at σ/2 pushes 16256 × 24ε/σ (O–O of SPC water 830 eV/Å, He–He 130 eV/Å),
#: so the bound never contradicts the physics; at 3/4 of σ it would (He–He: 0.6 eV/Å).
#: Below the contact distance, where the data do sample, the fit is only asked for U' ≤ 0.
WALL_REACH = 0.5


#: Pairs of the training frames the scan of nonlinear constants evaluates (frames spread
#: evenly; the starts it picks are then solved on the whole training set).
SCAN_PAIRS = 512


#: Evaluations each loose solve of the default fit may take.
LOOSE_NFEV = 60


#: Starts of the default fit solved to convergence after the loose solves: the best
#: ones, the lowest loss, and any within :data:`TIE` of the best.
FINAL_POLISH = 2


#: Starts whose loose loss is within this relative margin of the best are also solved
#: to convergence.
TIE = 1e-3


#: A final solve that raises the loss of a start within 10x the constraint tolerance by
#: more than this factor is discarded for the start itself.
FINAL_WORSE = 2.0


#: Length scales (Å) tried for length-like constants by successive starts.
LENGTH_LADDER = (3.0, 0.3, 1.5, 6.0, 0.6, 2.2, 4.5, 0.15)


@dataclass
class FitOptions:
    """Options of :class:`Fitter` (see there)."""

    constraints: Sequence[str | Constraint] = ()
    match: str = "atoms"
    cutoff_scheme: str = "shifted-force"
    wall: float | None = WALL_RADIUS
    n_starts: int = 3
    seed: int = 0
    weights: str | np.ndarray | None = None
    energy_weight: float = 0.0
    energy_offset: bool = True
    bounds: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    initial: Mapping[str, float] = field(default_factory=dict)
    constraint_tol: float = CONSTRAINT_TOL
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
        :class:`~mctsff.data.projection.ForceProjection` of data too large for memory (built with
        :meth:`~mctsff.data.projection.ForceProjection.split_file`): then every residual and the
        reported ``rmse_train`` are projected (unweighted; no energy term) and
        ``extra["projection"]`` carries the error bound.
    valid
        Optional validation dataset or projection (same species); reported as ``rmse_valid``.
    constraints
        Constraint specs (``"force0"``, ``"energy0"``, ``"repulsive:R"``) or
        :class:`Constraint` objects (none by default). ``force0``/``energy0`` act at the
        dataset cutoff, on the potential as the cutoff scheme shifts it.
    match
        What the fit compares (:data:`MATCHES`): ``"atoms"`` (default), every atom's force;
        ``"rigid"``, each molecule's net force and torque (the rigid-body part of the force
        errors; needs molecule ids, no ``weights`` or ``projection``): a molecule's
        intramolecular forces have no net force or torque, so the total forces of a
        condensed phase (bulk DFT) are a target as they are; RMSEs are then of the
        rigid-body part, per force component.
    cutoff_scheme
        How the potential ends at the cutoff, as MD engines do it (one of
        :data:`~mctsff.expr.params.CUTOFF_SCHEMES`): ``"shifted-force"`` (default) fits, reports
        and exports ``U(r) − U(rc) − (r − rc)·U'(rc)`` per type pair, so energy and force
        are zero at the cutoff for any form and a Coulomb term keeps its charges;
        ``"shifted-energy"`` fits ``U(r) − U(rc)`` (the force jumps at rc);
        ``"constraint"`` imposes U'(rc) = 0 on the form itself (the ``force0``
        constraint, as the originating study did: a bare Coulomb term can meet it only
        with zero charges); ``"none"`` uses the expression as written.
    wall
        Radius in Å (default :data:`WALL_RADIUS`) down to which every type pair's
        potential must be repulsive (U' ≤ 0) below the shortest distance of that pair in
        the training data (``wall_shortest``, also in the results' ``extra``), strictly
        (U' ≤ −:data:`WALL_FORCE`) up to :data:`WALL_REACH` of it: the
        ``wall`` inequality constraint
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
        or a prebuilt :class:`~mctsff.data.projection.ForceProjection` of ``train``: the
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
        self.wall_shortest: list[float | None] | None = None  # per type pair, with a wall
        self._wall_check: Constraint | None = None  # the fitter's own wall, densely
        if o.wall is not None:
            if not (isinstance(o.wall, int | float) and math.isfinite(o.wall) and o.wall > 0):
                raise FitConfigError(f"wall must be a radius > 0 in Å or None, not {o.wall!r}")
            shortest = _shortest_distances(train, len(self.type_pairs))
            self.wall_shortest = [x if math.isfinite(x) else None for x in shortest]
            wall = repulsive_wall(float(o.wall), shortest, WALL_FORCE, WALL_REACH)
            if wall.r_points.size and not any(c.name == "wall" for c in self.constraints):
                self.constraints.append(wall)
                self._wall_check = repulsive_wall(
                    float(o.wall), shortest, WALL_FORCE, WALL_REACH, n=WALL_CHECK
                )
        if o.match not in MATCHES:
            raise FitConfigError(f"match must be one of {', '.join(MATCHES)}, not {o.match!r}")
        if o.match == "rigid":
            for bad, why in (
                (isinstance(train, ForceProjection), "a projection"),
                (o.projection is not None, "projection"),
                (o.weights is not None, "weights"),
            ):
                if bad:
                    raise FitConfigError(
                        f"match='rigid' compares molecules' net forces and torques; it does "
                        f"not combine with {why}"
                    )
        try:
            self._valid = as_target(valid, o.match)
            if not isinstance(train, ForceProjection):
                self._train = Target.from_dataset(train, o.match)
        except ValueError as exc:
            raise FitConfigError(str(exc)) from None
        if isinstance(train, ForceProjection):
            self._init_projected(train)
            return
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
        self.loss_zero = float(np.sum(self._train.compared(self._w * self._train.forces) ** 2))
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
        target = Target.from_dataset(sub, self.options.match)
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
        base, given = _by_name(par, o.initial)
        kind = []
        for name in par.names:
            b = par.base_name(name)
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
        return _inside_bounds(starts, lo, hi)

    @staticmethod
    def _start_vector(par: Parameterization, start: Mapping[str, float] | None):
        """θ of a :meth:`fit` ``start`` (1 where none is given), ``None`` without one."""
        if not start:
            return None
        names = set(par.names) | {par.base_name(n) for n in par.names}
        unknown = sorted(set(start) - names)
        if unknown:
            raise FitConfigError(
                f"start: {', '.join(unknown)} is not a constant of {par.program.expression!r}"
            )
        for key, value in start.items():
            if not (isinstance(value, int | float) and math.isfinite(value)):
                raise FitConfigError(f"start: {key} must be a finite number, not {value!r}")
        return _by_name(par, start)[0]

    # ------------------------------------------------------------------ the fit
    def fit(self, expression: str | Program, start: Mapping[str, float] | None = None) -> FitResult:
        """Fit one expression; never raises for a bad candidate (returns ``valid=False``).

        Parameters
        ----------
        start
            Values of some constants to start one more solve from, by parameter name
            (``prod_c1[H]``) or constant name (``c1``, all its parameters), e.g. the
            constants a term selection found for the candidate; the others start at 1 (the
            linear prefactors are solved exactly anyway).  It is solved like every other
            start, so the fit is at least as good as a loose solve from there.

        Raises
        ------
        ExpressionError
            Only when the expression text itself cannot be compiled.
        FitConfigError
            When ``start`` names a constant the expression does not have, or a value that
            is not finite.
        """
        t0 = time.perf_counter()
        prog = self.compile(expression)
        par = Parameterization(prog, self.species, self.type_pairs)
        x_start = self._start_vector(par, start)
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
        problem = Problem(self, prog, par)
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
            return self._fit_scanned(prog, par, problem, lo, hi, t0, x_start)
        for x0 in self._starts(par, lo, hi, text) + _inside_bounds([x_start], lo, hi):
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
                best is None or is_better(sol, best, self.options.constraint_tol)
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
        theta, loss, viol, mults = self._wall_exchange(problem, best, lo, hi)
        nfev = problem.nfev + problem.relaxed_nfev
        return self._result(prog, par, theta, loss, lo, hi, nfev, t0, losses, mults)

    def _fit_scanned(self, prog, par, problem, lo, hi, t0, x_start=None) -> FitResult:
        """The default fit: starts from the scan and the ladder, polished loosely, the best
        to the end.

        Every start of :meth:`Problem.scan_starts` and of the seeded ladder of
        :meth:`_starts` (``n_starts`` of each) is solved to a relative decrease of
        :data:`LOOSE_FTOL` in at most :data:`LOOSE_NFEV` evaluations under the constraints
        (linearised in every step: the scan's starts directly where all constraints are
        equalities, else from their unconstrained optimum, the ladder's from their
        unconstrained optimum; the best scan start also by the augmented Lagrangian's
        continuation from its unconstrained optimum); the
        :data:`FINAL_POLISH` best of them (feasible first, then lowest loss), the lowest
        loss of all and any other within :data:`TIE` of the best's loss are then solved
        to convergence.  ``x_start`` (see :meth:`fit`) is one more start, solved first.
        """
        o = self.options
        text = prog.expression
        ladder = [x for x in self._starts(par, lo, hi, text) if np.all(np.isfinite(x))]
        starts = problem.scan_starts(ladder[0], lo, hi) if ladder else []
        given = {par.base_name(n) for n in par.names} | set(par.names)
        if ladder and given & set(o.initial):  # the user's own start is always one of them
            starts.insert(0, ladder[0])
        extra = _inside_bounds([x_start], lo, hi)
        starts[:0] = extra

        def run(x0, ftol, n=LOOSE_NFEV):
            try:
                with np.errstate(all="ignore"):
                    if self.constraints:
                        return problem.solve(x0, lo, hi, ftol=ftol, max_iter=n)
                    sol = problem.explore(x0, lo, hi, tol=ftol, max_iter=n)
                    return None if sol is None else (sol[0], sol[1], 0.0, {})
            except NUMERIC_ERRORS:
                return None

        def free_descent(x0):
            """The unconstrained loose optimum from ``x0`` (``None`` where not finite)."""
            try:
                with np.errstate(all="ignore"):
                    return problem.explore(x0, lo, hi, tol=LOOSE_FTOL, max_iter=LOOSE_NFEV)
            except NUMERIC_ERRORS:
                return None

        def constrained(free, linearised: bool):
            """The constraints from an unconstrained optimum ``free``: linearised in each
            step (a start that meets the wall first would stop on it short of the basin its
            unconstrained descent reaches) or by the augmented Lagrangian's continuation
            (the best scan start's second solve: a wall's active set found so is sometimes
            a better basin)."""
            try:
                with np.errstate(all="ignore"):
                    if linearised:
                        return problem.solve(free[0], lo, hi, ftol=LOOSE_FTOL, max_iter=LOOSE_NFEV)
                    return problem._solve(free[0], lo, hi, [], LOOSE_FTOL, LOOSE_NFEV)
            except NUMERIC_ERRORS:
                return None

        # the scan's starts, and the seeded ladder's (ranges on a ladder of length scales,
        # other constants log-normal with random signs: on real data the best basin is
        # sometimes one no grid point leads to, e.g. a saturated tanh(c*r) at large |c|)
        # (equalities alone: the scan's starts solved directly, whose linearised steps reach
        # the exact optimum more often than after a free descent)
        inequality = any(c.kind == "ineq" for c in self.constraints)
        tol = o.constraint_tol
        if not self.constraints:
            loose = [sol for x0 in starts + ladder if (sol := run(x0, LOOSE_FTOL)) is not None]
        else:
            loose = []
            if not inequality:
                loose = [sol for x0 in starts if (sol := run(x0, LOOSE_FTOL)) is not None]
            # (start, linearised?) in turn; the best scan start's free descent serves both
            # of its continuations
            every = starts + ladder
            todo = [(i, True) for i in range(len(starts))] if inequality else []
            todo += [(len(starts) + i, True) for i in range(len(ladder))]
            todo += [(len(extra), False)] if len(starts) > len(extra) else []
            frees = {}
            for i, lin in todo:
                if i not in frees:
                    frees[i] = free_descent(every[i])
                if frees[i] is not None and (sol := constrained(frees[i], lin)) is not None:
                    loose.append(sol)
        losses = [sol[1] for sol in loose]
        if not loose:
            return FitResult.invalid(
                text, "evaluation not finite from every start", prog.complexity
            )
        ranked = sorted(loose, key=lambda sol: rank_key(sol, tol))
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
                    is_feasible(sol, tol) == is_feasible(top, tol) and sol[1] <= top[1] * (1 + TIE)
                )
            ):
                continue
            final = run(sol[0], 1e-15 if self.constraints else 1e-12, n=None)
            # a polish never makes a start much worse: a final solve that more than doubles
            # the loss of a start already within 10x the tolerance (an ill-conditioned
            # constraint row and its huge multiplier) keeps the loose solution
            if final is None or (
                is_better(sol, final, tol)
                and (not is_feasible(final, tol) or final[1] > sol[1] * FINAL_WORSE)
            ):
                final = sol
            if best is None or is_better(final, best, tol):
                best = final
        if best is None:
            return FitResult.invalid(
                text, "evaluation not finite from every start", prog.complexity
            )
        theta, loss, viol, mults = self._wall_exchange(problem, best, lo, hi)
        nfev = problem.nfev + problem.relaxed_nfev
        return self._result(prog, par, theta, loss, lo, hi, nfev, t0, losses, mults)

    def _wall_violations(self, problem: Problem, theta) -> list[np.ndarray]:
        """Per type pair, the radii of the largest local maxima of the wall's violation
        above ``constraint_tol`` on the dense check (:data:`WALL_CHECK` points), at most
        :data:`WALL_ADD` each; empty lists where the wall holds (or no wall is checked)."""
        c = self._wall_check
        n_pairs = len(self.type_pairs)
        if c is None:
            return [np.zeros(0)] * n_pairs
        r, group = c.points(n_pairs)
        consts, T = problem.table(theta)
        with np.errstate(all="ignore"):
            v, _ = point_values(c, problem.prog, consts, T, r, group, jac=False,
                                shift=problem.shift(theta, False))  # fmt: skip
        v = np.where(np.isfinite(v), v, np.inf)
        out = []
        for k in range(n_pairs):
            rk, vk = r[group == k], v[group == k]
            left = np.concatenate([[-np.inf], vk[:-1]])
            right = np.concatenate([vk[1:], [-np.inf]])
            peak = np.flatnonzero((vk > self.options.constraint_tol) & (vk >= left) & (vk >= right))
            out.append(rk[peak[np.argsort(-vk[peak])][:WALL_ADD]])
        return out

    def _wall_exchange(self, problem: Problem, best, lo, hi):
        """``best`` (θ, loss, violation, multipliers) once the wall also holds between its
        points: where the dense check (:data:`WALL_CHECK` points per type pair) finds the
        wall broken (a narrow well between two of the fit's 12 points), those radii join
        the fit's points and the fit is solved again from ``best``, for at most
        :data:`WALL_ROUNDS` rounds (an exchange method for the semi-infinite constraint).
        A round that does not end feasible keeps the previous solution; the result's wall
        residual is then the dense check's (:meth:`_result`), flagged when it fails."""
        index = next((i for i, c in enumerate(problem.constraints) if c.name == "wall"), None)
        if self._wall_check is None or index is None:
            return best
        tol = self.options.constraint_tol
        extra = [np.zeros(0) for _ in self.type_pairs]
        for _ in range(WALL_ROUNDS):
            found = self._wall_violations(problem, best[0])
            if not any(f.size for f in found):
                break
            extra = [np.concatenate([e, f]) for e, f in zip(extra, found, strict=True)]
            problem.replace_constraint(
                index,
                repulsive_wall(
                    float(self.options.wall), [x if x is not None else math.nan
                                               for x in self.wall_shortest],
                    WALL_FORCE, WALL_REACH, extra=extra,
                ),
            )  # fmt: skip
            try:
                with np.errstate(all="ignore"):
                    sol = problem.solve(best[0], lo, hi)
            except NUMERIC_ERRORS:
                sol = None
            if sol is None or not is_feasible(sol, tol):
                break
            best = sol
        return best

    def _evaluate_fixed(self, prog, par, t0) -> FitResult:
        theta = np.zeros(0)
        with np.errstate(all="ignore"):
            problem = Problem(self, prog, par)
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
                shift = scheme_shift(prog, consts, None, self.cutoff, self.scheme)
                res, _ = projected_rows(target, prog, consts, None, shift)
                val = math.sqrt(max(float(res @ res) + target.c_perp, 0.0))
            return val if math.isfinite(val) else math.inf
        return target.rmse_of(self._force_error(prog, consts, target))

    def _force_error(self, prog: Program, consts: np.ndarray, target: Target) -> np.ndarray:
        """Predicted minus reference forces on an exact target (flat)."""
        with np.errstate(all="ignore"):
            f, _ = target.predict(prog, consts)
            shift = scheme_shift(prog, consts, None, self.cutoff, self.scheme)
            f = target.shifted(shift, f)[0]
        return f - target.forces

    def _result(self, prog, par, theta, loss, lo, hi, nfev, t0, losses, mults) -> FitResult:
        params = {n: float(v) for n, v in zip(par.names, theta, strict=True)}
        pot = self.potential(prog, params)
        cons = {}
        flags = []
        for c in self.constraints:
            if c.name == "wall" and self._wall_check is not None:
                c = self._wall_check  # checked between the fit's points too
            val = constraint_values(c, pot, par, theta)[0]
            resid = (
                float(np.max(np.abs(val)))
                if c.kind == "eq"
                else float(np.max(np.maximum(val, 0.0)))
            )
            cons[c.name] = resid
            if not resid <= self.options.constraint_tol * MET:
                flags.append(f"constraint {c.name} not satisfied (residual {resid:.2e})")
        consts, _ = par.table(theta)
        d_train = None  # exact force errors, computed once for the RMSE and the projection check
        if self._train is not None:
            d_train = self._force_error(prog, consts, self._train)
            rmse_train = self._train.rmse_of(d_train)
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
        if self._train is not None:
            flags += null_flags(rmse_train, self._train.rmse_of(self._train.forces))
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
                "wall_shortest": self.wall_shortest,
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


def _by_name(par: Parameterization, values: Mapping[str, float]):
    """θ with the ``values`` given by parameter name (``prod_c1[H]``) or constant name
    (``c1``: all its parameters; a parameter's own name wins), 1 elsewhere, and the mask
    of the parameters given."""
    x = np.ones(par.n_params)
    given = np.zeros(par.n_params, dtype=bool)
    for m, name in enumerate(par.names):
        for key in (name, par.base_name(name)):
            if key in values:
                x[m] = values[key]
                given[m] = True
                break
    return x, given


def _inside_bounds(starts, lo, hi) -> list[np.ndarray]:
    """The starts (``None`` skipped) moved just inside the bounds."""
    out = []
    for x in starts:
        if x is None:
            continue
        with np.errstate(invalid="ignore"):
            x = np.where(np.isfinite(lo), np.maximum(x, lo + 1e-9 * (1 + np.abs(lo))), x)
            x = np.where(np.isfinite(hi), np.minimum(x, hi - 1e-9 * (1 + np.abs(hi))), x)
        out.append(x)
    return out


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
    >>> from mctsff.expr.program import Program
    >>> r_independent_terms(Program.from_string("c1*r/r + c2/r**6"))
    ['c1']
    >>> r_independent_terms(Program.from_string("c1*exp(-r/c2)"))
    []
    """
    variables = {prog.symbols[v] for v in prog.variables}
    expr = prog.sympy
    terms = expr.args if expr.is_Add else (expr,)
    return [str(t) for t in terms if not (t.free_symbols & variables)]


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


def null_flags(rmse_train: float, rmse_zero: float) -> list[str]:
    """Warning when the fit is no better than U = 0 (zero forces) on its training data."""
    if math.isfinite(rmse_train) and rmse_train >= rmse_zero:
        return [
            f"no better than U = 0: training RMSE {rmse_train:.3g} >= {rmse_zero:.3g} of zero"
            " forces (a poor basin or bounds that exclude the data's potential)"
        ]
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

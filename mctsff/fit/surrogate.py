"""Fit-free estimate of how well an expression can match the training forces.

The tree search draws several rollouts per expansion and sends one of them to the
fitter; :class:`ForceSurrogate` lets it choose which without fitting any.  A pair
potential written as a sum of terms, each an amplitude times a shape,
``U(r) = Σ_k a_k g_k(r; b_k)``, predicts forces that are *linear* in the
amplitudes once the shape constants ``b_k`` are fixed.  The surrogate

1. splits the expression into its top-level terms;
2. for each term, computes the forces of the shape with amplitude 1 (one column
   per atom-type pair when the amplitude is a per-type constant, whose per-pair
   values it then treats as free: a relaxation of the product and geometric
   rules) for its shape constants on a fixed grid (9 values, 1e-2 … 1e2, for
   one constant; 5 × 5 values, 10^-1.5 … 10^1.5, for two);
3. picks each term's grid point by coordinate descent (each term's best on its
   own, then two sweeps in which each term's point is re-chosen with the others
   fixed), solving the amplitudes by linear least squares each time;
4. returns the relative RMS residual ``|y − ŷ| / |y|`` of the best choice.

It scores the fitter's own objective: ``y`` holds the training forces times the
fitter's per-component weights (uniform, potfit or the user's) and, when the fit
matches energies too, the frame energies times the energy weight (less their mean
with ``energy_offset``, as in the fit).  The fitter's equality constraints given as
points (``force0``: U'(rc) = 0, ``energy0``: U(rc) = 0, for every type pair) hold:
when the least-squares amplitudes violate one by more than the fitter's
acceptance (:data:`~mctsff.fit.constraints.MET` × ``constraint_tol``), the amplitudes
are solved in the null space of the constraint rows instead, so a lone ``prod_c1/r``
under ``force0`` scores 1 (its only feasible amplitude is 0), as its constrained fit
would, while a term that has died out by the cutoff at a grid point is left free there.
Inequality constraints (``repulsive:R``) and constraints given as functions are not
imposed.

So a sum of inverse powers is scored exactly (``c1/r**12 - c2/r**6 +
prod_c1/r`` scores round-off on Coulomb + LJ forces), and a term with range
constants is scored as well as the grid allows (on the benchmark potentials the
true forms score 1e-2 … 1e-5, decoys 1e-3 … 1).  It is a ranking heuristic, not a
fit: a term with more than two shape constants, or whose amplitude is not a
single linear constant, makes the estimate ``inf`` (unknown).

Cost: about 3–5 ms per new expression on the 16-frame training set of the
benchmarks (the columns of each term and grid point are computed once and kept),
against 30–100 ms for a fit.  Large datasets cost the same: the surrogate uses at
most ``max_frames`` frames, evenly spaced, holding at most ``max_pairs`` pairs (at
least one frame), and at most ``max_rows`` force components of them (a fixed
random subset), and keeps the columns of the ``max_terms`` terms used last.
"""

from __future__ import annotations

import ast
import math
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from mctsff.expr import ops
from mctsff.expr.params import _linear_constants
from mctsff.expr.program import Program, signed_terms
from mctsff.fit.constraints import CONSTRAINT_TOL, MET, Constraint, point_values, scheme_shift
from mctsff.fit.target import Target, potfit_weights

__all__ = ["ForceSurrogate"]

#: grid of one shape constant (both lengths ``r/b`` and inverse lengths ``c*r``)
GRID_1 = np.logspace(-2.0, 2.0, 9)
#: grid of each of two shape constants of one term
GRID_2 = np.logspace(-1.5, 1.5, 5)
#: the forces of a column above this are treated as overflow (the grid point is dropped)
_HUGE = 1e12


class ForceSurrogate:
    """Relative force residual of an expression with linear amplitudes and gridded shapes.

    Parameters
    ----------
    train
        Training :class:`~mctsff.data.Dataset` (forces, pairs within the cutoff).
    variables
        Variable names of the expressions (``("r",)``).
    max_frames, max_pairs, max_rows
        Frames used (evenly spaced over ``train``), pairs in them (frames are
        dropped from the end of that selection until they hold at most
        ``max_pairs``, keeping one) and force components (a seeded subset), so the
        cost and memory do not grow with the dataset.
    max_terms
        Terms whose force columns are kept (least recently used ones go first).
    sweeps
        Coordinate-descent sweeps over the terms' grid points.
    cache_size
        Expressions whose estimates are kept (least recently used ones go first).
    weights
        Per-component force weights of ``train`` (shape ``(n_atoms, 3)`` or flat),
        ``"potfit"`` (:func:`~mctsff.fit.potfit_weights`) or ``None`` (uniform), as
        :class:`~mctsff.fit.FitOptions` ``weights``.
    energy_weight, energy_offset
        Energy rows as in the fit (:class:`~mctsff.fit.FitOptions`); 0 = forces only.
    constraints, constraint_tol
        :class:`~mctsff.fit.Constraint` objects; the equality ones given by
        ``r_points`` are imposed on the amplitudes (when the unconstrained amplitudes
        violate one by more than ``constraint_tol``, in the constraint's units, they
        are solved with it holding exactly), the others ignored.
    cutoff_scheme
        The fit's cutoff scheme (:data:`~mctsff.expr.params.CUTOFF_SCHEMES`; default
        ``"none"``): each term's force and energy columns and its constraint values are
        those of its shifted potential.
    match
        What the fit compares (:class:`~mctsff.fit.FitOptions`): ``"rigid"`` scores the
        molecules' net forces and torques, as the fit does.

    Examples
    --------
    >>> from mctsff.data import data_file, load_dataset
    >>> from mctsff.expr.params import Potential
    >>> ds = load_dataset(data_file("water_dimers_mp2_sample20.extxyz"), cutoff=9.0)
    >>> truth = Potential("c1/r**12 - c2/r**6", {"c1": 6e4, "c2": 40.0}, ds.species, ds.type_pairs)
    >>> s = ForceSurrogate(truth.synthetic(ds))
    >>> s("c1/r**12 - c2/r**6") < 1e-10, s("c1/r**12") > 1e-4
    (True, True)
    """

    def __init__(
        self,
        train,
        variables: Sequence[str] = ("r",),
        max_frames: int = 32,
        max_pairs: int = 20_000,
        max_rows: int = 2048,
        max_terms: int = 256,
        sweeps: int = 2,
        cache_size: int = 4096,
        *,
        weights: np.ndarray | str | None = None,
        energy_weight: float = 0.0,
        energy_offset: bool = True,
        constraints: Sequence[Constraint] = (),
        constraint_tol: float = MET * CONSTRAINT_TOL,
        cutoff_scheme: str = "none",
        match: str = "atoms",
    ) -> None:
        if match == "rigid" and weights is not None:
            raise ValueError("match='rigid' takes no weights")
        w = _component_weights(train, weights)
        n = min(max_frames, train.n_frames)
        idx = np.unique(np.linspace(0, train.n_frames - 1, n).round().astype(int))
        pairs = np.diff(np.asarray(train.pair_offsets))[idx]
        keep = max(int(np.searchsorted(np.cumsum(pairs), max_pairs, side="right")), 1)
        if keep < train.n_frames:
            if w is not None:
                fo = np.asarray(train.frame_offsets)
                atoms = np.concatenate([np.arange(fo[f], fo[f + 1]) for f in idx[:keep]])
                w = w.reshape(-1, 3)[atoms].ravel()
            train = train.subset(idx[:keep])
        if energy_weight > 0 and train.energies is None:
            raise ValueError("energy_weight > 0 but the dataset has no energies")
        self._target = Target.from_dataset(train, match)
        y = self._target.compared(self._target.forces)  # match="rigid": net forces, torques
        n_rows = y.size
        self._rows = None
        if n_rows > max_rows:
            rng = np.random.default_rng(0)
            self._rows = np.sort(rng.choice(n_rows, size=max_rows, replace=False))
        self._n_pairs = len(train.type_pairs)
        self.variables = tuple(variables)
        self.sweeps = int(sweeps)
        self.cache_size = int(cache_size)
        self.max_terms = int(max_terms)
        # the fit's residual rows: w ⊙ F / sqrt(rows) (+ sqrt(energy_weight / frames) ⊙ E)
        # (unweighted forces alone: the forces as they are, the same ranking)
        self._wf = None
        if w is not None or energy_weight > 0:
            w = np.ones(n_rows) if w is None else w
            w = w if self._rows is None else w[self._rows]
            self._wf = w / math.sqrt(w.size)
        self._energy_offset = bool(energy_offset)
        self._ew = math.sqrt(energy_weight / self._target.n_frames) if energy_weight > 0 else 0.0
        self._y = self._rows_of(y if self._rows is None else y[self._rows], self._target.energies)
        self._yy = float(self._y @ self._y)
        self.constraint_tol = float(constraint_tol)
        self.cutoff_scheme = cutoff_scheme
        # each equality constraint with its points for every type pair, as the fitter lays them out
        self._constraints = [
            (c, *c.points(self._n_pairs))
            for c in constraints
            if isinstance(c, Constraint) and c.kind == "eq" and c.r_points is not None
        ]
        self._columns: OrderedDict[tuple, list[np.ndarray] | None] = OrderedDict()
        self._values: OrderedDict[str, float] = OrderedDict()

    @classmethod
    def from_fitter(cls, fitter, **kwargs) -> ForceSurrogate | None:
        """The surrogate of a :class:`~mctsff.fit.Fitter`'s training set.

        ``None`` when the fitter has no pair dataset to score on (a training set
        given as a :class:`~mctsff.data.projection.ForceProjection`, or not a force fit).
        """
        train = getattr(fitter, "train", None)
        if getattr(fitter, "_train", None) is None or not hasattr(train, "subset"):
            return None
        options = getattr(fitter, "options", None)
        variables = getattr(options, "variables", ("r",))
        fit = {}
        if getattr(options, "weights", None) is not None and hasattr(fitter, "_w"):
            # the fitter's weights are normalised by sqrt(rows); the surrogate does its own
            fit["weights"] = np.asarray(fitter._w) * math.sqrt(np.asarray(fitter._w).size)
        if getattr(fitter, "_use_energy", False):
            fit["energy_weight"] = float(options.energy_weight)
            fit["energy_offset"] = bool(options.energy_offset)
        fit["constraints"] = tuple(getattr(fitter, "constraints", ()))
        # the fitter accepts a constraint residual up to MET × its tolerance
        fit["constraint_tol"] = MET * float(getattr(options, "constraint_tol", CONSTRAINT_TOL))
        fit["cutoff_scheme"] = getattr(fitter, "scheme", "none")
        fit["match"] = getattr(options, "match", "atoms")
        try:
            return cls(train, variables, **{**fit, **kwargs})
        except (ValueError, TypeError, AttributeError):
            return None

    def __call__(self, expression: str) -> float:
        """Estimated relative RMS force error of ``expression`` (``inf``: unknown)."""
        values = self._values
        value = values.get(expression)
        if value is not None:
            values.move_to_end(expression)
            return value
        try:
            with np.errstate(all="ignore"):
                value = self._estimate(expression)
        except (SyntaxError, ValueError, TypeError, ArithmeticError, np.linalg.LinAlgError):
            value = math.inf
        if not math.isfinite(value):
            value = math.inf
        values[expression] = value
        if len(values) > self.cache_size:
            values.popitem(last=False)
        return value

    # ----------------------------------------------------------------- internals
    def _estimate(self, expression: str) -> float:
        if self._yy <= 0:
            return math.inf
        cols = [self._term_columns(node) for _, node in signed_terms(expression)]
        if not cols or any(c is None for c in cols):
            return math.inf
        y = self._y

        def rss(blocks) -> float:
            A = np.hstack([b[0] for b in blocks])
            C = np.hstack([b[1] for b in blocks]) if self._constraints else None
            return _rss(y, A, C, self.constraint_tol)

        choice = [min(range(len(c)), key=lambda g, c=c: rss([c[g]])) for c in cols]
        for _ in range(self.sweeps if len(cols) > 1 else 0):
            for i, c in enumerate(cols):
                if len(c) == 1:
                    continue
                fixed = [cols[j][choice[j]] for j in range(len(cols)) if j != i]
                scores = [rss([*fixed, c[g]]) for g in range(len(c))]
                choice[i] = int(np.argmin(scores))
        best = rss([cols[j][choice[j]] for j in range(len(cols))])
        return math.sqrt(min(max(best, 0.0) / self._yy, 1.0))

    def _rows_of(self, forces: np.ndarray, energies: np.ndarray | None) -> np.ndarray:
        """Residual rows of the fit from forces (already row-selected) and frame energies."""
        rows = forces if self._wf is None else self._wf * forces
        if not self._ew:
            return rows
        e = np.asarray(energies, dtype=np.float64)
        if self._energy_offset:
            e = e - e.mean()
        return np.concatenate([rows, self._ew * e])

    def _term_columns(self, node: ast.AST) -> list[tuple[np.ndarray, np.ndarray]] | None:
        """Residual-row and constraint-row columns of one term (amplitude 1) at each grid
        point of its shape constants."""
        prog = Program.from_string(ast.unparse(node), self.variables)
        names = list(prog.constants)
        rules = tuple(ops.constant_rule(n) for n in names)
        key = (np.asarray(prog.code).tobytes(), np.asarray(prog.literals).tobytes(), rules)
        if key in self._columns:
            self._columns.move_to_end(key)
            return self._columns[key]
        out = None
        amps = [n for n in names if n in _linear_constants(prog, rules=tuple(set(rules)))]
        shape = [i for i, n in enumerate(names) if n not in amps]
        if len(amps) == 1 and len(shape) <= 2:
            ia = names.index(amps[0])
            typed = ops.constant_rule(amps[0]) != "global"
            if not shape:
                grid: list[tuple[float, ...]] = [()]
            elif len(shape) == 1:
                grid = [(float(g),) for g in GRID_1]
            else:
                grid = [(float(a), float(b)) for a in GRID_2 for b in GRID_2]
            out = []
            for point in grid:
                block, cons = self._forces(prog, len(names), ia, typed, shape, point)
                if (
                    np.all(np.isfinite(block))
                    and np.abs(block).max(initial=0.0) < _HUGE
                    and np.all(np.isfinite(cons))
                ):
                    out.append((block, cons))
            out = out or None
        self._columns[key] = out
        if len(self._columns) > self.max_terms:
            self._columns.popitem(last=False)
        return out

    def _forces(self, prog, n_constants, ia, typed, shape, point):
        """``(n_rows, k)`` residual rows and ``(n_constraint_rows, k)`` constraint values of
        the term with amplitude 1 on all pairs (k = 1) or on one type pair each (k =
        number of type pairs)."""
        t = self._target
        P = self._n_pairs
        cols, cons = [], []
        for k in range(P) if typed else (None,):
            consts = np.zeros((P, n_constants))
            if k is None:
                consts[:, ia] = 1.0
            else:
                consts[k, ia] = 1.0
            for i, v in zip(shape, point, strict=True):
                consts[:, i] = v
            f, e = t.predict(prog, consts, energies=bool(self._ew))
            shift = scheme_shift(prog, consts, None, t.cutoff, self.cutoff_scheme)
            f, _, e, _ = t.shifted(shift, f, None, e)
            f = t.compared(f)
            cols.append(self._rows_of(f if self._rows is None else f[self._rows], e))
            vals = [
                np.asarray(
                    point_values(c, prog, consts, None, r, group, jac=False, shift=shift)[0],
                    np.float64,
                )
                for c, r, group in self._constraints
            ]
            cons.append(np.concatenate(vals) if vals else np.zeros(0))
        return np.stack(cols, axis=1), np.stack(cons, axis=1)


def _component_weights(train, weights) -> np.ndarray | None:
    """Flat per-component force weights of ``train`` (``None``: uniform)."""
    if weights is None:
        return None
    forces = np.asarray(train.forces, dtype=np.float64).ravel()
    if isinstance(weights, str):
        if weights != "potfit":
            raise ValueError(f"weights must be None, 'potfit' or an array, not {weights!r}")
        return potfit_weights(forces)
    w = np.asarray(weights, dtype=np.float64).ravel()
    if w.shape != forces.shape or not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"weights must be finite, >= 0 and of shape ({forces.size // 3}, 3)")
    return w


def _rss(y: np.ndarray, A: np.ndarray, C: np.ndarray | None = None, tol: float = 0.0) -> float:
    """Residual sum of squares of the least-squares fit of ``y`` by the columns of ``A``,
    with ``|C a| ≤ tol`` when ``C`` has rows.

    The unconstrained solution is kept when it satisfies the constraints to ``tol``
    (the fitter's absolute tolerance); otherwise the coefficients are solved in the
    null space of the constraint rows (``C a = 0``; each row scaled to unit norm,
    rows that are all zero dropped).  Columns that are not finite (a term that overflows
    on the data) give ``inf``, without LAPACK printing its complaint to the console.
    """
    if not np.isfinite(A).all():
        return math.inf
    a, *_ = np.linalg.lstsq(A, y, rcond=None)
    if C is not None and C.size and not np.max(np.abs(C @ a)) <= tol:
        norms = np.linalg.norm(C, axis=1)
        C = C[norms > 0] / norms[norms > 0, None]
        if C.shape[0]:
            _, sv, vt = np.linalg.svd(C)
            rank = int(np.sum(sv > sv[0] * 1e-10)) if sv.size else 0
            N = vt[rank:].T
            if N.shape[1] == 0:
                return float(y @ y)
            A = A @ N
            a, *_ = np.linalg.lstsq(A, y, rcond=None)
    d = y - A @ a
    return float(d @ d)

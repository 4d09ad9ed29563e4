"""The term library's dictionary: the grammar's terms grouped into shapes, the data the
selection sees, and each shape's weighted force columns at grid values of its nonlinear
constants."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from mctsff.expr import ops
from mctsff.expr.grammar import Grammar
from mctsff.fit.forces import SCAN_PAIRS

from .sums import CONST_RE, SumStructure, single_terms

__all__ = [
    "GRAM_COND",
    "GRID_POINTS",
    "Dictionary",
    "Shape",
    "fingerprint",
    "lstsq",
    "selection_data",
    "term_shapes",
]

#: Most grid points of a shape with two or three scanned constants (8 × 8, 4 × 4 × 4).
GRID_POINTS = 64

#: A term of a set: its shape's index and its nonlinear constants by name.
Atom = tuple[int, dict[str, float]]


def fingerprint(X: np.ndarray) -> bytes:
    """Columns rounded to 8 significant digits, scaled by their largest entry."""
    scale = float(np.abs(X).max()) or 1.0
    return np.round(X / scale, 8).tobytes()


#: Largest condition number of the unit-norm columns solved by the normal equations
#: (:func:`lstsq`; one step of iterative refinement brings the solution to what an
#: orthogonal factorisation gives while ``cond * sqrt(eps)`` is well below 1).
GRAM_COND = 1e5


def lstsq(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares coefficients of ``y`` on the columns ``X``, each column scaled to unit
    norm for the solve: a term's columns can be many orders of magnitude apart from
    another's (``exp(c*r**2)`` near the cutoff), and unscaled the small ones fall under
    the solver's rank cut and get no amplitude.

    Where the scaled columns are well conditioned (at most :data:`GRAM_COND`) the
    normal equations are solved from their small Gram matrix's eigendecomposition with one
    step of iterative refinement (a few times faster than the SVD on thousands of rows);
    otherwise, and for non-finite columns, by the SVD with numpy's rank cut."""
    norms = np.linalg.norm(X, axis=0)
    norms[~(norms > 0) | ~np.isfinite(norms)] = 1.0
    Xs = X / norms
    with np.errstate(all="ignore"):
        G = Xs.T @ Xs
        if np.isfinite(G).all() and np.isfinite(y).all():
            lam, V = np.linalg.eigh(G)
            if lam[0] > 0 and lam[-1] <= GRAM_COND**2 * lam[0]:
                a = V @ ((V.T @ (Xs.T @ y)) / lam)
                a += V @ ((V.T @ (Xs.T @ (y - Xs @ a))) / lam)
                return a / norms
    a, *_ = np.linalg.lstsq(Xs, y, rcond=None)
    return a / norms


@dataclass
class Shape:
    """Terms equal up to the combining rules of their amplitudes."""

    key: str
    kinds: dict[tuple[str, ...], str] = field(default_factory=dict)  # amplitude rules -> term
    program: object = None  # the first kind's Program
    text: str = ""  # the first kind's term (the program's text)
    slots: tuple[int, ...] = ()  # constant indices of the amplitudes
    split: tuple[bool, ...] = ()  # per amplitude: one column per type pair
    nonlinear: tuple[str, ...] = ()  # names of the scanned constants


def term_shapes(grammar: Grammar, structure: SumStructure | None, fitter) -> list[Shape]:
    """The grammar's single terms (:func:`~.sums.single_terms`) grouped into shapes: those
    with at least one amplitude and only global nonlinear constants, compiled by
    ``fitter``; a shape's amplitudes are split per type pair where some kind lets them
    vary with the types."""
    from mctsff.expr.params import Parameterization
    from mctsff.expr.program import ExpressionError

    shapes: dict[str, Shape] = {}
    for term in single_terms(grammar, structure):
        try:
            prog = fitter.compile(term)
        except (ExpressionError, ValueError, SyntaxError):
            continue
        par = Parameterization(prog, fitter.species, fitter.type_pairs)
        lin_mask = par.linear_mask()
        linear = {par.base_name(n) for n, m in zip(par.names, lin_mask, strict=True) if m}
        linear |= {prog.constants[k] for k in par.typed_prefactors()}
        if not linear:
            continue  # no amplitude: nothing to select it with
        slots = tuple(k for k, c in enumerate(prog.constants) if c in linear)
        nonlinear = tuple(c for c in prog.constants if c not in linear)
        if any(ops.constant_rule(c) != "global" for c in nonlinear):
            continue  # per-type nonlinear constants: not on a grid here
        rules = tuple(ops.constant_rule(prog.constants[k]) for k in slots)
        key = CONST_RE.sub(lambda m, lin=linear: "\x00A" if m.group(0) in lin else "\x00N", term)
        shape = shapes.get(key)
        if shape is None:
            shape = shapes[key] = Shape(
                key, program=prog, text=term, slots=slots, nonlinear=nonlinear
            )
        shape.kinds.setdefault(rules, term)
    for shape in shapes.values():
        shape.split = tuple(
            any(rules[i] != "global" for rules in shape.kinds) for i in range(len(shape.slots))
        )
    return list(shapes.values())


def selection_data(fitter, max_pairs: int = SCAN_PAIRS):
    """Target of the dictionary: the training frames spread evenly, at most ``max_pairs``
    pairs; the :class:`~mctsff.fit.target.Target` and the row weights."""
    from mctsff.fit.target import Target, potfit_weights

    train = fitter.train
    po = np.asarray(train.pair_offsets)
    n = train.n_frames
    n_pairs = int(po[-1]) if po.size else 0
    frames = np.arange(n)
    if n_pairs > max_pairs:
        k = max(1, min(n, int(round(n * max_pairs / n_pairs))))
        frames = np.unique(np.linspace(0, n - 1, k).round().astype(np.int64))
    sub = train.subset(frames) if frames.size < n else train
    # (with the fit's match="rigid", what is compared is each molecule's net force and
    # torque: Target.compared of the forces and of every column)
    target = Target.from_dataset(sub, getattr(fitter.options, "match", "atoms"))
    # the fitter's row weights multiply the residual (its loss is |w (F - F0)|²)
    weights = fitter.options.weights
    if isinstance(weights, str):
        w = potfit_weights(target.forces)
    elif weights is None or frames.size < n:
        w = np.ones_like(target.forces)
    else:
        w = np.asarray(weights, dtype=np.float64).ravel()
    return target, w


class Dictionary:
    """The shapes' weighted force columns on the selection's data.

    Parameters
    ----------
    fitter
        The :class:`~mctsff.fit.forces.Fitter` (types, cutoff, shift scheme).
    shapes
        The shapes (:func:`term_shapes`).
    target, w
        The selection's data and row weights (:func:`selection_data`).
    points
        Grid values of a shape with one scanned constant (with two or three, at most
        :data:`GRID_POINTS` points in all).
    """

    def __init__(self, fitter, shapes: Sequence[Shape], target, w, points: int = 32) -> None:
        self.fitter = fitter
        self.shapes = list(shapes)
        self.target = target
        self.w = w
        self.points = int(points)
        #: the weighted forces the columns are fitted to
        self.y = target.compared(target.forces * w)
        self._cache: dict = {}

    def columns(self, shape: Shape, values: dict[str, float]) -> np.ndarray | None:
        """Weighted force columns of one shape at one grid point (``n_rows × m``), or
        ``None`` where some entry is not finite."""
        from mctsff.fit.constraints import scheme_shift

        target, w = self.target, self.w
        prog = shape.program
        P = len(self.fitter.type_pairs)
        base = np.zeros((P, prog.n_constants))
        for k, c in enumerate(prog.constants):
            if c in values:
                base[:, k] = values[c]
        cols = []
        with np.errstate(all="ignore"):
            for slot, split in zip(shape.slots, shape.split, strict=True):
                for p in range(P) if split else (None,):
                    C = base.copy()
                    if p is None:
                        C[:, slot] = 1.0
                    else:
                        C[p, slot] = 1.0
                    f, _ = target.predict(prog, C)
                    shift = scheme_shift(prog, C, None, self.fitter.cutoff, self.fitter.scheme)
                    f = target.shifted(shift, f)[0]
                    cols.append(target.compared(f * w))
        X = np.stack(cols, axis=1)
        if not np.all(np.isfinite(X)):
            return None
        return X

    def grid(self, shape: Shape) -> list[dict[str, float]]:
        """The grid of a shape's nonlinear constants (the fitter's scan axes,
        :func:`mctsff.fit.scan.axes_for`); none for more than three."""
        from mctsff.expr.params import Parameterization
        from mctsff.fit.scan import axes_for

        if not shape.nonlinear:
            return [{}]
        prog = shape.program
        par = Parameterization(prog, self.fitter.species, self.fitter.type_pairs)
        mask = np.array([par.base_name(n) in shape.nonlinear for n in par.names])
        axes = axes_for(par.names, par.base_name, mask, prog)
        d = len(axes)
        if d > 3:
            return []
        n = self.points if d == 1 else max(2, int(math.floor(GRID_POINTS ** (1.0 / d) + 1e-9)))
        r_min = float(getattr(self.fitter, "r_min", 1.0))
        values = [ax.values(n, self.fitter.cutoff, r_min) for ax in axes]
        return [
            {ax.name: float(v) for ax, v in zip(axes, combo, strict=True)}
            for combo in itertools.product(*values)
        ]

    def atoms(self, check: Callable[[], None]) -> tuple[list[Atom], list[np.ndarray]]:
        """Every shape at every grid point whose columns are finite and not all zero, and
        their columns; of shapes with the same columns on the grid (``erf*tanh``,
        ``tanh*erf``) only the first.  ``check()`` is called before each shape."""
        atoms: list[Atom] = []
        blocks: list[np.ndarray] = []
        seen_shapes: set[frozenset] = set()
        for s, shape in enumerate(self.shapes):
            check()
            mine, prints = [], set()
            for values in self.grid(shape):
                X = self.columns(shape, values)
                if X is None or not np.any(X):
                    continue
                mine.append(((s, values), X))
                prints.add(fingerprint(X))
            if not mine or frozenset(prints) in seen_shapes:
                continue
            seen_shapes.add(frozenset(prints))
            for atom, X in mine:
                atoms.append(atom)
                blocks.append(X)
        return atoms, blocks

    def set_columns(self, chosen: Sequence[Atom]) -> np.ndarray | None:
        """The columns of a set of terms side by side (each term's kept while the
        selection runs, by its shape and constants)."""
        cache = self._cache
        blocks = []
        for s, v in chosen:
            key = (s, tuple(sorted(v.items())))
            X = cache.get(key, False)
            if X is False:
                if len(cache) >= 20_000:
                    cache.clear()
                X = cache[key] = self.columns(self.shapes[s], v)
            if X is None:
                return None
            blocks.append(X)
        return np.concatenate(blocks, axis=1)

    def loss(self, chosen: Sequence[Atom]) -> float:
        """Least-squares loss of the forces on a set's columns (``inf`` where they are not
        finite)."""
        return loss_of(self.y, self.set_columns(chosen))


def loss_of(y: np.ndarray, X: np.ndarray | None) -> float:
    """Least-squares loss of ``y`` on the columns ``X`` (``inf`` for ``None``)."""
    if X is None:
        return math.inf
    a = lstsq(X, y)
    r = y - X @ a
    return float(r @ r)

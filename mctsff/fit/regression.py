"""Plain symbolic regression y = f(x₁, …) with the force-matching engine.

The same compiled postfix programs (:class:`mctsff.expr.program.Program`), numba
interpreter (:mod:`mctsff.expr.kernels`), seeded start ladder and bounded
Levenberg–Marquardt solver (:func:`mctsff.fit.levenberg_marquardt`) that fit
pair potentials are used to fit the constants of an expression to ``(X, y)``
data.  The residual vector is

    res = (y_pred − y) / sqrt(n)

so ``Σ res²`` is the mean square error; its Jacobian comes analytically from
the interpreter (constant gradients, ``mode=2``).  Every constant is a single
global number here: the per-type prefixes of pair potentials (``prod_`` …)
have no meaning without atom types.  Constants that enter linearly are solved
exactly at every start.

Also provides the classic Nguyen benchmark tasks (:func:`nguyen`).

Examples
--------
>>> data, truth = nguyen(1, seed=0)
>>> truth
'x**3 + x**2 + x'
>>> res = RegressionFitter(data).fit("c1*x**3 + c2*x**2 + c3*x")
>>> res.valid, res.rmse_train < 1e-10
(True, True)
"""

from __future__ import annotations

import csv
import functools
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from mctsff.expr import kernels
from mctsff.expr.params import Parameterization
from mctsff.expr.program import Program
from mctsff.fit.constraints import FitConfigError
from mctsff.fit.forces import Fitter, bound_flags, overfit_flags
from mctsff.fit.optim import levenberg_marquardt
from mctsff.fit.problem import NUMERIC_ERRORS
from mctsff.fit.result import FitResult

__all__ = [
    "NGUYEN",
    "RegressionData",
    "RegressionDataError",
    "RegressionFitter",
    "nguyen",
]


class RegressionDataError(ValueError):
    """Invalid or unreadable regression data (the message names file, line and column)."""


# ----------------------------------------------------------------------------- data
@dataclass(frozen=True, eq=False)
class RegressionData:
    """Inputs and target of a regression problem.

    Attributes
    ----------
    X
        float64 array ``(n_vars, n)``; row ``i`` is variable ``variables[i]``.
    y
        float64 target ``(n,)``.
    variables
        Variable names (the names expressions use).
    path
        Source file, or ``"<arrays>"``.
    """

    X: np.ndarray
    y: np.ndarray
    variables: tuple[str, ...]
    path: str = "<arrays>"

    def __post_init__(self):
        X = np.ascontiguousarray(np.atleast_2d(np.asarray(self.X, dtype=np.float64)))
        y = np.ascontiguousarray(np.asarray(self.y, dtype=np.float64).ravel())
        variables = tuple(str(v) for v in self.variables)
        src = self.path
        if X.ndim != 2:
            raise RegressionDataError(f"{src}: X must be 2-D (n_vars, n), got shape {X.shape}")
        if X.shape[0] != len(variables):
            raise RegressionDataError(
                f"{src}: X has {X.shape[0]} variable rows but {len(variables)} names "
                f"{variables} were given"
            )
        if X.shape[1] != y.shape[0]:
            raise RegressionDataError(f"{src}: X has {X.shape[1]} samples but y has {y.shape[0]}")
        if len(set(variables)) != len(variables):
            raise RegressionDataError(f"{src}: duplicate variable names in {variables}")
        for name in variables:
            if not name.isidentifier():
                raise RegressionDataError(f"{src}: variable name {name!r} is not an identifier")
        if not (np.all(np.isfinite(X)) and np.all(np.isfinite(y))):
            raise RegressionDataError(f"{src}: X and y must be finite")
        object.__setattr__(self, "X", X)
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "variables", variables)
        object.__setattr__(self, "path", str(src))

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_arrays(
        cls, X: np.ndarray, y: np.ndarray, variables: Sequence[str] = ("x",)
    ) -> RegressionData:
        """Build from arrays.

        Parameters
        ----------
        X
            ``(n_vars, n)`` inputs; a 1-D array is one variable.
        y
            ``(n,)`` target.
        variables
            One name per row of ``X``.
        """
        return cls(np.asarray(X), np.asarray(y), tuple(variables))

    @classmethod
    def from_csv(cls, path: str | Path, target: str = "y") -> RegressionData:
        """Read a comma-separated file with a header row.

        The column named ``target`` is the target; every other column is a
        variable (named by its header).  Blank lines are skipped.

        Raises
        ------
        RegressionDataError
            Missing file, empty file, no ``target`` column, a row with the wrong
            number of fields, or a missing / non-numeric / non-finite value
            (the message names the file, the 1-based line and the column).
        """
        path = Path(path)
        src = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            from mctsff.runio import not_text

            raise RegressionDataError(f"{src}: {not_text(exc)}") from None
        except OSError as exc:
            raise RegressionDataError(f"{src}: cannot read file ({exc.strerror})") from None
        if "\x00" in text:
            raise RegressionDataError(f"{src}: holds NUL bytes (a binary file?)")
        rows = [
            (lineno, row)
            for lineno, row in enumerate(csv.reader(text.splitlines()), start=1)
            if row and any(cell.strip() for cell in row)
        ]
        if not rows:
            raise RegressionDataError(f"{src}: empty file (a header row is needed)")
        head_line, header = rows[0]
        header = [h.strip() for h in header]
        if target not in header:
            raise RegressionDataError(
                f"{src}: line {head_line}: no target column {target!r} in header {header}"
            )
        if len(header) < 2:
            raise RegressionDataError(f"{src}: line {head_line}: no variable columns")
        if len(rows) < 2:
            raise RegressionDataError(f"{src}: no data rows after the header")
        values = np.empty((len(rows) - 1, len(header)))
        for i, (lineno, row) in enumerate(rows[1:]):
            if len(row) != len(header):
                raise RegressionDataError(
                    f"{src}: line {lineno}: {len(row)} fields, expected {len(header)}"
                )
            for j, cell in enumerate(row):
                cell = cell.strip()
                where = f"{src}: line {lineno}, column {j + 1} ({header[j]!r})"
                if not cell:
                    raise RegressionDataError(f"{where}: missing value")
                try:
                    v = float(cell)
                except ValueError:
                    raise RegressionDataError(f"{where}: not a number: {cell!r}") from None
                if not math.isfinite(v):
                    raise RegressionDataError(f"{where}: non-finite value {cell!r}")
                values[i, j] = v
        t = header.index(target)
        var_cols = [j for j in range(len(header)) if j != t]
        variables = tuple(header[j] for j in var_cols)
        return cls(values[:, var_cols].T, values[:, t], variables, src)

    def to_csv(self, path: str | Path, target: str = "y") -> None:
        """Write a file :meth:`from_csv` reads back exactly (``repr`` precision)."""
        if target in self.variables:
            raise RegressionDataError(f"target name {target!r} clashes with a variable name")
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow([*self.variables, target])
            for i in range(self.n):
                w.writerow([repr(float(v)) for v in self.X[:, i]] + [repr(float(self.y[i]))])

    # ------------------------------------------------------------------ queries
    @property
    def n(self) -> int:
        """Number of samples."""
        return int(self.y.shape[0])

    @property
    def n_vars(self) -> int:
        """Number of variables."""
        return len(self.variables)

    def subset(self, rows: Sequence[int] | np.ndarray) -> RegressionData:
        """Rows ``rows`` as a new dataset."""
        rows = np.asarray(rows, dtype=np.int64)
        return RegressionData(self.X[:, rows], self.y[rows], self.variables, self.path)

    def split(
        self, valid_fraction: float = 0.2, seed: int = 0
    ) -> tuple[RegressionData, RegressionData | None]:
        """Deterministic train/validation split by rows.

        Same rule as :meth:`mctsff.data.Dataset.split`: rows are permuted with
        ``numpy.random.default_rng(seed)``; the first ``round(n·valid_fraction)``
        (at least 1 when ``valid_fraction > 0`` and ``n >= 2``, at most ``n − 1``)
        go to validation; both parts keep the original row order.

        Returns
        -------
        (RegressionData, RegressionData or None)
            ``(train, valid)``; ``(self, None)`` when no row goes to validation.
        """
        f = float(valid_fraction)
        if not 0.0 <= f < 1.0:
            raise RegressionDataError(
                f"{self.path}: valid_fraction must be in [0, 1), got {valid_fraction!r}"
            )
        n = self.n
        n_valid = round(n * f)
        if f > 0 and n >= 2:
            n_valid = max(n_valid, 1)
        n_valid = min(n_valid, n - 1)
        if n_valid <= 0:
            return self, None
        perm = np.random.default_rng(seed).permutation(n)
        return self.subset(np.sort(perm[n_valid:])), self.subset(np.sort(perm[:n_valid]))

    def __repr__(self) -> str:
        return f"RegressionData(n={self.n}, variables={self.variables}, path={self.path!r})"


# ----------------------------------------------------------------------------- Nguyen
#: Nguyen-1…12: (truth expression, variables, sampling range).
NGUYEN: dict[int, tuple[str, tuple[str, ...], tuple[float, float]]] = {
    1: ("x**3 + x**2 + x", ("x",), (-1.0, 1.0)),
    2: ("x**4 + x**3 + x**2 + x", ("x",), (-1.0, 1.0)),
    3: ("x**5 + x**4 + x**3 + x**2 + x", ("x",), (-1.0, 1.0)),
    4: ("x**6 + x**5 + x**4 + x**3 + x**2 + x", ("x",), (-1.0, 1.0)),
    5: ("sin(x**2)*cos(x) - 1", ("x",), (-1.0, 1.0)),
    6: ("sin(x) + sin(x + x**2)", ("x",), (-1.0, 1.0)),
    7: ("log(x + 1) + log(x**2 + 1)", ("x",), (0.0, 2.0)),
    8: ("sqrt(x)", ("x",), (0.0, 4.0)),
    9: ("sin(x) + sin(y**2)", ("x", "y"), (0.0, 1.0)),
    10: ("2*sin(x)*cos(y)", ("x", "y"), (0.0, 1.0)),
    11: ("x**y", ("x", "y"), (0.0, 1.0)),
    12: ("x**4 - x**3 + 0.5*y**2 - y", ("x", "y"), (0.0, 1.0)),
}


def _nguyen_numpy(task: int, X: np.ndarray) -> np.ndarray:
    """Target values by plain numpy (independent of the expression compiler)."""
    x = X[0]
    y = X[1] if X.shape[0] > 1 else None
    if 1 <= task <= 4:
        return sum(x**k for k in range(1, task + 3))
    return {
        5: lambda: np.sin(x**2) * np.cos(x) - 1.0,
        6: lambda: np.sin(x) + np.sin(x + x**2),
        7: lambda: np.log(x + 1.0) + np.log(x**2 + 1.0),
        8: lambda: np.sqrt(x),
        9: lambda: np.sin(x) + np.sin(y**2),
        10: lambda: 2.0 * np.sin(x) * np.cos(y),
        11: lambda: x**y,
        12: lambda: x**4 - x**3 + 0.5 * y**2 - y,
    }[task]()


def nguyen(task: int, seed: int = 0, n: int = 20) -> tuple[RegressionData, str]:
    """A Nguyen benchmark task.

    Inputs are drawn with ``numpy.random.default_rng(seed).uniform`` over the
    classic range (U[−1, 1]; Nguyen-7 U[0, 2]; Nguyen-8 U[0, 4]; the
    two-variable tasks 9–12 U[0, 1] for both ``x`` and ``y``).

    Parameters
    ----------
    task
        1 … 12.
    seed
        Seed of the input sample.
    n
        Number of points (20 in the classic definition).

    Returns
    -------
    (RegressionData, str)
        The data and the true expression in mctsff syntax.
    """
    if task not in NGUYEN:
        raise ValueError(f"unknown Nguyen task {task!r}; use 1..12")
    if n < 1:
        raise ValueError("n must be >= 1")
    truth, variables, (lo, hi) = NGUYEN[task]
    rng = np.random.default_rng(seed)
    X = rng.uniform(lo, hi, size=(len(variables), n))
    y = _nguyen_numpy(task, X)
    return RegressionData(X, y, variables, f"<nguyen-{task} seed={seed}>"), truth


# ----------------------------------------------------------------------------- fitter
class RegressionFitter:
    """Fit the constants of expressions to ``y = f(X)`` data.

    Mirrors :class:`mctsff.fit.Fitter`: load the data once, call :meth:`fit`
    for each candidate.  Constants are fitted by bounded Levenberg–Marquardt on
    ``(y_pred − y)/sqrt(n)`` with the analytic Jacobian, from ``n_starts``
    seeded starts (the same ladder as :meth:`mctsff.fit.Fitter._starts`);
    constants that enter linearly are solved exactly at each start.

    Parameters
    ----------
    train
        Training :class:`RegressionData`.
    valid
        Optional validation data (same variables); reported as ``rmse_valid``.
    n_starts
        Number of starts; the lowest training loss is kept.
    seed
        Seed of the start generator (results are reproducible).
    bounds
        ``{constant: (lo, hi)}``; unbounded by default.
    initial
        ``{constant: value}`` for the first start (1.0 where not given).
    complexity_weights
        Complexity weights passed to :meth:`Program.from_string`.
    max_nfev
        Residual evaluations per start.
    linear_scaling
        (Default on, as in ``mctsff search --objective regression``.) Fit
        ``scale*(f) + offset`` instead of ``f`` whenever that lowers the
        training loss (linear scaling, Keijzer 2003): after ``f``'s own
        constants are fitted, the best ``scale`` and ``offset`` are solved in
        closed form; if they lower the loss, the result is the scaled model
        (``expression`` is ``"scale*(f) + offset"``, both in ``params``; the
        constants of ``f`` are refined jointly with them when it has any) and
        ``extra["unscaled_expression"]`` holds ``f``.  A search then judges a
        structure by its shape, not by its units: ``sin(x)*cos(y)`` fits
        ``2*sin(x)*cos(y) - 1`` exactly.  ``scale``/``offset`` get a numeric
        suffix if the expression already uses those names.

    Examples
    --------
    >>> x = np.linspace(0.1, 2.0, 30)
    >>> data = RegressionData.from_arrays(x[None, :], 2.5 * np.exp(-x / 0.7))
    >>> res = RegressionFitter(data).fit("c1*exp(-x/c2)")
    >>> round(res.params["c1"], 6), round(res.params["c2"], 6)
    (2.5, 0.7)
    >>> data = RegressionData.from_arrays(x[None, :], 3.0 * np.sin(x) - 1.0)
    >>> res = RegressionFitter(data).fit("sin(x)")
    >>> res.expression, round(res.params["scale"], 9), round(res.params["offset"], 9)
    ('scale*(sin(x)) + offset', 3.0, -1.0)
    """

    def __init__(
        self,
        train: RegressionData,
        valid: RegressionData | None = None,
        *,
        n_starts: int = 3,
        seed: int = 0,
        bounds: Mapping[str, tuple[float, float]] | None = None,
        initial: Mapping[str, float] | None = None,
        complexity_weights: Mapping[str, float] | None = None,
        max_nfev: int = 200,
        linear_scaling: bool = True,
    ):
        if not isinstance(train, RegressionData):
            raise FitConfigError("train must be a RegressionData")
        if train.n < 1:
            raise FitConfigError("the training set is empty")
        if valid is not None:
            if not isinstance(valid, RegressionData):
                raise FitConfigError("valid must be a RegressionData or None")
            if valid.variables != train.variables:
                raise FitConfigError(
                    f"validation variables {valid.variables} differ from training {train.variables}"
                )
        if int(n_starts) < 1:
            raise FitConfigError("n_starts must be >= 1")
        if int(max_nfev) < 1:
            raise FitConfigError("max_nfev must be >= 1")
        self.train = train
        self.valid = valid if valid is not None and valid.n else None
        self.variables = train.variables
        # ``options`` carries the fields the shared start ladder reads
        self.options = SimpleNamespace(
            n_starts=int(n_starts),
            seed=int(seed),
            bounds=dict(bounds or {}),
            initial=dict(initial or {}),
            complexity_weights=complexity_weights,
            max_nfev=int(max_nfev),
            variables=tuple(train.variables),
            linear_scaling=bool(linear_scaling),
        )
        for key, b in self.options.bounds.items():
            try:
                a, c = (float(v) for v in b)
            except (TypeError, ValueError):
                raise FitConfigError(f"bounds[{key!r}] must be a (lo, hi) pair") from None
            if not a <= c:
                raise FitConfigError(f"bounds[{key!r}]: lo must be <= hi")
        self._scale = 1.0 / math.sqrt(train.n)
        self._y_rms = float(np.sqrt(np.mean(train.y**2))) + 1e-300
        self._group = {id(train): np.zeros(train.n, dtype=np.int64)}
        kernels.warmup()

    # The seeded start ladder of the force-matching fitter (reads self.options).
    _starts = Fitter._starts

    # ------------------------------------------------------------------ helpers
    def compile(self, expression: str | Program) -> Program:
        """Compile with the data's variables and the complexity weights."""
        if isinstance(expression, Program):
            if expression.variables != self.variables:
                return Program.from_string(
                    expression.expression, self.variables, self.options.complexity_weights
                )
            return expression
        return Program.from_string(expression, self.variables, self.options.complexity_weights)

    def _bounds(self, prog: Program) -> tuple[np.ndarray, np.ndarray]:
        K = prog.n_constants
        lo = np.full(K, -np.inf)
        hi = np.full(K, np.inf)
        for k, name in enumerate(prog.constants):
            if name in self.options.bounds:
                lo[k], hi[k] = (float(v) for v in self.options.bounds[name])
        return lo, hi

    def _predict(self, prog: Program, theta: np.ndarray, X: np.ndarray, jac: bool = False):
        n = X.shape[1]
        group = np.zeros(n, dtype=np.int64)
        consts = np.asarray(theta, dtype=np.float64).reshape(1, -1)
        if consts.shape[1] == 0:
            consts = np.zeros((1, 1))
        with np.errstate(all="ignore"):
            v, _, g, _ = prog.evaluate(
                X, consts, group, mode=kernels.MODE_G if jac else kernels.MODE_VALUE
            )
        return v, g

    def evaluate(
        self,
        expression: str | Program,
        params: Mapping[str, float] | None = None,
        X: np.ndarray | RegressionData | None = None,
    ) -> np.ndarray:
        """Predictions of ``expression`` with constants ``params``.

        Parameters
        ----------
        expression
            Expression (or compiled program).
        params
            ``{constant: value}`` (e.g. ``FitResult.params``); every constant needed.
        X
            ``(n_vars, n)`` inputs or a :class:`RegressionData`; the training inputs
            by default.

        Returns
        -------
        numpy.ndarray
            ``(n,)`` predictions (non-finite where the expression is undefined).
        """
        prog = self.compile(expression)
        params = dict(params or {})
        missing = [c for c in prog.constants if c not in params]
        if missing:
            raise KeyError(f"missing constant values: {', '.join(missing)}")
        theta = np.array([float(params[c]) for c in prog.constants])
        if X is None:
            X = self.train.X
        elif isinstance(X, RegressionData):
            X = X.X
        X = np.ascontiguousarray(np.atleast_2d(np.asarray(X, dtype=np.float64)))
        if X.shape[0] != len(self.variables):
            raise ValueError(f"X has {X.shape[0]} rows but the data has variables {self.variables}")
        return self._predict(prog, theta, X)[0]

    def _rmse(
        self,
        prog: Program,
        theta: np.ndarray,
        data: RegressionData | None,
        scaling: tuple[float, float] | None = None,
    ) -> float:
        if data is None:
            return math.nan
        v, _ = self._predict(prog, theta, data.X)
        with np.errstate(all="ignore"):
            if scaling is not None:
                v = scaling[0] * v + scaling[1]
            d = v - data.y
            val = float(np.sqrt(np.mean(d * d)))
        return val if math.isfinite(val) else math.inf

    # ------------------------------------------------------------------ the fit
    def _residuals(self, prog: Program):
        """``(fun, fun_jac, counter)``: scaled training residuals of ``prog`` and its Jacobian."""
        train = self.train
        counter = [0]

        def fun(theta):
            counter[0] += 1
            v, _ = self._predict(prog, theta, train.X)
            return (v - train.y) * self._scale

        def fun_jac(theta):
            counter[0] += 1
            v, g = self._predict(prog, theta, train.X, jac=True)
            return (v - train.y) * self._scale, g * self._scale

        return fun, fun_jac, counter

    def fit(self, expression: str | Program) -> FitResult:
        """Fit one expression; never raises for a bad candidate (returns ``valid=False``).

        Raises
        ------
        ExpressionError
            Only when the expression text itself cannot be compiled.
        """
        t0 = time.perf_counter()
        prog = self.compile(expression)
        text = prog.expression
        K = prog.n_constants
        fun, fun_jac, counter = self._residuals(prog)

        if K == 0:
            theta = np.zeros(0)
            with np.errstate(all="ignore"):
                res = fun(theta)
                loss = float(res @ res)
            if not math.isfinite(loss):
                return FitResult.invalid(text, "evaluation not finite", prog.complexity)
            lo = hi = np.zeros(0)
            losses = [loss]
        else:
            lo, hi = self._bounds(prog)
            # one species, one pair: every parameter is the constant of the same slot
            par = Parameterization(prog, ("*",), (("*", "*"),))
            lin = par.linear_mask()
            losses = []
            best: tuple[np.ndarray, float] | None = None
            for x0 in self._starts(par, lo, hi, text):
                try:
                    with np.errstate(all="ignore"):
                        sol = self._solve(fun, fun_jac, x0, lo, hi, lin)
                except NUMERIC_ERRORS:
                    sol = None
                losses.append(math.inf if sol is None else sol[1])
                if sol is not None and (best is None or sol[1] < best[1]):
                    best = sol
                if best is not None and math.sqrt(best[1]) <= 1e-13 * self._y_rms:
                    break  # exact fit: later starts cannot improve
            if best is None:
                return FitResult.invalid(
                    text, "evaluation not finite from every start", prog.complexity
                )
            theta, loss = best
        if self.options.linear_scaling:
            scaled = self._scaled(prog, theta, loss, lo, hi, counter)
            if scaled is not None:
                theta, ab, loss = scaled
                return self._result(prog, theta, loss, lo, hi, losses, counter[0], t0, ab)
        return self._result(prog, theta, loss, lo, hi, losses, counter[0], t0)

    def _scaled(self, prog: Program, theta, loss: float, lo, hi, counter: list[int]):
        """Linear scaling around a fitted ``f`` when it lowers the loss, else None.

        Returns ``(θ, (scale, offset), loss)``: ``scale`` and ``offset`` by
        linear least squares on ``f``'s fitted values, then (if ``f`` has
        constants) all of them refined jointly by one LM run on
        ``scale*f(θ) + offset`` (Jacobian ``[scale·∂f/∂θ, f, 1]``).
        """
        train = self.train
        with np.errstate(all="ignore"):
            v, _ = self._predict(prog, theta, train.X)
        if not np.all(np.isfinite(v)):
            return None
        A = np.column_stack([v, np.ones_like(v)])
        try:
            (a, b), *_ = np.linalg.lstsq(A, train.y, rcond=None)
        except np.linalg.LinAlgError:
            return None
        r = (a * v + b - train.y) * self._scale
        sloss = float(r @ r)
        # keep f itself unless scaling removes more than round-off
        if not (math.isfinite(sloss) and sloss < loss * (1.0 - 1e-9) - (1e-13 * self._y_rms) ** 2):
            return None
        ab = (float(a), float(b))
        K = prog.n_constants
        if K:
            y, sc = train.y, self._scale

            def fun(x):
                counter[0] += 1
                v, _ = self._predict(prog, x[:K], train.X)
                return (x[K] * v + x[K + 1] - y) * sc

            def fun_jac(x):
                counter[0] += 1
                v, g = self._predict(prog, x[:K], train.X, jac=True)
                J = np.column_stack([x[K] * g, v, np.ones_like(v)])
                return (x[K] * v + x[K + 1] - y) * sc, J * sc

            x0 = np.concatenate([theta, ab])
            xlo = np.concatenate([lo, [-np.inf, -np.inf]])
            xhi = np.concatenate([hi, [np.inf, np.inf]])
            with np.errstate(all="ignore"):
                x, res, _ = levenberg_marquardt(
                    fun, fun_jac, x0, xlo, xhi, max_iter=self.options.max_nfev, ftol=1e-15
                )
            lm_loss = float(res @ res)
            if math.isfinite(lm_loss) and np.all(np.isfinite(x)) and lm_loss <= sloss:
                theta, ab, sloss = x[:K], (float(x[K]), float(x[K + 1])), lm_loss
        return theta, ab, sloss

    def _scaling_names(self, prog: Program) -> tuple[str, str]:
        """``("scale", "offset")``, with a numeric suffix where ``prog`` already uses a name."""
        taken = set(prog.constants) | set(self.variables)
        names = []
        for base in ("scale", "offset"):
            name, k = base, 1
            while name in taken:
                name, k = f"{base}_{k}", k + 1
            taken.add(name)
            names.append(name)
        return names[0], names[1]

    @functools.cached_property
    def _scaling_complexity(self) -> int:
        """Complexity that ``scale*(f) + offset`` adds to ``f`` (weights are additive)."""
        v = self.variables[0]
        w = self.options.complexity_weights
        return (
            Program.from_string(f"scale*({v}) + offset", self.variables, w).complexity
            - Program.from_string(v, self.variables, w).complexity
        )

    def _solve(self, fun, fun_jac, x0, lo, hi, lin):
        """One start: exact linear constants, then LM. Returns (θ, loss) or None."""
        res0, J0 = fun_jac(x0)
        if not (np.all(np.isfinite(res0)) and np.all(np.isfinite(J0))):
            return None
        x = x0.copy()
        if lin.any():
            step, *_ = np.linalg.lstsq(J0[:, lin], -res0, rcond=None)
            x[lin] = np.clip(x[lin] + step, lo[lin], hi[lin])
            if not np.all(np.isfinite(fun(x))):
                x = x0.copy()
        x, res, _ = levenberg_marquardt(
            fun, fun_jac, x, lo, hi, max_iter=self.options.max_nfev, ftol=1e-15
        )
        loss = float(res @ res)
        if not (math.isfinite(loss) and np.all(np.isfinite(x))):
            return None
        return x, loss

    def _result(self, prog, theta, loss, lo, hi, losses, nfev, t0, scaling=None) -> FitResult:
        """The result of ``f`` = ``prog`` at ``theta``, or of ``scale*(f) + offset`` when
        ``scaling`` = ``(scale, offset)`` is given."""
        params = {c: float(v) for c, v in zip(prog.constants, theta, strict=True)}
        expression, complexity, extra = prog.expression, prog.complexity, {}
        if scaling is None:
            rmse_train = self._rmse(prog, theta, self.train)
            rmse_valid = self._rmse(prog, theta, self.valid)
        else:
            names = self._scaling_names(prog)
            rmse_train = self._rmse(prog, theta, self.train, scaling)
            rmse_valid = self._rmse(prog, theta, self.valid, scaling)
            params.update(zip(names, scaling, strict=True))
            expression = f"{names[0]}*({expression}) + {names[1]}"
            complexity += self._scaling_complexity
            extra["unscaled_expression"] = prog.expression
        flags = bound_flags(prog.constants, theta, lo, hi)
        flags += overfit_flags(rmse_train, rmse_valid)
        valid = math.isfinite(rmse_train)
        return FitResult(
            expression=expression,
            complexity=complexity,
            valid=valid,
            rmse_train=rmse_train if valid else math.inf,
            rmse_valid=rmse_valid,
            loss=float(loss) if valid else math.inf,
            params=params,
            flags=flags,
            n_evals=int(nfev),
            reason="" if valid else "non-finite training RMSE",
            extra={
                "start_losses": [float(x) for x in losses],
                "seconds": time.perf_counter() - t0,
                **extra,
            },
        )

"""A scikit-learn-style façade over :func:`mctsff.search.search`.

``PairPotentialSearch(grammar=..., cutoff=..., ...)`` stores its parameters;
``.fit(dataset)`` splits the frames, fits the search and returns ``self``; the fitted
state ends in ``_`` (``front_``, ``best_``, ``result_``, ``test_``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

__all__ = ["PairPotentialSearch"]


class PairPotentialSearch:
    """Search a grammar for the pair potentials that best match reference forces.

    Parameters
    ----------
    grammar
        Shipped grammar name (``"pair"``, ``"lj"``) or ``.lark`` path.
    cutoff
        Pair cutoff in Å (used when ``fit`` is given a file name).
    budget, time_limit, seed, max_length, method, workers
        Settings of the search (:class:`mctsff.config.SearchConfig`; ``None`` keeps
        its default).
    valid_fraction, test_fraction, split_seed
        Frames held out for validation (ranks the front) and test (seen only by the
        report); the split's seed.
    fit_options
        Keyword arguments of :class:`mctsff.fit.Fitter` (``constraints``, ``wall``,
        ``cutoff_scheme``, ``n_starts``, ...).
    out
        Run folder to write (``None``: nothing written).
    settings
        Further search settings by flat name (:data:`mctsff.config.SETTINGS`).

    Attributes
    ----------
    result_ : SearchResult
        What :func:`mctsff.search.search` returned.
    best_ : FitResult
        The member the knee rule selects.
    test_ : Dataset or None
        The held-out test frames.

    Examples
    --------
    >>> from mctsff import PairPotentialSearch, load_dataset
    >>> from mctsff.data import data_file
    >>> ds = load_dataset(data_file("water_dimers_mp2_sample20.extxyz"), cutoff=7.0)
    >>> est = PairPotentialSearch(grammar="pair", budget=12, seed=1,
    ...                           fit_options={"constraints": (), "n_starts": 1})
    >>> est.fit(ds) is est
    True
    >>> est.best_.species
    ('H', 'O')
    >>> f_pred = est.predict_forces(est.test_)
    >>> f_pred.shape == est.test_.forces.shape
    True
    """

    def __init__(
        self,
        grammar: str | Path = "pair",
        cutoff: float = 9.0,
        *,
        budget: int | None = None,
        time_limit: float | None = None,
        seed: int | None = None,
        max_length: int | None = None,
        method: str | None = None,
        workers: int | None = None,
        valid_fraction: float = 0.2,
        test_fraction: float = 0.2,
        split_seed: int = 0,
        fit_options: dict[str, Any] | None = None,
        out: str | Path | None = None,
        settings: dict[str, Any] | None = None,
    ) -> None:
        self.grammar = grammar
        self.cutoff = cutoff
        self.budget = budget
        self.time_limit = time_limit
        self.seed = seed
        self.max_length = max_length
        self.method = method
        self.workers = workers
        self.valid_fraction = valid_fraction
        self.test_fraction = test_fraction
        self.split_seed = split_seed
        self.fit_options = fit_options
        self.out = out
        self.settings = settings

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's parameters (scikit-learn's protocol)."""
        import inspect

        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {k: getattr(self, k) for k in names}

    def set_params(self, **params: Any) -> PairPotentialSearch:
        """Set constructor parameters; returns ``self``."""
        valid = self.get_params()
        for key, value in params.items():
            if key not in valid:
                raise ValueError(f"unknown parameter {key!r}; choose from {sorted(valid)}")
            setattr(self, key, value)
        return self

    def fit(self, dataset, y=None) -> PairPotentialSearch:
        """Split ``dataset`` (a :class:`~mctsff.data.Dataset` or an extxyz path) by frame,
        run the search and keep its result; returns ``self``."""
        from mctsff.config import DEFAULTS
        from mctsff.data import load_dataset
        from mctsff.fit import Fitter
        from mctsff.search import search

        if isinstance(dataset, str | Path):
            dataset = load_dataset(dataset, self.cutoff)
        train, valid, test = dataset.split_holdout(
            self.valid_fraction, self.test_fraction, self.split_seed
        )
        opts = dict(self.fit_options or {})
        if self.seed is not None:
            opts.setdefault("seed", self.seed)
        fitter = Fitter(train, valid, **opts)
        given = {
            k: getattr(self, k)
            for k in ("budget", "time_limit", "seed", "max_length", "method", "workers")
            if getattr(self, k) is not None
        }
        config = DEFAULTS.updated(**{**dict(self.settings or {}), **given})
        self.result_ = search(fitter, self.grammar, config, out=self.out, test=test)
        self.test_ = test
        self.best_ = self.result_.best
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "result_"):
            raise AttributeError("this PairPotentialSearch is not fitted yet: call fit(dataset)")

    @property
    def front_(self):
        """The Pareto front as a :class:`pandas.DataFrame`: one row per member, simplest
        first (complexity, RMSEs, training loss, whether the knee rule selects it,
        expression, constants)."""
        self._check_fitted()
        try:
            import pandas as pd
        except ImportError:
            raise ImportError(
                "PairPotentialSearch.front_ needs pandas: pip install 'mctsff[table]'"
            ) from None
        best = self.best_
        return pd.DataFrame(
            [
                {
                    "complexity": p.complexity,
                    "rmse_train": p.rmse_train,
                    "rmse_valid": p.rmse_valid,
                    "rmse_test": p.rmse_test,
                    "loss_train": p.loss,
                    "selected": p is best,
                    "expression": p.expression,
                    "params": dict(p.params),
                }
                for p in self.result_.front.points
            ]
        )

    def predict_forces(self, frames, member: int | None = None):
        """Forces of the selected member (or front member ``member``, 0 = simplest) on the
        atoms of ``frames`` (a :class:`~mctsff.data.Dataset`), shape ``(n_atoms, 3)``."""
        self._check_fitted()
        point = self.best_ if member is None else self.result_.front.points[member]
        if point is None:
            raise ValueError("the front is empty: nothing to predict with")
        forces, _ = point.potential().forces(frames)
        return forces

    def __repr__(self) -> str:
        params = self.get_params()
        shown = ", ".join(
            f"{k}={v!r}"
            for k, v in params.items()
            if v is not None and not (isinstance(v, float) and math.isnan(v))
        )
        return f"{type(self).__name__}({shown})"

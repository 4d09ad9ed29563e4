"""mctsff: discover classical pair potentials by grammar-guided MCTS and force matching.

The public API (imported on first use, so ``import mctsff`` stays light):
:func:`load_dataset`, :class:`Dataset`, :func:`dataset_path` (a shipped dataset by name),
:class:`Grammar`, :class:`Fitter`, :class:`FitResult`, :class:`Potential`, :func:`search`,
:class:`SearchConfig`, :class:`SearchResult` and the scikit-learn-style
:class:`PairPotentialSearch`.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name -> module that defines it
_EXPORTS = {
    "load_dataset": "mctsff.data",
    "Dataset": "mctsff.data",
    "dataset_path": "mctsff.data",
    "Grammar": "mctsff.expr.grammar",
    "Fitter": "mctsff.fit",
    "FitResult": "mctsff.fit.result",
    "Potential": "mctsff.expr.params",
    "search": "mctsff.search",
    "SearchConfig": "mctsff.config",
    "SearchResult": "mctsff.search",
    "PairPotentialSearch": "mctsff.estimator",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mctsff' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    if name == "search":  # the module mctsff.search, which is callable as the function
        return importlib.import_module(module)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})

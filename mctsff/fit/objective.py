"""What a search optimises: the :class:`Objective` protocol and its two implementations.

:func:`mctsff.search.search` asks its objective, never the object it was handed, what it
needs beyond the fits:

=====================  ==============================================================
member                 meaning
=====================  ==============================================================
``kind``               ``"forces"`` (force matching) or ``"regression"``
``fitter``             the object the evaluator calls ``fit(expr)`` on (sent to the
                       worker processes as it is)
``train``              the training data (reward scale, data digest, potential plots)
``variables``          the names an expression may use as variables
``fit(expr)``          one fitted :class:`~mctsff.fit.result.FitResult`
``signature(g)``       what a resumed run must share with the checkpoint it continues
``defaults()``         the settings that follow the objective
                       (:data:`mctsff.config.OBJECTIVE_DEFAULTS`)
``reward_scale()``     loss unit of the reward (10 % of the RMS training target)
``loss_floor()``       loss below which two fits tie on the Pareto front
``surrogate()``        fit-free error estimate (:class:`ForceSurrogate`) or ``None``
``description()``      entries of ``run.json`` that describe the objective
``describe(res)``      fill in what a result needs to become a potential (species,
                       type pairs, cutoff) where the fit left it empty
``searched(res)``      the expression the search proposed for ``res`` (what local moves
                       edit), where the fitter reports a model built around it
=====================  ==============================================================

:class:`ForceObjective` wraps a :class:`~mctsff.fit.Fitter`,
:class:`RegressionObjective` a :class:`~mctsff.fit.regression.RegressionFitter`; both
also wrap a user's object with ``fit(expr)``, ``options.variables`` and the training
data. :func:`as_objective` picks one (an object that already is an objective is kept).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
import types
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from mctsff.config import OBJECTIVE_DEFAULTS
from mctsff.fit.result import FitResult

if TYPE_CHECKING:
    from mctsff.expr.grammar import Grammar
    from mctsff.fit.surrogate import ForceSurrogate

__all__ = [
    "Objective",
    "ForceObjective",
    "RegressionObjective",
    "as_objective",
    "searched_expression",
    "signature_difference",
]


@runtime_checkable
class Objective(Protocol):
    """What :func:`mctsff.search.search` needs of an objective (table in the module
    docstring)."""

    kind: str
    fitter: Any
    train: Any
    variables: tuple[str, ...]

    def fit(self, expression: str) -> FitResult: ...

    def signature(self, grammar: Grammar) -> dict[str, Any]: ...

    def defaults(self) -> dict[str, Any]: ...

    def reward_scale(self) -> float: ...

    def loss_floor(self) -> float: ...

    def surrogate(self) -> ForceSurrogate | None: ...

    def description(self) -> dict[str, Any]: ...

    def describe(self, res: FitResult) -> None: ...

    def searched(self, res: FitResult) -> str: ...


def searched_expression(res: FitResult) -> str:
    """The expression the search proposed for ``res``.

    A :class:`~mctsff.fit.regression.RegressionFitter` with linear scaling reports the
    model ``scale*(f) + offset`` built around the proposed ``f`` and keeps ``f`` in
    ``extra["unscaled_expression"]``; other results are their expression.
    """
    return res.extra.get("unscaled_expression", res.expression)


class _FitterObjective:
    """Shared part of the two objectives: a fitter with ``fit(expr)``, ``options`` and
    (optionally) ``train``."""

    kind = "regression"

    def __init__(self, fitter: Any) -> None:
        self.fitter = fitter
        self.train = getattr(fitter, "train", None) or fitter

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.fitter!r})"

    @property
    def variables(self) -> tuple[str, ...]:
        return tuple(self.fitter.options.variables)

    def fit(self, expression: str) -> FitResult:
        return self.fitter.fit(expression)

    def defaults(self) -> dict[str, Any]:
        return dict(OBJECTIVE_DEFAULTS[self.kind])

    def reward_scale(self) -> float:
        """Loss unit for the reward: 10 % of the RMS of the training targets."""
        train = self.train
        rms = getattr(train, "rms_forces", None)  # a ForceProjection knows only this
        if rms is None:
            target = getattr(train, "forces", None)
            if target is None:
                target = train.y
            rms = float(np.sqrt(np.mean(np.square(target))))
        return 0.1 * rms if rms > 0 else 1.0

    def loss_floor(self) -> float:
        """Pareto-front loss floor: 1e-8 of the RMS target, the rounding noise of an exact
        fit (below it two exact forms tie on loss and the simpler one stays on the front,
        whatever the last digits of their fits)."""
        return 1e-7 * self.reward_scale()

    def surrogate(self) -> ForceSurrogate | None:
        return None

    def signature(self, grammar: Grammar) -> dict[str, Any]:
        """What a resumed run must share with its checkpoint: grammar text, variables, a
        content hash of the data, the number of training frames or rows, the cutoff,
        linear scaling (when on) and the fit options as text."""
        train = self.train
        opts = self.fitter.options
        sig = {
            "grammar": grammar.text,
            "variables": self.variables,
            "data_sha256": data_digest(train),
            "n_train": int(getattr(train, "n_frames", 0) or len(getattr(train, "y", ()))),
        }
        if hasattr(train, "cutoff"):
            sig["cutoff"] = float(train.cutoff)
        if getattr(opts, "linear_scaling", False):  # absent when off: older runs resume
            sig["linear_scaling"] = True
        sig["fit"] = fit_options(opts)
        return sig

    def description(self) -> dict[str, Any]:
        opts = self.fitter.options
        if hasattr(opts, "linear_scaling"):
            return {"linear_scaling": bool(opts.linear_scaling)}
        return {}

    def describe(self, res: FitResult) -> None:
        return None

    def searched(self, res: FitResult) -> str:
        return searched_expression(res)


class RegressionObjective(_FitterObjective):
    """Plain regression (:class:`~mctsff.fit.regression.RegressionFitter`, or any fitter
    without atom types)."""

    kind = "regression"


class ForceObjective(_FitterObjective):
    """Force matching (:class:`~mctsff.fit.Fitter`, or any fitter with ``species``)."""

    kind = "forces"

    def surrogate(self) -> ForceSurrogate | None:
        from mctsff.fit.surrogate import ForceSurrogate

        return ForceSurrogate.from_fitter(self.fitter)

    def description(self) -> dict[str, Any]:
        f = self.fitter
        return {
            **super().description(),
            "species": list(f.species),
            "type_pairs": [list(p) for p in f.type_pairs],
            "cutoff": float(f.cutoff),
            "cutoff_scheme": getattr(f, "scheme", "none"),
            "match": getattr(f.options, "match", "atoms"),
            "wall": getattr(f.options, "wall", None),
            "wall_shortest": getattr(f, "wall_shortest", None),
            "force_array": getattr(self.train, "force_array", None),
            "constraints": [c.name for c in f.constraints],
        }

    def describe(self, res: FitResult) -> None:
        """Give ``res`` the atom types, type pairs, cutoff and cutoff scheme of the fitter
        where the fit left them empty, so :meth:`FitResult.potential` works on it."""
        if not res.species:
            f = self.fitter
            res.species = tuple(f.species)
            res.type_pairs = tuple(tuple(p) for p in getattr(f, "type_pairs", ()))
            res.cutoff = float(getattr(f, "cutoff", math.nan) or math.nan)
            res.cutoff_scheme = getattr(f, "scheme", "none")


def as_objective(fitter: Any) -> Objective:
    """``fitter`` as an :class:`Objective`: an objective is returned as it is; an object
    with ``species`` (the atom types a :class:`~mctsff.fit.Fitter` fits pair constants
    for) becomes a :class:`ForceObjective`; anything else (a
    :class:`~mctsff.fit.regression.RegressionFitter`, ``None``) a
    :class:`RegressionObjective`."""
    if isinstance(fitter, Objective):
        return fitter
    if hasattr(fitter, "species"):
        return ForceObjective(fitter)
    return RegressionObjective(fitter)


# ----------------------------------------------------------------------------- signature
def data_digest(train: Any) -> str:
    """SHA-256 of the training data: the file's bytes (where it has one) and the targets.

    Resume compares it instead of the file's path: the same file under another path
    resumes, a changed file behind the same path does not.
    """
    h = hashlib.sha256()
    path = getattr(train, "path", None)
    if path and Path(path).is_file():
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    for name in ("forces", "X", "y"):
        value = getattr(train, name, None)
        if isinstance(value, np.ndarray):
            h.update(f"{name}{value.shape}{value.dtype}".encode())
            h.update(np.ascontiguousarray(value).tobytes())
    return h.hexdigest()


#: Marks a user constraint's kind and function digest in the signature's text
_USER_CONSTRAINT = "(kind "


def fit_options(opts: Any) -> dict[str, str]:
    """A fitter's options (constraints, starts, bounds, …) as text, for the resume check.

    A resumed run that fitted its later expressions with other options would mix two
    objectives in one front.  Arrays are named by their shape and a digest, a
    :class:`~mctsff.data.projection.ForceProjection` by its settings and weighted force sum,
    other objects whose text holds an address by their type, built-in constraints by
    name, a user's :class:`~mctsff.fit.Constraint` by its name, kind and a digest of its
    function (code, constants, captured values), so editing the function is noticed.
    The code digest reads the function's bytecode, which changes between Python
    versions: a checkpoint with a user constraint resumes under the Python it was
    written with.
    """
    if dataclasses.is_dataclass(opts):
        items = {f.name: getattr(opts, f.name) for f in dataclasses.fields(opts)}
    else:
        items = dict(vars(opts))
    for own in ("variables", "linear_scaling"):  # signature entries of their own
        items.pop(own, None)
    if items.get("match") == "atoms":  # the default, absent: runs from before it resume
        items.pop("match")

    def text(v: Any) -> str:
        if isinstance(v, np.ndarray):
            digest = hashlib.sha1(np.ascontiguousarray(v).tobytes()).hexdigest()[:12]
            return f"array{v.shape} {digest}"
        if isinstance(v, Mapping):
            return "{" + ", ".join(f"{k!r}: {text(v[k])}" for k in sorted(v, key=str)) + "}"
        if isinstance(v, list | tuple):
            return "(" + ", ".join(text(x) for x in v) + ")"
        if isinstance(v, str | int | float | bool | type(None)):
            return repr(v)
        name = getattr(v, "name", None)  # a Constraint
        if isinstance(name, str):
            if not callable(getattr(v, "fun", None)):
                return name
            return f"{name} {_USER_CONSTRAINT}{v.kind}, code {function_digest(v.fun)})"
        r = repr(v)
        return type(v).__name__ if " at 0x" in r else r

    def function_digest(fn) -> str:
        def code_text(code: types.CodeType) -> str:
            consts = [code_text(c) if isinstance(c, types.CodeType) else text(c)
                      for c in code.co_consts]  # fmt: skip
            return repr((code.co_code, consts, code.co_names))

        code = getattr(fn, "__code__", None)
        if code is None:  # a callable object: its type (and text, when it has no address)
            return text(fn)
        cells = []
        for cell in fn.__closure__ or ():
            try:
                cells.append(text(cell.cell_contents))
            except ValueError:  # an empty cell
                cells.append("<empty>")
        parts = (code_text(code), cells, text(fn.__defaults__))
        return hashlib.sha1(repr(parts).encode()).hexdigest()[:12]

    return {k: text(v) for k, v in items.items()}


#: How a resume error names a signature entry
_SIGNATURE_WORDS = {
    "data_sha256": "data (the content of the data file or arrays)",
    "n_train": "number of training frames",
}


def signature_difference(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """What differs between a checkpoint's signature and this run's, in words (empty: none).

    Checkpoints written before the fit options were part of the signature are not
    checked for them.
    """
    out = []
    for key in dict.fromkeys([*saved, *current]):
        a, b = saved.get(key), current.get(key)
        if a == b or (key == "fit" and key not in saved):
            continue
        if key == "fit":
            out += [
                f"fit option {o} ({a.get(o)}; now {b.get(o)})"
                for o in dict.fromkeys([*a, *b])
                if a.get(o) != b.get(o)
                and not _older_constraint_text(a.get(o), b.get(o))
                and not _older_object_text(a.get(o), b.get(o))
            ]
        else:
            out.append(_SIGNATURE_WORDS.get(key, key))
    return out


def _older_constraint_text(saved: Any, current: Any) -> bool:
    """True when ``saved`` is ``current`` as written before user constraints had digests.

    Checkpoints written then named a user's constraint only; they resume as before.
    """
    if not isinstance(saved, str) or not isinstance(current, str) or _USER_CONSTRAINT in saved:
        return False
    return re.sub(" " + re.escape(_USER_CONSTRAINT) + r"[^)]*\)", "", current) == saved


def _older_object_text(saved: Any, current: Any) -> bool:
    """True when ``saved`` is an object's type name, as checkpoints wrote an option whose
    text then held an address (a :class:`~mctsff.data.projection.ForceProjection`), and
    ``current`` is the same type's text now; such checkpoints resume as before.
    """
    return (
        isinstance(saved, str)
        and isinstance(current, str)
        and saved.isidentifier()
        and current.startswith(saved + "(")
    )

"""The value object every fit returns and every reward, archive and exporter reads."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(slots=True)
class FitResult:
    """Outcome of fitting one expression.

    Attributes
    ----------
    expression
        The expression string as fitted (sympy-parsable; constants by name).
    complexity
        Complexity of the expression (sum of operator/leaf weights).
    valid
        False when the candidate could not be evaluated (overflow, NaN, a
        singular fit); ``reason`` then says why and the losses are ``inf``.
    rmse_train, rmse_valid
        Force RMSE per component (eV/Å, or the target's unit) on the training
        and validation frames. ``rmse_valid`` is ``nan`` without validation data.
    loss
        The training loss: the objective the optimiser minimised, a weighted *mean
        square* residual on the training set (penalties excluded), not an RMSE.  This
        is what ``loss`` means everywhere (``pareto.json``, checkpoints); the loss that
        ranks a front is :attr:`score_loss` (``score_loss`` in ``pareto.csv``).
    params
        Fitted constants, name -> value. Per-type constants appear once per
        atom type (``prod_q[O]``) or per type pair (``pair_A[H-O]``).
    constraints
        Constraint name -> residual (equality: value; inequality: violation >= 0).
    flags
        Human-readable warnings (parameter at a bound, range parameter near the
        cutoff, validation loss much larger than training loss, ...).
    n_evals
        Number of residual evaluations spent.
    reason
        Why the candidate is invalid (empty when valid).
    extra
        Free-form details (per-start losses, multipliers, timing).
    rmse_test
        Force RMSE on the test frames, which neither the fit, the search nor the choice
        of a model sees: filled in by the search for front members when it writes the
        front (:func:`mctsff.search.write_outputs`); ``nan`` when there is no test set.
    species, type_pairs, cutoff, cutoff_scheme
        What the fitted potential needs besides its expression and constants (force
        matching): the atom types, the type pairs (``("H", "O")``), the cutoff in Å and
        how the potential ends there (``"shifted-force"``, ``"shifted-energy"``,
        ``"constraint"``, ``"none"``); empty, ``nan`` and ``"none"`` for regression.
        :meth:`potential` builds the :class:`~mctsff.expr.params.Potential` from them.
    """

    expression: str
    complexity: int = 0
    valid: bool = True
    rmse_train: float = math.inf
    rmse_valid: float = math.nan
    loss: float = math.inf
    params: dict[str, float] = field(default_factory=dict)
    constraints: dict[str, float] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    n_evals: int = 0
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    rmse_test: float = math.nan
    species: tuple[str, ...] = ()
    type_pairs: tuple[tuple[str, str], ...] = ()
    cutoff: float = math.nan
    cutoff_scheme: str = "none"

    def potential(self):
        """The fitted pair potential (:class:`~mctsff.expr.params.Potential`): forces, energies
        and U(r) per type pair, shifted at the cutoff as fitted.

        Raises
        ------
        ValueError
            When the result has no atom types (a regression result, or one read from an
            older run folder).
        """
        if not self.species:
            raise ValueError(
                f"{self.expression!r}: the result has no atom types (not a force-matching "
                "fit, or read from a run folder written before mctsff 0.2)"
            )
        from mctsff.expr.params import Potential

        return Potential(
            self.expression,
            self.params,
            self.species,
            self.type_pairs or None,
            cutoff=self.cutoff if math.isfinite(self.cutoff) else None,
            scheme=self.cutoff_scheme,
        )

    def __str__(self) -> str:
        """A short summary for people: the expression and its complexity, the RMSEs with
        their unit, the training loss, the atom types and cutoff, one line per parameter and
        constraint, and the flags; an invalid result says why (``repr`` keeps every field)."""
        lines = [f"FitResult  {self.expression}  (complexity {self.complexity})"]
        if not self.valid:
            lines.append(f"  invalid: {self.reason or 'no reason given'}")
            return "\n".join(lines)
        forces = bool(self.species)
        unit = " eV/Å" if forces else ""
        rmse = ", ".join(
            f"{name} {_number(value)}{unit if math.isfinite(value) else ''}"
            for name, value in (
                ("train", self.rmse_train),
                ("validation", self.rmse_valid),
                ("test", self.rmse_test),
            )
        )
        lines.append(f"  {'force RMSE' if forces else 'RMSE'}  {rmse}")
        square = "(eV/Å)² for uniform weights" if forces else "the target's unit squared"
        lines.append(
            f"  training loss  {_number(self.loss)} (weighted mean square the fit minimised; "
            f"{square})"
        )
        if forces:
            cutoff = f"{self.cutoff:g} Å" if math.isfinite(self.cutoff) else "none"
            lines.append(
                f"  potential  types {' '.join(self.species)}, cutoff {cutoff} "
                f"({self.cutoff_scheme})"
            )
        for title, values in (("parameters", self.params), ("constraints", self.constraints)):
            if values:
                width = max(len(k) for k in values)
                lines.append(f"  {title}:")
                lines += [f"    {k:<{width}} = {_number(v)}" for k, v in values.items()]
        if self.flags:
            lines.append("  flags:")
            lines += [f"    - {flag}" for flag in self.flags]
        return "\n".join(lines)

    @property
    def score_loss(self) -> float:
        """Loss used to rank candidates: validation RMSE if known, else training RMSE."""
        if not self.valid:
            return math.inf
        if math.isfinite(self.rmse_valid):
            return self.rmse_valid
        return self.rmse_train

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dictionary (non-finite floats become ``None``)."""
        d = asdict(self)

        def clean(v):
            if isinstance(v, float) and not math.isfinite(v):
                return None
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            if isinstance(v, list | tuple):
                return [clean(x) for x in v]
            if hasattr(v, "item") and not isinstance(v, str):
                return clean(v.item())
            return v

        return clean(d)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FitResult:
        """Inverse of :meth:`to_dict` (``None`` floats become ``nan``/``inf``); a
        ``pareto.json`` member's ``md_check`` scores go to ``extra["md_check"]``."""
        d = dict(d)
        if "md_check" in d:
            d["extra"] = {**(d.get("extra") or {}), "md_check": d.pop("md_check")}
        for key, default in (
            ("rmse_train", math.inf),
            ("rmse_valid", math.nan),
            ("rmse_test", math.nan),
            ("loss", math.inf),
            ("cutoff", math.nan),
        ):
            if d.get(key) is None:
                d[key] = default
        d["params"] = {k: (math.nan if v is None else v) for k, v in d.get("params", {}).items()}
        d["constraints"] = {
            k: (math.nan if v is None else v) for k, v in d.get("constraints", {}).items()
        }
        d["species"] = tuple(d.get("species", ()))
        d["type_pairs"] = tuple(tuple(p) for p in d.get("type_pairs", ()))
        return cls(**d)

    @classmethod
    def invalid(cls, expression: str, reason: str, complexity: int = 0) -> FitResult:
        """An invalid result with infinite loss."""
        return cls(expression=expression, complexity=complexity, valid=False, reason=reason)


def _number(value: float) -> str:
    """A value to 4 significant digits; ``n/a`` for ``nan`` (not computed)."""
    return "n/a" if math.isnan(value) else f"{value:.4g}"

"""Reference water models as mctsff expressions: q-SPC/Fw, SPC/Fw and TIP3P.

The intermolecular part of these models is Coulomb's law on every intermolecular site pair plus
a Lennard-Jones term between oxygens only.  In mctsff's constant naming that is

    ``14.399645*prod_q/r + pair_A/r**12 - pair_B/r**6``

with ``prod_q[O]``, ``prod_q[H]`` the site charges (e; the product rule gives q^A·q^B),
``pair_A[O-O] = 4εσ¹²`` and ``pair_B[O-O] = 4εσ⁶`` (eV·Å¹², eV·Å⁶; ε converted from kcal/mol
with :mod:`ase.units`) and ``pair_A``, ``pair_B`` zero for the pairs involving H.  Coulomb's
constant e²/(4πε₀) = 14.399645 eV·Å/e² (:mod:`ase.units`; 332.0637 kcal·Å/(mol·e²)).  The models
therefore run through the same engine (:class:`~mctsff.expr.params.Potential`,
:class:`~mctsff.fit.Fitter`) as the searched potentials, and their losses are directly comparable.

The published parameters (:data:`MODELS`, one row of ``_PUBLISHED`` each):

{table}

(k_b in kcal/mol/Å², k_θ in kcal/mol/rad²; only the intermolecular part is used here.)

Functions
---------
:func:`reference_model` gives ``(expression, params, fixed_names)``; :func:`model_potential` the
:class:`~mctsff.expr.params.Potential`; :func:`evaluate_model` the force RMSE of the published model
on a dataset; :func:`published_result` and :func:`refit_model` a
:class:`~mctsff.fit.result.FitResult` for the published and the refitted model (charges and O–O LJ
free, H LJ fixed at 0), on the same train/validation split as a search.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import astuple, dataclass
from typing import Any

import numpy as np
from ase import units

from mctsff.export.base import KCAL_PER_MOL
from mctsff.expr.params import Potential
from mctsff.expr.program import Program
from mctsff.fit.result import FitResult

__all__ = [
    "COULOMB_EV_A",
    "MODELS",
    "MODEL_EXPRESSION",
    "WaterModel",
    "evaluate_model",
    "get_model",
    "model_potential",
    "model_rmse",
    "neutrality_constraint",
    "published_result",
    "reference_lines",
    "reference_model",
    "refit_model",
]

#: Coulomb constant e²/(4πε₀) in eV·Å/e² (:mod:`ase.units`), to the 8 digits the expression
#: writes.
COULOMB_EV_A: float = round(units.Hartree * units.Bohr, 6)

#: Intermolecular form shared by the three models.
MODEL_EXPRESSION: str = f"{COULOMB_EV_A}*prod_q/r + pair_A/r**12 - pair_B/r**6"


@dataclass(frozen=True)
class WaterModel:
    """Published parameters of a three-site water model.

    Attributes
    ----------
    name : str
        Display name, e.g. ``"q-SPC/Fw"``.
    q_O, q_H : float
        Site charges in e.
    sigma_OO : float
        O–O Lennard-Jones σ in Å.
    epsilon_OO : float
        O–O Lennard-Jones ε in kcal/mol.
    r_OH : float
        Equilibrium O–H length in Å.
    theta_HOH : float
        Equilibrium H–O–H angle in degrees.
    k_b, k_theta : float or None
        Bond (kcal/mol/Å²) and angle (kcal/mol/rad²) force constants; ``None`` for rigid models.
    reference : str
        Literature reference.
    """

    name: str
    q_O: float
    q_H: float
    sigma_OO: float
    epsilon_OO: float
    r_OH: float
    theta_HOH: float
    k_b: float | None
    k_theta: float | None
    reference: str

    @property
    def epsilon_ev(self) -> float:
        """O–O ε in eV."""
        return self.epsilon_OO * KCAL_PER_MOL

    @property
    def lj_A(self) -> float:
        """Repulsive coefficient 4εσ¹² in eV·Å¹²."""
        return 4.0 * self.epsilon_ev * self.sigma_OO**12

    @property
    def lj_B(self) -> float:
        """Dispersion coefficient 4εσ⁶ in eV·Å⁶."""
        return 4.0 * self.epsilon_ev * self.sigma_OO**6


#: One row per model: name, q_O, q_H, σ_OO, ε_OO, r_OH, θ_HOH, k_b, k_θ and the reference
#: (the fields of :class:`WaterModel`, in its order).
_PUBLISHED: tuple[tuple[Any, ...], ...] = (
    ("q-SPC/Fw", -0.84, 0.42, 3.165492, 0.1554252, 1.000, 112.0, 1059.162, 75.90,
     "Paesani, Zhang, Case, Cheatham, Voth, J. Chem. Phys. 125, 184507 (2006)"),
    ("SPC/Fw", -0.82, 0.41, 3.165492, 0.1554253, 1.012, 113.24, 1059.162, 75.90,
     "Wu, Tepper, Voth, J. Chem. Phys. 124, 024503 (2006)"),
    ("TIP3P", -0.834, 0.417, 3.15075, 0.1520, 0.9572, 104.52, None, None,
     "Jorgensen, Chandrasekhar, Madura, Impey, Klein, J. Chem. Phys. 79, 926 (1983)"),
)  # fmt: skip

#: The models by canonical key (the name in lower case without ``/``: ``"q-spcfw"``; see
#: :func:`get_model` for accepted spellings).
MODELS: dict[str, WaterModel] = {
    row[0].lower().replace("/", ""): WaterModel(*row) for row in _PUBLISHED
}


def _norm(name: str) -> str:
    """A spelling of a name with case, ``-``, ``/``, ``_`` and spaces dropped."""
    return "".join(ch for ch in str(name).lower() if ch.isalnum())


_ALIASES = {_norm(key): key for key in MODELS}


def _table(models: dict[str, WaterModel]) -> str:
    """The models as a reStructuredText table (for the module docstring)."""
    head = ("model", "q(O)", "q(H)", "σ_OO (Å)", "ε_OO kcal/mol", "r_OH", "θ_HOH", "k_b", "k_θ")
    rows = [
        (m.name, *("rigid" if v is None else str(v) for v in astuple(m)[1:-1]))
        for m in models.values()
    ]
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]
    rule = " ".join("=" * w for w in widths)

    def line(cells: Sequence[str]) -> str:
        return " ".join(f"{c:<{w}}" for c, w in zip(cells, widths, strict=True)).rstrip()

    refs = [f"- {m.name}: {m.reference}" for m in models.values()]
    return "\n".join([rule, line(head), rule, *map(line, rows), rule, "", *refs])


if __doc__:  # (python -OO drops docstrings)
    __doc__ = __doc__.format(table=_table(MODELS))


def _key(name: str) -> str:
    norm = _norm(name)
    if norm not in _ALIASES:
        raise KeyError(
            f"unknown water model {name!r}; known: {', '.join(m.name for m in MODELS.values())}"
        )
    return _ALIASES[norm]


def get_model(name: str | WaterModel) -> WaterModel:
    """The :class:`WaterModel` of a name.

    Parameters
    ----------
    name : str or WaterModel
        Case, ``-``, ``/``, ``_`` and spaces are ignored: ``"q-SPC/Fw"``, ``"qspcfw"`` and
        ``"q_spc_fw"`` all name q-SPC/Fw.

    Returns
    -------
    WaterModel

    Raises
    ------
    KeyError
        For an unknown model (the message lists the known ones).
    """
    if isinstance(name, WaterModel):
        return name
    return MODELS[_key(name)]


def _pairs(species: Sequence[str], type_pairs: Sequence[tuple[str, str]] | None):
    species = tuple(species)
    extra = sorted(set(species) - {"H", "O"})
    if extra:
        raise ValueError(f"water models know only H and O, not {extra}")
    if type_pairs is None:
        type_pairs = tuple((a, b) for i, a in enumerate(species) for b in species[i:])
    return species, tuple(tuple(p) for p in type_pairs)


def reference_model(
    name: str | WaterModel,
    species: Sequence[str] = ("H", "O"),
    type_pairs: Sequence[tuple[str, str]] | None = None,
) -> tuple[str, dict[str, float], tuple[str, ...]]:
    """Expression and published parameters of a model's intermolecular part.

    Parameters
    ----------
    name : str or WaterModel
        ``"q-spcfw"``, ``"spcfw"`` or ``"tip3p"`` (see :func:`get_model`).
    species : sequence of str
        Atom types of the dataset (a subset of ``("H", "O")``, sorted as in the dataset).
    type_pairs : sequence of (str, str), optional
        Type pairs in the dataset's order (all pairs of ``species`` by default).

    Returns
    -------
    expression : str
        :data:`MODEL_EXPRESSION`.
    params : dict
        ``prod_q[X]`` per species and ``pair_A[X-Y]``, ``pair_B[X-Y]`` per type pair.
    fixed_names : tuple of str
        Parameters that stay 0 in a refit (``pair_A``/``pair_B`` of pairs involving H).

    Examples
    --------
    >>> expr, params, fixed = reference_model("q-SPC/Fw")
    >>> params["prod_q[O]"], round(params["pair_A[O-O]"], 1)
    (-0.84, 27290.2)
    >>> fixed
    ('pair_A[H-H]', 'pair_B[H-H]', 'pair_A[H-O]', 'pair_B[H-O]')
    """
    m = get_model(name)
    species, type_pairs = _pairs(species, type_pairs)
    params: dict[str, float] = {}
    for s in species:
        params[f"prod_q[{s}]"] = m.q_O if s == "O" else m.q_H
    fixed: list[str] = []
    for a, b in type_pairs:
        key = f"{a}-{b}"
        oo = a == "O" and b == "O"
        params[f"pair_A[{key}]"] = m.lj_A if oo else 0.0
        params[f"pair_B[{key}]"] = m.lj_B if oo else 0.0
        if not oo:
            fixed += [f"pair_A[{key}]", f"pair_B[{key}]"]
    return MODEL_EXPRESSION, params, tuple(fixed)


def model_potential(
    name: str | WaterModel,
    species: Sequence[str] = ("H", "O"),
    type_pairs: Sequence[tuple[str, str]] | None = None,
) -> Potential:
    """The published model as a :class:`~mctsff.expr.params.Potential`.

    Parameters
    ----------
    name, species, type_pairs
        As in :func:`reference_model`.

    Returns
    -------
    Potential
    """
    species, type_pairs = _pairs(species, type_pairs)
    expr, params, _ = reference_model(name, species, type_pairs)
    return Potential(expr, params, species, type_pairs)


def _rmse(pot: Potential, dataset) -> float:
    f, _ = pot.forces(dataset)
    d = f - dataset.forces
    return float(np.sqrt(np.mean(d * d)))


def evaluate_model(name: str | WaterModel, dataset) -> float:
    """Force RMSE (eV/Å per component) of the published model on a dataset.

    The model acts on the dataset's pairs (intermolecular ones within its cutoff when the data
    have molecule ids), so load the data with a cutoff beyond the largest intermolecular
    distance (e.g. 20 Å for the dimers) for the model's full-range error, or with the search's
    cutoff for a loss comparable with the searched potentials.

    Parameters
    ----------
    name : str or WaterModel
        Model (see :func:`get_model`).
    dataset : mctsff.data.Dataset
        Reference data with species among H and O.

    Returns
    -------
    float
        ``sqrt(mean((F_model − F_ref)²))`` over all force components.
    """
    return _rmse(model_potential(name, dataset.species, dataset.type_pairs), dataset)


#: Alias of :func:`evaluate_model`.
model_rmse = evaluate_model


def published_result(name: str | WaterModel, train, valid=None) -> FitResult:
    """The published model reported like a fit (nothing fitted).

    Parameters
    ----------
    name : str or WaterModel
        Model.
    train, valid : mctsff.data.Dataset
        Training and (optional) validation data, e.g. from ``Dataset.split``.

    Returns
    -------
    FitResult
        ``rmse_train``/``rmse_valid`` of the published parameters, ``loss = rmse_train²``,
        ``extra["model"]`` the model name and ``extra["fitted"] = False``.
    """
    t0 = time.perf_counter()
    m = get_model(name)
    pot = model_potential(m, train.species, train.type_pairs)
    rt = _rmse(pot, train)
    rv = _rmse(pot, valid) if valid is not None and valid.n_atoms else math.nan
    return FitResult(
        expression=MODEL_EXPRESSION,
        complexity=Program.from_string(MODEL_EXPRESSION).complexity,
        valid=math.isfinite(rt),
        rmse_train=rt,
        rmse_valid=rv,
        loss=rt * rt,
        params=dict(pot.params),
        n_evals=1,
        extra={"model": m.name, "fitted": False, "seconds": time.perf_counter() - t0},
    )


def neutrality_constraint(n_H: int = 2):
    """Equality constraint q_O + n_H·q_H = 0 (neutral molecules) for :class:`~mctsff.fit.Fitter`.

    Parameters
    ----------
    n_H : int
        Hydrogens per oxygen.

    Returns
    -------
    mctsff.fit.Constraint
        Named ``"neutral"``.
    """
    from mctsff.fit import Constraint

    def fun(pot: Potential) -> float:
        return pot.params["prod_q[O]"] + n_H * pot.params["prod_q[H]"]

    return Constraint("neutral", "eq", fun)


def refit_model(
    name: str | WaterModel,
    train,
    valid=None,
    *,
    neutral: bool = True,
    constraints: Sequence[Any] = (),
    n_starts: int = 3,
    seed: int = 0,
    **options: Any,
) -> FitResult:
    """Refit the model's charges and O–O Lennard-Jones coefficients to reference forces.

    The functional form stays the model's (:data:`MODEL_EXPRESSION`): ``prod_q[O]``,
    ``prod_q[H]``, ``pair_A[O-O]`` and ``pair_B[O-O]`` are fitted from the published values; the
    LJ coefficients of pairs involving H are fixed at 0 by zero-width bounds (their "at a bound"
    flags are dropped from the result).

    Parameters
    ----------
    name : str or WaterModel
        Model whose published parameters start the fit.
    train, valid : mctsff.data.Dataset
        Training and (optional) validation data.
    neutral : bool
        Keep each water neutral (q_O = −2 q_H) through an equality constraint.
    constraints : sequence
        Further constraints (e.g. ``("force0",)``; none by default: the published models do not
        have a vanishing force at a cutoff either, and ``force0`` would force q_H = 0).
    n_starts, seed
        As in :class:`~mctsff.fit.Fitter`.
    **options
        Other :class:`~mctsff.fit.Fitter` options (``weights``, ``energy_weight``, ``bounds``,
        …).

    Returns
    -------
    FitResult
        With ``extra["model"]``, ``extra["fitted"] = True`` and ``extra["fixed"]``.
    """
    from mctsff.fit import Fitter

    m = get_model(name)
    expr, params, fixed = reference_model(m, train.species, train.type_pairs)
    bounds: dict[str, tuple[float, float]] = dict(options.pop("bounds", {}) or {})
    for p in fixed:
        bounds[p] = (0.0, 0.0)
    initial: dict[str, float] = dict(params)
    initial.update(options.pop("initial", {}) or {})
    cons = list(constraints)
    # a published water model has no repulsive wall between H and O (the O-O term keeps
    # molecules apart): its refit imposes none unless asked for
    options.setdefault("wall", None)
    if neutral and "H" in train.species and "O" in train.species:
        cons.append(neutrality_constraint())
    fitter = Fitter(
        train,
        valid,
        constraints=tuple(cons),
        n_starts=n_starts,
        seed=seed,
        bounds=bounds,
        initial=initial,
        **options,
    )
    res = fitter.fit(expr)
    fixed_set = set(fixed)
    res.flags = [f for f in res.flags if not any(f.startswith(p + " at its") for p in fixed_set)]
    for p in fixed:  # exact zeros (the start point is nudged inside the bounds)
        if p in res.params:
            res.params[p] = 0.0
    # q^A·q^B is unchanged when every charge flips sign: report the published sign convention
    if res.params.get("prod_q[O]", -1.0) > 0:
        for p in [k for k in res.params if k.startswith("prod_q[")]:
            res.params[p] = -res.params[p]
    res.extra.update(model=m.name, fitted=True, fixed=list(fixed))
    return res


def reference_lines(
    name: str | WaterModel,
    train,
    valid=None,
    *,
    refit: bool = True,
    **refit_options: Any,
) -> dict[str, float]:
    """Loss lines of a model for :func:`mctsff.search.search` (``reference_lines=``).

    Parameters
    ----------
    name : str or WaterModel
        Model.
    train, valid : mctsff.data.Dataset
        The search's split; the line is the model's ``score_loss`` (validation RMSE when
        ``valid`` is given), the quantity the search's front plots.
    refit : bool
        Add the refitted model's line.
    **refit_options
        Passed to :func:`refit_model`.

    Returns
    -------
    dict
        ``{"<model> (published)": loss, "<model> (refit)": loss}``.
    """
    m = get_model(name)
    lines = {f"{m.name} (published)": published_result(m, train, valid).score_loss}
    if refit:
        lines[f"{m.name} (refit)"] = refit_model(m, train, valid, **refit_options).score_loss
    return lines

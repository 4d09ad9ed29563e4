"""The settings of a search, and the only place their defaults live.

:class:`SearchConfig` holds what :func:`mctsff.search.search` runs with: the stop rules
(``budget``, ``time_limit``), the seed, the reward, and four nested groups,
:class:`MCTSSettings`, :class:`GPSettings`, :class:`LocalMoveSettings` and
:class:`ParallelSettings`.  The engines (:class:`~mctsff.engines.mcts.MCTS`,
:class:`~mctsff.engines.gp.GP`), the local moves, the parallel evaluator and the command line
(``mctsff search --help``) all take their defaults from these classes, so a default is
changed here or nowhere.

Every setting also has a flat name (:data:`SETTINGS`): ``search(fitter, budget=500,
exploration=0.35, workers=4)`` is ``search(fitter, config=SearchConfig().updated(
budget=500, exploration=0.35, workers=4))``.

Settings left at ``None`` where the type allows a value (``n_rollouts``,
``transplant``, ``elite``, ``surrogate``) follow the objective
(:data:`OBJECTIVE_DEFAULTS`): force matching and regression want different ones.

This module imports nothing of mctsff, so any module may import it.

Examples
--------
>>> from mctsff.config import SearchConfig
>>> cfg = SearchConfig().updated(budget=200, exploration=0.5, workers=2)
>>> cfg.budget, cfg.mcts.exploration, cfg.parallel.workers, cfg.max_length
(200, 0.5, 2, 16)
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = [
    "NEUTRAL",
    "OBJECTIVE_DEFAULTS",
    "SETTINGS",
    "ConfigError",
    "GPSettings",
    "LocalMoveSettings",
    "MCTSSettings",
    "ParallelSettings",
    "SearchConfig",
]


class ConfigError(ValueError):
    """A setting that does not exist or has a value it cannot take (message names it)."""


#: Default of the neutrality option of a fit (``mctsff fit/search --neutral NAME``, and the
#: :func:`~mctsff.fit.constraints.neutrality` constraint it builds): the per-type
#: product-rule constant (``prod_q``) whose values must sum to zero over the atoms of every
#: molecule of the data; ``None``, no such constraint (charges are free, and only flagged
#: when a molecule is not neutral, :mod:`mctsff.fit.plausibility`).
NEUTRAL: str | None = None

#: Settings that follow the objective when left at ``None``: building-block reuse
#: (transplantation, elite rollouts) on for regression and off for force matching; 3
#: rollouts per expansion for force matching, where the rollouts cover the terms of the
#: sums, and 10 for regression; the fit-free surrogate for force matching only.
#: ``benchmarks/nguyen.py`` and ``benchmarks/ablation.py`` measure these choices.  An
#: engine built directly (``MCTS(...)``) takes the force-matching ones.
OBJECTIVE_DEFAULTS: dict[str, dict[str, Any]] = {
    "forces": {"transplant": False, "elite": 0.0, "n_rollouts": 3, "surrogate": True},
    "regression": {"transplant": True, "elite": 0.3, "n_rollouts": 10, "surrogate": False},
}


@dataclass(frozen=True)
class MCTSSettings:
    """Settings of the tree search (:class:`~mctsff.engines.mcts.MCTS` documents each one).

    Attributes
    ----------
    exploration
        UCT constant ``c``; ``1/sqrt(2)``, the value for rewards in [0, 1] (Kocsis and
        Szepesvári's UCT).
    n_rollouts, transplant, elite
        Rollouts per expansion, SPL module transplantation, elite-rollout probability;
        ``None`` follows the objective (:data:`OBJECTIVE_DEFAULTS`).
    leaves, pipeline
        Leaves expanded per iteration and iterations kept in flight (virtual loss).
    novelty, cover
        Rollouts drawn per rollout kept, and whether rollouts cover the terms of a sum.
    rollout, mast
        Length caps of the rollouts and the MAST temperature of their productions.
    normalise
        Rescale mean rewards to [0, 1] for UCT.
    elite_top, transplant_every, transplant_top, transplant_max_length, max_macros
        Schedules of the elite rollouts and of transplantation.
    credit
        Back the rewards of term-library proposals (``terms``) up the tree's nodes along
        their derivations and into the rollouts' production statistics.
    """

    exploration: float = 1.0 / math.sqrt(2.0)
    n_rollouts: int | None = None
    transplant: bool | None = None
    elite: float | None = None
    leaves: int = 1
    pipeline: int = 0
    novelty: int = 8
    cover: bool = True
    rollout: str = "ramped"
    mast: float = 0.2
    normalise: bool = True
    elite_top: int = 10
    transplant_every: int = 200
    transplant_top: int = 5
    transplant_max_length: int = 8
    max_macros: int = 32
    credit: bool = False


@dataclass(frozen=True)
class GPSettings:
    """Settings of grammar-guided genetic programming (:class:`~mctsff.engines.gp.GP`).

    Attributes
    ----------
    population_size, tournament_size, elitism
        Population, tournament and elite sizes.
    p_crossover, p_mutation
        Probabilities of an offspring by crossover and by mutation (the rest are copies).
    batch_size
        Offspring fitted per generation step.
    stale_limit
        Evaluations without a new best before a restart (``None``: ``max(2000, 20 ×
        population_size)``).
    crossover_tries
        Attempts at a crossover that respects ``max_length``.
    screen
        Offspring drawn per offspring fitted when a surrogate chooses among them.
    """

    population_size: int = 100
    tournament_size: int = 5
    p_crossover: float = 0.7
    p_mutation: float = 0.25
    elitism: int = 2
    batch_size: int = 10
    stale_limit: int | None = None
    crossover_tries: int = 5
    screen: int = 8


@dataclass(frozen=True)
class LocalMoveSettings:
    """Settings of the local moves around new front members (prune, grow, wrap, spread,
    substitute; :func:`mctsff.search.search` documents each move).

    Attributes
    ----------
    prune, grow
        Whether the prune and the grow (with wrap and spread) moves run.
    max_share
        Grow, wrap and spread fits stop while the local fits exceed this share of all fits.
    spread_share
        Share of all fits below which a newly met simple term is tried with the best
        front members (``None``: ``max_share``).
    substitute_share
        Share of all fits the substitution move may use on top of ``max_share`` (0: off).
    spread_hosts
        How many of the lowest-loss front members take a spread term.
    max_library
        Simple terms kept for grow moves.
    simple_complexity
        Largest complexity of a term kept in the library.
    max_terms
        Largest number of top-level terms a grown expression may have.
    max_depth
        Grow and wrap moves chain up to this many levels from a search result.
    """

    prune: bool = True
    grow: bool = True
    max_share: float = 0.3
    spread_share: float | None = None
    substitute_share: float = 0.3
    spread_hosts: int = 3
    max_library: int = 40
    simple_complexity: float = 5
    max_terms: int = 4
    max_depth: int = 3

    @classmethod
    def tunables(cls) -> dict[str, type]:
        """Name -> type of the numeric settings (all but ``prune`` and ``grow``): what
        ``search(local_options=...)`` and ``--local-option`` take."""
        kinds = {"int": int, "float": float, "float | None": float, "int | None": int}
        return {f.name: kinds[str(f.type)] for f in fields(cls) if f.name not in ("prune", "grow")}


@dataclass(frozen=True)
class ParallelSettings:
    """Where the fits run (:class:`~mctsff.engines.parallel.Evaluator`); results do not depend
    on it.

    Attributes
    ----------
    workers
        Local worker processes (``None`` or 0: all cores); 1 fits in this process.
    scheduler
        Dask scheduler address (``tcp://host:8786``) or ``distributed.Client``.
    timeout
        Seconds allowed per fit (``None``: no limit).
    """

    workers: int | None = 1
    scheduler: Any = None
    timeout: float | None = None


@dataclass(frozen=True)
class SearchConfig:
    """Everything a search runs with (the objective, grammar and run folder apart).

    Attributes
    ----------
    method
        ``"mcts"`` (Monte Carlo tree search) or ``"gp"`` (genetic programming).
    budget
        Distinct expressions to fit, cumulative over resumes (``None``: no limit).  1000
        is a few minutes on 2 cores for the shipped water dimers; ``mctsff demo`` adds a
        time limit.
    time_limit
        Wall-clock seconds for one call (``None``: no limit).  Held inside a step too:
        no fit starts once it has passed, and a fit running then is finished, so a run
        ends late by at most one fit per worker (up to about 1 s for a default fit of
        the water dimers; ``timeout`` bounds a fit).
    seed
        Seed of the search (the fits are seeded by the fitter's own seed).
    max_length
        Productions per expression, for both engines: 16 holds the forms of the
        ``pair`` grammar a water model needs (Coulomb + exponential wall + dispersion).
    reward
        ``"spl"``, ``"tradeoff"`` or a callable ``(FitResult) -> float``.
    eta
        Parsimony factor per unit of complexity of the ``"spl"`` reward.
    reward_options
        Further parameters of a named reward (``scale``, ``alpha``, ``loss_scale``);
        the loss unit defaults to 10 % of the RMS training target.
    surrogate
        Let a fit-free error estimate choose which drawn expressions are fitted
        (``None``: on for force matching on pairs, :data:`OBJECTIVE_DEFAULTS`).
    canonical
        Deduplicate expressions equal up to constant renaming.
    resolution
        The front's resolution rule (:mod:`mctsff.engines.pareto`), force matching only.
    checkpoint_every
        Seconds between checkpoints.
    progress
        Show a progress bar on stderr.
    terms, terms_share
        Propose sums of the grammar's terms chosen by sparse selection on the forces
        (:mod:`mctsff.engines.terms`: a term library, forward selection with refitted
        amplitudes, every proposal parsed back with the grammar) and fit them among the
        search's candidates, at most ``terms_share`` of all fits after the first
        :data:`~mctsff.engines.terms.FIRST_PROPOSALS`.  On by default; force matching
        with a grammar that writes a sum of terms only, silently off elsewhere.
    terms_after
        Fits of the search before the first proposal: the selection runs on the
        evaluator's workers meanwhile (in process, one worker: it is made then), and the
        proposals join at this fixed point, so a seeded search fits the same sequence with
        any evaluator.  0 (the default): the proposals first (the selection holds up the
        search and is made in the search's process, with all its BLAS threads, while the
        worker processes start; in process, where nothing can run beside it, a later
        join only delays them); with worker processes or Dask, a later join lets the
        tree's fits run while the selection is made.
    md_rerank
        After the search (outside its time limit), run the liquid-water MD check on this
        many front members that pass the wall check, the knee-rule member first, then by
        validation RMSE (:mod:`mctsff.water.rerank`; force matching on H/O data only; each
        member costs minutes).  0: off.
    md_options
        Settings of that check's :class:`~mctsff.water.mdcheck.WaterProtocol` over its
        defaults (``{"n_molecules": 64, "npt_ps": 0.2}``: a shorter protocol); refused
        while ``md_rerank`` is 0, which would ignore them.
    mcts, gp, local, parallel
        The nested settings.
    """

    method: str = "mcts"
    budget: int | None = 1000
    time_limit: float | None = None
    seed: int = 0
    max_length: int = 16
    reward: str | Callable[..., float] | None = "spl"
    eta: float = 0.99
    reward_options: Mapping[str, float] | None = None
    surrogate: bool | None = None
    canonical: bool = True
    resolution: bool = True
    checkpoint_every: float = 30.0
    progress: bool = False
    terms: bool = True
    terms_share: float = 0.2
    terms_after: int = 0
    md_rerank: int = 0
    md_options: Mapping[str, Any] | None = None
    mcts: MCTSSettings = field(default_factory=MCTSSettings)
    gp: GPSettings = field(default_factory=GPSettings)
    local: LocalMoveSettings = field(default_factory=LocalMoveSettings)
    parallel: ParallelSettings = field(default_factory=ParallelSettings)

    def __post_init__(self) -> None:
        if self.method not in ("mcts", "gp"):
            raise ConfigError(f"unknown search method {self.method!r}; use 'mcts' or 'gp'")
        b = self.budget
        if b is not None and (not _is_int(b) or b < 1):
            raise ConfigError(f"budget must be a whole number >= 1 (or None), not {b!r}")
        t = self.time_limit
        if t is not None and not (
            isinstance(t, int | float) and not isinstance(t, bool) and math.isfinite(t) and t > 0
        ):
            raise ConfigError(f"time_limit must be a finite number > 0 (or None), not {t!r}")
        if not _is_int(self.max_length) or self.max_length < 1:
            raise ConfigError(f"max_length must be a whole number >= 1, not {self.max_length!r}")
        if not _is_int(self.md_rerank) or self.md_rerank < 0:
            raise ConfigError(f"md_rerank must be a whole number >= 0, not {self.md_rerank!r}")
        if self.md_options and not self.md_rerank:
            raise ConfigError(
                "md_options (--md-option) set the protocol of md_rerank (--md-rerank N), "
                "which is 0: they would be ignored; give md_rerank or leave them out"
            )
        ts = self.terms_share
        if not (isinstance(ts, int | float) and not isinstance(ts, bool) and 0 <= ts <= 1):
            raise ConfigError(f"terms_share must be a number in [0, 1], not {ts!r}")
        ta = self.terms_after
        if not (isinstance(ta, int) and not isinstance(ta, bool) and ta >= 0):
            raise ConfigError(f"terms_after must be a whole number >= 0, not {ta!r}")
        if not (isinstance(self.eta, int | float) and 0 < self.eta <= 1):
            raise ConfigError(f"eta must be in (0, 1], not {self.eta!r}")
        for name, kind in LocalMoveSettings.tunables().items():
            value = getattr(self.local, name)
            if value is None and name == "spread_share":
                continue
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if ok and kind is int:
                ok = float(value).is_integer()
            if not ok or not math.isfinite(value) or value < 0:
                what = "a non-negative integer" if kind is int else "a non-negative number"
                raise ConfigError(f"local_options: {name!r} must be {what}, not {value!r}")

    def updated(self, **settings: Any) -> SearchConfig:
        """A copy with settings changed, each by its flat name (:data:`SETTINGS`).

        ``mcts_options``, ``gp_options`` and ``local_options`` (dictionaries of the
        nested settings) are accepted too.  ``None`` for a setting that cannot be
        ``None`` (``novelty=None``) keeps its value, as a command line's unset option.

        Raises
        ------
        ConfigError
            For a name that is not a setting.
        """
        settings = {k: v for k, v in settings.items() if v is not None or k not in _NEVER_NONE}
        top: dict[str, Any] = {}
        nested: dict[str, dict[str, Any]] = {"mcts": {}, "gp": {}, "local": {}, "parallel": {}}
        for group in ("mcts", "gp", "local"):
            for key, value in dict(settings.pop(f"{group}_options", None) or {}).items():
                if key not in _GROUP_FIELDS[group]:
                    raise ConfigError(
                        f"{group}_options: unknown setting {key!r}; choose from "
                        f"{sorted(_GROUP_FIELDS[group])}"
                    )
                nested[group][key] = value
        for key, value in settings.items():
            where = SETTINGS.get(key)
            if where is None:
                raise ConfigError(f"unknown search setting {key!r}; choose from {sorted(SETTINGS)}")
            if where == "":
                top[key] = value
            else:
                nested[where][key] = value
        for group, values in nested.items():
            if values:
                top[group] = dataclasses.replace(getattr(self, group), **values)
        return dataclasses.replace(self, **top)

    def as_dict(self) -> dict[str, Any]:
        """The settings as a JSON-friendly nested dictionary (callables and clients by
        their ``repr``)."""

        def clean(v: Any) -> Any:
            if v is None or isinstance(v, bool | int | float | str):
                return v
            if isinstance(v, Mapping):
                return {str(k): clean(x) for k, x in v.items()}
            return repr(v)

        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if dataclasses.is_dataclass(value):
                out[f.name] = {g.name: clean(getattr(value, g.name)) for g in fields(value)}
            else:
                out[f.name] = clean(value)
        return out


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


_GROUP_FIELDS: dict[str, frozenset[str]] = {
    "mcts": frozenset(f.name for f in fields(MCTSSettings)),
    "gp": frozenset(f.name for f in fields(GPSettings)),
    "local": frozenset(f.name for f in fields(LocalMoveSettings)),
    "parallel": frozenset(f.name for f in fields(ParallelSettings)),
}


def _never_none(cls: type) -> set[str]:
    return {f.name for f in fields(cls) if "None" not in str(f.type) and f.type != "Any"}


_NEVER_NONE: frozenset[str] = frozenset().union(
    *map(_never_none, (SearchConfig, MCTSSettings, GPSettings, LocalMoveSettings, ParallelSettings))
) - set(_GROUP_FIELDS)

#: Flat name of every setting -> its group (``""``: a field of :class:`SearchConfig`
#: itself; else ``"mcts"``, ``"gp"``, ``"local"`` or ``"parallel"``).  Names are unique
#: across the groups.
SETTINGS: dict[str, str] = {
    **{f.name: "" for f in fields(SearchConfig) if f.name not in _GROUP_FIELDS},
    **{name: group for group, names in _GROUP_FIELDS.items() for name in sorted(names)},
}

#: The defaults, for signatures and the command line.
DEFAULTS = SearchConfig()

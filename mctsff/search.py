"""The search façade: grammar + objective + MCTS + Pareto archive + run folder.

:func:`search` is what ``mctsff search`` and ``mctsff demo`` call:

* the objective (force matching on a :class:`~mctsff.data.Dataset`, or plain
  regression on a :class:`~mctsff.fit.regression.RegressionData`) fits each
  candidate the MCTS proposes;
* every fitted result updates the :class:`~mctsff.engines.pareto.ParetoFront`
  (complexity × validation loss);
* the run folder receives ``pareto.json``, ``pareto.csv``, ``pareto.png``,
  ``potentials.png`` and a ``checkpoint.pkl`` that ``resume=True`` continues;
* Ctrl-C (or SIGTERM, or SIGHUP unless ignored) stops between iterations and writes
  everything; a second one aborts at once, after writing the front found so far;
* the run folder is created exclusively and locked while the search writes it, every
  file is written atomically, and the checkpoint is read without running code from it
  (:mod:`mctsff.runio`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
import signal
import sys
import time
import types
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mctsff.config import DEFAULTS, OBJECTIVE_DEFAULTS, ConfigError, SearchConfig
from mctsff.engines.gp import GP
from mctsff.engines.holdout import frame_errors_for, holdout_scorer, idle_terms_for
from mctsff.engines.local import (
    LOCAL_OPTIONS,
    LocalMoves,
    has_idle_terms,
    local_values,
    replaceable_by,
)
from mctsff.engines.mcts import MCTS
from mctsff.engines.parallel import Evaluator
from mctsff.engines.pareto import ParetoFront
from mctsff.engines.reward import get_reward
from mctsff.engines.terms import TermLibrary, TermProposals
from mctsff.expr.canonical import canonical_key
from mctsff.expr.grammar import Grammar
from mctsff.fit.objective import (
    Objective,
    RegressionObjective,
    as_objective,
    signature_difference,
)
from mctsff.fit.result import FitResult
from mctsff.plots import plot_potentials
from mctsff.runfolder import (
    CHECKPOINT,
    CHECKPOINT_VERSION,
    read_checkpoint,
    write_checkpoint,
    write_front_points,
    write_run_info,
)
from mctsff.runio import atomic_output, atomic_write, open_run_folder, write_error

#: SPL parsimony factor used by default (per unit of complexity; :attr:`SearchConfig.eta`).
DEFAULT_ETA = DEFAULTS.eta
#: Checkpoint format (:data:`mctsff.runfolder.CHECKPOINT_VERSION`)
_CHECKPOINT_VERSION = CHECKPOINT_VERSION


#: What the parts of a damaged or planted checkpoint raise when the search rebuilds its
#: state from them (wrong types or shapes): one "damaged checkpoint" line, never a traceback.
DAMAGED_CHECKPOINT = (AttributeError, IndexError, KeyError, TypeError, ValueError)


class SearchError(ValueError):
    """A search that cannot start or resume (message says why)."""


# OBJECTIVE_DEFAULTS (the settings that follow the objective) live in mctsff.config
#: earlier name of :data:`OBJECTIVE_DEFAULTS` (it holds more than reuse), kept for importers
REUSE_DEFAULTS = OBJECTIVE_DEFAULTS


def objective_kind(fitter) -> str:
    """``"forces"`` for a force-matching objective, else ``"regression"``
    (:func:`~mctsff.fit.objective.as_objective` decides)."""
    return as_objective(fitter).kind


def check_max_length(grammar: Grammar, max_length: int) -> None:
    """Refuse a ``max_length`` below the grammar's shortest derivation (nothing could be
    derived), with a :class:`SearchError` naming ``--max-length``, the grammar and the
    least length that works."""
    shortest = grammar.min_length(grammar.start)
    if max_length < shortest:
        raise SearchError(
            f"--max-length {max_length} is below the shortest derivation of grammar "
            f"{grammar.name!r} ({shortest} productions): give --max-length {shortest} or more"
        )


def check_variables(fitter, grammar: Grammar) -> None:
    """Refuse a grammar whose variables the data do not provide.

    A grammar's variables (its ``// @variables`` line, or the ``r``/``x``/``y``/``z``/
    ``x<digits>`` names of its terminals) must all be variables of the fitter
    (``fitter.options.variables``: ``r`` for force matching, the feature columns for
    regression), and at least one must be, since any other name in an expression is
    fitted as a constant: an ``x`` that the data lack would make every expression a
    constant, and forces data searched with a grammar in ``x`` fit nothing.

    Raises
    ------
    SearchError
        Naming the grammar, its variables, the data's variables and where they come from.
    """
    objective = as_objective(fitter)
    provided = objective.variables
    used = tuple(grammar.variables)
    missing = [v for v in used if v not in provided]
    if not missing and set(used) & set(provided):
        return
    path = getattr(objective.train, "path", None)
    forces = objective.kind == "forces"
    if forces:
        source = f"pair distances of {path}" if path else "pair distances"
        hint = "force matching needs a grammar in r (e.g. --grammar pair)"
    else:
        source = f"columns of {path}" if path else "the fitter's variables"
        hint = "rename the columns, or use a grammar whose '// @variables' line names them"
    uses = f"uses variables {' '.join(used)}" if used else "uses no variables"
    raise SearchError(
        f"grammar {grammar.name!r} {uses}; the data provide "
        f"{' '.join(provided) or 'no variables'} ({source}); {hint}"
    )


# ----------------------------------------------------------------------------- evaluators
class _GrammarComplexity:
    """Wraps an evaluator so results take their complexity from the grammar's weights (and,
    with ``describe``, what else the search knows about them:
    :meth:`~mctsff.fit.objective.Objective.describe`)."""

    def __init__(
        self,
        evaluator: Evaluator,
        grammar: Grammar,
        describe: Callable[[FitResult], None] | None = None,
    ):
        self.evaluator = evaluator
        self.grammar = grammar
        self.describe = describe

    @property
    def workers(self) -> int:
        """The evaluator's workers (how many fits a group under a deadline holds)."""
        return int(getattr(self.evaluator, "workers", 1))

    def __call__(self, expressions: list[str], starts=None) -> list[FitResult]:
        return self._complexity(self.evaluator(expressions, starts))

    def submit(self, expressions: list[str], starts=None):
        """Start a batch (:meth:`Evaluator.submit`, ``starts`` too); ``result()`` sets the
        grammar complexity."""
        batch = self.evaluator.submit(expressions, starts)
        wrapper = self

        class _Batch:
            def result(self) -> list[FitResult]:
                return wrapper._complexity(batch.result())

        return _Batch()

    def _complexity(self, out: list[FitResult]) -> list[FitResult]:
        for res in out:
            if self.describe is not None:
                self.describe(res)
            if res.valid:
                try:
                    res.complexity = self.grammar.complexity(res.expression)
                except ValueError:
                    pass
        return out


def default_reward_scale(train) -> float:
    """Loss unit for the reward: 10 % of the RMS of the training targets ``train``
    (:meth:`~mctsff.fit.objective.RegressionObjective.reward_scale`)."""
    return RegressionObjective(train).reward_scale()


def default_loss_floor(train) -> float:
    """Pareto-front loss floor: 1e-8 of the RMS target ``train``, the rounding noise of an
    exact fit (:meth:`~mctsff.fit.objective.RegressionObjective.loss_floor`)."""
    return RegressionObjective(train).loss_floor()


# ----------------------------------------------------------------------------- result
@dataclass
class SearchResult:
    """What a search produced."""

    front: ParetoFront
    mcts: MCTS | GP
    out: Path | None
    n_evaluations: int
    seconds: float
    interrupted: bool = False
    files: dict[str, str] = field(default_factory=dict)
    n_local: int = 0
    #: local moves dropped, unfitted, because the grammar cannot derive them
    n_underivable: int = 0
    #: term-library proposals fitted (``terms=True``; :mod:`mctsff.engines.terms`)
    n_terms: int = 0
    #: why some files of the run folder could not be written (disk full, read-only), if so
    write_error: str | None = None

    @property
    def best(self) -> FitResult | None:
        """The front member the knee rule selects
        (:meth:`~mctsff.engines.pareto.ParetoFront.selected`)."""
        return self.front.selected()


class _Progress:
    """Progress of a search on stderr, drawn by tqdm.

    On a terminal, a bar redrawn at most five times a second; elsewhere (a log file) the
    same line every 10 s; nothing at all when disabled (``--quiet``).  With a time limit
    the bar runs over it (seconds of this call, its ETA the time left) and the fits are
    counted against the budget beside it; without one the bar runs over the budget (fits).
    The run ends at whichever limit comes first.  ``best RMSE`` is the lowest ranking loss
    (:attr:`~mctsff.fit.result.FitResult.score_loss`: validation RMSE, else training RMSE)
    of any front member so far: it never rises when the front drops a member.
    """

    #: the bar over the time limit: seconds, not fits
    TIME_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} s [{elapsed}<{remaining}{postfix}]"

    def __init__(self, budget, time_limit, enabled: bool, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = self.stream.isatty()
        self.budget = budget
        self.time_limit = time_limit
        #: when the search started (the main loop sets it; the time limit counts from it)
        self.t0 = time.perf_counter()
        self.last = -math.inf
        self.initial: int | None = None  # fits already made (a resumed search)
        self.best = math.inf
        self.bar = None

    def update(self, n, best, front_size, force=False):
        """Show ``n`` fits, a front of ``front_size`` members whose lowest loss is ``best``."""
        self.best = min(self.best, best)
        if not self.enabled:
            return
        now = time.perf_counter()
        if not force and now - self.last < (0.2 if self.tty else 10.0):
            return
        self.last = now
        from tqdm import tqdm

        elapsed = now - self.t0
        if self.initial is None:
            self.initial = n
        shown = f"{self.best:.4g}" if math.isfinite(self.best) else "none yet"
        status = f"best RMSE {shown}, front {front_size}"
        if self.time_limit:  # a bar over the seconds, the fits beside it
            total = max(1, round(self.time_limit))
            count, initial = min(int(elapsed), total), 0
            fits = f"{n}/{self.budget}" if self.budget is not None else f"{n}"
            postfix = f"fits {fits}, {status}"
            style = dict(bar_format=self.TIME_FORMAT)
        else:
            total, count, initial, postfix = self.budget, n, self.initial, status
            style = dict(unit="fit")
        if not self.tty:
            line = tqdm.format_meter(
                count, total, elapsed, postfix=postfix, initial=initial, **style
            )
            self.stream.write(line + "\n")
            self.stream.flush()
            return
        if self.bar is None:
            self.bar = tqdm(
                total=total,
                initial=count,
                file=self.stream,
                dynamic_ncols=True,
                mininterval=0,
                miniters=1,
                **style,
            )
        self.bar.set_postfix_str(postfix, refresh=False)
        if count > self.bar.n:
            self.bar.update(count - self.bar.n)
        else:
            self.bar.refresh()

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


# ----------------------------------------------------------------------------- the search
def search(
    fitter,
    grammar: Grammar | str | Path = "pair",
    config: SearchConfig | None = None,
    *,
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    test: Any = None,
    reference_lines: Mapping[str, float] | None = None,
    reference_potentials: Mapping[str, Any] | None = None,
    callback: Callable[[FitResult], Any] | None = None,
    should_stop: Callable[[], bool] | None = None,
    **settings: Any,
) -> SearchResult:
    """Grammar-guided MCTS (or GP) for the expressions that best fit the objective.

    Parameters
    ----------
    fitter
        Objective: a :class:`~mctsff.fit.Fitter` (force matching) or a
        :class:`~mctsff.fit.regression.RegressionFitter`; anything with ``fit(expr)``,
        ``options.variables`` and the training data.
    grammar
        Grammar object, shipped name (``"pair"``, ``"lj"``, ``"nguyen"``) or ``.lark`` path.
        Its variables must be the data's (:func:`check_variables`), else
        :class:`SearchError` before any fit.
    config
        The settings (:class:`~mctsff.config.SearchConfig`, where every default lives;
        ``None``: ``SearchConfig()``).
    out
        Run folder for pareto.json/csv/png, potentials.png and the checkpoint.  It is
        created for this run: an existing non-empty folder is refused unless ``resume``
        or ``overwrite`` is given; it is locked while the search writes it (a second
        search on it stops with :class:`~mctsff.runio.RunFolderError`) and checked
        writable before the search starts.  When the results cannot be written at the
        end (disk full, read-only), the result is returned all the same, with
        ``write_error`` saying what was lost and that the checkpoint is kept.
    resume
        Continue the search saved in ``out`` (same grammar and objective, same data:
        compared by a content hash, so the file may have moved).
    overwrite
        Start a new run in an existing run folder, removing the earlier run's files.
    reference_lines
        Label -> loss of reference models, drawn on pareto.png.
    reference_potentials
        Label -> :class:`~mctsff.expr.params.Potential` of reference models, drawn as dashed
        curves on potentials.png.
    callback
        Called with every new fitted result.
    should_stop
        Polled between iterations; returning True ends the search (like Ctrl-C,
        but not reported as an interruption).
    test
        Held-out test data (a :class:`~mctsff.data.Dataset`, or a
        :class:`~mctsff.fit.regression.RegressionData` for regression) that neither the
        fits, the search nor the selection see: each front member's ``rmse_test`` is
        computed on it when the front is written and at the end
        (:meth:`~mctsff.engines.pareto.ParetoFront.score_test`).
    **settings
        Settings changed from ``config``, each by its flat name
        (:data:`mctsff.config.SETTINGS`): ``search(fitter, budget=500, exploration=0.35,
        workers=4)``; ``mcts_options``, ``gp_options`` and ``local_options`` take
        dictionaries of the nested settings.  The main ones are described under Other
        Parameters; an unknown name is a :class:`SearchError`.

    Other Parameters
    ----------------
    reward
        ``"spl"`` (η^complexity/(1+loss/scale)), ``"tradeoff"`` or any callable
        ``(FitResult) -> float``.
    reward_options
        Parameters of a named reward; ``scale``/``loss_scale`` default to 10 % of
        the RMS of the training targets.
    budget
        Distinct expressions to fit (cumulative over resumes).
    time_limit
        Wall-clock seconds for this call.
    seed
        Seed of the search (the fits are seeded by the fitter's own seed).
    surrogate
        Choose each expression sent to the fitter among several drawn by a
        fit-free estimate of its error (:class:`~mctsff.fit.surrogate.ForceSurrogate`:
        the fit's weighted force (and energy) residual by least squares with the
        amplitudes solved, the range constants on a grid and the ``force0`` /
        ``energy0`` constraints held): MCTS among a rollout's ``novelty`` draws
        (:class:`~mctsff.engines.mcts.MCTS`), GP among ``screen`` offspring
        (:class:`~mctsff.engines.gp.GP`), so both methods get the same help.  ``None``
        follows the objective: on for force matching with a pair dataset, off for
        regression and for a training set given as a projection.  A resumed run
        keeps what its checkpoint was started with.
    exploration, max_length, n_rollouts, leaves, pipeline, transplant, elite, novelty, cover
        MCTS settings (see :class:`~mctsff.engines.mcts.MCTS`; ``novelty`` and ``cover`` left
        at ``None`` take its defaults, 8 and True; ``n_rollouts`` left at ``None``
        follows the objective, 3 for force matching and 10 for regression;
        ``cover=False`` stops the rollouts from drawing each term of a sum among
        the terms not proposed yet); ``elite=p`` makes the rollouts reuse building
        blocks: at each step a rollout copies, with probability ``p``, a complete
        sub-derivation of one of the 10 best
        expressions so far; ``transplant=True`` adds SPL's macro-actions.  Left
        at ``None`` they follow the objective (:data:`OBJECTIVE_DEFAULTS`): on for a
        :class:`~mctsff.fit.regression.RegressionFitter` (``transplant=True,
        elite=0.3``), off for force matching (``benchmarks/ablation.py`` measures
        both); ``leaves > 1`` expands
        that many leaves per iteration with virtual loss and evaluates all their
        rollouts as one batch; ``pipeline=1`` proposes the next iteration while
        the workers still fit the previous one (both keep parallel workers busy;
        results still do not depend on the number of workers).
    canonical
        Deduplicate expressions equal up to constant renaming (sympy form).
    progress
        Print a progress line on stderr.
    checkpoint_every
        Seconds between checkpoints (and at the end, and on Ctrl-C).
    workers, scheduler, timeout
        Parallel evaluation (:class:`~mctsff.engines.parallel.Evaluator`): local worker
        processes (``None`` = all cores), a Dask scheduler address or client, and
        a per-candidate time limit in seconds.  Results do not depend on them.
    prune
        Local move: when a result enters the front, also fit it with each
        top-level term removed, and with each r-dependent factor of a term
        removed (searches often find the right form plus a term fitted to ~0,
        or times a factor the fit saturates to 1; this recovers the form itself),
        and with each per-atom-type constant replaced by one global constant
        (the form without a type dependence the data may not need).  A variant
        is written starting with a positive term, and a lone negative term
        whose global constant can take the sign loses it (``-(c1*f)`` → ``c1*f``).
    grow
        Local move: when a result enters the front, also fit it plus each
        top-level term of the other front members (fresh constants), i.e. a
        forward step over the terms the search has found useful; and, where the
        grammar can apply a function to any expression (``sin cos exp log`` in the
        Nguyen grammars, none in ``pair``), fit the new member and each of its
        top-level terms inside each such function (``exp(y*log(x))`` from a front
        member holding ``y*log(x)``).  Local fits go
        through the same transposition table and count against ``budget``
        (``SearchResult.n_local`` says how many there were).  A move is fitted only
        if the grammar derives it; the others are dropped
        (``SearchResult.n_underivable``), so every expression a search fits is one
        its grammar can produce.  ``prune=False, grow=False`` (``--no-local-moves``)
        fits only what the engine derives.
    method
        Search engine: ``"mcts"`` (:class:`~mctsff.engines.mcts.MCTS`) or ``"gp"``
        (:class:`~mctsff.engines.gp.GP`, grammar-guided genetic programming).  Both use
        the same fitter, reward, transposition keys, Pareto archive, budget and
        checkpoint; ``SearchResult.mcts`` holds the engine.  A resumed run must
        use the method it was started with.
    gp_options
        Keyword arguments of :class:`~mctsff.engines.gp.GP` (``population_size``,
        ``tournament_size``, ``p_crossover``, ``p_mutation``, ``elitism``,
        ``batch_size``, ``screen``, …); ``max_length``, ``seed`` and
        ``surrogate`` come from this function's parameters.
    mcts_options
        Keyword arguments of :class:`~mctsff.engines.mcts.MCTS` that this function does not
        set itself (``mast``, ``rollout``, ``virtual_loss``, …), e.g. for ablations
        (``benchmarks/ablation.py``); the others are this function's parameters.
        A resumed run keeps the engine settings saved in its checkpoint.
    local_options
        Settings of the local moves (prune, grow, spread;
        :class:`~mctsff.engines.local.LocalMoves`, :data:`~mctsff.engines.local.LOCAL_OPTIONS`):
        ``max_share`` (0.3: grow, wrap and spread fits stop while the local fits exceed
        this share of all fits), ``spread_share``
        (``None``: the same as ``max_share``; the share below which a newly met
        simple term is tried with the best front members, e.g. 1.0 to try every
        one), ``spread_hosts`` (3: how many of the lowest-loss front members take
        it), ``max_library`` (40), ``simple_complexity`` (5), ``max_terms`` (4),
        ``max_depth`` (3), ``substitute_share`` (0.3; 0 turns the move off: the share
        of all fits that the substitution move may use on top of ``max_share``; only
        in grammars with wrapping functions, so never in ``pair``: each new front
        member from the search, and each of its terms, with one variable ``v`` made
        ``f(v)`` inside each function ``g``, :func:`substituted_variants`, e.g.
        ``exp(log(x)*y)`` from ``x*y``).  A resumed run keeps the settings saved in
        its checkpoint (and warns when it is passed others).
    resolution
        The front's resolution rule (:mod:`mctsff.engines.pareto`): a result enters the front
        only if it beats U = 0 and every simpler member on the validation frames (the
        training frames without validation) by more than
        :data:`~mctsff.engines.pareto.MIN_RELATIVE_GAIN` of the squared error, in at least
        :data:`~mctsff.engines.pareto.RESOLUTION_LEVEL` of a paired bootstrap over the frames.
        Force matching with the frames in memory only; off for regression and
        projections.

    Returns
    -------
    SearchResult
        ``SearchResult.best`` is the member the knee rule selects
        (:meth:`~mctsff.engines.pareto.ParetoFront.selected`).
    """
    cfg = _validate(config, settings, resume=resume, overwrite=overwrite)
    run = _set_up(
        as_objective(fitter),
        grammar,
        cfg,
        out=out,
        resume=resume,
        overwrite=overwrite,
        test=test,
        callback=callback,
    )
    _main_loop(run, callback, should_stop)
    files, failed = _tear_down(run, reference_lines, reference_potentials)
    return _format_result(run, files, failed)


# ----------------------------------------------------------------------------- the steps
# search() is five steps over one _Run: validate the settings, set up (engine, evaluator,
# front, run folder, resume), the main loop, tear down (checkpoint, files, plots) and the
# result.
@dataclass
class _Run:
    """What the steps of :func:`search` share."""

    objective: Objective
    grammar: Grammar
    cfg: SearchConfig
    out: Path | None
    evaluator: _GrammarComplexity
    front: ParetoFront
    engine: MCTS | GP
    signature: dict[str, Any]
    local_settings: dict[str, Any]
    local: LocalMoves | None = None
    #: the term library's proposals (``terms=True`` where the grammar has a sum of terms)
    terms: TermProposals | None = None
    lock: Any = None
    bar: _Progress | None = None
    #: the water protocol of ``md_rerank`` (``None`` when off)
    md_protocol: Any = None
    t0: float = 0.0
    interrupted: bool = False


def _validate(
    config: SearchConfig | None, settings: Mapping[str, Any], *, resume: bool, overwrite: bool
) -> SearchConfig:
    """The settings of this call (``config`` updated by ``settings``), or a
    :class:`SearchError` saying which one is wrong."""
    if resume and overwrite:
        raise SearchError("resume and overwrite exclude each other")
    method = settings.get("method", (config or DEFAULTS).method)
    _check_engine_options(settings.get("mcts_options"), method, "mcts")
    _check_engine_options(settings.get("gp_options"), method, "gp")
    try:
        return (config or DEFAULTS).updated(**settings)
    except ConfigError as exc:
        raise SearchError(str(exc)) from None


def _reward(objective: Objective, cfg: SearchConfig) -> Callable[[FitResult], float]:
    """The reward of ``cfg.reward``, a named one scaled to the objective's targets."""
    if not (isinstance(cfg.reward, str) or cfg.reward is None):
        return get_reward(cfg.reward)
    opts = dict(cfg.reward_options or {})
    name = (cfg.reward or "spl").lower()
    opts.setdefault("scale" if name == "spl" else "loss_scale", objective.reward_scale())
    if name == "spl":
        opts.setdefault("eta", cfg.eta)
    return get_reward(name, **opts)


def _new_front(
    objective: Objective, cfg: SearchConfig, test: Any, grammar: Grammar | None = None
) -> ParetoFront:
    """An empty Pareto front with the objective's loss floor, resolution rule (force
    matching on frames in memory) and held-out test scorer."""
    frame_errors = frame_errors_for(objective.fitter)
    # no-effect terms at a bound; negligible ones where the prune moves fit the rest
    replaceable = replaceable_by(grammar, objective.variables) if cfg.local.prune else None
    idle = idle_terms_for(objective.fitter, replaceable) if cfg.resolution else None
    return ParetoFront(
        loss_floor=objective.loss_floor(),
        frame_errors=frame_errors if cfg.resolution else None,
        null_frame_errors=frame_errors.null if cfg.resolution and frame_errors else None,
        null_loss=frame_errors.null_rmse if frame_errors else None,
        test_rmse=holdout_scorer(objective.fitter, test),
        admit=None if idle is None else (lambda res: not idle(res)),
    )


def _new_engine(
    objective: Objective, grammar: Grammar, cfg: SearchConfig, evaluator, reward_fn, key_fn
) -> MCTS | GP:
    """A fresh MCTS or GP engine; settings left at ``None`` follow the objective."""
    auto = objective.defaults()
    surrogate = auto["surrogate"] if cfg.surrogate is None else bool(cfg.surrogate)
    common = dict(
        max_length=cfg.max_length,
        seed=cfg.seed,
        canonical=key_fn,
        surrogate=objective.surrogate() if surrogate else None,
    )
    if cfg.method == "gp":
        return GP(grammar, evaluator, reward_fn, **common, **dataclasses.asdict(cfg.gp))
    m = cfg.mcts
    return MCTS(
        grammar,
        evaluator,
        reward_fn,
        **common,
        **{
            **dataclasses.asdict(m),
            "transplant": auto["transplant"] if m.transplant is None else bool(m.transplant),
            "elite": auto["elite"] if m.elite is None else float(m.elite),
            "n_rollouts": auto["n_rollouts"] if m.n_rollouts is None else int(m.n_rollouts),
        },
    )


def _resumed(
    path: Path,
    objective: Objective,
    cfg: SearchConfig,
    signature: Mapping[str, Any],
    front: ParetoFront,
    evaluator,
    reward_fn,
    key_fn,
) -> tuple[MCTS | GP, Any, dict[str, Any], Any]:
    """The engine saved in the checkpoint ``path`` (its archive restored into ``front``),
    the local moves it left pending, its local-move settings and the term-library
    proposals it left pending; a :class:`SearchError` when it cannot continue with this
    objective, grammar and method."""
    if not path.exists():
        raise SearchError(f"nothing to resume: {path} does not exist")
    saved = read_checkpoint(path)
    if saved.get("version") != _CHECKPOINT_VERSION:
        raise SearchError(
            f"{path}: checkpoint format {saved.get('version')!r} is not "
            f"this mctsff's ({_CHECKPOINT_VERSION}); start a new run in another folder"
        )
    _check_checkpoint(saved, path)
    diff = signature_difference(saved["signature"], signature)
    if diff:
        raise SearchError(
            f"{path}: the run was made with a different "
            f"{', '.join(diff)}; resume with the same data, grammar and options"
        )
    saved_method = saved.get("method", "mcts")
    if saved_method != cfg.method:
        raise SearchError(
            f"{path}: the run was made with method={saved_method!r}; "
            f"resume it with the same method (not {cfg.method!r})"
        )
    # the surrogate the run was started with
    sur = objective.surrogate() if saved["mcts"].get("use_surrogate", False) else None
    from mctsff.expr.program import Program

    try:  # parts of the wrong type or shape (a damaged or planted file): one line
        engine = (GP if cfg.method == "gp" else MCTS).from_state(
            saved["mcts"], evaluator, reward=reward_fn, canonical=key_fn, surrogate=sur
        )
        for r in saved["front"]:
            point = FitResult.from_dict(r)
            # a member that is not an expression of these variables was never fitted here
            Program.from_string(point.expression, tuple(objective.variables))
            front.update(point)
        # older checkpoints hold only the settings given; the rest were the defaults
        saved_local = {
            **local_values(DEFAULTS.local, LOCAL_OPTIONS),
            **dict(saved.get("local_options", {})),
        }
    except DAMAGED_CHECKPOINT as exc:
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
        raise SearchError(f"{path}: damaged checkpoint ({detail})") from None
    local_settings = local_values(cfg.local, LOCAL_OPTIONS)
    local_given = local_settings != local_values(DEFAULTS.local, LOCAL_OPTIONS)
    if local_given and local_settings != saved_local:
        warnings.warn(
            f"{path}: resuming with the local-move settings the run was "
            f"started with ({saved_local}), not {local_settings}",
            stacklevel=4,
        )
    return engine, saved.get("local_pending"), saved_local, saved.get("terms_pending")


def _set_up(
    objective: Objective,
    grammar: Grammar | str | Path,
    cfg: SearchConfig,
    *,
    out: str | Path | None,
    resume: bool,
    overwrite: bool,
    test: Any,
    callback: Callable[[FitResult], Any] | None,
) -> _Run:
    """Everything the main loop needs: the grammar checked against the objective, the
    reward, the evaluator, the front, the engine (new, or continued from the run folder's
    checkpoint), the locked run folder, the local moves and the progress bar."""
    grammar = Grammar.load(grammar) if not isinstance(grammar, Grammar) else grammar
    check_variables(objective, grammar)
    check_max_length(grammar, cfg.max_length)
    md_protocol = _md_protocol(objective.fitter, cfg)  # before any fit: one clear error
    reward_fn = _reward(objective, cfg)
    par = cfg.parallel
    evaluator = _GrammarComplexity(
        Evaluator(objective.fitter, par.workers, scheduler=par.scheduler, timeout=par.timeout),
        grammar,
        objective.describe,
    )
    variables = objective.variables
    key_fn = (lambda e: canonical_key(e, variables)) if cfg.canonical else None
    out_path = Path(out) if out is not None else None
    front = _new_front(objective, cfg, test, grammar)
    signature = objective.signature(grammar)
    local_settings = local_values(cfg.local, LOCAL_OPTIONS)
    local_pending = terms_pending = None
    if resume and (out_path is None or not (out_path / CHECKPOINT).exists()):
        evaluator.evaluator.close()
        raise SearchError(f"nothing to resume: {out_path}/{CHECKPOINT} does not exist")
    lock = None
    try:
        if resume:
            # locked before its checkpoint is read: a search running in the folder is
            # refused as such, whatever else differs
            lock = open_run_folder(out_path, resume=True)
            engine, local_pending, local_settings, terms_pending = _resumed(
                out_path / CHECKPOINT, objective, cfg, signature, front, evaluator, reward_fn,
                key_fn,
            )  # fmt: skip
        else:
            engine = _new_engine(objective, grammar, cfg, evaluator, reward_fn, key_fn)
            if out_path is not None:  # (an earlier run it replaces goes only now)
                lock = open_run_folder(out_path, overwrite=overwrite)
    except BaseException:
        if lock is not None:
            lock.release()
        evaluator.evaluator.close()
        raise
    run = _Run(
        objective, grammar, cfg, out_path, evaluator, front, engine, signature, local_settings
    )
    run.md_protocol = md_protocol
    run.lock = lock
    run.bar = _Progress(cfg.budget, cfg.time_limit, cfg.progress)
    run.local = LocalMoves(
        engine,
        evaluator,
        front,
        callback,
        variables,
        cfg.local.prune,
        cfg.local.grow,
        grammar.wrapping_functions,
        options=local_settings,
        grammar=grammar,
        searched=objective.searched,
    )

    def restore(key: str, restore_pending, state) -> None:
        """``restore_pending(state)``; a damaged checkpoint value ends the run with one
        error naming the file and key (the lock and the workers released first)."""
        try:
            restore_pending(state)
        except DAMAGED_CHECKPOINT as exc:
            if run.lock is not None:
                run.lock.release()
            evaluator.evaluator.close()
            raise SearchError(
                f"{out_path / CHECKPOINT}: damaged checkpoint ({key}: {exc})"
            ) from None

    restore("local_pending", run.local.restore_pending, local_pending)
    if cfg.terms and objective.kind == "forces":
        library = TermLibrary(grammar, objective.fitter, max_length=cfg.max_length)
        if library.applies:  # silently off for a grammar without a sum of terms
            run.terms = TermProposals(
                library, engine, evaluator, cfg.terms_share, after=cfg.terms_after
            )
            restore("terms_pending", run.terms.restore_pending, terms_pending)
    return run


def _checkpoint_now(run: _Run) -> None:
    """Save the checkpoint and pareto.json during the search; a failed write (disk full)
    is a warning, the last checkpoint is kept."""
    try:
        _save_checkpoint(
            run.out, run.engine, run.front, run.signature, run.local_settings, run.local,
            run.terms,
        )  # fmt: skip
        _write_front(run.out, run.front)
    except OSError as exc:  # disk full: go on, the last checkpoint is kept
        warnings.warn(f"{write_error(exc, run.out)}; searching on", stacklevel=4)


def _main_loop(
    run: _Run,
    callback: Callable[[FitResult], Any] | None,
    should_stop: Callable[[], bool] | None,
) -> None:
    """Step the engine and the local moves until the budget, the time limit,
    ``should_stop``, Ctrl-C/SIGTERM/SIGHUP (unless ignored, as under ``nohup``; inside a
    step too, like the time limit) or the engine ends the search; checkpoint every
    ``checkpoint_every`` seconds.  A second Ctrl-C writes pareto.json and raises
    :class:`KeyboardInterrupt`; the evaluator is closed and the signal handlers restored
    on every way out."""
    cfg, engine, front, local, bar = run.cfg, run.engine, run.front, run.local, run.bar
    budget, time_limit = cfg.budget, cfg.time_limit
    stop = {"requested": False}

    def on_result(res: FitResult) -> None:
        new_terms = local.observe(res)
        entered = front.update(res)
        if callback is not None:
            callback(res)
        local.queue(res if entered or has_idle_terms(res) else None, new_terms)
        best = min((p.score_loss for p in front.points), default=math.inf)
        bar.update(engine.n_evaluations, best, len(front))

    def handler(signum, frame):
        if stop["requested"]:
            raise KeyboardInterrupt
        stop["requested"] = True
        # a step drawing many rollouts stops drawing as at a passed time limit: what it
        # drew waits in the checkpoint, as a step cut by the deadline leaves it
        engine.deadline = time.perf_counter()
        if cfg.progress:
            with contextlib.suppress(OSError):  # a hung-up terminal (SIGHUP) takes no writes
                sys.stderr.write(
                    "\nmctsff: stopping after this iteration (Ctrl-C again to abort)\n"
                )

    old = None
    in_main = _main_thread()
    if in_main:
        old = signal.signal(signal.SIGINT, handler)
        old_term = signal.signal(signal.SIGTERM, handler)  # a batch system's stop: the same
        # a closed terminal or dropped ssh session: the same, unless ignored (nohup)
        old_hup = signal.getsignal(signal.SIGHUP)
        if old_hup not in (signal.SIG_IGN, None):
            signal.signal(signal.SIGHUP, handler)
    run.t0 = bar.t0 = t0 = time.perf_counter()
    last_ckpt = t0
    # worker processes start now, while this process makes what comes before the first
    # batch (the term selection); a batch sent before they are up is fitted here
    run.evaluator.evaluator.start(wait=False)
    # the budget and the time limit hold inside a step too (its rollouts, its local moves)
    engine.fit_limit = budget
    engine.deadline = None if time_limit is None else t0 + time_limit
    try:
        terms = run.terms
        while not engine.exhausted or local.waiting or (terms is not None and terms.waiting):
            if budget is not None and engine.n_evaluations >= budget:
                break
            if time_limit is not None and time.perf_counter() - t0 >= time_limit:
                break
            if stop["requested"]:
                run.interrupted = True
                break
            if should_stop is not None and should_stop():
                break
            if not local.waiting:  # local moves cut short by the budget come first
                if terms is not None:  # the term library's next proposals, if due
                    terms.step(on_result)
                if terms is None or not terms.waiting:  # a cut batch of them comes first
                    engine.step(on_result)
            if terms is None or not terms.waiting:
                local.flush()  # the local moves of the whole batch, fitted as one batch
            if run.out is not None and time.perf_counter() - last_ckpt >= cfg.checkpoint_every:
                _checkpoint_now(run)
                last_ckpt = time.perf_counter()
    except KeyboardInterrupt:
        run.interrupted = True
        # the tree may be mid-iteration: keep the last consistent checkpoint,
        # but never lose a result that was found
        if run.out is not None:
            try:
                _write_front(run.out, front)
            except OSError as exc:
                sys.stderr.write(f"mctsff: {write_error(exc, run.out / 'pareto.json')}\n")
        bar.close()
        if run.lock is not None:
            run.lock.release()
        raise
    except BaseException:
        if run.lock is not None:
            run.lock.release()
        raise
    finally:
        if in_main and old is not None:
            signal.signal(signal.SIGINT, old)
            signal.signal(signal.SIGTERM, old_term)
            if old_hup is not None:  # (None: a handler not set from Python, left alone)
                signal.signal(signal.SIGHUP, old_hup)
        run.evaluator.evaluator.close()
        engine.fit_limit = engine.deadline = None


def _tear_down(
    run: _Run,
    reference_lines: Mapping[str, float] | None,
    reference_potentials: Mapping[str, Any] | None,
) -> tuple[dict[str, str], str | None]:
    """Close the progress bar, score the test set, then write the checkpoint, pareto.*,
    potentials.png and run.json and unlock the run folder; the files written and, when
    a write failed (disk full, read-only), the one line saying what was lost."""
    front, engine = run.front, run.engine
    run.bar.update(
        engine.n_evaluations,
        min((p.score_loss for p in front.points), default=math.inf),
        len(front),
        force=True,
    )
    run.bar.close()
    files: dict[str, str] = {}
    front.score_test()
    failed = None
    if run.out is None:
        _md_rerank(front, run.cfg, run.md_protocol, run.interrupted)
    if run.out is not None:
        out = run.out
        saved_now = False
        try:
            _save_checkpoint(
                out, engine, front, run.signature, run.local_settings, run.local, run.terms
            )
            saved_now = True
            files = write_outputs(out, front, run.objective, reference_lines, reference_potentials)
            files["checkpoint"] = str(out / CHECKPOINT)
            files["run.json"] = str(
                _write_run_info(
                    out, run.objective, run.grammar, engine, reference_lines, run.local, run.cfg
                )
            )
            if _md_rerank(front, run.cfg, run.md_protocol, run.interrupted):  # scores: rewrite
                files.update(
                    write_outputs(out, front, run.objective, reference_lines, reference_potentials)
                )
        except OSError as exc:  # disk full, read-only: the front is returned all the same
            failed = _write_failure(exc, out, saved_now)
            warnings.warn(failed, stacklevel=3)
        finally:
            run.lock.release()
    return files, failed


def _format_result(run: _Run, files: dict[str, str], failed: str | None) -> SearchResult:
    """The :class:`SearchResult` of a finished run."""
    return SearchResult(
        front=run.front,
        mcts=run.engine,
        out=run.out,
        n_evaluations=run.engine.n_evaluations,
        seconds=time.perf_counter() - run.t0,
        interrupted=run.interrupted,
        files=files,
        n_local=run.local.n_fits,
        n_underivable=run.local.n_underivable,
        n_terms=0 if run.terms is None else run.terms.n_fits,
        write_error=failed,
    )


def _md_protocol(fitter, cfg: SearchConfig):
    """The water protocol of ``md_rerank`` (``None`` when off), or a :class:`SearchError`
    saying why the check cannot run on this search."""
    if not cfg.md_rerank:
        return None
    # the MD check sits above the search (mctsff.water): imported only when asked for
    from mctsff.water.mdcheck import MDCheckError
    from mctsff.water.rerank import check_md_rerank

    try:
        return check_md_rerank(fitter, cfg.md_options)
    except MDCheckError as exc:
        raise SearchError(f"md_rerank (--md-rerank): {exc}") from None


def _md_rerank(front: ParetoFront, cfg: SearchConfig, protocol, interrupted: bool) -> bool:
    """Run the MD check of ``md_rerank`` on the finished front (not after an interrupt);
    whether it ran."""
    if protocol is None or interrupted or not len(front):
        return False
    from mctsff.water.rerank import md_rerank

    log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if cfg.progress else None
    md_rerank(front, cfg.md_rerank, protocol, log=log)
    return True


def _write_failure(exc: OSError, out: Path, saved_now: bool) -> str:
    """One line: which write failed, and which checkpoint is kept to write them later."""
    what = Path(exc.filename).name if exc.filename else out
    what = re.sub(r"^\.(.*)\.[^.]+\.tmp(\.\w+)?$", r"\1", str(what))  # a temporary file's target
    ckpt = out / CHECKPOINT
    if saved_now:
        kept = f"the checkpoint {ckpt} is kept: rerun with --resume to write the other files"
    elif ckpt.exists():
        kept = f"the last checkpoint {ckpt} is kept (the fits since it are lost)"
    else:
        kept = "no checkpoint was written"
    return f"{write_error(exc, out / what)}; {kept}"


def _check_checkpoint(saved: Mapping[str, Any], path: Path) -> None:
    """One clear error for a checkpoint of the right version that lacks a part."""
    for key, kind in (("signature", dict), ("mcts", dict), ("front", list)):
        if not isinstance(saved.get(key), kind):
            raise SearchError(
                f"{path}: damaged checkpoint ({key!r} is missing or not a {kind.__name__})"
            )
    for key in ("n_evaluations", "n_iterations"):  # the budget is counted on from these
        value = saved["mcts"].get(key, 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise SearchError(f"{path}: damaged checkpoint ({key} is {value!r})")


#: Engine parameters that search() sets from its own arguments (not in ``*_options``)
_SEARCH_SETS = frozenset(
    "grammar evaluate reward exploration max_length leaves pipeline seed transplant elite "
    "canonical n_rollouts novelty cover surrogate".split()
)


def _check_engine_options(options: Mapping[str, Any] | None, method: str, name: str) -> None:
    """One clear error for ``mcts_options``/``gp_options`` the engine would not take.

    ``name`` is the argument (``"mcts"`` or ``"gp"``): its options apply to that
    method only, may not repeat search()'s own parameters and must be the engine's.
    """
    if not options:
        return
    if method != name:
        raise SearchError(f"{name}_options apply to method={name!r}, not {method!r}")
    import inspect

    engine = MCTS if name == "mcts" else GP
    known = set(inspect.signature(engine).parameters) - _SEARCH_SETS
    for key in options:
        if key in _SEARCH_SETS:
            raise SearchError(f"{name}_options: {key!r} is a parameter of search(); pass it there")
        if key not in known:
            raise SearchError(
                f"{name}_options: unknown {name.upper()} option {key!r}; "
                f"choose from {sorted(known)}"
            )


def _check_local_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """``local_options`` checked (known names, non-negative numbers, as
    :class:`~mctsff.config.LocalMoveSettings` checks them); one clear error if not."""
    try:
        local = DEFAULTS.updated(local_options=options).local
    except ConfigError as exc:
        raise SearchError(str(exc)) from None
    return local_values(local, options or {})


def _write_run_info(
    out: Path,
    fitter,
    grammar: Grammar,
    mcts,
    reference_lines,
    local: LocalMoves | None = None,
    config: SearchConfig | None = None,
) -> Path:
    """``run.json``: what an exporter or a later reader needs to use the front (and the
    settings the search ran with)."""
    objective = as_objective(fitter)
    info: dict[str, Any] = {
        "mctsff_version": __import__("mctsff").__version__,
        "grammar": grammar.name,
        "variables": list(objective.variables),
        "data": str(getattr(objective.train, "path", "") or ""),
        "n_evaluations": int(mcts.n_evaluations),
        "method": getattr(mcts, "method", "mcts"),
        "reference_lines": {k: float(v) for k, v in (reference_lines or {}).items()},
        "surrogate": mcts.surrogate is not None,
    }
    if config is not None:  # what the call asked for (a resumed run keeps its engine's)
        info["settings"] = config.as_dict()
    null = frame_errors_for(objective.fitter)
    if null is not None:  # U = 0 on the frames that rank the front: the knee rule's start
        info["null_rmse"] = null.null_rmse
    if info["method"] == "mcts":  # the reuse settings the objective chose (search())
        info["reuse"] = {"transplant": bool(mcts.transplant), "elite": float(mcts.elite)}
        info["novelty"] = int(mcts.novelty)
        info["cover"] = bool(mcts.cover)
    if local is not None:  # the local moves' effective settings (defaults included)
        info["local_moves"] = {
            "prune": bool(local.prune),
            "grow": bool(local.grow),
            **{k: getattr(local, k) for k in LOCAL_OPTIONS},
        }
    info.update(objective.description())
    return write_run_info(out, info)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


#: writes through a unique temporary file, renamed atomically (:func:`mctsff.runio.atomic_write`)
_atomic_write = atomic_write


def _save_checkpoint(
    out: Path,
    mcts: MCTS,
    front: ParetoFront,
    signature,
    local_options: Mapping[str, Any],
    local: LocalMoves | None = None,
    terms: TermProposals | None = None,
) -> None:
    state = {
        "signature": signature,
        "method": getattr(mcts, "method", "mcts"),
        # the settings that differ from the defaults (a resume fills in the rest)
        "local_options": {
            k: v for k, v in local_options.items() if v != getattr(DEFAULTS.local, k, None)
        },
        "mcts": mcts.state_dict(),
        # the archive (the front before the resolution rule), so a resume rebuilds both
        "front": [p.to_dict() for p in front.archive],
        # local moves queued or cut short by the budget (finished first on resume)
        "local_pending": None if local is None else local.pending_state(),
        # term-library proposals of a batch cut short by the budget (fitted first on resume)
        "terms_pending": None if terms is None else terms.pending_state(),
    }
    write_checkpoint(out, state)


def _write_front(out: Path, front: ParetoFront) -> None:
    front.score_test()  # held-out test RMSEs, for the report only
    write_front_points(out, [_point_json(p) for p in front.points])


def _point_json(p: FitResult) -> dict[str, Any]:
    d = p.to_dict()
    extra = d.pop("extra", None) or {}
    if extra.get("md_check") is not None:  # md_rerank's scores (mctsff.water.rerank)
        d["md_check"] = extra["md_check"]
    return d


def write_outputs(
    out: Path,
    front: ParetoFront,
    fitter=None,
    reference_lines: Mapping[str, float] | None = None,
    reference_potentials: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """Write pareto.json, pareto.csv, pareto.png and (force matching) potentials.png.

    ``reference_potentials`` (label -> :class:`~mctsff.expr.params.Potential`) are drawn as
    dashed reference curves on potentials.png."""
    out = Path(out)
    objective = as_objective(fitter)
    forces = objective.kind == "forces"
    _write_front(out, front)
    with atomic_output(out / "pareto.csv") as tmp:
        front.to_csv(tmp)
    with atomic_output(out / "pareto.png") as tmp:
        front.plot(
            tmp,
            dict(reference_lines or {}),
            title="Pareto front",
            ylabel="validation force RMSE (eV/Å)" if forces else "RMSE",
        )
    files = {
        "pareto.json": str(out / "pareto.json"),
        "pareto.csv": str(out / "pareto.csv"),
        "pareto.png": str(out / "pareto.png"),
    }
    if forces and len(front):
        with atomic_output(out / "potentials.png") as tmp:
            plot_potentials(tmp, front, objective.fitter, reference_potentials=reference_potentials)
        files["potentials.png"] = str(out / "potentials.png")
    return files


class _CallableModule(types.ModuleType):
    """``mctsff.search`` is this module once imported (Python sets the package attribute),
    and the function :func:`search` in ``mctsff.__all__``: calling the module runs it."""

    def __call__(self, *args: Any, **kwargs: Any) -> SearchResult:
        return search(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

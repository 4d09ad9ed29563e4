"""Command line: ``mctsff fit``, ``mctsff search``, ``mctsff demo``.

Every user error (bad data file, expression, grammar or option) ends in one
line ``mctsff: error: …`` and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from mctsff import __version__
from mctsff.config import DEFAULTS, NEUTRAL


def _at_least(low: int, high: int | None = None):
    """argparse type: an integer >= ``low`` (and <= ``high`` if given; argparse names the
    option in its error)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be <= {high}, got {value}")
        return value

    return parse


def _probability(text: str) -> float:
    """argparse type: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return value


def _real(low: float | None = None, high: float | None = None, *, above: bool = False):
    """argparse type: a finite number in ``[low, high]`` (``(low, high]`` with ``above``)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if low is not None and (value <= low if above else value < low):
            sign = ">" if above else ">="
            raise argparse.ArgumentTypeError(f"must be {sign} {low:g}, got {text}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be <= {high:g}, got {text}")
        return value

    return parse


class UsageError(ValueError):
    """A bad command-line value (message names the option)."""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``-h`` shows each option's default, except where there is nothing to show (a flag,
    ``None``, an empty list) or the help already says it."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or "default" in text.lower()
            or default in (None, False, argparse.SUPPRESS)
            or default == []
            or not action.option_strings
        ):
            return text
        return text + " (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (``mctsff search: error: …``, exit 2);
    ``-h`` shows the usage and every default."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} -h)\n")


def _pair_value(text: str, option: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise UsageError(f"{option} expects NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


def _float(text: str, option: str, finite: bool = True) -> float:
    """A number given in ``option`` (NaN refused; infinities too unless ``finite=False``)."""
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{option}: {text!r} is not a number") from None
    if math.isnan(value) or (finite and math.isinf(value)):
        raise UsageError(f"{option}: {text!r} is not a finite number")
    return value


def _data_argument(text: str) -> str:
    """argparse type: a data file, or the name of a shipped dataset (``mctsff data list``)."""
    from mctsff.data import DataError, dataset_path

    try:
        return dataset_path(text)
    except DataError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _dataset_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "data",
        type=_data_argument,
        help="extxyz file with positions and reference forces (eV/Å), or a shipped dataset's "
        "name (mctsff data list: water-dimers, bulk-water, ...)",
    )
    p.add_argument("--cutoff", type=_real(0, above=True), default=9.0, help="pair cutoff in Å")
    p.add_argument(
        "--forces",
        default="auto",
        help="per-atom force array (default: inter_forces if present, else forces)",
    )
    p.add_argument("--energy", default="none", help="per-frame energy key, 'auto' or 'none'")
    p.add_argument(
        "--molecules",
        default=None,
        help="assign molecules when the file has no 'mol' array: bonds | nearest-O",
    )
    p.add_argument("--all-pairs", action="store_true", help="keep intramolecular pairs as well")
    p.add_argument(
        "--valid-fraction",
        type=float,
        default=0.2,
        help="fraction of all frames for validation, which ranks the front",
    )
    p.add_argument(
        "--test-fraction",
        type=float,
        default=None,
        help="fraction of all frames for test, seen only by the report (default 0.2)",
    )
    p.add_argument(
        "--split-seed",
        type=_at_least(0),
        default=0,
        help="seed of the train/validation/test split of the frames (independent of --seed)",
    )
    p.add_argument(
        "--seed",
        type=_at_least(0),
        default=DEFAULTS.seed,
        help="seed of the search and the fit starts",
    )


def _fit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--constraint",
        action="append",
        default=None,
        help="force0, energy0, repulsive:R (none by default); repeat for several",
    )
    p.add_argument("--no-constraints", action="store_true", help="fit without constraints")
    p.add_argument(
        "--cutoff-scheme",
        choices=["shifted-force", "shifted-energy", "constraint", "none"],
        default=None,
        help="how the potential ends at the cutoff: shifted-force (default: U(r) - U(rc) - "
        "(r - rc) U'(rc) is fitted, reported and exported), shifted-energy (U - U(rc)), "
        "constraint (U'(rc) = 0 imposed on the form), none (as written)",
    )
    p.add_argument(
        "--match",
        choices=["atoms", "rigid"],
        default="atoms",
        help="what is fitted: every atom's force (atoms, default) or each molecule's net "
        "force and torque (rigid: intramolecular forces have none, so total forces of a "
        "condensed phase are a target as they are; needs molecule ids, e.g. --molecules "
        "nearest-O)",
    )
    p.add_argument(
        "--wall",
        type=_real(0),
        default=None,
        help="radius in Å down to which every type pair's potential must be repulsive below "
        "its shortest distance in the data, pushing with >= 1 eV/Å below half of it (0.5; 0 "
        "switches the wall off)",
    )
    p.add_argument(
        "--neutral",
        default=NEUTRAL,
        metavar="NAME",
        help="keep every molecule of the data neutral: the per-type product-rule constant "
        "NAME (prod_q, prod_c1) sums to 0 over each molecule's atoms (an equality "
        "constraint, kept with --no-constraints; needs molecule ids; in a search, forms "
        "without NAME are not constrained)",
    )
    p.add_argument("--starts", type=_at_least(1), default=3, help="seeded starts per fit")
    p.add_argument(
        "--pair-start",
        action="store_true",
        help="kept for old command lines: the default fit already starts per-type prefactors "
        "(prod_q, geom_e) from a fit with one prefactor per type pair",
    )
    p.add_argument(
        "--weights",
        choices=["uniform", "potfit"],
        default="uniform",
        help="force weights: uniform, or potfit's 1/(|F| + 0.1 eV/Å)² per component",
    )
    p.add_argument(
        "--energy-weight",
        type=_real(0),
        default=0.0,
        help="weight of the per-frame energy residual next to the forces (needs --energy)",
    )
    p.add_argument(
        "--bound",
        action="append",
        default=[],
        metavar="NAME=LO:HI",
        help="bounds of a fitted constant (prod_q[O]=-2:0; an empty side is unbounded); "
        "repeat for several",
    )
    p.add_argument(
        "--init",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="starting value of a fitted constant (b=0.3); repeat for several",
    )
    p.add_argument(
        "--projection",
        type=_real(0, above=True),
        default=None,
        metavar="H",
        help="fit on the grid projection F = M·g with spacing H Å (e.g. 0.05): the cost of a "
        "fit no longer grows with the number of pairs; reported RMSEs stay exact",
    )
    p.add_argument(
        "--stream",
        action="store_true",
        help="with --projection: read the file in chunks of frames and keep only the "
        "projections in memory (for data larger than memory; RMSEs are then projected)",
    )
    p.add_argument(
        "--chunk-frames", type=_at_least(1), default=16, help="frames per chunk with --stream"
    )


class _Summary:
    """What the commands print about data they never held in memory (``--stream``)."""

    def __init__(self, train, valid, test=None):
        parts = [p for p in (train, valid, test) if p is not None]
        self.n_pairs = sum(p.n_pairs for p in parts)
        self.n_frames = sum(p.n_frames for p in parts)
        self.force_array = train.force_array
        self.cutoff = train.cutoff
        self.species = train.species


def _load_streamed(args, intermolecular, test_fraction: float):
    from mctsff.data.projection import ForceProjection, ProjectionError

    if args.projection is None:
        raise UsageError("--stream needs --projection H (grid spacing in Å)")
    if str(args.energy).lower() not in ("none", "auto") or args.energy_weight:
        raise UsageError("--stream fits forces only: drop --energy/--energy-weight")
    try:
        train, valid, test = ForceProjection.holdout_file(
            args.data,
            args.cutoff,
            args.projection,
            valid_fraction=args.valid_fraction,
            test_fraction=test_fraction,
            seed=args.split_seed,
            chunk_frames=args.chunk_frames,
            forces=args.forces,
            energy=None,
            intermolecular=intermolecular,
            molecules=args.molecules,
        )
    except ProjectionError as exc:
        raise UsageError(f"--projection: {exc}") from None
    return _Summary(train, valid, test), train, valid, test


def _load(args):
    from mctsff.data import load_dataset

    if str(args.data).lower().endswith((".csv", ".tsv")):
        how = "add --objective regression" if args.command == "search" else "use mctsff search"
        raise UsageError(
            f"{args.data}: a table, not force data (extxyz); {how} to fit y = f(x) on it "
            "(mctsff search TABLE.csv --objective regression --target COLUMN)"
        )
    energy = None if str(args.energy).lower() == "none" else args.energy
    intermolecular = False if args.all_pairs else None
    if not 0.0 <= args.valid_fraction < 1.0:
        raise UsageError("--valid-fraction must be in [0, 1)")
    test_fraction = 0.2 if args.test_fraction is None else args.test_fraction
    if not 0.0 <= test_fraction < 1.0 or args.valid_fraction + test_fraction >= 1.0:
        raise UsageError("--test-fraction must be in [0, 1) and leave training frames")
    if getattr(args, "stream", False):
        return _load_streamed(args, intermolecular, test_fraction)
    ds = load_dataset(
        args.data,
        args.cutoff,
        forces=args.forces,
        energy=energy,
        intermolecular=intermolecular,
        molecules=args.molecules,
    )
    train, valid, test = ds.split_holdout(args.valid_fraction, test_fraction, args.split_seed)
    return ds, train, valid, test


def _fit_options(args) -> dict:
    from mctsff.fit import WALL_RADIUS

    bounds = {}
    for text in args.bound:
        name, value = _pair_value(text, "--bound")
        lo, sep, hi = value.partition(":")
        if not sep:
            raise UsageError(f"--bound expects NAME=LO:HI, got {text!r}")
        bounds[name] = (
            _float(lo, f"--bound {name}", finite=False) if lo else -math.inf,
            _float(hi, f"--bound {name}", finite=False) if hi else math.inf,
        )
        if bounds[name][0] > bounds[name][1]:
            raise UsageError(f"--bound {text}: the lower bound is above the upper one")
    initial = {}
    for text in args.init:
        name, value = _pair_value(text, "--init")
        initial[name] = _float(value, f"--init {name}")
        lo, hi = bounds.get(name, (-math.inf, math.inf))
        if not lo <= initial[name] <= hi:
            raise UsageError(f"--init {text}: outside --bound {name}={lo:g}:{hi:g}")
    constraints = () if args.no_constraints else tuple(args.constraint or ())
    return dict(
        constraints=constraints,
        cutoff_scheme=args.cutoff_scheme or "shifted-force",
        match=args.match,
        wall=(WALL_RADIUS if args.wall is None else args.wall) or None,
        n_starts=args.starts,
        pair_start=args.pair_start,
        seed=args.seed,
        weights=None if args.weights == "uniform" else args.weights,
        energy_weight=args.energy_weight,
        bounds=bounds,
        initial=initial,
        projection=None if getattr(args, "stream", False) else args.projection,
    )


def _with_neutrality(args, opts: dict, ds, constants: set[str], where: str) -> dict:
    """``opts`` with the ``--neutral NAME`` constraint (molecules of all of ``ds``) added;
    one error line when NAME is not a constant of ``where`` or the data cannot take it."""
    if args.neutral is None:
        return opts
    from mctsff.fit import FitConfigError, neutrality

    name = args.neutral.strip()
    if getattr(args, "stream", False):
        raise UsageError("--neutral needs the molecules in memory: drop --stream")
    if name not in constants:
        from mctsff.expr.ops import constant_rule

        typed = sorted(c for c in constants if constant_rule(c) == "product")
        shown = ", ".join(typed[:4]) + (", ..." if len(typed) > 4 else "")
        raise UsageError(
            f"--neutral {name}: not a constant of {where} (its product-rule constants: "
            f"{shown or 'none'})"
        )
    try:
        constraint = neutrality(name, ds)
    except FitConfigError as exc:
        raise UsageError(f"--{exc}") from None
    return {**opts, "constraints": (*opts["constraints"], constraint)}


def _fit_model(args, train, valid):
    """``fit --model NAME [--refit]``: a reference water model, published or refitted."""
    from mctsff.water.models import published_result, refit_model

    if args.expr:
        raise UsageError("give either --expr or --model, not both")
    if args.neutral is not None:
        raise UsageError("--neutral is for --expr: --model --refit keeps each water neutral")
    if args.stream:
        raise UsageError("--model needs the data in memory: drop --stream")
    try:
        if not args.refit:
            return published_result(args.model, train, valid)
        opts = _fit_options(args)
        # the published models have no cutoff constraint, and are compared as written
        # (no cutoff shift) unless asked for
        opts["constraints"] = () if args.no_constraints else tuple(args.constraint or ())
        opts["cutoff_scheme"] = args.cutoff_scheme or "none"
        opts["wall"] = args.wall or None  # a published water model has no H-O wall
        return refit_model(args.model, train, valid, **opts)
    except KeyError as exc:
        raise UsageError(f"--model: {exc.args[0]}") from None
    except ValueError as exc:
        if type(exc) is not ValueError:
            raise
        raise UsageError(f"--model {args.model}: {exc}") from None


def cmd_fit(args) -> int:
    """Fit the constants of one expression."""
    from mctsff.engines.holdout import holdout_scorer
    from mctsff.fit import Fitter

    ds, train, valid, test = _load(args)
    fitter = None
    if getattr(args, "model", None):
        res = _fit_model(args, train, valid)
    elif not args.expr:
        raise UsageError("fit needs --expr EXPRESSION or --model NAME")
    else:
        from mctsff.expr.program import Program

        known = set(Program.from_string(args.expr).constants)
        opts = _with_neutrality(args, _fit_options(args), ds, known, f"--expr {args.expr!r}")
        fitter = Fitter(train, valid, **opts)
        if args.init or args.bound:
            _check_names(args, known, train.species, f"--expr {args.expr!r}")
        res = fitter.fit(args.expr)
    score = holdout_scorer(fitter, test)
    if score is not None and res.valid:
        res.rmse_test = score(res)
    out = res.to_dict()
    out.update(
        n_pairs=int(ds.n_pairs),
        n_frames=int(ds.n_frames),
        n_frames_train=int(train.n_frames),
        n_frames_valid=int(valid.n_frames) if valid is not None else 0,
        n_frames_test=int(test.n_frames) if test is not None else 0,
        force_array=ds.force_array,
        cutoff=ds.cutoff,
        species=list(ds.species),
        match=getattr(args, "match", "atoms"),
    )
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"expression   {res.expression}   (complexity {res.complexity})")
        print(
            f"data         {args.data}: {ds.n_frames} frames, {ds.n_pairs} pairs, "
            f"forces from '{ds.force_array}'"
        )
        if out["match"] == "rigid":
            print("match        rigid: each molecule's net force and torque (the RMSEs are of")
            print("             the rigid-body part of the force errors, per component)")
        if not res.valid:
            print(f"INVALID      {res.reason}")
        print(f"rmse_train   {res.rmse_train:.6g} eV/Å")
        print(f"rmse_valid   {res.rmse_valid:.6g} eV/Å")
        print(f"rmse_test    {res.rmse_test:.6g} eV/Å")
        for k, v in res.params.items():
            print(f"  {k:<20s} {v: .10g}")
        for k, v in res.constraints.items():
            print(f"  constraint {k:<9s} residual {v:.3e}")
        proj = res.extra.get("projection")
        if proj:
            exact = (
                "no exact check (streamed)"
                if proj["loss_exact"] is None
                else f"projected vs exact loss {proj['rel_error']:.1e} relative"
            )
            print(
                f"projection   h = {proj['spacing']} Å, {proj['n_grid']} grid nodes; {exact}; "
                f"bound {proj['loss_rel_bound']:.1e} relative"
            )
        for f in res.flags:
            print(f"  WARNING: {f}")
    return 0 if res.valid else 1


def _search_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--grammar", default="pair", help="shipped grammar name or .lark file")
    p.add_argument(
        "--budget", type=_at_least(1), default=DEFAULTS.budget, help="distinct expressions to fit"
    )
    p.add_argument(
        "--time",
        dest="time_limit",
        metavar="SECONDS",
        type=_real(0, above=True),
        default=DEFAULTS.time_limit,
        help="wall-clock limit in seconds (none by default); no fit starts after it, one "
        "running then is finished",
    )
    p.add_argument("--out", default="run", help="run folder")
    p.add_argument("--resume", action="store_true", help="continue the search saved in --out")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start a new run in an existing --out folder, replacing the earlier run's files "
        "(without it an existing non-empty folder is refused)",
    )
    p.add_argument(
        "--reward",
        choices=["spl", "tradeoff"],
        default=DEFAULTS.reward,
        help="reward of an expression: spl = eta^complexity/(1 + loss/scale), tradeoff = "
        "1/(1 + loss/scale) - 0.01 complexity",
    )
    p.add_argument(
        "--eta",
        type=_real(0, 1, above=True),
        default=DEFAULTS.eta,
        help="SPL parsimony factor per complexity, in (0, 1]",
    )
    p.add_argument(
        "--exploration",
        type=_real(0),
        default=DEFAULTS.mcts.exploration,
        help="UCT constant (>= 0)",
    )
    p.add_argument(
        "--max-length",
        type=_at_least(1),
        default=DEFAULTS.max_length,
        help="productions per expression",
    )
    p.add_argument(
        "--rollouts",
        dest="n_rollouts",
        metavar="N",
        type=_at_least(1),
        default=None,
        help="rollouts per expansion (default 3 for forces, 10 for --objective regression)",
    )
    p.add_argument(
        "--leaves",
        type=_at_least(1),
        default=DEFAULTS.mcts.leaves,
        help="leaves expanded per MCTS iteration (virtual loss; their rollouts form one batch)",
    )
    p.add_argument(
        "--pipeline",
        type=_at_least(0),
        default=DEFAULTS.mcts.pipeline,
        help="MCTS iterations kept in flight while workers fit (virtual loss)",
    )
    p.add_argument(
        "--transplant",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="SPL module transplantation (default: on for --objective regression, off for forces)",
    )
    p.add_argument(
        "--elite",
        type=_probability,
        default=None,
        help="MCTS rollouts copy a sub-derivation of one of the 10 best expressions at each "
        "step with this probability (default: 0.3 for --objective regression, 0 for forces)",
    )
    p.add_argument(
        "--novelty",
        type=_at_least(1),
        default=DEFAULTS.mcts.novelty,
        help="MCTS rollouts drawn per rollout kept: the one with the most never-proposed "
        "terms (sub-derivations of non-recursive nonterminals) is kept; 1 = plain",
    )
    p.add_argument(
        "--cover",
        action=argparse.BooleanOptionalAction,
        default=DEFAULTS.mcts.cover,
        help="with --novelty > 1, MCTS rollouts draw each term of a sum among the terms not "
        "proposed yet, so every term is tried once before one repeats (default: on)",
    )
    p.add_argument(
        "--surrogate",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="MCTS sends the fitter, of the rollouts drawn with a new term, the one whose "
        "forces a linear least-squares estimate (amplitudes solved, range constants on a "
        "grid) matches best, without fitting the others; GP so chooses each offspring of 8 "
        "drawn (default: on for forces)",
    )
    p.add_argument(
        "--terms",
        action=argparse.BooleanOptionalAction,
        default=DEFAULTS.terms,
        help="also fit sums of the grammar's terms proposed by sparse selection on the forces "
        "(a term library, forward selection with refitted amplitudes; each proposal parsed "
        "back with the grammar; mctsff.engines.terms); off where the grammar has no sum of "
        "terms (default: on; --no-terms turns it off)",
    )
    p.add_argument(
        "--terms-share",
        type=_real(0, 1),
        default=DEFAULTS.terms_share,
        metavar="SHARE",
        help="with --terms, the share of all fits the proposals may take after the first 8 "
        f"({DEFAULTS.terms_share:g})",
    )
    p.add_argument(
        "--local-option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting of the local moves, repeatable: max_share, spread_share (or none), "
        "substitute_share, spread_hosts, max_library, simple_complexity, max_terms, max_depth "
        "(search(local_options=...); docs/tutorial.md)",
    )
    p.add_argument(
        "--method",
        choices=["mcts", "gp"],
        default=DEFAULTS.method,
        help="search engine: Monte Carlo tree search or grammar-guided GP",
    )
    p.add_argument(
        "--reference",
        action="append",
        default=[],
        metavar="LABEL=EXPR",
        help="fit a reference expression and draw its loss on pareto.png",
    )
    p.add_argument(
        "--reference-model",
        action="append",
        default=[],
        metavar="NAME",
        help="draw a water model's published and refit losses (q-spcfw, spcfw, tip3p)",
    )
    p.add_argument(
        "--md-rerank",
        metavar="N",
        type=_at_least(0),
        default=DEFAULTS.md_rerank,
        help="after the search (outside --time), run the liquid-water MD check (mctsff "
        "md-check water; OpenMM) on N front members that pass the wall check, the knee-rule "
        "member first, then by validation RMSE, and write stability, density, RDF distances "
        "and NVE drift into pareto.json/csv/png; water data (H, O) only; each member costs "
        "minutes (226 s measured with the defaults at a 9 Å cutoff, 259 waters, one thread; "
        "2 s with the tests' 64-water 0.5 ps protocol at 5.5 Å; docs/md-check.md)",
    )
    p.add_argument(
        "--md-option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting of --md-rerank's protocol, repeatable: n_molecules, equilibration_ps, "
        "npt_ps, nvt_ps, nve_ps, threads, seed, ... (mctsff.water.mdcheck.WaterProtocol; "
        "e.g. n_molecules=64 npt_ps=0.2 nvt_ps=0.1 for a short check)",
    )
    _quiet_args(p, "no progress bar on stderr")
    p.add_argument(
        "--no-local-moves",
        action="store_true",
        help="fit only what the search engine derives: no prune/grow moves around front "
        "members (search(prune=False, grow=False))",
    )
    p.add_argument(
        "--workers",
        type=_at_least(0),
        default=DEFAULTS.parallel.workers,
        help="local worker processes (0 = all cores; at most the cores)",
    )
    p.add_argument(
        "--scheduler",
        default=None,
        help="Dask scheduler address, tcp://host:8786 (one you started: it exchanges pickles, "
        "which run code; docs/cluster.md)",
    )
    p.add_argument(
        "--fit-timeout",
        dest="timeout",
        metavar="SECONDS",
        type=_real(0, above=True),
        default=DEFAULTS.parallel.timeout,
        help="seconds allowed per fit (no limit by default)",
    )


def _quiet_args(p: argparse.ArgumentParser, what: str) -> None:
    """``--quiet`` (documented) and ``--no-progress`` (the same, kept for old command lines)."""
    p.add_argument("--quiet", "-q", dest="quiet", action="store_true", help=what)
    p.add_argument("--no-progress", dest="quiet", action="store_true", help=argparse.SUPPRESS)


def _print_front(result, stream=None) -> None:
    stream = stream or sys.stdout  # the current one (a default would keep the first)
    pts = result.front.points
    chosen = result.best
    print(
        f"  {'cplx':>4} {'rmse_train':>11} {'rmse_valid':>11} {'rmse_test':>11}  expression",
        file=stream,
    )
    for p in pts:
        flag = "  [!]" if p.flags else ""
        mark = "*" if p is chosen else " "
        print(
            f"{mark} {p.complexity:>4} {p.rmse_train:>11.5g} {p.rmse_valid:>11.5g} "
            f"{p.rmse_test:>11.5g}  {p.expression}{flag}",
            file=stream,
        )
    if chosen is not None:
        print(
            "* selected by the knee rule (mctsff.engines.pareto; what export takes by default)",
            file=stream,
        )
    if not pts:
        null = result.front.null_loss
        than = f" (rmse_valid {null:.5g})" if null is not None and math.isfinite(null) else ""
        print(
            "  the front is empty: no fitted expression was valid (a fit that failed or hit "
            "--fit-timeout is not), kept its constraints (the repulsive wall included) and "
            f"beat U = 0{than} by more than the validation frames resolve; search longer, or "
            "use --wall 0 if the data have no repulsive core",
            file=stream,
        )
    for p in pts:
        for f in p.flags:
            print(f"  [!] {p.expression}: {f}", file=stream)


def _reference_potential(name: str, fitter) -> dict:
    """``{"<model> (published)": Potential}`` of a reference water model on the fitter's
    types, shifted by the fit's cutoff scheme like the searched potentials (empty when the
    fitter has no type pairs the model knows)."""
    from mctsff.expr.params import Potential
    from mctsff.water.models import get_model, reference_model

    try:
        expr, params, _ = reference_model(name, fitter.species, fitter.type_pairs)
        pot = Potential(
            expr,
            params,
            fitter.species,
            fitter.type_pairs,
            cutoff=fitter.cutoff,
            scheme=getattr(fitter, "scheme", "none"),
        )
    except (AttributeError, KeyError, ValueError):
        return {}
    return {f"{get_model(name).name} (published)": pot}


def search_config(args: argparse.Namespace):
    """The :class:`~mctsff.config.SearchConfig` of a parsed ``mctsff search`` command line:
    each option whose destination is a setting's flat name (:data:`mctsff.config.SETTINGS`)
    sets it; ``--local-option``, ``--no-local-moves``, ``--quiet`` and ``--workers 0`` are
    translated."""
    from mctsff.config import SETTINGS

    given = {k: v for k, v in vars(args).items() if k in SETTINGS}
    local: dict[str, float | None] = {}
    for text in args.local_option:
        name, value = _pair_value(text, "--local-option")
        local[name] = None if value.lower() == "none" else _float(value, f"--local-option {name}")
    md = dict(_pair_value(text, "--md-option") for text in getattr(args, "md_option", []))
    given.update(
        local_options=local or None,
        md_options=md or None,
        prune=not args.no_local_moves,
        grow=not args.no_local_moves,
        progress=not args.quiet,
        workers=_workers(args.workers),
    )
    return DEFAULTS.updated(**given)


def _run_search(args, fitter, test=None) -> int:
    from mctsff.expr.grammar import Grammar
    from mctsff.search import check_max_length, check_variables, search

    # the grammar's variables are checked against the data before any fit (--reference too)
    grammar = Grammar.load(args.grammar)
    check_variables(fitter, grammar)
    check_max_length(grammar, search_config(args).max_length)
    refs = {}
    ref_pots = {}
    if args.reference_model and getattr(args, "stream", False):
        raise UsageError("--reference-model needs the data in memory: drop --stream")
    for name in args.reference_model:
        from mctsff.water.models import reference_lines

        try:
            lines = reference_lines(name, fitter.train, fitter.valid)
        except KeyError as exc:
            raise UsageError(f"--reference-model: {exc.args[0] if exc.args else exc}") from None
        for label, loss in lines.items():
            print(f"reference {label}: loss {loss:.5g}")
        refs.update(lines)
        ref_pots.update(_reference_potential(name, fitter))
    for text in args.reference:
        label, expr = _pair_value(text, "--reference")
        res = fitter.fit(expr)
        refs[f"{label} (refit)"] = res.score_loss
        print(f"reference {label}: {expr} -> loss {res.score_loss:.5g}")
    if args.resume and args.overwrite:
        raise UsageError("--resume and --overwrite exclude each other")
    if args.init or args.bound:
        species = getattr(fitter, "species", ())
        _check_names(args, _grammar_constants(args.grammar), species, "the grammar")
    result = search(
        fitter,
        grammar,
        search_config(args),
        out=args.out,
        resume=args.resume,
        overwrite=args.overwrite,
        test=test,
        reference_lines=refs,
        reference_potentials=ref_pots,
    )
    print(
        f"{result.n_evaluations} expressions fitted in {result.seconds:.1f} s"
        + (" (interrupted)" if result.interrupted else "")
    )
    _print_front(result)
    if search_config(args).md_rerank:
        from mctsff.water.rerank import rerank_summary

        if result.interrupted:
            print("md-check: skipped (the search was interrupted)")
        else:
            print(rerank_summary(result.front) or "md-check: no front member passes the wall check")
    for path in result.files.values():
        print(f"wrote {path}")
    if result.write_error:
        print(f"mctsff: error: {result.write_error}", file=sys.stderr)
        return 1
    return 0


def _grammar_constants(grammar: str) -> set[str]:
    """Constant names a search with ``grammar`` fits: the named ones its terminals write and
    the numbered ones (``c1``, ``prod_c2``, ``k1``, …) up to 16 of each kind."""
    import re

    from mctsff.expr import ops
    from mctsff.expr.grammar import PLACEHOLDERS, Grammar

    g = Grammar.load(grammar)
    names = set()
    for text in g.terminal_text.values():
        names.update(re.findall(r"[A-Za-z_]\w*", text or ""))
    names -= set(ops.RESERVED) | set(g.variables)
    numbered = {*PLACEHOLDERS.values(), "k"}
    return names | {f"{p}{k}" for p in numbered for k in range(1, 17)}


def _workers(asked: int) -> int:
    """``--workers`` (0: all cores) capped at the cores, with a note when capped."""
    import os

    cores = os.cpu_count() or 1
    if asked > cores:
        print(f"mctsff: note: --workers {asked} capped at the {cores} cores", file=sys.stderr)
    return min(asked, cores) if asked else cores


def _check_names(args, known: set[str], species, where: str) -> None:
    """One clear error for a ``--init``/``--bound`` name that no fitted constant has.

    A name is a constant (``b``) or a per-type one with its types (``prod_q[O]``,
    ``pair_A[H-O]``); ``known`` are the constants of the expression or grammar.
    """
    for option, texts in (("--init", args.init), ("--bound", args.bound)):
        for text in texts:
            name = text.partition("=")[0].strip()
            base, sep, types = name.partition("[")
            unknown_types = sep and (
                not types.endswith("]") or not set(types[:-1].split("-")) <= set(species)
            )
            if base not in known or unknown_types:
                raise UsageError(
                    f"{option} {name}: not a constant of {where} (constants: "
                    f"{', '.join(sorted(known)) or 'none'}; atom types: {', '.join(species)})"
                )


def cmd_search(args) -> int:
    """Search the grammar for the potentials that best fit the data."""
    from mctsff.fit import Fitter

    if args.objective == "regression":
        if args.neutral is not None:
            raise UsageError("--neutral is for force matching, not --objective regression")
        from mctsff.data import holdout_frames
        from mctsff.fit.regression import RegressionData, RegressionFitter

        data = RegressionData.from_csv(args.data, target=args.target)
        test_fraction = 0.2 if args.test_fraction is None else args.test_fraction
        rows = holdout_frames(
            data.n, args.valid_fraction, test_fraction, args.split_seed, str(args.data)
        )
        train, valid, test = (None if r is None else data.subset(r) for r in rows)
        fitter = RegressionFitter(
            train,
            valid,
            n_starts=args.starts,
            seed=args.seed,
            linear_scaling=args.linear_scaling,
        )
        return _run_search(args, fitter, test)
    ds, train, valid, test = _load(args)
    n_valid = valid.n_frames if valid is not None else 0
    n_test = test.n_frames if test is not None else 0
    print(
        f"data: {args.data}: {ds.n_frames} frames ({train.n_frames} train, {n_valid} "
        f"validation, {n_test} test; split seed {args.split_seed}), "
        f"{ds.n_pairs} pairs within {ds.cutoff:g} Å, forces from '{ds.force_array}'"
    )
    opts = _with_neutrality(
        args, _fit_options(args), ds, _grammar_constants(args.grammar), "the grammar"
    )
    fitter = Fitter(train, valid, **opts)
    return _run_search(args, fitter, test)


def cmd_demo(args) -> int:
    """Run the main job on the shipped water-dimer data."""
    from mctsff.data import data_file

    argv = [
        "search",
        str(data_file(DEMO_DATA)),
        "--cutoff",
        "9",
        "--grammar",
        "pair",
        "--budget",
        str(args.budget),
        "--seed",
        str(args.seed),
        "--out",
        args.out,
        "--reference-model",
        DEMO_REFERENCE_MODEL,
        "--workers",
        str(args.workers),
    ]
    if args.time is not None:
        argv += ["--time", str(args.time)]
    if args.quiet:
        argv.append("--quiet")
    if args.overwrite:
        argv.append("--overwrite")
    print("mctsff demo: " + " ".join(argv))
    inner = build_parser().parse_args(argv)
    return cmd_search(inner)


#: Shipped example data of the demo and the reference model drawn on its front.
DEMO_DATA = "water_dimers_mp2_200.extxyz"
DEMO_REFERENCE_MODEL = "q-spcfw"


def _add_data_commands(sub) -> None:
    """``mctsff data water-dimers`` and ``mctsff data solvent-forces``: make reference data."""

    def run_data(args) -> int:
        try:
            if args.data_command == "water-dimers":
                from mctsff.water.qm import generate_water_dimers

                info = generate_water_dimers(
                    args.out,
                    args.n,
                    method=args.method,
                    basis=args.basis,
                    frozen_core=not args.all_electron,
                    seed=args.seed,
                    workers=args.workers,
                    progress=not args.quiet,
                )
                print(
                    f"{info['path']}: {info['n_computed']} dimers computed, "
                    f"{info['n_skipped']} already there ({info['seconds']:.1f} s)"
                )
            else:
                from mctsff.water.md import solvent_forces

                info = solvent_forces(
                    args.pdb,
                    args.out,
                    args.frames,
                    stride=args.stride,
                    equilibration_ps=args.equilibration,
                    padding_nm=args.padding,
                    seed=args.seed,
                    progress=not args.quiet,
                )
                print(
                    f"{info['path']}: {info['n_frames']} frames, {info['n_waters']} waters, "
                    f"solvent force RMS {info['force_rms']:.4g} eV/Å ({info['seconds']:.1f} s)"
                )
        except (RuntimeError, ImportError, ValueError) as exc:
            print(f"mctsff: error: {exc}", file=sys.stderr)
            return 2
        return 0

    def list_data(args) -> int:
        import textwrap

        from mctsff.data import shipped_datasets

        rows = shipped_datasets()
        print(f"{'name':<20} {'frames':>6} {'size':>9}  file")
        for r in rows:
            print(f"{r['name']:<20} {r['frames']:>6} {r['bytes'] / 1e3:>6.0f} kB  {r['file']}")
            print(textwrap.fill(r["source"], 96, initial_indent="    ", subsequent_indent="    "))
        print("give the name instead of a path, e.g. mctsff search water-dimers --cutoff 9")
        return 0

    p = sub.add_parser(
        "data", help="list the shipped datasets; make reference data (QM dimers, solvent forces)"
    )
    dsub = p.add_subparsers(dest="data_command", required=True)
    ls = dsub.add_parser("list", help="the shipped datasets: name, frames, size, file, source")
    ls.set_defaults(func=list_data)
    q = dsub.add_parser(
        "water-dimers",
        help="sample water dimers and compute dimer and monomer forces (PySCF or tblite)",
    )
    q.add_argument("-n", "--n", type=int, required=True, help="dimers wanted in the file")
    q.add_argument(
        "--method",
        choices=["mp2", "hf", "xtb"],
        default="mp2",
        help="level of theory: MP2 or HF (PySCF), GFN2-xTB (tblite)",
    )
    q.add_argument("--basis", default="aug-cc-pvdz", help="basis set (PySCF methods)")
    q.add_argument("--all-electron", action="store_true", help="MP2 without frozen core")
    q.add_argument("--out", required=True, help="extxyz file; resumed when it exists")
    q.add_argument("--workers", type=int, default=1, help="worker processes, 1 thread each")
    q.add_argument(
        "--seed", type=_at_least(0), default=0, help="sampling seed (keep it when resuming)"
    )
    _quiet_args(q, "no progress lines")
    q.set_defaults(func=run_data)
    m = dsub.add_parser(
        "solvent-forces",
        help="explicit-TIP3P MD of a solute; exact solvent force on each solute atom (OpenMM)",
    )
    m.add_argument("--pdb", default=None, help="solute PDB (default: shipped alanine dipeptide)")
    m.add_argument("--frames", type=int, default=300, help="frames to write")
    m.add_argument("--out", required=True, help="extxyz file to write")
    m.add_argument("--stride", type=int, default=500, help="MD steps (2 fs) between frames")
    m.add_argument("--equilibration", type=float, default=20.0, help="equilibration in ps")
    m.add_argument("--padding", type=float, default=1.0, help="water padding in nm")
    m.add_argument("--seed", type=int, default=0, help="velocity/thermostat seed")
    _quiet_args(m, "no progress lines")
    m.set_defaults(func=run_data)


def _add_export_command(sub) -> None:
    """``mctsff export RUN_DIR``: a front point to sympy/LaTeX/Python/LAMMPS/OpenMM/ASE."""
    # kept literal so that building the parser imports nothing heavy (= mctsff.export's values)
    formats = ["sympy", "latex", "python", "lammps", "lammps-lepton", "openmm", "openmm-xml", "ase"]

    def run_export(args) -> int:
        from mctsff.export import ExportError, run_cli

        try:
            return run_cli(args)
        except ExportError as exc:
            raise UsageError(str(exc)) from None

    p = sub.add_parser("export", help="export a front point to an MD engine or a formula")
    p.add_argument("run_dir", help="search run folder (pareto.json, optional run.json)")
    p.add_argument(
        "--index",
        type=int,
        default=None,
        help="front point, 0 = simplest (default: the one the knee rule selects, marked * in "
        "the search's table)",
    )
    p.add_argument("--format", choices=formats, required=True, help="output format")
    p.add_argument("--out", default=None, help="file to write (default: print)")
    p.add_argument("--units", choices=["metal", "real"], default="metal", help="LAMMPS units")
    p.add_argument(
        "--species", nargs="+", default=None, help="atom types (LAMMPS type ids in this order)"
    )
    p.add_argument(
        "--cutoff", type=_real(0, above=True), default=None, help="cutoff in Å (default: run.json)"
    )
    p.add_argument(
        "--points",
        type=_at_least(2, 1_000_000),
        default=20000,
        help="LAMMPS table points (20000; at most 10^6: about 65 MB of table per type pair)",
    )
    p.add_argument(
        "--rlo",
        type=_real(0, above=True),
        default=None,
        help="LAMMPS table inner radius in Å, where the wall check starts (default: the run's "
        "wall radius from run.json, else 0.5)",
    )
    p.add_argument(
        "--table-style",
        choices=["linear", "spline"],
        default="linear",
        help="LAMMPS pair_style table interpolation",
    )
    p.add_argument(
        "--shift",
        action="store_true",
        help="subtract U(cutoff) so energies are 0 at the cutoff; a no-op for shifted-force and "
        "shifted-energy runs (the default), whose potential is exported shifted and already "
        "0 there",
    )
    p.add_argument(
        "--allow-no-wall",
        action="store_true",
        help="export a point without a repulsive wall (a failed wall constraint, or, without "
        "that record, dU/dr > 0 between the table's inner radius and 1.5 Å); refused otherwise",
    )
    p.add_argument("--pair", default=None, help="one type pair A-B (sympy, latex)")
    p.add_argument(
        "--bond-cutoff",
        type=_at_least(0),
        default=3,
        help="openmm-xml: atoms at most this many bonds apart do not interact (3)",
    )
    p.set_defaults(func=run_export)


# ----------------------------------------------------------------------------- md-check
#: md-check options whose protocol field is named otherwise (the others share their names)
_MD_PROTOCOL_FIELDS = {
    "molecules": "n_molecules",
    "timestep": "timestep_fs",
    "equilibration": "equilibration_ps",
    "npt": "npt_ps",
    "nvt": "nvt_ps",
    "nve": "nve_ps",
    "production": "production_ps",
    "exclude": "exclude_bonds",
}


def _md_protocol(args: argparse.Namespace, protocol: type) -> Any:
    """The ``protocol`` (:class:`~mctsff.water.mdcheck.WaterProtocol` or
    :class:`~mctsff.water.mdcheck.SolventProtocol`) with the md-check options given; its
    settings without an option keep their defaults."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(protocol)}
    values = {_MD_PROTOCOL_FIELDS.get(k, k): v for k, v in vars(args).items()}
    return protocol(**{k: v for k, v in values.items() if k in names})


def cmd_md_check(args: argparse.Namespace) -> int:
    """Body of ``mctsff md-check water`` and ``mctsff md-check solvent``."""
    from mctsff.water import mdcheck

    if args.md_check_command == "water":
        protocol, check, summary = mdcheck.WaterProtocol, mdcheck.water_check, mdcheck.water_summary
        extra = {"reference_model": not args.no_reference, "forces": not args.no_forces}
    else:
        protocol, check, summary = (
            mdcheck.SolventProtocol, mdcheck.solvent_check, mdcheck.solvent_summary
        )  # fmt: skip
        extra = {"reference": args.reference}
    try:
        report = check(
            args.run_dir,
            None if args.best else args.index,
            protocol=_md_protocol(args, protocol),
            out=args.out,
            progress=not args.quiet,
            **extra,
        )
    except mdcheck.MDCheckError as exc:
        print(f"mctsff: error: {exc}", file=sys.stderr)
        return 2
    print(summary(report))
    for path in report["files"]:
        print(f"wrote {path}")
    return 0


def _md_option(parser: argparse.ArgumentParser, protocol: type, flag: str, **kwargs) -> None:
    """Add ``flag`` to ``parser`` with the default of its ``protocol`` field (named as the
    option, or as :data:`_MD_PROTOCOL_FIELDS` says)."""
    dest = flag.lstrip("-").replace("-", "_")
    default = getattr(protocol, _MD_PROTOCOL_FIELDS.get(dest, dest))
    parser.add_argument(flag, default=default, **kwargs)


def _md_check_parser(
    msub, name: str, protocol: type, *, help: str, run_dir: str, best: str, out: str, seed: str
) -> argparse.ArgumentParser:
    """The ``md-check name`` parser with the options every check has (run folder, member,
    output folder, seed, threads, platform, quiet); ``run_dir``, ``best``, ``out`` and
    ``seed`` are the help lines that differ between the checks."""
    p = msub.add_parser(name, help=help)
    p.add_argument("run_dir", help=run_dir)
    pick = p.add_mutually_exclusive_group()
    pick.add_argument("--index", type=int, default=None, help="front member, 0 = simplest")
    pick.add_argument("--best", action="store_true", help=best)
    p.add_argument("--out", default=None, help=out)
    _md_option(p, protocol, "--seed", type=int, help=seed)
    _md_option(p, protocol, "--threads", type=_at_least(0), help="OpenMM CPU threads (0: all)")
    _md_option(p, protocol, "--platform", help="OpenMM platform")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_md_check)
    return p


def _add_md_check(sub) -> None:
    """Add ``md-check water`` and ``md-check solvent`` to the ``mctsff`` subcommands; their
    defaults are those of :class:`~mctsff.water.mdcheck.WaterProtocol` and
    :class:`~mctsff.water.mdcheck.SolventProtocol`."""
    from mctsff.water.mdcheck import SolventProtocol, WaterProtocol

    p = sub.add_parser(
        "md-check",
        help="run a front member in MD (liquid water) and compare distributions with "
        "experiment, DFT and q-SPC/Fw",
    )
    msub = p.add_subparsers(dest="md_check_command", required=True)
    w = _md_check_parser(
        msub,
        "water",
        WaterProtocol,
        help="liquid water (q-SPC/Fw intramolecular + the member): stability, density, RDFs",
        run_dir="search run folder (pareto.json, run.json)",
        best="the knee-rule member (the default, as export)",
        out="folder for water.json, rdf.png (RUN/md-check)",
        seed="seed of the lattice orientations, velocities, thermostat and barostat",
    )
    _md_option(
        w,
        WaterProtocol,
        "--molecules",
        type=_at_least(0),
        help="waters (more when the box would be under 2.2 cutoffs)",
    )
    _md_option(w, WaterProtocol, "--temperature", type=_real(0, above=True), help="temperature, K")
    _md_option(w, WaterProtocol, "--timestep", type=_real(0, above=True), help="time step, fs")
    _md_option(w, WaterProtocol, "--equilibration", type=_real(0), help="NVT equilibration, ps")
    _md_option(w, WaterProtocol, "--npt", type=_real(0), help="NPT, ps (the density)")
    _md_option(
        w, WaterProtocol, "--nvt", type=_real(0, above=True), help="NVT production, ps (the RDFs)"
    )
    _md_option(w, WaterProtocol, "--nve", type=_real(0), help="NVE, ps (the energy drift)")
    w.add_argument("--no-reference", action="store_true", help="skip the q-SPC/Fw run")
    w.add_argument("--no-forces", action="store_true", help="skip the force RMSE on the DFT frames")
    s = _md_check_parser(
        msub,
        "solvent",
        SolventProtocol,
        help="alanine dipeptide: vacuum amber14 + the member vs explicit solvent (phi/psi)",
        run_dir="search run folder of a solvent-force search",
        best="the knee-rule member (default)",
        out="folder for solvent.json (RUN/md-check)",
        seed="seed of the velocities and the Langevin thermostat",
    )
    _md_option(s, SolventProtocol, "--equilibration", type=_real(0), help="equilibration, ps")
    _md_option(
        s, SolventProtocol, "--production", type=_real(0, above=True), help="production per run, ps"
    )
    _md_option(
        s,
        SolventProtocol,
        "--exclude",
        type=_at_least(0),
        help="no member term on pairs up to N bonds apart (as examples/alanine_dipeptide.py)",
    )
    s.add_argument(
        "--reference",
        default="auto",
        help="explicit-solvent phi/psi: auto (the shipped long series, else the fit trajectory), "
        "fit-data (the 300 ps ala2_solvent_forces.extxyz), or a file: a phi/psi .tsv or an "
        "extxyz of 'mctsff data solvent-forces'",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``mctsff`` argument parser."""
    parser = _Parser(
        prog="mctsff",
        description="Discover classical pair potentials from reference forces by symbolic "
        "regression (grammar-guided Monte Carlo tree search + force matching).",
    )
    parser.add_argument("--version", action="version", version=f"mctsff {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("fit", help="fit the constants of a given expression")
    _dataset_args(p)
    p.add_argument("--expr", default=None, help='e.g. "prod_q/r + A*exp(-r/b) - C/r**6"')
    p.add_argument(
        "--model",
        default=None,
        help="reference water model instead of --expr: q-spcfw | spcfw | tip3p (published "
        "parameters; with --refit charges and O-O LJ refitted, molecules kept neutral)",
    )
    p.add_argument("--refit", action="store_true", help="refit the --model parameters")
    _fit_args(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("search", help="search a grammar for the best potentials (MCTS or GP)")
    _dataset_args(p)
    _fit_args(p)
    _search_args(p)
    p.add_argument(
        "--objective",
        choices=["forces", "regression"],
        default="forces",
        help="force matching on extxyz (default) or y=f(x) regression on a CSV table",
    )
    p.add_argument("--target", default="y", help="target column for --objective regression")
    p.add_argument(
        "--linear-scaling",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="--objective regression: fit scale*(f) + offset around each expression f "
        "when that lowers the loss (default: on)",
    )
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("demo", help="run the main job on the shipped example data")
    p.add_argument("--out", default="run", help="run folder")
    p.add_argument(
        "--budget", type=_at_least(1), default=DEFAULTS.budget, help="distinct expressions to fit"
    )
    p.add_argument(
        "--time", type=_real(0, above=True), default=240.0, help="wall-clock limit in seconds"
    )
    p.add_argument("--seed", type=_at_least(0), default=DEFAULTS.seed, help="seed of the search")
    _quiet_args(p, "no progress bar on stderr")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier run in --out")
    p.add_argument(
        "--workers", type=_at_least(0), default=0, help="worker processes (0 = all cores)"
    )
    p.set_defaults(func=cmd_demo)
    _add_data_commands(sub)
    _add_export_command(sub)
    _add_md_check(sub)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one line on stderr (``mctsff: warning: …``)."""
    print(f"mctsff: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mctsff`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from mctsff.config import ConfigError
    from mctsff.data import DataError
    from mctsff.expr.grammar import GrammarError
    from mctsff.expr.program import ExpressionError
    from mctsff.fit import FitConfigError
    from mctsff.runio import RunFolderError
    from mctsff.search import SearchError

    errors: tuple[type[Exception], ...] = (
        ConfigError,
        DataError,
        ExpressionError,
        FitConfigError,
        GrammarError,
        SearchError,
        UsageError,
        RunFolderError,
        FileNotFoundError,
    )
    try:
        from mctsff.fit.regression import RegressionDataError

        errors += (RegressionDataError,)
    except ImportError:  # pragma: no cover - optional until the module lands
        pass
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            # the end of a search says what it could not write as its error line
            warnings.filterwarnings("ignore", r"cannot write .*(is kept|no checkpoint)")
            return int(args.func(args) or 0)
    except errors as exc:
        print(f"mctsff: error: {exc}", file=sys.stderr)
        return 2
    except MemoryError as exc:  # numpy names the size: "Unable to allocate 3.1 PiB for ..."
        detail = " ".join(str(exc).split()) or "no detail"
        print(
            f"mctsff: error: out of memory ({detail}); use less data, a smaller --cutoff or "
            "a coarser --projection grid",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("mctsff: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

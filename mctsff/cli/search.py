"""``mctsff search`` and ``mctsff demo``: the search's options, its configuration from the
command line, the run and the printed front."""

from __future__ import annotations

import argparse
import math
import sys

from mctsff.cli.fit import _fit_options, _load, _with_neutrality
from mctsff.cli.options import (
    UsageError,
    _at_least,
    _check_names,
    _dataset_args,
    _fit_args,
    _float,
    _pair_value,
    _probability,
    _quiet_args,
    _real,
    _workers,
)
from mctsff.config import DEFAULTS


def add_search_commands(sub) -> None:
    """Add ``search`` and ``demo`` to the ``mctsff`` subcommands."""
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


#: Shipped example data of the demo and the reference model drawn on its front.
DEMO_DATA = "water_dimers_mp2_200.extxyz"

DEMO_REFERENCE_MODEL = "q-spcfw"


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
    from mctsff.cli import build_parser  # (the package's parser, which imports this module)

    inner = build_parser().parse_args(argv)
    return cmd_search(inner)

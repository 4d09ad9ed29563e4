"""Command line: ``mctsff fit``, ``mctsff search``, ``mctsff demo``.

Every user error (bad data file, expression, grammar or option) ends in one
line ``mctsff: error: …`` and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence

from mctsff import __version__


class UsageError(ValueError):
    """A bad command-line value (message names the option)."""


def _pair_value(text: str, option: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise UsageError(f"{option} expects NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


def _float(text: str, option: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"{option}: {text!r} is not a number") from None


def _dataset_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="extxyz file with positions and reference forces (eV/Å)")
    p.add_argument("--cutoff", type=float, default=9.0, help="pair cutoff in Å (default 9)")
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
    p.add_argument("--valid-fraction", type=float, default=0.2, help="frames held out (0.2)")
    p.add_argument("--seed", type=int, default=0, help="seed for the split and the fit starts")


def _fit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--constraint",
        action="append",
        default=None,
        help="force0 (default), energy0, repulsive:R; repeat for several",
    )
    p.add_argument("--no-constraints", action="store_true", help="fit without constraints")
    p.add_argument("--starts", type=int, default=3, help="seeded starts per fit (3)")
    p.add_argument("--weights", choices=["uniform", "potfit"], default="uniform")
    p.add_argument("--energy-weight", type=float, default=0.0)
    p.add_argument("--bound", action="append", default=[], metavar="NAME=LO:HI")
    p.add_argument("--init", action="append", default=[], metavar="NAME=VALUE")


def _load(args):
    from mctsff.data import load_dataset

    energy = None if str(args.energy).lower() == "none" else args.energy
    intermolecular = False if args.all_pairs else None
    ds = load_dataset(
        args.data,
        args.cutoff,
        forces=args.forces,
        energy=energy,
        intermolecular=intermolecular,
        molecules=args.molecules,
    )
    if not 0.0 <= args.valid_fraction < 1.0:
        raise UsageError("--valid-fraction must be in [0, 1)")
    train, valid = ds.split(args.valid_fraction, seed=args.seed)
    return ds, train, valid


def _fit_options(args) -> dict:
    bounds = {}
    for text in args.bound:
        name, value = _pair_value(text, "--bound")
        lo, sep, hi = value.partition(":")
        if not sep:
            raise UsageError(f"--bound expects NAME=LO:HI, got {text!r}")
        bounds[name] = (
            _float(lo, "--bound") if lo else -math.inf,
            _float(hi, "--bound") if hi else math.inf,
        )
    initial = {}
    for text in args.init:
        name, value = _pair_value(text, "--init")
        initial[name] = _float(value, "--init")
    if args.no_constraints:
        constraints = ()
    else:
        constraints = tuple(args.constraint) if args.constraint else ("force0",)
    return dict(
        constraints=constraints,
        n_starts=args.starts,
        seed=args.seed,
        weights=None if args.weights == "uniform" else args.weights,
        energy_weight=args.energy_weight,
        bounds=bounds,
        initial=initial,
    )


def cmd_fit(args) -> int:
    """Fit the constants of one expression."""
    from mctsff.fit import Fitter

    ds, train, valid = _load(args)
    fitter = Fitter(train, valid, **_fit_options(args))
    res = fitter.fit(args.expr)
    out = res.to_dict()
    out.update(
        n_pairs=int(ds.n_pairs),
        n_frames=int(ds.n_frames),
        n_frames_train=int(train.n_frames),
        n_frames_valid=int(valid.n_frames) if valid is not None else 0,
        force_array=ds.force_array,
        cutoff=ds.cutoff,
        species=list(ds.species),
    )
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"expression   {res.expression}   (complexity {res.complexity})")
        print(
            f"data         {args.data}: {ds.n_frames} frames, {ds.n_pairs} pairs, "
            f"forces from '{ds.force_array}'"
        )
        if not res.valid:
            print(f"INVALID      {res.reason}")
        print(f"rmse_train   {res.rmse_train:.6g} eV/Å")
        print(f"rmse_valid   {res.rmse_valid:.6g} eV/Å")
        for k, v in res.params.items():
            print(f"  {k:<20s} {v: .10g}")
        for k, v in res.constraints.items():
            print(f"  constraint {k:<9s} residual {v:.3e}")
        for f in res.flags:
            print(f"  WARNING: {f}")
    return 0 if res.valid else 1


def _search_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--grammar", default="pair", help="shipped grammar name or .lark file")
    p.add_argument("--budget", type=int, default=2000, help="distinct expressions to fit")
    p.add_argument("--time", type=float, default=None, help="wall-clock limit in seconds")
    p.add_argument("--out", default="run", help="run folder (default ./run)")
    p.add_argument("--resume", action="store_true", help="continue the search saved in --out")
    p.add_argument("--reward", choices=["spl", "tradeoff"], default="spl")
    p.add_argument("--eta", type=float, default=0.99, help="SPL parsimony factor per complexity")
    p.add_argument("--exploration", type=float, default=1 / math.sqrt(2), help="UCT constant")
    p.add_argument("--max-length", type=int, default=16, help="productions per expression")
    p.add_argument("--rollouts", type=int, default=10, help="rollouts per expansion")
    p.add_argument("--transplant", action="store_true", help="SPL module transplantation")
    p.add_argument(
        "--reference",
        action="append",
        default=[],
        metavar="LABEL=EXPR",
        help="fit a reference expression and draw its loss on pareto.png",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress line on stderr")


def _print_front(result, stream=sys.stdout) -> None:
    pts = result.front.points
    print(f"{'cplx':>4} {'rmse_train':>11} {'rmse_valid':>11}  expression", file=stream)
    for p in pts:
        flag = "  [!]" if p.flags else ""
        print(
            f"{p.complexity:>4} {p.rmse_train:>11.5g} {p.rmse_valid:>11.5g}  {p.expression}{flag}",
            file=stream,
        )
    for p in pts:
        for f in p.flags:
            print(f"  [!] {p.expression}: {f}", file=stream)


def _run_search(args, fitter) -> int:
    from mctsff.search import search

    refs = {}
    for text in args.reference:
        label, expr = _pair_value(text, "--reference")
        res = fitter.fit(expr)
        refs[f"{label} (refit)"] = res.score_loss
        print(f"reference {label}: {expr} -> loss {res.score_loss:.5g}")
    opts = {"eta": args.eta} if args.reward == "spl" else {}
    result = search(
        fitter,
        args.grammar,
        reward=args.reward,
        reward_options=opts,
        budget=args.budget,
        time_limit=args.time,
        seed=args.seed,
        out=args.out,
        resume=args.resume,
        exploration=args.exploration,
        max_length=args.max_length,
        n_rollouts=args.rollouts,
        transplant=args.transplant,
        reference_lines=refs,
        progress=not args.no_progress,
    )
    print(
        f"{result.n_evaluations} expressions fitted in {result.seconds:.1f} s"
        + (" (interrupted)" if result.interrupted else "")
    )
    _print_front(result)
    for path in result.files.values():
        print(f"wrote {path}")
    return 0


def cmd_search(args) -> int:
    """Search the grammar for the potentials that best fit the data."""
    from mctsff.fit import Fitter

    if args.objective == "regression":
        from mctsff.regression import RegressionData, RegressionFitter

        data = RegressionData.from_csv(args.data, target=args.target)
        train, valid = data.split(args.valid_fraction, seed=args.seed)
        fitter = RegressionFitter(train, valid, n_starts=args.starts, seed=args.seed)
        return _run_search(args, fitter)
    ds, train, valid = _load(args)
    print(
        f"data: {args.data}: {ds.n_frames} frames ({train.n_frames} train), "
        f"{ds.n_pairs} pairs within {ds.cutoff:g} Å, forces from '{ds.force_array}'"
    )
    fitter = Fitter(train, valid, **_fit_options(args))
    return _run_search(args, fitter)


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
        "--reference",
        f"Coulomb+LJ(O-O)={DEMO_REFERENCE}",
    ]
    if args.time is not None:
        argv += ["--time", str(args.time)]
    if args.no_progress:
        argv.append("--no-progress")
    print("mctsff demo: " + " ".join(argv))
    inner = build_parser().parse_args(argv)
    return cmd_search(inner)


#: Shipped example data of the demo and the reference model drawn on its front.
DEMO_DATA = "water_dimers_mp2_sample20.extxyz"
DEMO_REFERENCE = "14.399645*prod_q/r + pair_A/r**12 - pair_B/r**6"


def build_parser() -> argparse.ArgumentParser:
    """The ``mctsff`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="mctsff",
        description="Discover classical pair potentials from reference forces by symbolic "
        "regression (grammar-guided Monte Carlo tree search + force matching).",
    )
    parser.add_argument("--version", action="version", version=f"mctsff {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("fit", help="fit the constants of a given expression")
    _dataset_args(p)
    p.add_argument("--expr", required=True, help='e.g. "prod_q/r + A*exp(-r/b) - C/r**6"')
    _fit_args(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("search", help="search a grammar for the best potentials (MCTS)")
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
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("demo", help="run the main job on the shipped example data")
    p.add_argument("--out", default="run", help="run folder (default ./run)")
    p.add_argument("--budget", type=int, default=1000)
    p.add_argument("--time", type=float, default=240.0, help="wall-clock limit (240 s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mctsff`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from mctsff.data import DataError
    from mctsff.fit import FitConfigError
    from mctsff.grammar import GrammarError
    from mctsff.program import ExpressionError
    from mctsff.search import SearchError

    errors: tuple[type[Exception], ...] = (
        DataError,
        ExpressionError,
        FitConfigError,
        GrammarError,
        SearchError,
        UsageError,
        FileNotFoundError,
    )
    try:
        from mctsff.regression import RegressionDataError

        errors += (RegressionDataError,)
    except ImportError:  # pragma: no cover - optional until the module lands
        pass
    try:
        return int(args.func(args) or 0)
    except errors as exc:
        print(f"mctsff: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mctsff: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

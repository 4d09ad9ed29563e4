"""``mctsff md-check``: the command-line side of :mod:`mctsff.water.mdcheck` (argparse only).

Building the parser imports nothing heavy; the check itself is imported when it runs.
"""

from __future__ import annotations

import argparse
import sys


def _positive(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not x > 0 or x == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return x


def _non_negative(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not x >= 0 or x == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return x


def _count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return n


def run(args: argparse.Namespace) -> int:
    """Body of ``mctsff md-check water``."""
    from mctsff.water.mdcheck import MDCheckError, WaterProtocol, water_check, water_summary

    try:
        protocol = WaterProtocol(
            n_molecules=args.molecules,
            temperature=args.temperature,
            timestep_fs=args.timestep,
            equilibration_ps=args.equilibration,
            npt_ps=args.npt,
            nvt_ps=args.nvt,
            nve_ps=args.nve,
            seed=args.seed,
            threads=args.threads,
            platform=args.platform,
        )
        report = water_check(
            args.run_dir,
            None if args.best else args.index,
            protocol=protocol,
            out=args.out,
            reference_model=not args.no_reference,
            forces=not args.no_forces,
            progress=not args.quiet,
        )
    except MDCheckError as exc:
        print(f"mctsff: error: {exc}", file=sys.stderr)
        return 2
    print(water_summary(report))
    for path in report["files"]:
        print(f"wrote {path}")
    return 0


def run_solvent(args: argparse.Namespace) -> int:
    """Body of ``mctsff md-check solvent``."""
    from mctsff.water.mdcheck import MDCheckError, SolventProtocol, solvent_check, solvent_summary

    try:
        protocol = SolventProtocol(
            equilibration_ps=args.equilibration,
            production_ps=args.production,
            exclude_bonds=args.exclude,
            seed=args.seed,
            threads=args.threads,
            platform=args.platform,
        )
        report = solvent_check(
            args.run_dir,
            None if args.best else args.index,
            protocol=protocol,
            out=args.out,
            progress=not args.quiet,
        )
    except MDCheckError as exc:
        print(f"mctsff: error: {exc}", file=sys.stderr)
        return 2
    print(solvent_summary(report))
    for path in report["files"]:
        print(f"wrote {path}")
    return 0


def add_command(sub) -> None:
    """Add ``md-check water`` and ``md-check solvent`` to the ``mctsff`` subcommands."""
    p = sub.add_parser(
        "md-check",
        help="run a front member in MD (liquid water) and compare distributions with "
        "experiment, DFT and q-SPC/Fw",
    )
    msub = p.add_subparsers(dest="md_check_command", required=True)
    w = msub.add_parser(
        "water",
        help="liquid water (q-SPC/Fw intramolecular + the member): stability, density, RDFs",
    )
    w.add_argument("run_dir", help="search run folder (pareto.json, run.json)")
    pick = w.add_mutually_exclusive_group()
    pick.add_argument("--index", type=int, default=None, help="front member, 0 = simplest")
    pick.add_argument(
        "--best", action="store_true", help="the knee-rule member (the default, as export)"
    )
    w.add_argument("--out", default=None, help="folder for water.json, rdf.png (RUN/md-check)")
    w.add_argument(
        "--molecules",
        type=_count,
        default=216,
        help="waters (216; more when the box would be under 2.2 cutoffs)",
    )
    w.add_argument("--temperature", type=_positive, default=298.0, help="K (298)")
    w.add_argument("--timestep", type=_positive, default=0.5, help="fs (0.5)")
    w.add_argument(
        "--equilibration", type=_non_negative, default=1.0, help="NVT equilibration, ps (1)"
    )
    w.add_argument("--npt", type=_non_negative, default=4.0, help="NPT, ps; density (4)")
    w.add_argument("--nvt", type=_positive, default=3.0, help="NVT production, ps; RDFs (3)")
    w.add_argument("--nve", type=_non_negative, default=1.0, help="NVE, ps; energy drift (1)")
    w.add_argument("--seed", type=int, default=0)
    w.add_argument("--threads", type=_count, default=0, help="OpenMM CPU threads (0: all)")
    w.add_argument("--platform", default="CPU", help="OpenMM platform (CPU)")
    w.add_argument("--no-reference", action="store_true", help="skip the q-SPC/Fw run")
    w.add_argument("--no-forces", action="store_true", help="skip the force RMSE on the DFT frames")
    w.add_argument("--quiet", action="store_true", help="no progress lines")
    w.set_defaults(func=run)
    s = msub.add_parser(
        "solvent",
        help="alanine dipeptide: vacuum amber14 + the member vs explicit solvent (phi/psi)",
    )
    s.add_argument("run_dir", help="search run folder of a solvent-force search")
    pick = s.add_mutually_exclusive_group()
    pick.add_argument("--index", type=int, default=None, help="front member, 0 = simplest")
    pick.add_argument("--best", action="store_true", help="the knee-rule member (default)")
    s.add_argument("--out", default=None, help="folder for solvent.json (RUN/md-check)")
    s.add_argument("--equilibration", type=_non_negative, default=20.0, help="ps (20)")
    s.add_argument("--production", type=_positive, default=1000.0, help="ps per run (1000)")
    s.add_argument(
        "--exclude",
        type=_count,
        default=2,
        help="no member term on pairs up to N bonds apart (2, as examples/alanine_dipeptide.py)",
    )
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--threads", type=_count, default=0, help="OpenMM CPU threads (0: all)")
    s.add_argument("--platform", default="CPU", help="OpenMM platform (CPU)")
    s.add_argument("--quiet", action="store_true", help="no progress lines")
    s.set_defaults(func=run_solvent)

"""``mctsff md-check water`` and ``mctsff md-check solvent``: a front member in MD."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mctsff.cli.options import _at_least, _real

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


def add_md_check_command(sub) -> None:
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

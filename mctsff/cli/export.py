"""``mctsff export``: a front member to sympy, LaTeX, Python, LAMMPS, OpenMM or ASE."""

from __future__ import annotations

from mctsff.cli.options import UsageError, _at_least, _real


def add_export_command(sub) -> None:
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

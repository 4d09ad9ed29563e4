"""``mctsff data``: list the shipped datasets, make reference data (QM dimers, solvent
forces)."""

from __future__ import annotations

import sys

from mctsff.cli.options import _at_least, _quiet_args


def add_data_commands(sub) -> None:
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

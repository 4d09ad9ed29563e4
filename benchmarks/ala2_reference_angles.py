"""phi/psi of an explicit-solvent alanine-dipeptide trajectory as the TSV that
``mctsff md-check solvent --reference`` reads (and that ships as
``mctsff/data/ala2_solvent_phipsi_long.tsv``; issue 33).

The trajectory is an extxyz of ``mctsff data solvent-forces`` with the shipped solute; only its
positions and ``time_ps`` are used.  Each ``--comment`` becomes a ``#`` line of the TSV (how the
trajectory was made), followed by the figures this script prints: samples, length, basin
populations and the Jensen–Shannon divergence between the series' halves.

    python benchmarks/ala2_reference_angles.py TRAJ.extxyz OUT.tsv --comment "made by ..."
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from mctsff.water import mdcheck as mc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("trajectory", help="extxyz of mctsff data solvent-forces")
    ap.add_argument("out", help="TSV to write")
    ap.add_argument("--comment", action="append", default=[], help="a # line (repeatable)")
    args = ap.parse_args(argv)
    try:
        t, phi, psi = mc.trajectory_angles(args.trajectory)
    except mc.MDCheckError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if t is None:
        print(f"error: {args.trajectory}: frames without time_ps", file=sys.stderr)
        return 2
    phi, psi = np.round(phi, 2), np.round(psi, 2)
    halves = mc.halves_js_divergence(phi, psi, 36)
    dt = float(np.median(np.diff(t)))
    alpha = float(np.mean((phi < 0) & (psi > -120) & (psi < 50)))
    figures = (
        f"{len(phi)} samples, {t[0]:g}-{t[-1]:g} ps, {dt:g} ps apart; alphaR fraction "
        f"(phi < 0, -120 < psi < 50) {alpha:.3f}; JS (bits, 36 bins; phi/psi 18x18) between "
        f"the halves: phi {halves['phi']:.4f}, psi {halves['psi']:.4f}, "
        f"phi-psi {halves['phi-psi']:.4f}"
    )
    mc.write_angles_tsv(args.out, t, phi, psi, [*args.comment, figures])
    print(f"wrote {args.out}: {figures}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

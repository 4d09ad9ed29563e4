"""Why a solvent-force front member does or does not move vacuum alanine dipeptide towards
explicit solvent (issue 33 item 2; results in benchmarks/results/2026-12-06-alanine_md_check.md).

Measures, on the shipped ``ala2_solvent_forces.extxyz`` (300 frames, pairs more than 2 bonds
apart, 12 Å, as ``examples/alanine_dipeptide.py`` and ``mctsff md-check solvent``):

* for each front member of RUN: its force RMS, RMSE and correlation with the data on all 300
  frames, and the generalized force on phi and psi (``-dU/dtheta``: half the difference of the
  torques about the rotatable bond on its two sides, eV/rad) next to the data's;
* the member's energy at six (phi, psi) basins by rigid rotation of frame 0 about the N–CA and
  CA–C bonds (relative to PPII; kT at 300 K is 0.0259 eV);
* ``--basis``: the same for a flexible pair potential (22 Gaussians per type pair, ridge least
  squares, lambda 1, on frames 0–79), and with ``--basis-md`` its MD under the md-check
  protocol (``run_solute``), compared with the vacuum run of ``--vacuum SOLVENT_JSON``;
* ``--stability SOLVENT_JSON ...``: for md-check reports, the Jensen–Shannon divergence (bits)
  between the two halves of each run, of its first 1 ns, of the reference's two halves, each
  run's divergence to each half of the reference, and basin populations (the reference is the
  one each report records).

    python benchmarks/alanine_md_why.py RUN --members 0,2,4 --basis
    python benchmarks/alanine_md_why.py --stability RUN/md-check/solvent.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import numpy as np

from mctsff.data import data_file, load_dataset
from mctsff.export import load_front_point, resolve_potential, wall_problem
from mctsff.expr.params import Potential
from mctsff.water import mdcheck as mc
from mctsff.water.md import exclude_bonded_pairs
from mctsff.water.mdcheck.angles import _angle_histograms, _backbone, _dihedral
from mctsff.water.mdcheck.solvent import _excluded_pairs

#: (phi, psi) of the basins whose member energies are reported, degrees.
BASINS = {
    "C7eq": (-83.0, 73.0),
    "C5/beta": (-155.0, 160.0),
    "PPII": (-75.0, 145.0),
    "alphaR": (-70.0, -40.0),
    "alphaL": (60.0, 40.0),
    "C7ax": (70.0, -70.0),
}


class Solute:
    """The shipped solvent-force frames with the solute's bond graph and backbone dihedrals."""

    def __init__(self) -> None:
        from openmm import app

        self.ds = exclude_bonded_pairs(load_dataset(data_file(mc.SOLVENT_FILE), 12.0), 2)
        top = app.PDBFile(str(data_file(mc.SOLUTE_PDB))).topology
        self.species = [a.element.symbol for a in top.atoms()]
        self.n = len(self.species)
        self.nbr: list[set[int]] = [set() for _ in range(self.n)]
        for b in top.bonds():
            self.nbr[b[0].index].add(b[1].index)
            self.nbr[b[1].index].add(b[0].index)
        self.dihedrals = dict(zip(("phi", "psi"), _backbone(top), strict=True))
        excluded = set(_excluded_pairs(top, 2))
        self.pairs = [
            (i, j) for i in range(self.n) for j in range(i + 1, self.n) if (i, j) not in excluded
        ]
        self.nf = self.ds.n_frames
        self.x = self.ds.positions.reshape(self.nf, self.n, 3)
        self.f = self.ds.forces.reshape(self.nf, self.n, 3)

    def side(self, j: int, k: int) -> list[int]:
        """Atoms reachable from ``k`` without crossing ``j`` (``k`` included)."""
        seen, todo = {k}, [k]
        while todo:
            a = todo.pop()
            for b in self.nbr[a]:
                if b != j and b not in seen:
                    seen.add(b)
                    todo.append(b)
        return sorted(seen)

    def torque(self, forces: np.ndarray, name: str) -> np.ndarray:
        """Generalized force -dU/dtheta on a dihedral per frame (eV/rad)."""
        _, j, k, _ = self.dihedrals[name]
        x = self.x
        u = x[:, k] - x[:, j]
        u /= np.linalg.norm(u, axis=1, keepdims=True)

        def tq(atoms: list[int]) -> np.ndarray:
            d = x[:, atoms] - x[:, [j]]
            return np.einsum("fsi,fi->f", np.cross(d, forces[:, atoms]), u)

        return 0.5 * (tq(self.side(j, k)) - tq(self.side(k, j)))

    def set_dihedral(self, x: np.ndarray, name: str, target: float) -> np.ndarray:
        """``x`` with one backbone dihedral set to ``target`` degrees by rigid rotation."""
        idx = self.dihedrals[name]
        _, j, k, _ = idx
        ang = np.radians(target - _dihedral(x[None], idx)[0])
        u = (x[k] - x[j]) / np.linalg.norm(x[k] - x[j])
        moved = [a for a in self.side(j, k) if a != k]
        d = x[moved] - x[k]
        c, s = np.cos(ang), np.sin(ang)
        y = x.copy()
        y[moved] = x[k] + d * c + np.cross(u, d) * s + np.outer(d @ u, u) * (1 - c)
        return y

    def energy(self, pot: Potential, x: np.ndarray, rc: float | None) -> float:
        """The pair potential's energy over the member's pairs (eV)."""
        e = 0.0
        for i, j in self.pairs:
            r = float(np.linalg.norm(x[i] - x[j]))
            if rc is None or r < rc:
                e += float(pot.energy(r, (self.species[i], self.species[j]))[0])
        return e

    def basin_energies(self, pot: Potential, rc: float | None) -> dict[str, float]:
        x0 = self.x[0]
        es = {
            b: self.energy(pot, self.set_dihedral(self.set_dihedral(x0, "phi", ph), "psi", ps), rc)
            for b, (ph, ps) in BASINS.items()
        }
        return {b: round(v - es["PPII"], 4) for b, v in es.items()}

    def describe(self, pot: Potential, rc: float | None) -> dict:
        """Force, torque and basin-energy figures of a pair potential on the data."""
        fm = pot.forces(self.ds)[0]
        y = self.ds.forces
        out = {
            "rms_force": float(np.sqrt(np.mean(fm**2))),
            "rmse_all_frames": float(np.sqrt(np.mean((fm - y) ** 2))),
            "corr": float(np.corrcoef(fm.ravel(), y.ravel())[0, 1]),
        }
        fm = fm.reshape(self.f.shape)
        for name in ("phi", "psi"):
            td, t = self.torque(self.f, name), self.torque(fm, name)
            out[f"torque_{name}"] = {
                "mean": round(float(t.mean()), 4),
                "rms": round(float(np.sqrt(np.mean(t**2))), 4),
                "corr_with_data": round(float(np.corrcoef(t, td)[0, 1]), 3),
            }
        out["U_rel_PPII_eV"] = self.basin_energies(pot, rc)
        return out


def basins(phi: np.ndarray, psi: np.ndarray) -> dict[str, float]:
    """Populations of crude Ramachandran regions."""
    phi, psi = np.asarray(phi), np.asarray(psi)
    a = (phi < 0) & (psi > -120) & (psi < 50)
    c7 = (phi < 0) & (psi >= 50) & (psi < 110)
    return {
        "alphaR": round(float(a.mean()), 3),
        "C7eq (psi 50..110)": round(float(c7.mean()), 3),
        "beta/PPII": round(float(((phi < 0) & ~a & ~c7).mean()), 3),
        "phi>0": round(float((phi >= 0).mean()), 3),
    }


def data_figures(s: Solute) -> dict:
    """The data's own figures: RMS, mean torques with a block standard error, basins."""
    phi = _dihedral(s.x, s.dihedrals["phi"])
    psi = _dihedral(s.x, s.dihedrals["psi"])
    out = {"rms_force": float(np.sqrt(np.mean(s.f**2))), "basins_all": basins(phi, psi)}
    out["basins_frames_0-99"] = basins(phi[:100], psi[:100])
    for name in ("phi", "psi"):
        t = s.torque(s.f, name)
        blocks = t.reshape(10, -1).mean(1)
        out[f"torque_{name}"] = {
            "mean": round(float(t.mean()), 4),
            "block_stderr_10x30": round(float(blocks.std(ddof=1) / np.sqrt(10)), 4),
            "rms": round(float(np.sqrt(np.mean(t**2))), 4),
        }
    return out


def basis_potential(s: Solute, lam: float = 1.0) -> tuple[Potential, dict]:
    """Ridge least squares of 22 Gaussians per type pair (shifted-force at 12 Å), frames 0-79."""
    ds = s.ds
    mu = np.round(np.arange(2.0, 10.41, 0.4), 2)
    sig2 = 2 * 0.4**2
    n_tp, k_n = len(ds.type_pairs), len(mu)
    expr = " + ".join(f"pair_a{k}*exp(-(r-{m:g})**2/{sig2:g})" for k, m in enumerate(mu))

    def make(coef: np.ndarray) -> Potential:
        params = {
            f"pair_a{k}[{a}-{b}]": float(coef[p * k_n + k])
            for p, (a, b) in enumerate(ds.type_pairs)
            for k in range(k_n)
        }
        return Potential(
            expr, params, ds.species, ds.type_pairs, cutoff=12.0, scheme="shifted-force"
        )

    cols = []
    for c in range(n_tp * k_n):
        e = np.zeros(n_tp * k_n)
        e[c] = 1.0
        cols.append(make(e).forces(ds)[0].ravel())
    m = np.array(cols).T
    y = ds.forces.ravel()
    frame = np.repeat(ds.atom_frame, 3)
    tr = frame < 80
    coef = np.linalg.solve(m[tr].T @ m[tr] + lam * np.eye(m.shape[1]), m[tr].T @ y[tr])
    pot = make(coef)
    f = pot.forces(ds)[0].ravel()
    parts = {
        "train 0-79": tr,
        "frames 80-99": (frame >= 80) & (frame < 100),
        "frames 100-299": frame >= 100,
    }
    fit = {
        "coefficients": int(m.shape[1]),
        "lambda": lam,
        "rmse": {k: round(float(np.sqrt(np.mean((f - y)[v] ** 2))), 4) for k, v in parts.items()},
        "U0": {k: round(float(np.sqrt(np.mean(y[v] ** 2))), 4) for k, v in parts.items()},
    }
    return pot, fit


def stability(paths: Sequence[str], blocks: int = 4, reference: str | None = None) -> dict:
    """Half-to-half divergences and basins of md-check solvent reports, against the reference
    each report used (its ``reference`` phi/psi; the first report's is described) or, given
    ``reference``, against ``mc.explicit_reference(reference)`` for all, and against
    ``blocks`` equal consecutive blocks of that reference (basins of each block, JS phi/psi
    between the blocks and of each run to each block)."""
    hist = _angle_histograms
    out: dict = {}
    for path in paths:
        with open(path) as fh:
            rep = json.load(fh)
        ref = rep["reference"] if reference is None else mc.explicit_reference(reference)
        phr, psr = np.array(ref["phi"]), np.array(ref["psi"])
        h = len(phr) // 2
        href = hist(phr, psr, 36)
        h1, h2 = hist(phr[:h], psr[:h], 36), hist(phr[h:], psr[h:], 36)
        cut = np.array_split(np.arange(len(phr)), blocks)
        hb = [hist(phr[c], psr[c], 36)["phi-psi"] for c in cut]
        out.setdefault(
            "reference",
            {
                "file": ref.get("file"),
                "samples": len(phr),
                "length_ps": ref.get("length_ps"),
                "halves_js_phi-psi": mc.halves_js_divergence(phr, psr, 36)["phi-psi"],
                "basins": basins(phr, psr),
                "basins_halves": [basins(phr[:h], psr[:h]), basins(phr[h:], psr[h:])],
                "basins_blocks": [basins(phr[c], psr[c]) for c in cut],
                "js_phi-psi_between_blocks": [
                    [round(mc.js_divergence(a, b), 4) for b in hb] for a in hb
                ],
            },
        )
        for name, r in rep["runs"].items():
            phi, psi = np.array(r["phi"]), np.array(r["psi"])
            full = hist(phi, psi, 36)
            one = min(2000, len(phi))  # 1 ns at 0.5 ps
            halves = mc.halves_js_divergence
            js = mc.js_divergence
            out[f"{path}: {name}"] = {
                "samples": len(phi),
                "js_to_reference": {k: round(js(full[k], href[k]), 4) for k in full},
                "halves_js": halves(phi, psi, 36),
                "first_1ns_halves_js_phi-psi": halves(phi[:one], psi[:one], 36)["phi-psi"],
                "js_phi-psi_to_reference_halves": [
                    round(js(full["phi-psi"], h1["phi-psi"]), 4),
                    round(js(full["phi-psi"], h2["phi-psi"]), 4),
                ],
                "js_phi-psi_to_reference_blocks": [round(js(full["phi-psi"], b), 4) for b in hb],
                "basins": basins(phi, psi),
            }
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", nargs="?", help="search run folder on ala2_solvent_forces")
    ap.add_argument("--members", default="", help="front indices, comma-separated")
    ap.add_argument("--basis", action="store_true", help="the flexible Gaussian pair potential")
    ap.add_argument("--basis-md", action="store_true", help="... and its md-check MD run")
    ap.add_argument("--vacuum", help="solvent.json whose vacuum run --basis-md compares with")
    ap.add_argument("--production", type=float, default=4000.0, help="ps, --basis-md")
    ap.add_argument("--stability", nargs="*", default=[], help="md-check solvent.json files")
    ap.add_argument("--blocks", type=int, default=4, help="reference blocks, --stability")
    ap.add_argument(
        "--reference", help="--stability against this (auto, fit-data, FILE), not the reports'"
    )
    ap.add_argument("--out", help="write the figures here as JSON")
    args = ap.parse_args(argv)
    out: dict = {}
    if args.stability:
        out["stability"] = stability(args.stability, args.blocks, args.reference)
    if args.run or args.basis:
        s = Solute()
        out["data"] = data_figures(s)
        for i in [int(x) for x in args.members.split(",") if x.strip()]:
            pt = load_front_point(args.run, i)
            pot, rc = resolve_potential(pt)
            out[f"member {i}"] = {
                "expression": pt.expression,
                "complexity": pt.complexity,
                "rmse_valid": pt.rmse_valid,
                "wall_problem": wall_problem(pt),
                **s.describe(pot, rc),
            }
        if args.basis:
            pot, fit = basis_potential(s)
            out["basis"] = {**fit, **s.describe(pot, 12.0)}
            if args.basis_md:
                prot = mc.SolventProtocol(production_ps=args.production, threads=1)
                run = mc.run_solute(pot, prot, label="vacuum + basis", log=print)
                phr, psr = mc.reference_angles()
                href = _angle_histograms(phr, psr, prot.bins)
                h = _angle_histograms(np.array(run["phi"]), np.array(run["psi"]), prot.bins)
                out["basis"]["md"] = {
                    "js_to_reference": {k: round(mc.js_divergence(h[k], href[k]), 4) for k in h},
                    "basins": basins(run["phi"], run["psi"]),
                    "stable": run["stable"],
                    "seconds": run["seconds"],
                }
                if args.vacuum:
                    with open(args.vacuum) as fh:
                        vac = json.load(fh)
                    vac["runs"] = {"vacuum": vac["runs"]["vacuum"], "vacuum + basis": run}
                    path = args.out + ".basis_solvent.json" if args.out else "basis_solvent.json"
                    with open(path, "w") as fh:
                        json.dump(vac, fh)
    text = json.dumps(out, indent=1)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text)
    print(text)
    return out


if __name__ == "__main__":
    main(sys.argv[1:])

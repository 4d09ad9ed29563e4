"""Condensed-phase targets for water pair potentials (issue 33; results in
benchmarks/results/2026-12-06-condensed_phase.md).

From the shipped ``bulk_water_dft_80x192.extxyz`` (80 frames, 64 waters, total DFT forces):

* ``variants OUT``: writes the per-atom targets that ``mctsff fit`` can use, each as an extxyz
  with ``forces`` (total DFT), ``inter_forces`` (the target, read by default) and ``mol``
  (each H joined to its nearest O): ``bulk_total`` (a: total forces), ``bulk_qspcfw`` (b:
  total minus q-SPC/Fw's bond and angle forces), ``bulk_refit`` (b2: total minus a harmonic
  bond and angle refitted to the frames by linear least squares) and ``bulk_rigid`` (r: each
  molecule's rigid-body projection of the total forces). Prints the RMS of each target.
* ``rigid OUT [--form spc|lj] [--fix-b B] [--dimers W]``: fits Coulomb (neutral molecules,
  q_O = -2 q_H) + A/r**12 - B/r**6 (``spc``: O-O only, the q-SPC/Fw form; ``lj``: every type
  pair), shifted-force at 6 Å, to the molecules' net forces and torques: the loss is
  ``|P (F_model - F_DFT)|^2`` with ``P`` the orthogonal projection of each molecule's 9 atom
  force components onto its 6 rigid-body patterns (translation; rotation about the geometric
  centre). Intramolecular forces have no component there, so the total DFT forces are the
  target as they are. The model is linear in (q_H², A, B) and is solved by bounded linear
  least squares (q_H², A >= 0) on frames 0-47; frames 48-79 are held out. ``--fix-b`` fixes
  the O-O B; ``--dimers W`` adds the MP2 dimers' per-atom intermolecular forces (first 60 %
  of the frames) with weight W. Writes a run folder (``pareto.json``, ``run.json``) that
  ``mctsff md-check water OUT --index 0`` runs.
  ``--cutoff C --openmm`` evaluates the model's forces with OpenMM on a supercell of each
  frame instead (as md-check's force check does), so the cutoff may exceed half the box.
* ``scan``: the held-out rigid-body RMSE of the ``spc`` form with the O-O B fixed at a list
  of values (how well forces determine the dispersion term).
* ``score RUN ...``: each run's member 0 on all 80 frames: the rigid-body RMSE (eV/Å per
  component of ``P F``) and the RMSE against the ``bulk_refit`` target.

    python benchmarks/condensed_phase.py variants /tmp/cp
    mctsff fit /tmp/cp/bulk_refit.extxyz --cutoff 6 --model q-spcfw --refit --json
    python benchmarks/condensed_phase.py rigid /tmp/cp/rigid_spc --form spc --fix-b 27.124
    mctsff md-check water /tmp/cp/rigid_spc --index 0 --threads 1
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import ase.io
import numpy as np
from scipy.optimize import lsq_linear

from mctsff.data import data_file, load_dataset
from mctsff.export.front import compile_expression, load_front_point
from mctsff.expr.params import Potential
from mctsff.water.models import COULOMB_EV_A, get_model

RC = 6.0  # the frames' 12.445 Å box allows at most 6.22 Å
EV_PER_KCAL = 0.0433641043
EXPR = f"{COULOMB_EV_A}*prod_q/r + pair_A/r**12 - pair_B/r**6"
SPECIES = ("H", "O")
PAIRS = (("H", "H"), ("H", "O"), ("O", "O"))
N_TRAIN = 48  # frames 0-47 fit, 48-79 held out


def frames() -> list:
    return ase.io.read(data_file("bulk_water_dft_80x192.extxyz"), ":")


def molecule_ids(atoms) -> np.ndarray:
    """Each O its own molecule, each H joined to its nearest O (minimum image)."""
    pos, cell = atoms.positions, np.diag(atoms.cell.array)
    o = np.flatnonzero(atoms.numbers == 8)
    h = np.flatnonzero(atoms.numbers == 1)
    d = pos[h][:, None] - pos[o][None]
    d -= cell * np.rint(d / cell)
    mol = np.empty(len(atoms), int)
    mol[o] = np.arange(len(o))
    mol[h] = np.argmin((d**2).sum(-1), axis=1)
    if not np.all(np.bincount(mol[h], minlength=len(o)) == 2):
        raise SystemExit("a frame has an O without exactly two nearest H")
    return mol


def _waters(atoms, mol):
    """O indices (M,), H indices (M, 2), O->H vectors (M, 2, 3) under minimum image."""
    o = np.flatnonzero(atoms.numbers == 8)
    hs = np.array([np.flatnonzero((mol == m) & (atoms.numbers == 1)) for m in range(len(o))])
    cell = np.diag(atoms.cell.array)
    d = atoms.positions[hs] - atoms.positions[o][:, None]
    d -= cell * np.rint(d / cell)
    return o, hs, d


def intra_basis(atoms, mol) -> np.ndarray:
    """Columns (3 n_atoms, 4) of harmonic bond and angle forces, linear in
    (k_b, k_b r0, k_t, k_t t0) for U = k_b/2 (r - r0)² + k_t/2 (t - t0)²."""
    o, hs, d = _waters(atoms, mol)
    basis = np.zeros((len(atoms), 3, 4))
    r = np.linalg.norm(d, axis=-1)
    u = d / r[..., None]
    for k in range(2):
        g = u[:, k]
        basis[hs[:, k], :, 0] -= r[:, k, None] * g
        basis[o, :, 0] += r[:, k, None] * g
        basis[hs[:, k], :, 1] += g
        basis[o, :, 1] -= g
    c = np.clip((u[:, 0] * u[:, 1]).sum(-1), -1, 1)
    th, s = np.arccos(c), np.sin(np.arccos(c))
    g1 = -(u[:, 1] - c[:, None] * u[:, 0]) / (r[:, 0, None] * s[:, None])
    g2 = -(u[:, 0] - c[:, None] * u[:, 1]) / (r[:, 1, None] * s[:, None])
    for idx, g in ((hs[:, 0], g1), (hs[:, 1], g2), (o, -(g1 + g2))):
        basis[idx, :, 2] -= th[:, None] * g
        basis[idx, :, 3] += g
    return basis.reshape(-1, 4)


def rigid_projector(atoms, mol):
    """``P(F)``: each molecule's (n, 3) forces projected onto its rigid-body patterns."""
    o, hs, d = _waters(atoms, mol)
    blocks = []
    for m in range(len(o)):
        x = np.vstack([np.zeros(3), d[m, 0], d[m, 1]])
        x -= x.mean(0)
        b = np.zeros((9, 6))
        for k in range(3):
            e = np.eye(3)[k]
            for a in range(3):
                b[3 * a : 3 * a + 3, k] = e
                b[3 * a : 3 * a + 3, 3 + k] = np.cross(e, x[a])
        blocks.append((np.array([o[m], *hs[m]]), np.linalg.qr(b)[0]))

    def project(f: np.ndarray) -> np.ndarray:
        out = np.zeros_like(f)
        for idx, q in blocks:
            out[idx] = (q @ (q.T @ f[idx].ravel())).reshape(3, 3)
        return out

    return project


def cmd_variants(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    fr = frames()
    mols = [molecule_ids(a) for a in fr]
    total = np.concatenate([a.get_forces().ravel() for a in fr])
    basis = np.vstack([intra_basis(a, m) for a, m in zip(fr, mols, strict=True)])
    q = get_model("q-spcfw")
    kb, kt = float(q.k_b) * EV_PER_KCAL, float(q.k_theta) * EV_PER_KCAL
    c_q = np.array([kb, kb * q.r_OH, kt, kt * math.radians(q.theta_HOH)])
    c_fit = np.linalg.lstsq(basis, total, rcond=None)[0]
    rigid, off = [], 0
    for a, m in zip(fr, mols, strict=True):
        n = len(a)
        rigid.append(rigid_projector(a, m)(total[off : off + 3 * n].reshape(n, 3)).ravel())
        off += 3 * n
    targets = {
        "total": total,
        "qspcfw": total - basis @ c_q,
        "refit": total - basis @ c_fit,
        "rigid": np.concatenate(rigid),
    }
    report = {
        "refit_intramolecular": {
            "k_b_kcal_mol_A2": c_fit[0] / EV_PER_KCAL,
            "r0_A": c_fit[1] / c_fit[0],
            "k_theta_kcal_mol_rad2": c_fit[2] / EV_PER_KCAL,
            "theta0_deg": math.degrees(c_fit[3] / c_fit[2]),
        },
        "target_rms": {},
    }
    for name, tgt in targets.items():
        report["target_rms"][name] = float(np.sqrt(np.mean(tgt**2)))
        images, off = [], 0
        for a, m in zip(fr, mols, strict=True):
            b, n = a.copy(), len(a)
            b.arrays["forces"] = a.get_forces().copy()
            b.arrays["inter_forces"] = tgt[off : off + 3 * n].reshape(n, 3).copy()
            b.arrays["mol"] = m.copy()
            b.info["energy"] = a.get_potential_energy()
            images.append(b)
            off += 3 * n
        ase.io.write(out / f"bulk_{name}.extxyz", images, format="extxyz")
    print(json.dumps(report, indent=1))


class RigidData:
    """The bulk frames at 6 Å (intermolecular pairs) and their projectors."""

    def __init__(self, work: Path) -> None:
        fr = frames()
        mols = [molecule_ids(a) for a in fr]
        images = []
        for a, m in zip(fr, mols, strict=True):
            b = a.copy()
            b.arrays["forces"] = a.get_forces().copy()
            b.arrays["mol"] = m
            images.append(b)
        work.mkdir(parents=True, exist_ok=True)
        path = work / "bulk_mol.extxyz"
        ase.io.write(path, images, format="extxyz")
        self.ds = load_dataset(path, RC, forces="forces", energy=None)
        self.sizes = [len(a) for a in fr]
        self.projectors = [rigid_projector(a, m) for a, m in zip(fr, mols, strict=True)]
        self.rows_frame = np.repeat(np.arange(len(fr)), [3 * n for n in self.sizes])
        self.target = self.project(self.ds.forces.ravel())

    def project(self, f: np.ndarray) -> np.ndarray:
        f, out, off = f.reshape(-1, 3), [], 0
        for n, p in zip(self.sizes, self.projectors, strict=True):
            out.append(p(f[off : off + n]))
            off += n
        return np.concatenate(out).ravel()

    def design(self, cols) -> np.ndarray:
        """Projected force columns, one per linear parameter (mctsff's pair kernels)."""
        return np.stack(
            [self.project(potential(p).forces(self.ds)[0].ravel()) for p in cols.values()],
            axis=1,
        )


class OpenMMRigidData(RigidData):
    """The same target, with the columns evaluated by OpenMM on a supercell of each frame
    (as md-check's force check does), so that the cutoff may exceed half the 12.445 Å box.
    Atoms are reordered O, H, H per molecule; the bonds and angles md-check adds to every
    system have no rigid-body component and drop out of the projection."""

    def __init__(self, cutoff: float) -> None:
        from mctsff.water.mdcheck.dft_forces import _dft_waters

        self.cutoff = cutoff
        self.waters = [_dft_waters(a) for a in frames()]
        n = len(self.waters[0][0])
        self.sizes = [n] * len(self.waters)
        mol = np.repeat(np.arange(n // 3), 3)
        self.projectors = []
        for x, _, box in self.waters:
            at = ase.Atoms("OHH" * (n // 3), positions=x, cell=np.diag(box), pbc=True)
            self.projectors.append(rigid_projector(at, mol))
        self.rows_frame = np.repeat(np.arange(len(self.waters)), 3 * n)
        self.target = self.project(np.concatenate([w[1] for w in self.waters]).ravel())

    def design(self, cols) -> np.ndarray:
        import openmm
        from openmm import unit

        from mctsff.water.md import KJ_MOL_NM_TO_EV_ANG
        from mctsff.water.mdcheck.system import water_system

        box0 = self.waters[0][2]
        k = max(1, math.ceil(2.0 * self.cutoff * 1.0001 / float(box0.min())))
        shifts = np.array([(a, b, c) for a in range(k) for b in range(k) for c in range(k)])
        n = self.sizes[0]
        plat = openmm.Platform.getPlatformByName("CPU")
        out = []
        for params in cols.values():
            pot = potential(params, self.cutoff)
            system = water_system(pot, n // 3 * len(shifts), float(box0.max()) * k)
            ctx = openmm.Context(system, openmm.VerletIntegrator(0.0005), plat, {"Threads": "1"})
            got = []
            for x, _, box in self.waters:
                e = box * k / 10.0
                ctx.setPeriodicBoxVectors(*(openmm.Vec3(*(e[i] * np.eye(3)[i])) for i in range(3)))
                ctx.setPositions((x[None] + (shifts * box)[:, None]).reshape(-1, 3) / 10.0)
                f = ctx.getState(getForces=True).getForces(asNumpy=True)
                f = np.asarray(f.value_in_unit(unit.kilojoule_per_mole / unit.nanometer))
                got.append(f[:n] * KJ_MOL_NM_TO_EV_ANG)
            out.append(self.project(np.concatenate(got).ravel()))
            del ctx
        return np.stack(out, axis=1)


def potential(params: dict[str, float], cutoff: float = RC) -> Potential:
    full = {"prod_q[H]": 0.0, "prod_q[O]": 0.0}
    full |= {f"pair_{c}[{a}-{b}]": 0.0 for a, b in PAIRS for c in "AB"}
    full |= params
    return Potential(compile_expression(EXPR), full, SPECIES, PAIRS, cutoff=cutoff,
                     scheme="shifted-force")  # fmt: skip


def columns(form: str) -> dict[str, dict[str, float]]:
    cols = {"qH2": {"prod_q[H]": 1.0, "prod_q[O]": -2.0}}
    for a, b in PAIRS if form == "lj" else (("O", "O"),):
        for c in "AB":
            cols[f"pair_{c}[{a}-{b}]"] = {f"pair_{c}[{a}-{b}]": 1.0}
    return cols


def solve(names, a, y, fixed: dict[str, float] | None = None) -> np.ndarray:
    lo = np.array([0.0 if n == "qH2" or n.startswith("pair_A") else -np.inf for n in names])
    hi = np.full(len(names), np.inf)
    for n, v in (fixed or {}).items():
        k = names.index(n)
        lo[k], hi[k] = v - 1e-9, v + 1e-9
    return lsq_linear(a, y, bounds=(lo, hi)).x


def params_of(names, c) -> dict[str, float]:
    out = {"prod_q[H]": math.sqrt(c[0]), "prod_q[O]": -2 * math.sqrt(c[0])}
    out |= {f"pair_{x}[{a}-{b}]": 0.0 for a, b in PAIRS for x in "AB"}
    out |= {n: float(v) for n, v in zip(names[1:], c[1:], strict=True)}
    return out


def write_run(folder: Path, params, rmse_train, rmse_valid, target: str, cutoff: float) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    point = {
        "expression": EXPR, "complexity": 13, "valid": True, "params": params,
        "rmse_train": rmse_train, "rmse_valid": rmse_valid, "flags": [], "constraints": {},
        "extra": {"cutoff": cutoff, "cutoff_scheme": "shifted-force", "target": target},
    }  # fmt: skip
    run = {
        "species": list(SPECIES), "type_pairs": [list(p) for p in PAIRS], "cutoff": cutoff,
        "cutoff_scheme": "shifted-force", "wall": 0.5, "variables": ["r"],
    }  # fmt: skip
    (folder / "pareto.json").write_text(json.dumps([point], indent=1))
    (folder / "run.json").write_text(json.dumps(run, indent=1))


def rigid_data(work: Path, cutoff: float, use_openmm: bool) -> RigidData:
    """The numpy route up to half the box (6.22 Å), OpenMM beyond it or when asked."""
    if use_openmm or cutoff > RC:
        return OpenMMRigidData(cutoff)
    if cutoff != RC:
        raise SystemExit(f"--cutoff {cutoff}: the numpy route fits at {RC} Å only; add --openmm")
    return RigidData(work)


def cmd_rigid(out: Path, form: str, fix_b: float | None, dimers: float, cutoff: float,
              use_openmm: bool) -> None:  # fmt: skip
    data = rigid_data(out / "work", cutoff, use_openmm)
    cols = columns(form)
    names = list(cols)
    x = data.design(cols)
    train = data.rows_frame < N_TRAIN
    a, y = x[train], data.target[train]
    if dimers > 0:
        dd = load_dataset(data_file("water_dimers_mp2_200.extxyz"), cutoff, energy=None)
        xd = np.stack([potential(p, cutoff).forces(dd)[0].ravel() for p in cols.values()], 1)
        keep = np.repeat(np.arange(dd.n_frames), 18) < int(0.6 * dd.n_frames)
        a = np.vstack([a, dimers * xd[keep]])
        y = np.concatenate([y, dimers * dd.forces.ravel()[keep]])
    fixed = None if fix_b is None else {"pair_B[O-O]": fix_b}
    c = solve(names, a, y, fixed)
    res = x @ c - data.target
    rmse = [float(np.sqrt(np.mean(res[m] ** 2))) for m in (train, ~train)]
    params = params_of(names, c)
    target = f"rigid-body forces, form {form}, fixed B_OO {fix_b}, dimers weight {dimers}"
    write_run(out, params, rmse[0], rmse[1], target, cutoff)
    print(json.dumps({"rigid_rmse_train": rmse[0], "rigid_rmse_heldout": rmse[1],
                      "rigid_rms_dft": float(np.sqrt(np.mean(data.target**2))),
                      "params": {k: v for k, v in params.items() if v}}, indent=1))  # fmt: skip


def cmd_scan(work: Path, values, cutoff: float, use_openmm: bool) -> None:
    data = rigid_data(work, cutoff, use_openmm)
    cols = columns("spc")
    names = list(cols)
    x = data.design(cols)
    train = data.rows_frame < N_TRAIN
    for b in values:
        c = solve(names, x[train], data.target[train], {"pair_B[O-O]": b})
        res = x @ c - data.target
        print(
            f"B_OO {b:8.3f} eV·Å⁶  rigid RMSE train {np.sqrt(np.mean(res[train] ** 2)):.5f} "
            f"held-out {np.sqrt(np.mean(res[~train] ** 2)):.5f}  q_H {math.sqrt(c[0]):.4f} e  "
            f"A_OO {c[1]:.0f} eV·Å¹²"
        )


def cmd_score(runs, work: Path) -> None:
    data = RigidData(work)
    fr = frames()
    mols = [molecule_ids(a) for a in fr]
    total = np.concatenate([a.get_forces().ravel() for a in fr])
    basis = np.vstack([intra_basis(a, m) for a, m in zip(fr, mols, strict=True)])
    refit = total - basis @ np.linalg.lstsq(basis, total, rcond=None)[0]
    for run in runs:
        point = load_front_point(run, 0, cutoff=RC)
        f = point.potential().forces(data.ds)[0].ravel()
        rig = float(np.sqrt(np.mean((data.project(f) - data.target) ** 2)))
        atom = float(np.sqrt(np.mean((f - refit) ** 2)))
        print(f"{run}: rigid-body RMSE {rig:.4f}, RMSE vs bulk_refit {atom:.4f} eV/Å")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("variants")
    v.add_argument("out", type=Path)
    r = sub.add_parser("rigid")
    r.add_argument("out", type=Path)
    r.add_argument("--form", choices=("spc", "lj"), default="spc")
    r.add_argument("--fix-b", type=float, default=None)
    r.add_argument("--dimers", type=float, default=0.0)
    for q in (r, s := sub.add_parser("scan")):
        q.add_argument("--cutoff", type=float, default=RC)
        q.add_argument("--openmm", action="store_true")
    s.add_argument("--work", type=Path, default=Path("/tmp/condensed_phase"))
    s.add_argument("--values", type=float, nargs="+",
                   default=[-20, -8.3, 0, 10, 20, 27.124, 40, 60])  # fmt: skip
    c = sub.add_parser("score")
    c.add_argument("runs", nargs="+")
    c.add_argument("--work", type=Path, default=Path("/tmp/condensed_phase"))
    args = ap.parse_args()
    if args.cmd == "variants":
        cmd_variants(args.out)
    elif args.cmd == "rigid":
        cmd_rigid(args.out, args.form, args.fix_b, args.dimers, args.cutoff, args.openmm)
    elif args.cmd == "scan":
        cmd_scan(args.work, args.values, args.cutoff, args.openmm)
    else:
        cmd_score(args.runs, args.work)


if __name__ == "__main__":
    main()

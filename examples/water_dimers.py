"""Water dimers at MP2/aug-cc-pVDZ: search for intermolecular pair potentials vs q-SPC/Fw.

Reproduces figure 2 of the originating study (KAKENHI 20K20907): the Pareto front of
complexity × validation force RMSE of the potentials found by the search, with the q-SPC/Fw
model's loss drawn as horizontal lines (published parameters and the same form refitted), and the
potentials of the best front points per type pair (O–O, H–O, H–H).

    python examples/water_dimers.py                       # shipped MP2 data, ~3 min
    python examples/water_dimers.py --time 1800 --budget 20000 --out runs/water_long

Writes ``OUT/pareto.png`` (front + q-SPC/Fw lines), ``OUT/potentials.png``, ``OUT/pareto.json``,
``OUT/pareto.csv`` and ``OUT/summary.json`` (the reference losses and the front).

Data: ``mctsff/data/water_dimers_mp2_200.extxyz`` when present (≥ 200 dimers, regenerate with
``mctsff data water-dimers -n 200 --method mp2 --out FILE``), else the 20-dimer sample.
Targets are the intermolecular forces (dimer minus monomers); only intermolecular pairs count.
The search's potentials are cut at ``--cutoff`` with U'(rc) = 0; the q-SPC/Fw lines use every
intermolecular pair (no cutoff), as the published model would.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from mctsff.data import DATA_DIR, data_file, load_dataset
from mctsff.fit import Fitter
from mctsff.search import search
from mctsff.water.models import published_result, refit_model

DEFAULT_DATA = "water_dimers_mp2_200.extxyz"
SAMPLE_DATA = "water_dimers_mp2_sample20.extxyz"


def main(argv: list[str] | None = None) -> dict:
    """Run the water-dimer study; returns the summary written to ``OUT/summary.json``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=None, help="extxyz file (default: shipped MP2 dimers)")
    ap.add_argument("--cutoff", type=float, default=9.0, help="search cutoff in Å (9)")
    ap.add_argument("--grammar", default="pair")
    ap.add_argument("--budget", type=int, default=3000, help="distinct expressions to fit")
    ap.add_argument("--time", type=float, default=150.0, help="search wall-clock limit (s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default="q-spcfw", help="reference water model (q-spcfw)")
    ap.add_argument("--out", default="runs/water_dimers")
    ap.add_argument("--overwrite", action="store_true", help="replace an earlier run in --out")
    args = ap.parse_args(argv)

    if args.data is None:
        name = DEFAULT_DATA if (DATA_DIR / DEFAULT_DATA).is_file() else SAMPLE_DATA
        path = data_file(name)
    else:
        path = Path(args.data)
    ds = load_dataset(path, args.cutoff)
    train, valid = ds.split(0.2, seed=args.seed)
    print(f"data {path}: {ds.n_frames} dimers ({train.n_frames} train), {ds.n_pairs} pairs")

    # reference model on every intermolecular pair (same frames: the split is by frame index)
    full = load_dataset(path, 30.0)
    ftrain, fvalid = full.split(0.2, seed=args.seed)
    pub = published_result(args.model, ftrain, fvalid)
    ref = refit_model(args.model, ftrain, fvalid)
    name = pub.extra["model"]
    lines = {f"{name} (published)": pub.score_loss, f"{name} (refit)": ref.score_loss}
    zero = {"rmse_train": _rms(ftrain.forces), "rmse_valid": _rms(fvalid.forces)}
    print(
        f"U = 0 (no model):   train {zero['rmse_train']:.4f}  valid {zero['rmse_valid']:.4f} eV/Å"
    )
    print(f"{name} published: train {pub.rmse_train:.4f}  valid {pub.rmse_valid:.4f} eV/Å")
    print(f"{name} refit:     train {ref.rmse_train:.4f}  valid {ref.rmse_valid:.4f} eV/Å")
    q_o, q_h = ref.params["prod_q[O]"], ref.params["prod_q[H]"]
    print(f"  refit charges q_O = {q_o:.4f}, q_H = {q_h:.4f} e")

    fitter = Fitter(train, valid, constraints=("force0",), n_starts=3, seed=args.seed)
    result = search(
        fitter,
        args.grammar,
        budget=args.budget,
        time_limit=args.time,
        seed=args.seed,
        out=args.out,
        overwrite=args.overwrite,
        reference_lines=lines,
        progress=True,
    )
    print(f"{result.n_evaluations} expressions fitted in {result.seconds:.0f} s")
    print(f"{'cplx':>4} {'train':>8} {'valid':>8}  expression")
    front = []
    for p in result.front.points:
        beats = [k for k, v in lines.items() if p.score_loss < v]
        print(f"{p.complexity:>4} {p.rmse_train:8.4f} {p.rmse_valid:8.4f}  {p.expression}")
        if beats:
            print(f"{'':>23}below: {', '.join(beats)}")
        front.append(
            {
                "expression": p.expression,
                "complexity": p.complexity,
                "rmse_train": p.rmse_train,
                "rmse_valid": p.rmse_valid,
                "params": p.params,
                "flags": p.flags,
                "below": beats,
            }
        )
    best = result.best
    summary = {
        "data": str(path),
        "n_frames": ds.n_frames,
        "cutoff": args.cutoff,
        "zero_potential": zero,
        "reference": {
            "model": name,
            "published": {"rmse_train": pub.rmse_train, "rmse_valid": pub.rmse_valid},
            "refit": {
                "rmse_train": ref.rmse_train,
                "rmse_valid": ref.rmse_valid,
                "params": ref.params,
            },
        },
        "n_evaluations": result.n_evaluations,
        "seconds": result.seconds,
        "best": None if best is None else {"expression": best.expression, **_losses(best)},
        "front": front,
        "files": result.files,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=_json_default))
    for f in sorted(result.files.values()):
        print(f"wrote {f}")
    print(f"wrote {out / 'summary.json'}")
    return summary


def _rms(forces) -> float:
    return float(math.sqrt(float((forces**2).mean())))


def _losses(p) -> dict:
    return {"rmse_train": p.rmse_train, "rmse_valid": p.rmse_valid, "complexity": p.complexity}


def _json_default(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return str(x)


if __name__ == "__main__":
    main()

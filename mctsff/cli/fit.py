"""``mctsff fit``: load the data, fit the constants of one expression (or a reference water
model), print or ``--json`` the result."""

from __future__ import annotations

import json
import math

from mctsff.cli.options import (
    UsageError,
    _check_names,
    _dataset_args,
    _fit_args,
    _float,
    _pair_value,
)


def add_fit_command(sub) -> None:
    """Add ``fit`` to the ``mctsff`` subcommands."""
    p = sub.add_parser("fit", help="fit the constants of a given expression")
    _dataset_args(p)
    p.add_argument("--expr", default=None, help='e.g. "prod_q/r + A*exp(-r/b) - C/r**6"')
    p.add_argument(
        "--model",
        default=None,
        help="reference water model instead of --expr: q-spcfw | spcfw | tip3p (published "
        "parameters; with --refit charges and O-O LJ refitted, molecules kept neutral)",
    )
    p.add_argument("--refit", action="store_true", help="refit the --model parameters")
    _fit_args(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_fit)


class _Summary:
    """What the commands print about data they never held in memory (``--stream``)."""

    def __init__(self, train, valid, test=None):
        parts = [p for p in (train, valid, test) if p is not None]
        self.n_pairs = sum(p.n_pairs for p in parts)
        self.n_frames = sum(p.n_frames for p in parts)
        self.force_array = train.force_array
        self.cutoff = train.cutoff
        self.species = train.species


def _load_streamed(args, intermolecular, test_fraction: float):
    from mctsff.data.projection import ForceProjection, ProjectionError

    if args.projection is None:
        raise UsageError("--stream needs --projection H (grid spacing in Å)")
    if str(args.energy).lower() not in ("none", "auto") or args.energy_weight:
        raise UsageError("--stream fits forces only: drop --energy/--energy-weight")
    try:
        train, valid, test = ForceProjection.holdout_file(
            args.data,
            args.cutoff,
            args.projection,
            valid_fraction=args.valid_fraction,
            test_fraction=test_fraction,
            seed=args.split_seed,
            chunk_frames=args.chunk_frames,
            forces=args.forces,
            energy=None,
            intermolecular=intermolecular,
            molecules=args.molecules,
        )
    except ProjectionError as exc:
        raise UsageError(f"--projection: {exc}") from None
    return _Summary(train, valid, test), train, valid, test


def _load(args):
    from mctsff.data import load_dataset

    if str(args.data).lower().endswith((".csv", ".tsv")):
        how = "add --objective regression" if args.command == "search" else "use mctsff search"
        raise UsageError(
            f"{args.data}: a table, not force data (extxyz); {how} to fit y = f(x) on it "
            "(mctsff search TABLE.csv --objective regression --target COLUMN)"
        )
    energy = None if str(args.energy).lower() == "none" else args.energy
    intermolecular = False if args.all_pairs else None
    if not 0.0 <= args.valid_fraction < 1.0:
        raise UsageError("--valid-fraction must be in [0, 1)")
    test_fraction = 0.2 if args.test_fraction is None else args.test_fraction
    if not 0.0 <= test_fraction < 1.0 or args.valid_fraction + test_fraction >= 1.0:
        raise UsageError("--test-fraction must be in [0, 1) and leave training frames")
    if getattr(args, "stream", False):
        return _load_streamed(args, intermolecular, test_fraction)
    ds = load_dataset(
        args.data,
        args.cutoff,
        forces=args.forces,
        energy=energy,
        intermolecular=intermolecular,
        molecules=args.molecules,
    )
    train, valid, test = ds.split_holdout(args.valid_fraction, test_fraction, args.split_seed)
    return ds, train, valid, test


def _fit_options(args) -> dict:
    from mctsff.fit import WALL_RADIUS

    bounds = {}
    for text in args.bound:
        name, value = _pair_value(text, "--bound")
        lo, sep, hi = value.partition(":")
        if not sep:
            raise UsageError(f"--bound expects NAME=LO:HI, got {text!r}")
        bounds[name] = (
            _float(lo, f"--bound {name}", finite=False) if lo else -math.inf,
            _float(hi, f"--bound {name}", finite=False) if hi else math.inf,
        )
        if bounds[name][0] > bounds[name][1]:
            raise UsageError(f"--bound {text}: the lower bound is above the upper one")
    initial = {}
    for text in args.init:
        name, value = _pair_value(text, "--init")
        initial[name] = _float(value, f"--init {name}")
        lo, hi = bounds.get(name, (-math.inf, math.inf))
        if not lo <= initial[name] <= hi:
            raise UsageError(f"--init {text}: outside --bound {name}={lo:g}:{hi:g}")
    constraints = () if args.no_constraints else tuple(args.constraint or ())
    return dict(
        constraints=constraints,
        cutoff_scheme=args.cutoff_scheme or "shifted-force",
        match=args.match,
        wall=(WALL_RADIUS if args.wall is None else args.wall) or None,
        n_starts=args.starts,
        pair_start=args.pair_start,
        seed=args.seed,
        weights=None if args.weights == "uniform" else args.weights,
        energy_weight=args.energy_weight,
        bounds=bounds,
        initial=initial,
        projection=None if getattr(args, "stream", False) else args.projection,
    )


def _with_neutrality(args, opts: dict, ds, constants: set[str], where: str) -> dict:
    """``opts`` with the ``--neutral NAME`` constraint (molecules of all of ``ds``) added;
    one error line when NAME is not a constant of ``where`` or the data cannot take it."""
    if args.neutral is None:
        return opts
    from mctsff.fit import FitConfigError, neutrality

    name = args.neutral.strip()
    if getattr(args, "stream", False):
        raise UsageError("--neutral needs the molecules in memory: drop --stream")
    if name not in constants:
        from mctsff.expr.ops import constant_rule

        typed = sorted(c for c in constants if constant_rule(c) == "product")
        shown = ", ".join(typed[:4]) + (", ..." if len(typed) > 4 else "")
        raise UsageError(
            f"--neutral {name}: not a constant of {where} (its product-rule constants: "
            f"{shown or 'none'})"
        )
    try:
        constraint = neutrality(name, ds)
    except FitConfigError as exc:
        raise UsageError(f"--{exc}") from None
    return {**opts, "constraints": (*opts["constraints"], constraint)}


def _fit_model(args, train, valid):
    """``fit --model NAME [--refit]``: a reference water model, published or refitted."""
    from mctsff.water.models import published_result, refit_model

    if args.expr:
        raise UsageError("give either --expr or --model, not both")
    if args.neutral is not None:
        raise UsageError("--neutral is for --expr: --model --refit keeps each water neutral")
    if args.stream:
        raise UsageError("--model needs the data in memory: drop --stream")
    try:
        if not args.refit:
            return published_result(args.model, train, valid)
        opts = _fit_options(args)
        # the published models have no cutoff constraint, and are compared as written
        # (no cutoff shift) unless asked for
        opts["constraints"] = () if args.no_constraints else tuple(args.constraint or ())
        opts["cutoff_scheme"] = args.cutoff_scheme or "none"
        opts["wall"] = args.wall or None  # a published water model has no H-O wall
        return refit_model(args.model, train, valid, **opts)
    except KeyError as exc:
        raise UsageError(f"--model: {exc.args[0]}") from None
    except ValueError as exc:
        if type(exc) is not ValueError:
            raise
        raise UsageError(f"--model {args.model}: {exc}") from None


def cmd_fit(args) -> int:
    """Fit the constants of one expression."""
    from mctsff.engines.holdout import holdout_scorer
    from mctsff.fit import Fitter

    ds, train, valid, test = _load(args)
    fitter = None
    if getattr(args, "model", None):
        res = _fit_model(args, train, valid)
    elif not args.expr:
        raise UsageError("fit needs --expr EXPRESSION or --model NAME")
    else:
        from mctsff.expr.program import Program

        known = set(Program.from_string(args.expr).constants)
        opts = _with_neutrality(args, _fit_options(args), ds, known, f"--expr {args.expr!r}")
        fitter = Fitter(train, valid, **opts)
        if args.init or args.bound:
            _check_names(args, known, train.species, f"--expr {args.expr!r}")
        res = fitter.fit(args.expr)
    score = holdout_scorer(fitter, test)
    if score is not None and res.valid:
        res.rmse_test = score(res)
    out = res.to_dict()
    out.update(
        n_pairs=int(ds.n_pairs),
        n_frames=int(ds.n_frames),
        n_frames_train=int(train.n_frames),
        n_frames_valid=int(valid.n_frames) if valid is not None else 0,
        n_frames_test=int(test.n_frames) if test is not None else 0,
        force_array=ds.force_array,
        cutoff=ds.cutoff,
        species=list(ds.species),
        match=getattr(args, "match", "atoms"),
    )
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"expression   {res.expression}   (complexity {res.complexity})")
        print(
            f"data         {args.data}: {ds.n_frames} frames, {ds.n_pairs} pairs, "
            f"forces from '{ds.force_array}'"
        )
        if out["match"] == "rigid":
            print("match        rigid: each molecule's net force and torque (the RMSEs are of")
            print("             the rigid-body part of the force errors, per component)")
        if not res.valid:
            print(f"INVALID      {res.reason}")
        print(f"rmse_train   {res.rmse_train:.6g} eV/Å")
        print(f"rmse_valid   {res.rmse_valid:.6g} eV/Å")
        print(f"rmse_test    {res.rmse_test:.6g} eV/Å")
        for k, v in res.params.items():
            print(f"  {k:<20s} {v: .10g}")
        for k, v in res.constraints.items():
            print(f"  constraint {k:<9s} residual {v:.3e}")
        proj = res.extra.get("projection")
        if proj:
            exact = (
                "no exact check (streamed)"
                if proj["loss_exact"] is None
                else f"projected vs exact loss {proj['rel_error']:.1e} relative"
            )
            print(
                f"projection   h = {proj['spacing']} Å, {proj['n_grid']} grid nodes; {exact}; "
                f"bound {proj['loss_rel_bound']:.1e} relative"
            )
        for f in res.flags:
            print(f"  WARNING: {f}")
    return 0 if res.valid else 1

"""What the subcommands share: argparse types, the one-line error parser, the option groups
of data and fits, and the checks of option values (:class:`UsageError` names the option)."""

from __future__ import annotations

import argparse
import math
import sys

from mctsff.config import DEFAULTS, NEUTRAL


def _at_least(low: int, high: int | None = None):
    """argparse type: an integer >= ``low`` (and <= ``high`` if given; argparse names the
    option in its error)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be <= {high}, got {value}")
        return value

    return parse


def _probability(text: str) -> float:
    """argparse type: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return value


def _real(low: float | None = None, high: float | None = None, *, above: bool = False):
    """argparse type: a finite number in ``[low, high]`` (``(low, high]`` with ``above``)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if low is not None and (value <= low if above else value < low):
            sign = ">" if above else ">="
            raise argparse.ArgumentTypeError(f"must be {sign} {low:g}, got {text}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be <= {high:g}, got {text}")
        return value

    return parse


class UsageError(ValueError):
    """A bad command-line value (message names the option)."""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``-h`` shows each option's default, except where there is nothing to show (a flag,
    ``None``, an empty list) or the help already says it."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or "default" in text.lower()
            or default in (None, False, argparse.SUPPRESS)
            or default == []
            or not action.option_strings
        ):
            return text
        return text + " (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (``mctsff search: error: …``, exit 2);
    ``-h`` shows the usage and every default."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} -h)\n")


def _pair_value(text: str, option: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise UsageError(f"{option} expects NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


def _float(text: str, option: str, finite: bool = True) -> float:
    """A number given in ``option`` (NaN refused; infinities too unless ``finite=False``)."""
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{option}: {text!r} is not a number") from None
    if math.isnan(value) or (finite and math.isinf(value)):
        raise UsageError(f"{option}: {text!r} is not a finite number")
    return value


def _data_argument(text: str) -> str:
    """argparse type: a data file, or the name of a shipped dataset (``mctsff data list``)."""
    from mctsff.data import DataError, dataset_path

    try:
        return dataset_path(text)
    except DataError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _dataset_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "data",
        type=_data_argument,
        help="extxyz file with positions and reference forces (eV/Å), or a shipped dataset's "
        "name (mctsff data list: water-dimers, bulk-water, ...)",
    )
    p.add_argument("--cutoff", type=_real(0, above=True), default=9.0, help="pair cutoff in Å")
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
    p.add_argument(
        "--valid-fraction",
        type=float,
        default=0.2,
        help="fraction of all frames for validation, which ranks the front",
    )
    p.add_argument(
        "--test-fraction",
        type=float,
        default=None,
        help="fraction of all frames for test, seen only by the report (default 0.2)",
    )
    p.add_argument(
        "--split-seed",
        type=_at_least(0),
        default=0,
        help="seed of the train/validation/test split of the frames (independent of --seed)",
    )
    p.add_argument(
        "--seed",
        type=_at_least(0),
        default=DEFAULTS.seed,
        help="seed of the search and the fit starts",
    )


def _fit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--constraint",
        action="append",
        default=None,
        help="force0, energy0, repulsive:R (none by default); repeat for several",
    )
    p.add_argument("--no-constraints", action="store_true", help="fit without constraints")
    p.add_argument(
        "--cutoff-scheme",
        choices=["shifted-force", "shifted-energy", "constraint", "none"],
        default=None,
        help="how the potential ends at the cutoff: shifted-force (default: U(r) - U(rc) - "
        "(r - rc) U'(rc) is fitted, reported and exported), shifted-energy (U - U(rc)), "
        "constraint (U'(rc) = 0 imposed on the form), none (as written)",
    )
    p.add_argument(
        "--match",
        choices=["atoms", "rigid"],
        default="atoms",
        help="what is fitted: every atom's force (atoms, default) or each molecule's net "
        "force and torque (rigid: intramolecular forces have none, so total forces of a "
        "condensed phase are a target as they are; needs molecule ids, e.g. --molecules "
        "nearest-O)",
    )
    p.add_argument(
        "--wall",
        type=_real(0),
        default=None,
        help="radius in Å down to which every type pair's potential must be repulsive below "
        "its shortest distance in the data, pushing with >= 1 eV/Å below half of it (0.5; 0 "
        "switches the wall off)",
    )
    p.add_argument(
        "--neutral",
        default=NEUTRAL,
        metavar="NAME",
        help="keep every molecule of the data neutral: the per-type product-rule constant "
        "NAME (prod_q, prod_c1) sums to 0 over each molecule's atoms (an equality "
        "constraint, kept with --no-constraints; needs molecule ids; in a search, forms "
        "without NAME are not constrained)",
    )
    p.add_argument("--starts", type=_at_least(1), default=3, help="seeded starts per fit")
    p.add_argument(
        "--pair-start",
        action="store_true",
        help="kept for old command lines: the default fit already starts per-type prefactors "
        "(prod_q, geom_e) from a fit with one prefactor per type pair",
    )
    p.add_argument(
        "--weights",
        choices=["uniform", "potfit"],
        default="uniform",
        help="force weights: uniform, or potfit's 1/(|F| + 0.1 eV/Å)² per component",
    )
    p.add_argument(
        "--energy-weight",
        type=_real(0),
        default=0.0,
        help="weight of the per-frame energy residual next to the forces (needs --energy)",
    )
    p.add_argument(
        "--bound",
        action="append",
        default=[],
        metavar="NAME=LO:HI",
        help="bounds of a fitted constant (prod_q[O]=-2:0; an empty side is unbounded); "
        "repeat for several",
    )
    p.add_argument(
        "--init",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="starting value of a fitted constant (b=0.3); repeat for several",
    )
    p.add_argument(
        "--projection",
        type=_real(0, above=True),
        default=None,
        metavar="H",
        help="fit on the grid projection F = M·g with spacing H Å (e.g. 0.05): the cost of a "
        "fit no longer grows with the number of pairs; reported RMSEs stay exact",
    )
    p.add_argument(
        "--stream",
        action="store_true",
        help="with --projection: read the file in chunks of frames and keep only the "
        "projections in memory (for data larger than memory; RMSEs are then projected)",
    )
    p.add_argument(
        "--chunk-frames", type=_at_least(1), default=16, help="frames per chunk with --stream"
    )


def _quiet_args(p: argparse.ArgumentParser, what: str) -> None:
    """``--quiet`` (documented) and ``--no-progress`` (the same, kept for old command lines)."""
    p.add_argument("--quiet", "-q", dest="quiet", action="store_true", help=what)
    p.add_argument("--no-progress", dest="quiet", action="store_true", help=argparse.SUPPRESS)


def _workers(asked: int) -> int:
    """``--workers`` (0: all cores) capped at the cores, with a note when capped."""
    import os

    cores = os.cpu_count() or 1
    if asked > cores:
        print(f"mctsff: note: --workers {asked} capped at the {cores} cores", file=sys.stderr)
    return min(asked, cores) if asked else cores


def _check_names(args, known: set[str], species, where: str) -> None:
    """One clear error for a ``--init``/``--bound`` name that no fitted constant has.

    A name is a constant (``b``) or a per-type one with its types (``prod_q[O]``,
    ``pair_A[H-O]``); ``known`` are the constants of the expression or grammar.
    """
    for option, texts in (("--init", args.init), ("--bound", args.bound)):
        for text in texts:
            name = text.partition("=")[0].strip()
            base, sep, types = name.partition("[")
            unknown_types = sep and (
                not types.endswith("]") or not set(types[:-1].split("-")) <= set(species)
            )
            if base not in known or unknown_types:
                raise UsageError(
                    f"{option} {name}: not a constant of {where} (constants: "
                    f"{', '.join(sorted(known)) or 'none'}; atom types: {', '.join(species)})"
                )

"""Command line: ``mctsff fit``, ``mctsff search``, ``mctsff demo``, ``mctsff data``,
``mctsff export`` and ``mctsff md-check``, one module per command (:mod:`.fit`, :mod:`.search`
for search and demo, :mod:`.data`, :mod:`.export`, :mod:`.md_check`; what they share in
:mod:`.options`).

Every user error (bad data file, expression, grammar or option) ends in one
line ``mctsff: error: …`` and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from mctsff import __version__
from mctsff.cli.data import add_data_commands
from mctsff.cli.export import add_export_command
from mctsff.cli.fit import add_fit_command
from mctsff.cli.md_check import add_md_check_command
from mctsff.cli.options import UsageError, _Parser
from mctsff.cli.search import add_search_commands


def build_parser() -> argparse.ArgumentParser:
    """The ``mctsff`` argument parser."""
    parser = _Parser(
        prog="mctsff",
        description="Discover classical pair potentials from reference forces by symbolic "
        "regression (grammar-guided Monte Carlo tree search + force matching).",
    )
    parser.add_argument("--version", action="version", version=f"mctsff {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    add_fit_command(sub)
    add_search_commands(sub)
    add_data_commands(sub)
    add_export_command(sub)
    add_md_check_command(sub)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one line on stderr (``mctsff: warning: …``)."""
    print(f"mctsff: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mctsff`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from mctsff.config import ConfigError
    from mctsff.data import DataError
    from mctsff.expr.grammar import GrammarError
    from mctsff.expr.program import ExpressionError
    from mctsff.fit import FitConfigError
    from mctsff.runio import RunFolderError
    from mctsff.search import SearchError

    errors: tuple[type[Exception], ...] = (
        ConfigError,
        DataError,
        ExpressionError,
        FitConfigError,
        GrammarError,
        SearchError,
        UsageError,
        RunFolderError,
        FileNotFoundError,
    )
    try:
        from mctsff.fit.regression import RegressionDataError

        errors += (RegressionDataError,)
    except ImportError:  # pragma: no cover - optional until the module lands
        pass
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            # the end of a search says what it could not write as its error line
            warnings.filterwarnings("ignore", r"cannot write .*(is kept|no checkpoint)")
            return int(args.func(args) or 0)
    except errors as exc:
        print(f"mctsff: error: {exc}", file=sys.stderr)
        return 2
    except MemoryError as exc:  # numpy names the size: "Unable to allocate 3.1 PiB for ..."
        detail = " ".join(str(exc).split()) or "no detail"
        print(
            f"mctsff: error: out of memory ({detail}); use less data, a smaller --cutoff or "
            "a coarser --projection grid",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("mctsff: interrupted", file=sys.stderr)
        return 130

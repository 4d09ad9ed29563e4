"""An earlier commit's mctsff, installed into a temporary venv, as a JSON worker of a benchmark.

The benchmarks that compare the current fitter with an earlier one (``fit_reliability.py``,
``fit_throughput.py --replay``) run the earlier code in a separate interpreter:

1. ``git archive REV`` of this repository is unpacked into a temporary folder;
2. ``python -m venv`` makes a fresh environment there and ``pip install`` installs that tree
   with its dependencies (pip's own cache and configured indexes are used as they are);
3. the numba kernels are compiled once (``kernels.warmup()``), outside any timing;
4. :meth:`Baseline.run` starts ``python SCRIPT --worker IN.json OUT.json`` in that venv: the
   benchmark script itself, whose worker mode reads a task from ``IN.json`` and writes its
   results to ``OUT.json``.  Only JSON crosses the boundary (never pickle), and the worker
   runs from a temporary directory so that ``import mctsff`` finds the installed earlier code,
   not this checkout.

The venv is deleted when the ``with baseline(...)`` block ends.  A benchmark's ``main`` uses
:func:`baseline_or_exit`, so that a revision that does not exist, a failed install or a failed
worker ends the script with one line; one that works before it reaches the baseline (a search)
calls :func:`preflight` first.  This module does not import mctsff, so a worker running in the
earlier venv can import it too.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
#: The fitter the issue-31 benchmarks compare against (main before the fitter rework).
DEFAULT_REV = "91353c8"

_PROBE = (
    "import json, sys, time\n"
    "t = time.perf_counter()\n"
    "import mctsff\n"
    "try:\n"
    "    from mctsff.expr import kernels\n"
    "except ImportError:  # a revision before the expr package\n"
    "    from mctsff import kernels\n"
    "kernels.warmup()\n"
    "json.dump({'file': mctsff.__file__, 'warmup_s': time.perf_counter() - t}, sys.stdout)\n"
)


class BaselineError(RuntimeError):
    """The earlier commit could not be installed, or its worker failed."""


@dataclass
class Baseline:
    """An interpreter with an earlier mctsff installed.

    Attributes
    ----------
    rev
        The revision as given (``91353c8``).
    commit
        The full commit hash it resolved to (``""`` for a given interpreter).
    python
        The interpreter of the venv.
    install_s
        Wall seconds to unpack, make the venv and ``pip install`` (0 for a given interpreter).
    warmup_s
        Wall seconds of the first import and kernel compilation.
    module_file
        ``mctsff.__file__`` as the venv imports it.
    """

    rev: str
    commit: str
    python: Path
    install_s: float
    warmup_s: float
    module_file: str

    def describe(self) -> str:
        """How the baseline was obtained, for the benchmark's header line."""
        if not self.commit:
            return f"baseline {self.rev} from {self.python} (first import {self.warmup_s:.0f} s)"
        return (
            f"baseline {self.rev} installed into a temporary venv in {self.install_s:.0f} s "
            f"(+ {self.warmup_s:.0f} s first import and kernel compilation)"
        )

    def run(self, script: str | os.PathLike[str], task: Mapping[str, Any], timeout=None) -> dict:
        """Run ``script --worker IN OUT`` in the venv with ``task`` as ``IN`` and return ``OUT``.

        Raises
        ------
        BaselineError
            When the worker exits with an error or writes no valid JSON (its stderr's tail is
            in the message).
        """
        script = Path(script).resolve()
        with tempfile.TemporaryDirectory(prefix="mctsff-worker-") as tmp:
            inp, out = Path(tmp) / "task.json", Path(tmp) / "result.json"
            inp.write_text(json.dumps(task))
            proc = subprocess.run(
                [str(self.python), str(script), "--worker", str(inp), str(out)],
                cwd=tmp,
                env=_clean_env(),
                capture_output=True,
                text=True,
                timeout=timeout,
            )
            if proc.returncode != 0:
                raise BaselineError(
                    f"{script.name} --worker in the {self.rev} venv failed (exit "
                    f"{proc.returncode}):\n{_tail(proc.stderr)}"
                )
            try:
                return json.loads(out.read_text())
            except (OSError, ValueError) as exc:
                raise BaselineError(
                    f"{script.name} --worker in the {self.rev} venv wrote no result ({exc}):\n"
                    f"{_tail(proc.stderr)}"
                ) from None


def as_before(options: Mapping[str, Any]) -> dict[str, Any]:
    """Fit options with the cutoff treated as the baseline fitter treats it.

    The fitter of 91353c8 fits the expression as written (force0 is a constraint on
    the form); a fitter that knows cutoff schemes gets ``cutoff_scheme="none"`` so both
    fit the same problem (benchmark data come from unshifted forms), and no repulsive wall
    (Buckingham's -C/r**6 has none).
    """
    from mctsff.fit import FitOptions

    out = dict(options)
    if "cutoff_scheme" in FitOptions.__dataclass_fields__:
        out["cutoff_scheme"] = "none"
    if "wall" in FitOptions.__dataclass_fields__:
        out["wall"] = None  # 91353c8 imposed no repulsive wall
    return out


def _clean_env() -> dict[str, str]:
    """The environment without variables that would put this checkout on the worker's path."""
    env = dict(os.environ)
    for name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"):
        env.pop(name, None)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _tail(text: str, n: int = 3000) -> str:
    return text[-n:] if text else "(no output)"


def _probe(python: Path, rev: str) -> tuple[str, float]:
    with tempfile.TemporaryDirectory(prefix="mctsff-probe-") as tmp:
        proc = subprocess.run(
            [str(python), "-c", _PROBE], cwd=tmp, env=_clean_env(), capture_output=True, text=True
        )
    if proc.returncode != 0:
        raise BaselineError(f"mctsff {rev} does not import in {python}:\n{_tail(proc.stderr)}")
    info = json.loads(proc.stdout)
    return info["file"], float(info["warmup_s"])


def resolve(rev: str, repo: Path = REPO) -> str:
    """The full commit hash of ``rev`` in ``repo``; :class:`BaselineError` if there is none."""
    proc = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        raise BaselineError(f"--baseline {rev}: no such commit in {repo}")
    return proc.stdout.strip()


@contextmanager
def baseline(
    rev: str = DEFAULT_REV,
    repo: Path = REPO,
    python: str | os.PathLike[str] | None = None,
    log: Callable[[str], Any] = print,
) -> Iterator[Baseline]:
    """Install mctsff at ``rev`` into a temporary venv for the duration of the block.

    Parameters
    ----------
    rev
        A commit of ``repo`` (hash, tag or branch).
    repo
        The git repository to archive.
    python
        An interpreter that already has the earlier mctsff installed: used as it is (nothing
        is installed or deleted).
    log
        Called with one line per step.

    Yields
    ------
    Baseline
    """
    if python is not None:
        py = Path(python)
        if not py.exists():
            raise BaselineError(f"--baseline-python {py}: no such file")
        mod, warm = _probe(py, rev)
        log(f"baseline {rev}: using {py} ({mod}); first import and warm-up {warm:.1f} s")
        yield Baseline(rev, "", py, 0.0, warm, mod)
        return
    commit = resolve(rev, repo)
    tmp = Path(tempfile.mkdtemp(prefix=f"mctsff-{rev}-"))
    try:
        t0 = time.perf_counter()
        src = tmp / "src"
        src.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(repo), "archive", "--format=tar", commit], capture_output=True
        )
        if archive.returncode != 0:
            raise BaselineError(f"git archive {rev} failed: {archive.stderr.decode()[-500:]}")
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(src, filter="data")
        venv = tmp / "venv"
        _check(subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True), rev)
        py = venv / "bin" / "python"
        pip = [str(py), "-m", "pip", "install", "--quiet", str(src)]
        _check(subprocess.run(pip, capture_output=True, env=_clean_env()), rev)
        install_s = time.perf_counter() - t0
        mod, warm = _probe(py, rev)
        if not Path(mod).resolve().is_relative_to(venv.resolve()):
            raise BaselineError(f"the {rev} venv imports mctsff from {mod}, not from the venv")
        log(
            f"baseline {rev} ({commit[:12]}): installed into a temporary venv in "
            f"{install_s:.1f} s, first import and kernel compilation {warm:.1f} s"
        )
        yield Baseline(rev, commit, py, install_s, warm, mod)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def preflight(rev: str, python: str | os.PathLike[str] | None = None, repo: Path = REPO) -> None:
    """Stop a benchmark before any work if its baseline cannot be had.

    Checks what can be checked at once: that ``rev`` is a commit of ``repo`` or, with
    ``python``, that the interpreter exists.  Raises ``SystemExit`` with the one-line message
    of the :class:`BaselineError`, never a traceback.
    """
    try:
        if python is None:
            resolve(rev, repo)
        elif not Path(python).exists():
            raise BaselineError(f"--baseline-python {python}: no such file")
    except BaselineError as exc:
        raise SystemExit(str(exc)) from None


@contextmanager
def baseline_or_exit(
    rev: str = DEFAULT_REV,
    repo: Path = REPO,
    python: str | os.PathLike[str] | None = None,
    log: Callable[[str], Any] = print,
) -> Iterator[Baseline]:
    """:func:`baseline` for a benchmark's ``main``: a :class:`BaselineError`, raised while
    installing the earlier commit or by a worker inside the block, ends the script with its
    message (``SystemExit``) instead of a traceback."""
    try:
        with baseline(rev, repo, python, log) as base:
            yield base
    except BaselineError as exc:
        raise SystemExit(str(exc)) from None


def _check(proc: subprocess.CompletedProcess, rev: str) -> None:
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace") if isinstance(proc.stderr, bytes) else ""
        raise BaselineError(f"installing mctsff {rev} failed:\n{_tail(err)}")


def worker_main(argv: list[str], tasks: Mapping[str, Callable[[dict], dict]]) -> int:
    """The ``--worker IN OUT`` mode of a benchmark script: ``OUT = tasks[IN["task"]](IN)``."""
    if len(argv) != 3 or argv[0] != "--worker":
        raise SystemExit("usage: SCRIPT --worker TASK.json RESULT.json")
    task = json.loads(Path(argv[1]).read_text())
    name = task.get("task")
    if name not in tasks:
        raise SystemExit(f"{argv[1]}: unknown task {name!r}; choose from {sorted(tasks)}")
    import mctsff

    result = dict(tasks[name](task))
    result["mctsff_file"] = mctsff.__file__
    Path(argv[2]).write_text(json.dumps(result))
    return 0

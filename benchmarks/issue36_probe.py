"""Rerun issue 36's hostile-user probe through the real command line.

Every case of the issue's "Findings" is run as ``timeout -k 10 120 python -m mctsff.cli ...`` in
its own folder under a scratch directory (tiny searches on the shipped 20 water dimers,
``--workers 1``), and judged by what a user would see:

* ``code executed``: the canary file a payload would create exists afterwards (payloads
  only ``touch`` that file; exported Python modules are imported in a child process in
  the case's folder, which is the attack the issue describes);
* ``hang``: ``timeout`` stopped the command (exit 124, or 137 after its SIGKILL);
* ``traceback``: ``Traceback`` on stderr;
* ``silent wrong`` / ``lost``: the case's own check (a refused input accepted with exit 0,
  a budget not kept, a run folder or file changed that must not be, ...);
* ``ok`` otherwise.

This script writes payloads but never runs them itself: it reads back JSON, exported
text, checkpoints through mctsff's allow-list loader (:func:`mctsff.runio.load_checkpoint`),
the exit status and stderr.  Faults the probe needs root for (a full disk and a read-only
folder, as small tmpfs mounts) are skipped with a note without it.  Every child runs
under an 8 GiB address-space limit so a memory bomb cannot take the machine down.

Usage::

    python benchmarks/issue36_probe.py [--scratch /tmp/issue36_probe] [--only SUBSTRING]
                                       [--markdown results.md]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "mctsff" / "data" / "water_dimers_mp2_sample20.extxyz"
TIMEOUT = 120
#: ``timeout(1)`` sends SIGTERM at TIMEOUT s (a search takes it like Ctrl-C: it stops after
#: the step in progress) and SIGKILL 10 s later
TIMEOUT_CMD = ["timeout", "-k", "10", str(TIMEOUT)]
MEMORY = 8 << 30
PY = sys.executable


# ----------------------------------------------------------------------------- running
@dataclass
class Result:
    rc: int
    out: str
    err: str
    secs: float
    folder: Path
    extra: dict = field(default_factory=dict)

    @property
    def last(self) -> str:
        lines = [ln for ln in self.err.splitlines() if ln.strip()]
        return lines[-1].strip() if lines else ""


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


def cli(*args: str) -> list[str]:
    return [*TIMEOUT_CMD, PY, "-m", "mctsff.cli", *map(str, args)]


def run(cmd: list[str], folder: Path, env: dict | None = None) -> Result:
    t0 = time.monotonic()
    proc = subprocess.run(
        cmd,
        cwd=folder,
        capture_output=True,
        text=True,
        preexec_fn=_limit,
        env={**os.environ, **(env or {})},
        errors="replace",
    )
    return Result(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - t0, folder)


def start(cmd: list[str], folder: Path) -> subprocess.Popen:
    return subprocess.Popen(
        cmd,
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_limit,
        errors="replace",
    )


def finish(proc: subprocess.Popen, folder: Path, t0: float) -> Result:
    out, err = proc.communicate()
    return Result(proc.returncode, out, err, time.monotonic() - t0, folder)


def import_module(path: Path, folder: Path) -> Result:
    """Import a generated module in a child process (the attack: a user imports it)."""
    code = (
        "import importlib.util, sys; s = importlib.util.spec_from_file_location('m', "
        f"{str(path)!r}); m = importlib.util.module_from_spec(s); s.loader.exec_module(m)"
    )
    return run([*TIMEOUT_CMD, PY, "-c", code], folder)


# ----------------------------------------------------------------------------- checks
def read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def refused(*words: str) -> Callable[[Result], tuple[str, str]]:
    """The command must stop with one error line (naming ``words`` when given)."""

    def check(r: Result) -> tuple[str, str]:
        if r.rc == 0:
            return "silent wrong", "accepted (exit 0)"
        low = r.last.lower()
        missing = [w for w in words if w.lower() not in low]
        if missing:
            return "ok", f"refused, but the line does not name {missing}"
        return "ok", "refused in one line"

    return check


def fitted(
    n: object, expected: int, fail: str, ok: str = ""
) -> Callable[[Result], tuple[str, str]]:
    """The command must exit 0 with ``expected`` fits recorded (``n``, from run.json);
    otherwise the verdict ``fail``.  ``ok`` prefixes the fit count in the note."""

    def check(r: Result) -> tuple[str, str]:
        if r.rc == 0 and n == expected:
            return "ok", f"{ok}{n} fits"
        return fail, f"rc {r.rc}, n_evaluations {n} (expected {expected})"

    return check


def accepted(r: Result) -> tuple[str, str]:
    return ("ok", "") if r.rc == 0 else ("silent wrong", f"refused: {r.last}")


# ----------------------------------------------------------------------------- fixtures
PAYLOADS = {
    "comment-newline": 'A/r #"""; __import__("os").system("touch {c}"); """\n',
    "carriage-return": 'A/r #"""; __import__("os").system("touch {c}"); """\r',
    "u2028": 'A/r #"""; __import__("os").system("touch {c}"); """\u2028',
    "formfeed-quote": "A/r\x0c'''; __import__('os').system('touch {c}'); '''",
    "call": '__import__("os").system("touch {c}")',
}
FORMATS = ["python", "openmm", "openmm-xml", "lammps", "lammps-lepton", "ase", "latex", "sympy"]
IMPORTABLE = {"python", "openmm", "ase"}


class Probe:
    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self.results: list[dict] = []
        self.base = scratch / "base"
        self.n = 0
        self.root_mounts = os.geteuid() == 0 and shutil.which("mount") is not None

    def folder(self, name: str) -> Path:
        self.n += 1
        f = self.scratch / f"{self.n:03d}-{name}"
        shutil.rmtree(f, ignore_errors=True)
        f.mkdir(parents=True)
        return f

    def canary(self, folder: Path) -> Path:
        return folder / "PWNED"

    def make_base(self) -> None:
        if not (self.base / "checkpoint.pkl").exists():
            shutil.rmtree(self.base, ignore_errors=True)
            self.scratch.mkdir(parents=True, exist_ok=True)
            r = run(
                cli(
                    "search",
                    DATA,
                    "--budget",
                    10,
                    "--workers",
                    1,
                    "--seed",
                    1,
                    "-q",
                    "--out",
                    "base",
                ),
                self.scratch,
            )
            if r.rc:
                raise SystemExit(f"base run failed: {r.err}")

    def copy_base(self, folder: Path, name: str = "run") -> Path:
        dst = folder / name
        shutil.copytree(self.base, dst, ignore=shutil.ignore_patterns(".mctsff.lock"))
        return dst

    def record(
        self,
        finding: str,
        case: str,
        cmd: list[str] | str,
        r: Result | None,
        check: Callable[[Result], tuple[str, str]] | None = None,
        verdict: str | None = None,
        note: str = "",
    ) -> None:
        if isinstance(cmd, list):
            shown = " ".join(_short(a) for a in cmd[len(TIMEOUT_CMD) :] if a)
            shown = shown.replace(f"{PY} -m mctsff.cli", "mctsff").replace(str(DATA), "DIMERS20")
            shown = shown.replace(str(r.folder) + "/" if r else "\0", "")
        else:
            shown = cmd
        if verdict is None:
            assert r is not None
            if self.canary(r.folder).exists():
                verdict, note = "code executed", note or "canary file created"
            elif r.rc in (124, 137, -9) and r.secs >= TIMEOUT - 1:
                verdict, note = "hang", f"killed after {TIMEOUT} s"
            elif "Traceback" in r.err or "Traceback" in r.out:
                verdict = "traceback"
            elif check is not None:
                verdict, extra = check(r)
                note = "; ".join(x for x in (extra, note) if x)
            else:
                verdict = "ok"
        row = {
            "finding": finding,
            "case": case,
            "command": shown,
            "rc": None if r is None else r.rc,
            "last": "" if r is None else r.last.replace(f"{self.scratch}/", ""),
            "secs": None if r is None else round(r.secs, 1),
            "verdict": verdict,
            "note": note,
        }
        self.results.append(row)
        print(
            f"[{verdict:>13}] {finding} | {case} | rc={row['rc']} | {row['last'][:110]}"
            f" | {note[:120]}",
            flush=True,
        )


def _short(arg: str) -> str:
    arg = str(arg)
    if len(arg) > 70:
        arg = arg[:60] + "..."
    return arg.replace("\n", "\\n").replace("\r", "\\r").replace("|", "\\|")


def edit_front(run_dir: Path, member: int, **fields) -> None:
    front = json.loads((run_dir / "pareto.json").read_text())
    front[member].update(fields)
    (run_dir / "pareto.json").write_text(json.dumps(front))


def edit_run(run_dir: Path, **fields) -> None:
    info = json.loads((run_dir / "run.json").read_text())
    info.update(fields)
    (run_dir / "run.json").write_text(json.dumps(info))


class _Call:
    """A pickle of ``func(*args)`` (a crafted checkpoint)."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


# ----------------------------------------------------------------------------- cases
def code_execution(p: Probe) -> None:
    F = "code execution"
    # (a) payloads in a pareto.json expression, every export format, then import
    for pname, payload in PAYLOADS.items():
        formats = FORMATS if pname == "comment-newline" else ["python", "openmm", "lammps"]
        for fmt in formats:
            f = p.folder(f"expr-{pname}-{fmt}")
            rd = p.copy_base(f)
            edit_front(rd, 0, expression=payload.format(c=p.canary(f)), params={"A": 1.0})
            out = f / ("U.py" if fmt in IMPORTABLE else "U.txt")
            cmd = cli("export", rd, "--index", 0, "--format", fmt, "--out", out)
            r = run(cmd, f)
            note = ""
            if out.exists() and fmt in IMPORTABLE:
                imp = import_module(out, f)
                note = f"module written; import rc={imp.rc}"
            elif out.exists():
                text = out.read_text(errors="replace")
                bad = [ln for ln in text.splitlines() if "system" in ln and not ln.startswith("#")]
                note = "output written" + (
                    f"; payload on a live line: {bad[0][:60]}" if bad else ""
                )
            p.record(
                F,
                f"pareto.json expression payload {pname}, export {fmt} + import",
                cmd,
                r,
                refused("expression"),
                note=note,
            )
    # payloads in other pareto.json / run.json fields the exporters print
    fields = {
        "cutoff_scheme": (
            "front",
            {"cutoff_scheme": "none'\n__import__('os').system('touch {c}')\n#"},
        ),
        "params key": ("front", {"params": {'x"]; __import__("os").system("touch {c}"); #': 1.0}}),
        "species in pareto.json": (
            "front",
            {"species": ["H", "O\n__import__('os').system('touch {c}')"]},
        ),
        "run.json data": ("run", {"data": "x'''\n__import__('os').system('touch {c}')\n'''"}),
        "run.json grammar": (
            "run",
            {"grammar": 'x"""\n__import__(\'os\').system(\'touch {c}\')\n"""'},
        ),
    }
    for label, (where, upd) in fields.items():
        for fmt in ("python", "openmm", "ase"):
            f = p.folder(f"field-{label.replace(' ', '_')}-{fmt}")
            rd = p.copy_base(f)
            upd_c = json.loads(json.dumps(upd).replace("{c}", str(p.canary(f))))
            (edit_front(rd, 0, **upd_c) if where == "front" else edit_run(rd, **upd_c))
            out = f / "U.py"
            cmd = cli("export", rd, "--index", 0, "--format", fmt, "--out", out)
            r = run(cmd, f)
            note = ""
            if out.exists():
                imp = import_module(out, f)
                note = f"module written; import rc={imp.rc}"
            p.record(F, f"payload in {label}, export {fmt} + import", cmd, r, None, note=note)
    # (a') a payload planted through a grammar terminal
    f = p.folder("grammar-terminal")
    c = p.canary(f)
    term = f'A/r #\\"\\"\\"; __import__(\\"os\\").system(\\"touch {c}\\"); \\"\\"\\"\\n'
    (f / "evil.lark").write_text(f'// @variables r\nstart: t\nt: "{term}" -> x\n   | "A/r" -> y\n')
    cmd = cli(
        "search",
        DATA,
        "--grammar",
        "evil.lark",
        "--budget",
        5,
        "--workers",
        1,
        "-q",
        "--out",
        "run",
    )
    r = run(cmd, f)
    note = ""
    if (f / "run" / "pareto.json").exists():
        r2 = run(cli("export", "run", "--format", "python", "--out", "U.py"), f)
        note = f"search wrote a front; export rc={r2.rc}"
        if (f / "U.py").exists():
            note += f"; import rc={import_module(f / 'U.py', f).rc}"
    p.record(
        F,
        "payload in a grammar terminal, search then export python + import",
        cmd,
        r,
        refused(),
        note=note,
    )
    # (b) crafted checkpoints
    crafted = {
        "os.system reduce": lambda c: _Call(os.system, f"touch {c}"),
        "builtins.eval reduce": lambda c: _Call(eval, f"__import__('os').system('touch {c}')"),
        "subprocess reduce": lambda c: _Call(subprocess.call, ["touch", str(c)]),
    }
    for label, make in crafted.items():
        for mode in ("export fallback", "resume"):
            f = p.folder(f"ckpt-{label.split()[0]}-{mode.split()[0]}")
            rd = p.copy_base(f)
            (rd / "checkpoint.pkl").write_bytes(pickle.dumps({"x": make(p.canary(f))}))
            if mode == "export fallback":
                (rd / "pareto.json").unlink()
                cmd = cli("export", rd, "--format", "python", "--out", f / "U.py")
            else:
                cmd = cli("search", DATA, "--resume", "--out", rd, "--budget", 12, "-q", *SEED1)
            p.record(F, f"crafted checkpoint.pkl ({label}), {mode}", cmd, run(cmd, f), refused())
    # allowed classes misused: a Program built directly (no parsing) with a payload
    # expression, a FitResult carrying one, a Grammar built from 3.5 MB of text
    from mctsff.expr.grammar import Grammar
    from mctsff.expr.program import Program
    from mctsff.fit.result import FitResult

    def _prog(c):
        return _Call(
            Program,
            f'A/r #"""; __import__("os").system("touch {c}"); """\n',
            ("r",),
            None,
            None,
            ("A",),
            3,
            1,
            frozenset(),
            frozenset(),
            None,
        )

    def _fitres(c):
        import dataclasses

        fr = object.__new__(FitResult)
        for fld in dataclasses.fields(FitResult):
            object.__setattr__(fr, fld.name, None)
        values = {
            "expression": f'A/r #"""\n__import__("os").system("touch {c}")\n"""',
            "params": {"A": 1.0},
            "valid": True,
        }
        for k, v in values.items():
            object.__setattr__(fr, k, v)
        return fr

    def _point(c):
        return {
            "expression": f'A/r #"""\n__import__("os").system("touch {c}")\n"""',
            "params": {"A": 1.0},
            "valid": True,
            "complexity": 3,
            "species": ["H", "O"],
            "cutoff": 9.0,
            "cutoff_scheme": "none",
        }

    def _huge_grammar(c):
        rules = "\n".join(f'    | "c{i}*r"' for i in range(200_000))
        return _Call(Grammar, f'// @variables r\nstart: t\nt: "c0/r"\n{rules}\n')

    for label, make in (
        ("Program(payload)", _prog),
        ("FitResult(payload)", _fitres),
        ("front point dict(payload)", _point),
        ("Grammar(3.5 MB text)", _huge_grammar),
    ):
        for mode in ("export fallback", "resume"):
            f = p.folder(f"ckpt-allowed-{mode.split()[0]}")
            rd = p.copy_base(f)
            state = read_checkpoint_keys(rd)
            try:
                blob = pickle.dumps(
                    {**state, "front": [make(p.canary(f))], "grammar": make(p.canary(f))}
                )
            except Exception as exc:  # noqa: BLE001
                p.record(
                    F,
                    f"checkpoint with {label}, {mode}",
                    "(not built)",
                    None,
                    verdict="n/a",
                    note=f"could not build: {exc}",
                )
                continue
            (rd / "checkpoint.pkl").write_bytes(blob)
            if mode == "export fallback":
                (rd / "pareto.json").unlink()
                cmd = cli("export", rd, "--format", "python", "--out", f / "U.py")
            else:
                cmd = cli("search", DATA, "--resume", "--out", rd, "--budget", 12, "-q", *SEED1)
            r = run(cmd, f)
            note = ""
            if (f / "U.py").exists():
                note = f"module written; import rc={import_module(f / 'U.py', f).rc}"
            p.record(F, f"checkpoint with {label}, {mode}", cmd, r, refused(), note=note)
    # (c) species names into LAMMPS / LaTeX / OpenMM XML / ASE
    species = {
        "shell": "O\nshell touch {c}",
        "write18": "\\write18{{touch {c}}}",
        "xml": 'O"/><Script>touch {c}</Script><x a="',
    }
    for label, sp in species.items():
        for fmt in ("lammps", "latex", "openmm-xml", "ase", "openmm"):
            f = p.folder(f"species-{label}-{fmt}")
            rd = p.copy_base(f)
            name = sp.format(c=p.canary(f))
            info = json.loads((rd / "run.json").read_text())
            info["species"] = ["H", name]
            (rd / "run.json").write_text(json.dumps(info))
            front = json.loads((rd / "pareto.json").read_text())
            for m in front:
                m["species"] = ["H", name]
                m["params"] = {k.replace("[O]", f"[{name}]"): v for k, v in m["params"].items()}
            (rd / "pareto.json").write_text(json.dumps(front))
            out = f / ("U.py" if fmt in IMPORTABLE else "out.txt")
            cmd = cli("export", rd, "--index", 0, "--format", fmt, "--out", out)
            r = run(cmd, f)
            note = ""
            if out.exists():
                text = out.read_text(errors="replace")
                live = [
                    ln for ln in text.splitlines() if ln.lstrip().startswith(("shell", "\\write18"))
                ]
                note = "output written" + (f"; live line {live[0][:50]!r}" if live else "")
                if fmt in IMPORTABLE:
                    note += f"; import rc={import_module(out, f).rc}"
            p.record(
                F,
                f"species {label!r} in run.json/pareto.json, export {fmt}",
                cmd,
                r,
                refused("species"),
                note=note,
            )
    for label, sp in species.items():
        f = p.folder(f"species-opt-{label}")
        rd = p.copy_base(f)
        cmd = cli(
            "export",
            rd,
            "--format",
            "lammps",
            "--species",
            "H",
            sp.format(c=p.canary(f)),
            "--out",
            f / "t.table",
        )
        p.record(
            F,
            f"--species {label!r} on the command line, export lammps",
            cmd,
            run(cmd, f),
            refused("species"),
        )
    # (d) the Dask trust model is documented
    r = run(cli("search", "--help"), p.scratch)
    doc = (ROOT / "docs" / "cluster.md").read_text()
    ok = "pickle" in r.out and "pickle" in doc
    p.record(
        F,
        "--scheduler: Dask pickles documented (--help, docs/cluster.md)",
        "mctsff search --help; docs/cluster.md",
        r,
        verdict="ok" if ok else "silent wrong",
        note="both mention pickles" if ok else "not documented",
    )


def read_checkpoint_keys(rd: Path) -> dict:
    from mctsff.runio import load_checkpoint

    try:
        state = load_checkpoint(rd / "checkpoint.pkl")
    except Exception:  # noqa: BLE001
        return {}
    return {k: v for k, v in state.items() if k not in ("front", "grammar")}


def lost_work(p: Probe) -> None:
    F = "lost work"
    # overwrite an existing run folder, named and the default ./run
    for label, out in (("--out run (existing)", "run"), ("default --out (./run exists)", None)):
        f = p.folder("overwrite")
        rd = p.copy_base(f)
        before = (rd / "pareto.json").read_bytes()
        args = ["search", DATA, "--budget", 5, "--workers", 1, "-q"]
        cmd = cli(*args, *(["--out", out] if out else []))
        r = run(cmd, f)

        def check(r: Result, rd=rd, before=before):
            if (rd / "pareto.json").read_bytes() != before:
                return "lost", "the earlier run's pareto.json was replaced"
            return refused("exist")(r)

        p.record(F, f"new search into {label}", cmd, r, check)
    f = p.folder("overwrite-flag")
    rd = p.copy_base(f)
    cmd = cli("search", DATA, "--budget", 5, "--workers", 1, "-q", "--out", rd, "--overwrite")
    r = run(cmd, f)
    n = (read_json(rd / "run.json") or {}).get("n_evaluations")
    p.record(
        F,
        "--overwrite replaces the run on purpose",
        cmd,
        r,
        fitted(n, 5, "silent wrong", "new run with "),
    )
    # two searches on one folder
    f = p.folder("concurrent")
    t0 = time.monotonic()
    a = start(
        cli("search", DATA, "--budget", 40, "--workers", 1, "-q", "--out", "run", "--seed", 2), f
    )
    while not (f / "run" / ".mctsff.lock").exists() and a.poll() is None:
        time.sleep(0.2)
    time.sleep(2)
    cmd_b = cli("search", DATA, "--budget", 10, "--workers", 1, "-q", "--out", "run", "--seed", 3)
    rb = run(cmd_b, f)
    ra = finish(a, f, t0)
    na = (read_json(f / "run" / "run.json") or {}).get("n_evaluations")
    p.record(F, "second search on a folder in use (the second)", cmd_b, rb, refused("lock"))
    p.record(
        F,
        "second search on a folder in use (the first completes)",
        "mctsff search DIMERS20 --budget 40 --out run (running)",
        ra,
        fitted(na, 40, "lost", "first run complete, "),
    )
    f = p.folder("concurrent-resume")
    rd = p.copy_base(f)
    t0 = time.monotonic()
    a = start(cli("search", DATA, "--resume", "--budget", 40, "-q", "--out", "run", *SEED1), f)
    time.sleep(6)
    cmd_b = cli("search", DATA, "--resume", "--budget", 30, "-q", "--out", "run", *SEED1)
    rb = run(cmd_b, f)
    ra = finish(a, f, t0)
    na = (read_json(rd / "run.json") or {}).get("n_evaluations")
    p.record(F, "two --resume on one folder (the second)", cmd_b, rb, refused("lock"))
    p.record(
        F,
        "two --resume on one folder (the first completes)",
        "mctsff search --resume --budget 40 --out run (running)",
        ra,
        fitted(na, 40, "lost"),
    )
    # planted symlinks
    tmp_names = (
        "run.json.tmp",
        "pareto.json.tmp",
        "checkpoint.pkl.tmp",
        "pareto.csv.tmp",
        "pareto.png.tmp",
        "potentials.png.tmp",
    )
    for label, names in (("*.tmp", tmp_names), (".mctsff.lock", (".mctsff.lock",))):
        f = p.folder("symlinks")
        rd = p.copy_base(f)
        victims = {}
        for name in names:
            v = f / f"victim-{name}"
            v.write_text("precious\n")
            victims[v] = v.read_bytes()
            os.symlink(v, rd / name)
        cmd = cli("search", DATA, "--resume", "--budget", 14, "-q", "--out", rd, *SEED1)
        r = run(cmd, f)
        changed = [v.name for v, b in victims.items() if not v.exists() or v.read_bytes() != b]
        n = (read_json(rd / "run.json") or {}).get("n_evaluations")
        p.record(
            F,
            f"planted {label} symlinks to other files, --resume",
            cmd,
            r,
            lambda r, changed=changed, n=n: (
                ("lost", f"changed: {changed}")
                if changed
                else (
                    "ok",
                    f"victims intact, resumed to {n} fits"
                    if r.rc == 0
                    else "victims intact, refused",
                )
            ),
        )
    f = p.folder("symlinks-outputs")
    rd = p.copy_base(f)
    victims = {}
    for name in ("pareto.png", "potentials.png", "pareto.csv", "run.json", "pareto.json"):
        v = f / f"victim-{name}"
        v.write_bytes((rd / name).read_bytes())
        (rd / name).unlink()
        os.symlink(v, rd / name)
        victims[v] = v.read_bytes()
    cmd = cli("search", DATA, "--resume", "--budget", 14, "-q", "--out", rd, *SEED1)
    r = run(cmd, f)
    changed = [v.name for v, b in victims.items() if v.read_bytes() != b]
    p.record(
        F,
        "run files replaced by symlinks to other files, --resume",
        cmd,
        r,
        lambda r: ("lost", f"written through: {changed}") if changed else ("ok", "targets intact"),
    )
    f = p.folder("symlink-out")
    (f / "elsewhere").mkdir()
    os.symlink(f / "elsewhere", f / "run")
    cmd = cli("search", DATA, "--budget", 5, "-q", "--out", "run")
    r = run(cmd, f)
    p.record(
        F,
        "--out is a symlink to an empty folder",
        cmd,
        r,
        None,
        note=f"files in target: {sorted(x.name for x in (f / 'elsewhere').iterdir())}",
    )
    # read-only and full file systems (tmpfs, root only)
    readonly_and_full(p)
    # signals
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGKILL):
        f = p.folder(f"signal-{sig.name}")
        t0 = time.monotonic()
        cmd = cli("search", DATA, "--budget", 5000, "--workers", 1, "-q", "--out", "run")
        a = start(cmd, f)
        if sig == signal.SIGKILL:  # after the first periodic checkpoint (30 s)
            while not (f / "run" / "checkpoint.pkl").exists() and a.poll() is None:
                time.sleep(0.5)
            time.sleep(3)
            _kill_children(a.pid)  # the search itself, not timeout(1)
        else:
            time.sleep(14)
            a.send_signal(sig)  # timeout(1) passes it on
        r = finish(a, f, t0)
        files = sorted(x.name for x in (f / "run").iterdir()) if (f / "run").exists() else []
        before = _checkpoint_fits(f / "run")
        rr = run(
            cli("search", DATA, "--resume", "--budget", (before or 0) + 10, "-q", "--out", "run"), f
        )
        n = (read_json(f / "run" / "run.json") or {}).get("n_evaluations")

        def check(r, files=files, rr=rr, n=n, before=before):
            if "checkpoint.pkl" not in files:
                return "lost", f"nothing written ({files})"
            if rr.rc != 0 or before is None or n != before + 10:
                return "lost", f"resume rc {rr.rc} ({rr.last[:80]}), {before} -> {n} fits"
            return "ok", f"wrote {files}; {before} fits kept, resumed to {n}"

        p.record(F, f"{sig.name} during a search, then --resume", cmd, r, check)


SEED1 = ("--seed", "1")  # the base run's seed (a resume must keep it)


def _checkpoint_fits(run_dir: Path) -> int | None:
    """Fits saved in a run's checkpoint (read with mctsff's allow-list unpickler)."""
    from mctsff.runio import load_checkpoint

    try:
        state = load_checkpoint(run_dir / "checkpoint.pkl")
        return int(state[state["method"]]["n_evaluations"])
    except Exception:  # noqa: BLE001
        return None


def _kill_children(pid: int) -> None:
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return
    for k in kids:
        os.kill(int(k), signal.SIGKILL)


def readonly_and_full(p: Probe) -> None:
    F = "lost work"
    if not p.root_mounts:
        p.record(
            F,
            "read-only --out, disk full",
            "(skipped)",
            None,
            verdict="skipped",
            note="needs root for tmpfs mounts",
        )
        return
    f = p.folder("readonly")
    mnt = f / "ro"
    mnt.mkdir()
    p.copy_base(mnt, "run")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)]).returncode:
        p.record(F, "read-only --out", "(skipped)", None, verdict="skipped", note="mount failed")
        return
    try:
        shutil.copytree(p.base, mnt / "run", ignore=shutil.ignore_patterns(".mctsff.lock"))
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        for label, args in (
            ("new run in a read-only folder", ["--out", mnt / "new", "--budget", 5]),
            (
                "--resume of a run on a read-only file system",
                ["--out", mnt / "run", "--resume", "--budget", 12, *SEED1],
            ),
        ):
            cmd = cli("search", DATA, "-q", "--workers", 1, *args)
            r = run(cmd, f)
            p.record(
                F,
                label,
                cmd,
                r,
                lambda r: (
                    refused("read-only")(r)
                    if r.secs < 30
                    else ("lost", f"refused after {r.secs:.0f} s (after the search)")
                ),
            )
        cmd = cli("export", mnt / "run", "--format", "python", "--out", mnt / "U.py")
        p.record(F, "export --out on a read-only file system", cmd, run(cmd, f), refused())
    finally:
        subprocess.run(["umount", str(mnt)])
    for size in ("16k", "48k", "120k", "400k"):
        f = p.folder(f"full-{size}")
        mnt = f / "disk"
        mnt.mkdir()
        if subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)]
        ).returncode:
            continue
        try:
            cmd = cli(
                "search",
                DATA,
                "--budget",
                10,
                "--workers",
                1,
                "-q",
                "--seed",
                1,
                "--out",
                mnt / "run",
            )
            r = run(cmd, f)
            files = (
                sorted(x.name for x in (mnt / "run").iterdir()) if (mnt / "run").exists() else []
            )
            printed = "cplx" in r.out

            def check(r, files=files, printed=printed):
                if r.rc == 0:
                    return "ok", f"fits; files {files}"
                say = "no space" in r.last.lower() or "full" in r.last.lower()
                note = f"files {files}; front printed: {printed}"
                if not say:
                    return "silent wrong", "error line does not say the disk is full; " + note
                return ("ok" if printed or "checkpoint.pkl" not in files else "lost"), note

            p.record(F, f"disk full (tmpfs {size}) during a search", cmd, r, check)
        finally:
            subprocess.run(["umount", str(mnt)])


def silent_wrong(p: Probe) -> None:
    F = "silent wrong"
    # resume with changed data behind the same path / same data under another path
    f = p.folder("resume-data")
    shutil.copy(DATA, f / "data.extxyz")
    r0 = run(cli("search", "data.extxyz", "--budget", 8, "-q", "--out", "run"), f)
    text = (f / "data.extxyz").read_text().splitlines()
    text[2] = text[2].replace("0.06769778", "0.96769778")  # one force component changed
    (f / "data2.extxyz").write_text("\n".join(text) + "\n")
    shutil.copy(DATA, f / "copy.extxyz")
    shutil.copy(f / "data2.extxyz", f / "data.extxyz")
    cmd = cli("search", "data.extxyz", "--resume", "--budget", 12, "-q", "--out", "run")
    p.record(
        F,
        "resume with changed data behind the same path",
        cmd,
        run(cmd, f),
        refused("data"),
        note="" if r0.rc == 0 else f"first run failed: {r0.last}",
    )
    cmd = cli("search", "copy.extxyz", "--resume", "--budget", 12, "-q", "--out", "run")
    p.record(F, "resume with the same data under another path", cmd, run(cmd, f), accepted)
    cmd = cli("search", DATA, "--resume", "--budget", 14, "-q", "--out", "run", "--cutoff", 6)
    p.record(F, "resume with another --cutoff", cmd, run(cmd, f), refused("cutoff"))
    cmd = cli("search", DATA, "--resume", "--budget", 14, "-q", "--out", "run", "--grammar", "lj")
    p.record(F, "resume with another --grammar", cmd, run(cmd, f), refused("grammar"))
    # grammar variables vs data
    f = p.folder("csv-column")
    (f / "t.csv").write_text("t,y\n" + "".join(f"{i / 10},{(i / 10) ** 2}\n" for i in range(1, 21)))
    cmd = cli(
        "search",
        "t.csv",
        "--objective",
        "regression",
        "--grammar",
        "nguyen_c",
        "--budget",
        5,
        "-q",
        "--out",
        "run",
    )
    p.record(
        F, "regression CSV whose column is t, grammar variable x", cmd, run(cmd, f), refused("x")
    )
    (f / "xy.csv").write_text(
        "x,y\n" + "".join(f"{i / 10},{(i / 10) ** 2}\n" for i in range(1, 21))
    )
    cmd = cli(
        "search",
        "xy.csv",
        "--objective",
        "regression",
        "--grammar",
        "nguyen2",
        "--budget",
        5,
        "-q",
        "--out",
        "run2",
    )
    p.record(F, "regression CSV with x only, two-variable grammar", cmd, run(cmd, f), refused())
    cmd = cli(
        "search",
        "xy.csv",
        "--objective",
        "regression",
        "--grammar",
        "nguyen",
        "--target",
        "z",
        "--budget",
        5,
        "-q",
        "--out",
        "run3",
    )
    p.record(F, "regression --target z missing from the CSV", cmd, run(cmd, f), refused("z"))
    f = p.folder("forces-regression-grammar")
    cmd = cli("search", DATA, "--grammar", "nguyen", "--budget", 5, "-q", "--out", "run")
    p.record(F, "forces data with a regression grammar (nguyen)", cmd, run(cmd, f), refused())
    (f / "xy.csv").write_text("x,y\n1,2\n2,3\n3,4\n")
    cmd = cli("search", "xy.csv", "--grammar", "pair", "--budget", 5, "-q", "--out", "run2")
    p.record(F, "CSV given to a forces search", cmd, run(cmd, f), refused())
    # budget
    for budget in (1, 7, 20, 60):
        f = p.folder(f"budget-{budget}")
        cmd = cli("search", DATA, "--budget", budget, "--workers", 1, "-q", "--out", "run")
        r = run(cmd, f)
        n = (read_json(f / "run" / "run.json") or {}).get("n_evaluations")
        p.record(
            F,
            f"--budget {budget}",
            cmd,
            r,
            fitted(n, budget, "silent wrong"),
        )
    for budget in (0, -1):
        f = p.folder("budget-bad")
        cmd = cli("search", DATA, "--budget", budget, "-q", "--out", "run")
        p.record(F, f"--budget {budget}", cmd, run(cmd, f), refused("budget"))
    # numeric options
    fit = ["fit", DATA, "--expr", "prod_q/r + A*exp(-r/b) - C/r**6"]
    srch = ["search", DATA, "--budget", 5, "-q", "--out", "run"]
    bad = [
        ("--bound", "b=5:1", "bound"),
        ("--bound", "zzz=0:1", "zzz"),
        ("--bound", "b=nan:1", "bound"),
        ("--bound", "b=1", "bound"),
        ("--init", "zzz=1", "zzz"),
        ("--init", "b=nan", "init"),
        ("--init", "b=inf", "init"),
        ("--energy-weight", "nan", "energy-weight"),
        ("--energy-weight", "-1", "energy-weight"),
        ("--cutoff", "nan", "cutoff"),
        ("--cutoff", "-3", "cutoff"),
        ("--wall", "nan", "wall"),
        ("--wall", "-1", "wall"),
        ("--valid-fraction", "1.5", "valid-fraction"),
        ("--test-fraction", "nan", "test-fraction"),
        ("--starts", "0", "starts"),
        ("--projection", "nan", "projection"),
        ("--projection", "-0.1", "projection"),
        ("--chunk-frames", "0", "chunk-frames"),
    ]
    for opt, val, word in bad:
        for label, base in (("fit", fit), ("search", srch)):
            if opt == "--energy-weight":
                base = [*base, "--energy", "E_inter"]
            f = p.folder(f"opt-{label}")
            cmd = cli(*base, opt, val)
            p.record(F, f"{label} {opt} {val}", cmd, run(cmd, f), refused(word))
    search_only = [
        ("--time", "nan", "time"),
        ("--time", "-5", "time"),
        ("--time", "0", "time"),
        ("--time", "inf", "time"),
        ("--fit-timeout", "nan", "fit-timeout"),
        ("--fit-timeout", "-1", "fit-timeout"),
        ("--workers", "-1", "workers"),
        ("--rollouts", "0", "rollouts"),
        ("--leaves", "0", "leaves"),
        ("--pipeline", "-1", "pipeline"),
        ("--elite", "2", "elite"),
        ("--elite", "nan", "elite"),
        ("--novelty", "0", "novelty"),
        ("--local-option", "max_share=nan", "max_share"),
        ("--local-option", "zzz=1", "zzz"),
        ("--md-rerank", "-1", "md-rerank"),
        ("--md-option", "zzz=1", "zzz"),
        ("--reference", "x=__import__('os').system('touch PWNED')", "reference"),
        ("--reference-model", "zzz", "zzz"),
        ("--split-seed", "-1", "split-seed"),
        ("--seed", "-1", "seed"),
        ("--max-length", "-1", "max-length"),
    ]
    for opt, val, word in search_only:
        f = p.folder("opt-search")
        cmd = cli(*srch, opt, val)
        r = run(cmd, f)
        if opt == "--reference":
            r.extra = {}
        p.record(F, f"search {opt} {val}", cmd, r, refused(word))
    # --fit-timeout with one worker
    f = p.folder("fit-timeout")
    cmd = cli(
        "search",
        DATA,
        "--budget",
        6,
        "--workers",
        1,
        "--fit-timeout",
        "0.001",
        "--out",
        "run",
        "-q",
    )
    r = run(cmd, f)
    front = read_json(f / "run" / "pareto.json") or []
    info = read_json(f / "run" / "run.json") or {}
    p.record(
        F,
        "--fit-timeout 0.001 with one worker",
        cmd,
        r,
        lambda r: (
            (
                "ok",
                f"front {len(front)} members; {_last_line(r.out)}",
            )
            if not front
            else ("silent wrong", f"{len(front)} members fitted despite the timeout")
        ),
        note=f"n_evaluations {info.get('n_evaluations')}",
    )
    # export name collisions and sqrt
    f = p.folder("export-names")
    rd = p.copy_base(f)
    expr = (
        "c*exp(-r) + c_/r + np*sqrt(r) + U/r**2 + CONSTANTS*erfc(r) + pair_x/r**6"
        " + float*r**2*exp(-r)"
    )
    params = {"c": 2.0, "c_": 3.0, "np": 5.0, "U": 7.0, "CONSTANTS": 11.0, "float": 17.0}
    params.update({"pair_x[H-H]": 13.0, "pair_x[H-O]": 13.0, "pair_x[O-O]": 13.0})
    edit_front(
        rd, 0, expression=expr, params=params, cutoff_scheme="none", constraints={}, flags=[]
    )
    cmd = cli(
        "export", rd, "--index", 0, "--format", "python", "--out", f / "U.py", "--allow-no-wall"
    )
    r = run(cmd, f)
    rr = 2.0

    def u(x: float) -> float:
        return (
            2 * math.exp(-x)
            + 3 / x
            + 5 * math.sqrt(x)
            + 7 / x**2
            + 11 * math.erfc(x)
            + 13 / x**6
            + 17 * x**2 * math.exp(-x)
        )

    rc, h = 9.0, 1e-5  # the run's cutoff and scheme (run.json: shifted-force)
    want = u(rr) - u(rc) - (rr - rc) * (u(rc + h) - u(rc - h)) / (2 * h)
    got = None
    if (f / "U.py").exists():
        g = run(
            [
                *TIMEOUT_CMD,
                PY,
                "-c",
                "import importlib.util as u; s = u.spec_from_file_location('m', 'U.py'); "
                "m = u.module_from_spec(s); s.loader.exec_module(m); "
                "print(float(m.U(2.0, ('H', 'O'))))",
            ],
            f,
        )
        got = g.out.strip() or g.last
    p.record(
        F,
        "export python: constants c, c_, np, U, CONSTANTS, float; sqrt, erfc",
        cmd,
        r,
        lambda r: (
            ("ok", f"U(2) = {got}, expected {want:.6g}")
            if got and _close(got, want)
            else ("silent wrong", f"U(2) = {got}, expected {want:.6g}")
        ),
    )
    # units
    f = p.folder("units")
    lines = DATA.read_text().splitlines()
    kcal, nm = [], []
    i = 0
    while i < len(lines):
        n = int(lines[i])
        kcal += lines[i : i + 2]
        nm += lines[i : i + 2]
        for ln in lines[i + 2 : i + 2 + n]:
            w = ln.split()
            kw = w[:5] + [f"{float(x) * 23.0605:.8f}" for x in w[5:8]] + w[8:]
            nw = [w[0]] + [f"{float(x) / 10:.8f}" for x in w[1:4]] + w[4:]
            kcal.append(" ".join(kw))
            nm.append(" ".join(nw))
        i += 2 + n
    (f / "kcal.extxyz").write_text("\n".join(kcal) + "\n")
    (f / "nm.extxyz").write_text("\n".join(nm) + "\n")
    for label, name, word in (
        ("forces in kcal/mol/Å", "kcal.extxyz", "kcal"),
        ("positions in nm", "nm.extxyz", "nm"),
    ):
        cmd = cli("search", name, "--budget", 5, "-q", "--out", f"run-{word}")
        r = run(cmd, f)
        warned = [ln for ln in r.err.splitlines() if word in ln]
        p.record(
            F,
            label,
            cmd,
            r,
            lambda r, w=warned: (
                ("ok", f"warned: {w[0][:100]}")
                if w
                else ("silent wrong", "fitted without a unit warning")
            ),
        )


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1][:80] if lines else ""


def _close(text: str, want: float) -> bool:
    try:
        return abs(float(text) - want) <= 1e-6 * max(1.0, abs(want))
    except ValueError:
        return False


def hangs(p: Probe) -> None:
    F = "hangs"
    for size, n in (("82 kB", 3_300), ("3.5 MB", 140_000)):
        f = p.folder("big-grammar")
        rules = "\n".join(f'  | "c{i}*exp(-r/b{i})"' for i in range(n))
        (f / "big.lark").write_text(f'// @variables r\nstart: t\nt: "c0/r"\n{rules}\n')
        cmd = cli("search", DATA, "--grammar", "big.lark", "--budget", 5, "-q", "--out", "run")
        r = run(cmd, f)
        p.record(
            F,
            f"a {size} grammar ({(f / 'big.lark').stat().st_size} bytes)",
            cmd,
            r,
            lambda r: ("ok", f"{'ran' if r.rc == 0 else 'refused'} in {r.secs:.0f} s"),
        )
    f = p.folder("workers")
    cmd = cli("search", DATA, "--budget", 5, "--workers", 1000, "-q", "--out", "run")
    r = run(cmd, f)
    p.record(
        F,
        "--workers 1000",
        cmd,
        r,
        lambda r: (
            ("ok", f"capped: {r.err.strip().splitlines()[0][:100]}")
            if "core" in r.err
            else ("silent wrong", "no note about the cap")
        ),
    )
    for opt, val in (("--rollouts", "1000000"), ("--novelty", "10000000")):
        for extra in (["--time", "5"], ["--budget", "5"]):
            f = p.folder("runaway")
            cmd = cli("search", DATA, opt, val, *extra, "-q", "--out", "run")
            if "--budget" not in extra:
                cmd += ["--budget", "100000"]
            r = run(cmd, f)
            p.record(
                F,
                f"{opt} {val} {' '.join(extra)}",
                cmd,
                r,
                lambda r: (
                    ("ok", f"ended in {r.secs:.0f} s (including ~6 s start-up)")
                    if r.secs < 60
                    else ("hang", f"{r.secs:.0f} s")
                ),
            )
    for h in ("1e-4", "1e-7"):
        f = p.folder("projection")
        cmd = cli("search", DATA, "--projection", h, "--budget", 5, "-q", "--out", "run")
        r = run(cmd, f)
        p.record(
            F,
            f"--projection {h}",
            cmd,
            r,
            lambda r: ("ok", f"{'ran' if r.rc == 0 else 'refused'} in {r.secs:.0f} s"),
        )


def tracebacks(p: Probe) -> None:
    F = "tracebacks"
    good = pickle.dumps([1, 2, 3])
    ckpt = (p.base / "checkpoint.pkl").read_bytes()
    damaged = {
        "truncated": ckpt[: len(ckpt) // 2],
        "empty": b"",
        "garbage": os.urandom(4096),
        "wrong type (a list)": good,
        "a dict of wrong values": pickle.dumps({"front": 5, "grammar": "x", "engine": [1]}),
        "an empty dict": pickle.dumps({}),
        "a text file": b"hello\n",
        "a folder": None,
    }
    for label, blob in damaged.items():
        for mode in ("export fallback", "resume"):
            f = p.folder("ckpt-damaged")
            rd = p.copy_base(f)
            (rd / "checkpoint.pkl").unlink()
            if blob is None:
                (rd / "checkpoint.pkl").mkdir()
            else:
                (rd / "checkpoint.pkl").write_bytes(blob)
            if mode == "export fallback":
                (rd / "pareto.json").unlink()
                cmd = cli("export", rd, "--format", "python")
            else:
                cmd = cli("search", DATA, "--resume", "--budget", 12, "-q", "--out", rd, *SEED1)
            p.record(F, f"checkpoint {label}, {mode}", cmd, run(cmd, f), refused("checkpoint"))
    # checkpoints that unpickle (the allow-list admits containers) but hold parts of the
    # wrong type
    from mctsff.runio import load_checkpoint

    parts = [
        (("mcts", "n_evaluations"), "x"),
        (("mcts", "grammar"), "pair"),
        (("mcts", "_inflight"), [1]),
        (("mcts", "_cache"), 5),
        (("front",), [5]),
        (("front",), [{"zzz": 1}]),
        (("local_options",), 5),
        (("local_pending",), 5),
    ]
    for (*path, key), value in parts:
        f = p.folder("ckpt-parts")
        rd = p.copy_base(f)
        state = load_checkpoint(rd / "checkpoint.pkl")
        holder = state
        for part in path:
            holder = holder[part]
        holder[key] = value
        (rd / "checkpoint.pkl").write_bytes(pickle.dumps(state))
        cmd = cli("search", DATA, "--resume", "--budget", 12, "-q", "--out", rd, *SEED1)
        label = f"checkpoint with {'.'.join([*path, key])} = {value!r}, resume"
        p.record(F, label, cmd, run(cmd, f), refused("checkpoint"))
    f = p.folder("binary-inputs")
    (f / "bin.csv").write_bytes(os.urandom(3000))
    (f / "bin.lark").write_bytes(os.urandom(3000))
    (f / "bin.extxyz").write_bytes(os.urandom(3000))
    (f / "utf16.csv").write_text("x,y\n1,2\n2,3\n", encoding="utf-16")
    (f / "empty.extxyz").write_text("")
    (f / "nanforces.extxyz").write_text(DATA.read_text().replace("0.06769778", "nan", 1))
    (f / "dir.extxyz").mkdir()
    for label, args in (
        ("binary CSV", ["bin.csv", "--objective", "regression", "--grammar", "nguyen"]),
        ("UTF-16 CSV", ["utf16.csv", "--objective", "regression", "--grammar", "nguyen"]),
        ("binary grammar", [DATA, "--grammar", "bin.lark"]),
        ("binary extxyz", ["bin.extxyz"]),
        ("empty extxyz", ["empty.extxyz"]),
        ("extxyz with a nan force", ["nanforces.extxyz"]),
        ("data is a folder", ["dir.extxyz"]),
        ("missing data file", ["nope.extxyz"]),
        ("missing grammar file", [DATA, "--grammar", "nope.lark"]),
    ):
        cmd = cli("search", *args, "--budget", 5, "-q", "--out", f"run-{p.n}-{len(label)}")
        p.record(F, label, cmd, run(cmd, f), refused())
    malformed = {
        "pareto.json not JSON": ("pareto.json", b"{not json"),
        "pareto.json binary": ("pareto.json", os.urandom(500)),
        "pareto.json a number": ("pareto.json", b"5"),
        "pareto.json a list of numbers": ("pareto.json", b"[1, 2]"),
        "pareto.json empty list": ("pareto.json", b"[]"),
        "pareto.json member without expression": ("pareto.json", b'[{"params": {}}]'),
        "pareto.json params a list": (
            "pareto.json",
            b'[{"expression": "A/r", "params": [1], "complexity": 3}]',
        ),
        "pareto.json param a string": (
            "pareto.json",
            b'[{"expression": "A/r", "params": {"A": "x"}}]',
        ),
        "pareto.json param 1e999": (
            "pareto.json",
            b'[{"expression": "A/r", "params": {"A": 1e999}}]',
        ),
        "pareto.json param missing": (
            "pareto.json",
            b'[{"expression": "A/r + B/r**6", "params": {"A": 1}}]',
        ),
        "pareto.json 1 MB expression": (
            "pareto.json",
            json.dumps(
                [{"expression": "+".join(["A/r"] * 250_000), "params": {"A": 1.0}}]
            ).encode(),
        ),
        "pareto.json deep nesting": (
            "pareto.json",
            json.dumps(
                [{"expression": "(" * 5000 + "A/r" + ")" * 5000, "params": {"A": 1.0}}]
            ).encode(),
        ),
        "pareto.json nested JSON": ("pareto.json", b"[" * 100000 + b"]" * 100000),
        "run.json not JSON": ("run.json", b"{"),
        "run.json a list": ("run.json", b"[]"),
        "run.json species a number": ("run.json", b'{"species": 5, "cutoff": 9}'),
        "run.json cutoff a string": ("run.json", b'{"cutoff": "abc"}'),
        "run.json cutoff -1": ("run.json", b'{"cutoff": -1}'),
        "run.json wall_shortest garbage": ("run.json", b'{"wall_shortest": "x"}'),
    }
    for label, (name, blob) in malformed.items():
        for fmt in ("python", "lammps"):
            f = p.folder("malformed")
            rd = p.copy_base(f)
            (rd / name).write_bytes(blob)
            cmd = cli("export", rd, "--format", fmt, "--out", f / "out.txt")
            r = run(cmd, f)
            p.record(F, f"{label}, export {fmt}", cmd, r, refused())
    # grammar / search parameters
    f = p.folder("grammar-params")
    (f / "long.lark").write_text(
        '// @variables r\nstart: a\na: b "+" b\nb: c "+" c\nc: d "+" d\nd: "A/r" | "B*exp(-r/C)"\n'
    )
    for label, args, word in (
        ("--max-length 0", ["--max-length", 0], "max-length"),
        ("--max-length 1 (pair: shortest derivation 5)", ["--max-length", 1], "max-length"),
        (
            "grammar whose shortest derivation exceeds --max-length 4",
            ["--grammar", "long.lark", "--max-length", 4],
            "max-length",
        ),
        ("--eta 0", ["--eta", 0], "eta"),
        ("--eta nan", ["--eta", "nan"], "eta"),
        ("--eta -1", ["--eta", -1], "eta"),
        ("--eta 2", ["--eta", 2], "eta"),
        ("--exploration -5", ["--exploration", -5], "exploration"),
        ("--exploration nan", ["--exploration", "nan"], "exploration"),
        ("--method gp --max-length 1", ["--method", "gp", "--max-length", 1], "max-length"),
    ):
        cmd = cli("search", DATA, *args, "--budget", 5, "-q", "--out", f"run{p.n}-{len(label)}")
        p.record(F, label, cmd, run(cmd, f), refused(word))
    # export options
    f = p.folder("export-options")
    rd = p.copy_base(f)
    (f / "adir").mkdir()
    for label, args, word in (
        ("export --pair Xx-Yy (sympy)", ["--format", "sympy", "--pair", "Xx-Yy"], "pair"),
        ("export --pair Xx-Yy (latex)", ["--format", "latex", "--pair", "Xx-Yy"], "pair"),
        ("export --pair garbage", ["--format", "sympy", "--pair", "H"], "pair"),
        ("export --out <dir>", ["--format", "python", "--out", f / "adir"], "adir"),
        ("export --out in a missing folder", ["--format", "python", "--out", f / "no/x.py"], "no"),
        ("export --index 99", ["--format", "python", "--index", 99], "index"),
        ("export --index -5", ["--format", "python", "--index", -5], "index"),
        (
            "export --species Xx Yy (lammps)",
            ["--format", "lammps", "--species", "Xx", "Yy"],
            "species",
        ),
        ("export --cutoff nan", ["--format", "lammps", "--cutoff", "nan"], "cutoff"),
        ("export --cutoff 0", ["--format", "python", "--cutoff", 0], "cutoff"),
        ("export --points 0", ["--format", "lammps", "--points", 0], "points"),
        ("export --points 1e9 (lammps)", ["--format", "lammps", "--points", 1000000000], "points"),
        ("export --rlo nan", ["--format", "lammps", "--rlo", "nan"], "rlo"),
        ("export --rlo 20 (beyond the cutoff)", ["--format", "lammps", "--rlo", 20], "rlo"),
        ("export --bond-cutoff -1", ["--format", "openmm-xml", "--bond-cutoff", -1], "bond-cutoff"),
    ):
        cmd = cli("export", rd, *args)
        p.record(F, label, cmd, run(cmd, f), refused(word))
    cmd = cli("export", f / "missing-run", "--format", "python")
    p.record(F, "export of a missing run folder", cmd, run(cmd, f), refused())
    # memory
    f = p.folder("memory")
    for label, expr in (
        ("fit --expr with a 7e6 power", "c1*(1-exp(-c2*r))**6999912/r**12"),
        ("fit --expr nested 5000 deep", "(" * 5000 + "A/r" + ")" * 5000),
        ("fit --expr 10000 terms", "+".join(f"A{i}/r" for i in range(10000))),
        ("fit --expr with a comment", "A/r # comment"),
        ("fit --expr with a newline", "A/r\n+B/r**6"),
    ):
        cmd = cli("fit", DATA, "--expr", expr)
        check = refused() if ("comment" in label or "newline" in label) else None
        p.record(F, label, cmd, run(cmd, f), check)


# ----------------------------------------------------------------------------- report
def markdown(results: list[dict]) -> str:
    rows = [
        "| # | finding | case | command | rc | stderr's last line | verdict | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(results, 1):
        cells = [
            str(i),
            r["finding"],
            r["case"],
            f"`{r['command']}`",
            str(r["rc"]),
            r["last"][:160],
            f"**{r['verdict']}**" if r["verdict"] != "ok" else "ok",
            r["note"],
        ]
        rows.append(
            "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"
        )
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scratch", default="/tmp/issue36_probe")
    ap.add_argument("--only", default="", help="run only the groups whose name contains this")
    ap.add_argument("--json", default=None, help="write the rows as JSON here")
    ap.add_argument("--markdown", default=None, help="write the table as Markdown here")
    args = ap.parse_args(argv)
    scratch = Path(args.scratch).resolve()
    scratch.mkdir(parents=True, exist_ok=True)
    p = Probe(scratch)
    p.make_base()
    groups = {
        "code": code_execution,
        "lost": lost_work,
        "silent": silent_wrong,
        "hangs": hangs,
        "tracebacks": tracebacks,
    }
    for name, fn in groups.items():
        if args.only in name:
            fn(p)
    counts: dict[str, int] = {}
    for r in p.results:
        counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
    print(json.dumps(counts))
    if args.json:
        Path(args.json).write_text(json.dumps(p.results, indent=1))
    if args.markdown:
        Path(args.markdown).write_text(markdown(p.results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Reference data for water dimers: sampling, quantum chemistry, extxyz output.

:func:`generate_water_dimers` samples water dimers, computes each dimer and both monomers alone
at the same geometry, and appends one extxyz frame per dimer to a file:

* per-atom ``forces`` (total dimer forces), ``inter_forces`` (dimer minus each monomer computed
  alone at the same geometry: the intermolecular part) and ``mol`` (0 or 1);
* per-frame info ``idx`` (sampling index), ``E_inter`` (dimer minus monomers), ``E_monoA``,
  ``E_monoB``, ``energy`` (dimer), ``R_OO``, ``min_inter_dist``, ``method``, ``basis``,
  ``frozen_core``, ``scf_converged``, ``wall_s``, ``cpu_s``.

Energies are in eV and forces in eV/Å (force = −gradient).  No counterpoise correction: the
monomers are computed in their own basis, as in the shipped 20-dimer sample.

Sampling (:class:`DimerSampling`): each monomer has O–H lengths uniform in 0.9572 ± 0.05 Å and
an H–O–H angle uniform in 104.52 ± 5°, and a uniformly random orientation; the O–O distance is
uniform in 2.6–4 Å with probability 0.7 and in 2.4–8 Å otherwise, along a random direction; a
configuration with an intermolecular atom pair closer than 1.4 Å is redrawn.  Dimer ``idx`` of
seed ``s`` is drawn from ``numpy.random.default_rng([s, idx])``, so a geometry does not depend on
the number of workers or on resuming.

Methods: ``"mp2"`` (PySCF, conventional RHF-MP2 with frozen core, analytic gradients),
``"hf"`` (PySCF RHF, for quick checks) and ``"xtb"`` (GFN2-xTB through tblite; milliseconds per
dimer, fine for tests but ~30 meV/Å from MP2).  PySCF and tblite are optional
(``pip install "mctsff[qm]"``).

The output is resumable: frames already in the file (by ``idx``) are skipped, and a frame cut off
by an interrupted write is removed before appending.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np
from ase import units

if TYPE_CHECKING:  # pragma: no cover
    import ase

__all__ = [
    "BOHR",
    "HARTREE_BOHR_TO_EV_ANG",
    "HARTREE_TO_EV",
    "METHODS",
    "DimerSampling",
    "QMError",
    "compute_dimer",
    "done_indices",
    "generate_water_dimers",
    "sample_water_dimer",
    "water_dimer_frame",
]

#: Hartree → eV (:mod:`ase.units`).
HARTREE_TO_EV: float = units.Hartree
#: Hartree/Bohr → eV/Å.
HARTREE_BOHR_TO_EV_ANG: float = units.Hartree / units.Bohr
#: Bohr radius in Å.
BOHR: float = units.Bohr

#: Methods :func:`compute_dimer` knows.
METHODS: tuple[str, ...] = ("mp2", "hf", "xtb")

#: Per-frame timing info keys (left out when comparing frames).
_TIMING_KEYS = ("wall_s", "cpu_s")


class QMError(RuntimeError):
    """A quantum-chemistry backend is missing or a calculation failed."""


# --------------------------------------------------------------------------------------------
# sampling
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DimerSampling:
    """How water dimers are drawn (all lengths in Å, angles in degrees).

    Attributes
    ----------
    r_oh, r_oh_spread : float
        O–H bond lengths are uniform in ``r_oh ± r_oh_spread``.
    angle, angle_spread : float
        H–O–H angles are uniform in ``angle ± angle_spread``.
    near, far : (float, float)
        O–O distance ranges; ``near`` is used with probability ``near_fraction``.
    near_fraction : float
        Probability of drawing R_OO from ``near``.
    min_distance : float
        Smallest allowed intermolecular atom–atom distance; closer configurations are redrawn.
    max_tries : int
        Redraws before giving up.
    """

    r_oh: float = 0.9572
    r_oh_spread: float = 0.05
    angle: float = 104.52
    angle_spread: float = 5.0
    near: tuple[float, float] = (2.6, 4.0)
    far: tuple[float, float] = (2.4, 8.0)
    near_fraction: float = 0.7
    min_distance: float = 1.4
    max_tries: int = 10_000


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    """Uniformly random rotation matrix (from a normalised Gaussian quaternion)."""
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def _random_unit_vector(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def _monomer(rng: np.random.Generator, s: DimerSampling) -> np.ndarray:
    """O, H, H positions (3, 3) with O at the origin, randomly oriented."""
    r1, r2 = rng.uniform(s.r_oh - s.r_oh_spread, s.r_oh + s.r_oh_spread, size=2)
    theta = math.radians(rng.uniform(s.angle - s.angle_spread, s.angle + s.angle_spread))
    local = np.array(
        [[0.0, 0.0, 0.0], [r1, 0.0, 0.0], [r2 * math.cos(theta), r2 * math.sin(theta), 0.0]]
    )
    return local @ _random_rotation(rng).T


def sample_water_dimer(
    index: int, seed: int = 0, sampling: DimerSampling | None = None
) -> ase.Atoms:
    """Draw water dimer number ``index`` of a seeded sequence.

    Parameters
    ----------
    index : int
        Sampling index (>= 0); the geometry depends only on ``(seed, index, sampling)``.
    seed : int
        Seed of the sequence.
    sampling : DimerSampling, optional
        Distributions (the published ones by default).

    Returns
    -------
    ase.Atoms
        Six atoms ``O H H O H H``, O–O midpoint at the origin, per-atom array ``mol``
        (``[0, 0, 0, 1, 1, 1]``) and info ``idx``, ``R_OO`` and ``min_inter_dist``.

    Raises
    ------
    QMError
        If no configuration satisfies ``min_distance`` within ``max_tries`` draws.
    """
    import ase

    s = sampling or DimerSampling()
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    rng = np.random.default_rng([int(seed), int(index)])
    for _ in range(s.max_tries):
        lo, hi = s.near if rng.random() < s.near_fraction else s.far
        r_oo = rng.uniform(lo, hi)
        a = _monomer(rng, s)
        b = _monomer(rng, s) + r_oo * _random_unit_vector(rng)
        d = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=-1)
        if d.min() >= s.min_distance:
            break
    else:
        raise QMError(
            f"dimer {index}: no configuration with all intermolecular distances "
            f">= {s.min_distance} Å in {s.max_tries} draws"
        )
    pos = np.vstack([a, b])
    pos -= 0.5 * (pos[0] + pos[3])
    atoms = ase.Atoms("OH2OH2", positions=pos)
    atoms.arrays["mol"] = np.array([0, 0, 0, 1, 1, 1], dtype=np.int64)
    atoms.info["idx"] = int(index)
    atoms.info["R_OO"] = float(np.linalg.norm(pos[3] - pos[0]))
    atoms.info["min_inter_dist"] = float(d.min())
    return atoms


# --------------------------------------------------------------------------------------------
# backends: energy (eV) and forces (eV/Å) of one molecule or cluster
# --------------------------------------------------------------------------------------------


def _threads_one() -> None:
    """Ask OpenMP/BLAS in this process for one thread (effective before their first import)."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"


def _pyscf_calc(
    symbols: Sequence[str], positions: np.ndarray, method: str, basis: str, frozen_core: bool
) -> tuple[float, np.ndarray, bool]:
    try:
        from pyscf import gto, lib, mp, scf
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise QMError(
            f"method {method!r} needs PySCF: pip install pyscf (or 'mctsff[qm]')"
        ) from exc
    lib.num_threads(1)
    atom = [(s, tuple(map(float, p))) for s, p in zip(symbols, positions, strict=True)]
    mol = gto.M(atom=atom, basis=basis, unit="Angstrom", verbose=0, max_memory=2000)
    mf = scf.RHF(mol)
    mf.conv_tol = 1e-10
    mf.conv_tol_grad = 1e-7
    mf.kernel()
    converged = bool(mf.converged)
    if method == "hf":
        energy = float(mf.e_tot)
        grad = mf.nuc_grad_method().kernel()
    else:
        pt = mp.MP2(mf)
        if frozen_core:
            pt.set_frozen()
        pt.kernel()
        energy = float(pt.e_tot)
        grad = pt.nuc_grad_method().kernel()
    return energy * HARTREE_TO_EV, -np.asarray(grad) * HARTREE_BOHR_TO_EV_ANG, converged


def _xtb_calc(symbols: Sequence[str], positions: np.ndarray) -> tuple[float, np.ndarray, bool]:
    try:
        from tblite.interface import Calculator
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise QMError("method 'xtb' needs tblite: pip install tblite (or 'mctsff[qm]')") from exc
    from ase.data import atomic_numbers

    numbers = np.array([atomic_numbers[s] for s in symbols])
    calc = Calculator("GFN2-xTB", numbers, np.asarray(positions, dtype=np.float64) / BOHR)
    calc.set("verbosity", 0)
    calc.set("accuracy", 0.01)
    res = calc.singlepoint()
    energy = float(res.get("energy"))
    grad = np.asarray(res.get("gradient"))
    return energy * HARTREE_TO_EV, -grad * HARTREE_BOHR_TO_EV_ANG, True


def _calc(symbols, positions, method, basis, frozen_core):
    if method == "xtb":
        return _xtb_calc(symbols, positions)
    return _pyscf_calc(symbols, positions, method, basis, frozen_core)


@contextlib.contextmanager
def _one_thread():
    """Limit OpenMP/BLAS pools already loaded in this process to one thread.

    Environment variables act only before a library is loaded; with ``threadpoolctl`` (part of
    the ``qm`` extra) the limit also holds when tblite or PySCF were imported earlier.  Two
    OpenMP threads on a machine whose other core is busy can be 30x slower than one.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        yield
        return
    with threadpool_limits(1):
        yield


def compute_dimer(
    atoms: ase.Atoms,
    method: str = "mp2",
    basis: str = "aug-cc-pvdz",
    frozen_core: bool = True,
) -> ase.Atoms:
    """Energies and forces of a dimer and of both monomers alone at the same geometry.

    Parameters
    ----------
    atoms : ase.Atoms
        The dimer with a per-atom ``mol`` array (two molecule ids).
    method : {"mp2", "hf", "xtb"}
        Level of theory.
    basis : str
        Basis set (PySCF methods only; ignored by ``"xtb"``).
    frozen_core : bool
        Freeze the core orbitals in MP2.

    Returns
    -------
    ase.Atoms
        A copy with arrays ``forces``, ``inter_forces``, ``mol``, a single-point calculator
        holding the dimer energy and forces, and info ``E_inter``, ``E_monoA``, ``E_monoB``,
        ``energy``, ``method``, ``basis``, ``frozen_core``, ``scf_converged``, ``wall_s``,
        ``cpu_s`` (plus the sampling info of ``atoms``).  eV and eV/Å.

    Raises
    ------
    QMError
        For an unknown method, a missing backend, or a failed calculation.
    """
    from ase.calculators.singlepoint import SinglePointCalculator

    method = method.lower()
    if method not in METHODS:
        raise QMError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    if "mol" not in atoms.arrays:
        raise QMError("the dimer needs a per-atom 'mol' array")
    t_wall, t_cpu = time.perf_counter(), time.process_time()
    symbols = atoms.get_chemical_symbols()
    pos = atoms.get_positions()
    mol = np.asarray(atoms.arrays["mol"], dtype=np.int64)
    ids = list(dict.fromkeys(mol.tolist()))
    if len(ids) != 2:
        raise QMError(f"expected two molecules, got ids {ids}")
    with _one_thread():
        e_dimer, f_dimer, conv = _calc(symbols, pos, method, basis, frozen_core)
        inter = f_dimer.copy()
        e_mono = []
        for m in ids:
            sel = np.flatnonzero(mol == m)
            e, f, c = _calc([symbols[i] for i in sel], pos[sel], method, basis, frozen_core)
            inter[sel] -= f
            e_mono.append(e)
            conv = conv and c
    if not (np.all(np.isfinite(f_dimer)) and math.isfinite(e_dimer)):
        raise QMError(f"non-finite {method} result")
    out = atoms.copy()
    out.arrays["mol"] = mol
    out.arrays["inter_forces"] = inter
    out.info.update(
        E_inter=float(e_dimer - sum(e_mono)),
        E_monoA=float(e_mono[0]),
        E_monoB=float(e_mono[1]),
        method=method,
        basis="gfn2" if method == "xtb" else basis.lower(),
        frozen_core=bool(frozen_core and method == "mp2"),
        scf_converged=bool(conv),
        wall_s=round(time.perf_counter() - t_wall, 3),
        cpu_s=round(time.process_time() - t_cpu, 3),
    )
    out.calc = SinglePointCalculator(out, energy=float(e_dimer), forces=f_dimer)
    return out


def water_dimer_frame(
    index: int,
    seed: int = 0,
    method: str = "mp2",
    basis: str = "aug-cc-pvdz",
    frozen_core: bool = True,
    sampling: DimerSampling | None = None,
) -> ase.Atoms:
    """Sample dimer ``index`` and compute it.

    :func:`sample_water_dimer` followed by :func:`compute_dimer`; arguments as there.
    """
    atoms = sample_water_dimer(index, seed, sampling)
    return compute_dimer(atoms, method, basis, frozen_core)


# --------------------------------------------------------------------------------------------
# writing and resuming
# --------------------------------------------------------------------------------------------


def _frame_text(atoms: ase.Atoms) -> str:
    import ase.io

    buf = io.StringIO()
    ase.io.write(buf, atoms, format="extxyz")
    return buf.getvalue()


def _scan_frames(text: str) -> tuple[int, int]:
    """Number of complete xyz frames at the start of ``text`` and the byte-free char offset.

    Returns ``(n_complete, end)`` where ``text[:end]`` holds exactly the complete frames.
    """
    lines = text.splitlines(keepends=True)
    pos = 0
    k = 0
    n = 0
    while k < len(lines):
        head = lines[k].strip()
        if not head:
            pos += len(lines[k])
            k += 1
            continue
        try:
            n_atoms = int(head)
        except ValueError:
            break
        if k + 2 + n_atoms > len(lines) or not lines[k + 1 + n_atoms].endswith("\n"):
            break
        frame = lines[k : k + 2 + n_atoms]
        if any(len(ln.split()) < 4 for ln in frame[2:]):
            break
        pos += sum(len(ln) for ln in frame)
        k += 2 + n_atoms
        n += 1
    return n, pos


def _repair(path: Path, log: Callable[[str], None]) -> None:
    """Cut an incomplete trailing frame (interrupted write) off ``path``."""
    text = path.read_text()
    n, end = _scan_frames(text)
    if end < len(text) and text[end:].strip():
        log(f"{path}: removing an incomplete frame after {n} complete ones")
        with open(path, "r+") as fh:
            fh.truncate(len(text[:end].encode()))


def done_indices(path: str | os.PathLike[str]) -> set[int]:
    """Sampling indices (info ``idx``) of the frames already in an output file.

    Parameters
    ----------
    path : str or path-like
        extxyz file written by :func:`generate_water_dimers` (missing → empty set).

    Returns
    -------
    set of int
    """
    import ase.io

    p = Path(path)
    if not p.is_file() or p.stat().st_size == 0:
        return set()
    text = p.read_text()
    n, end = _scan_frames(text)
    if n == 0:
        return set()
    frames = ase.io.read(io.StringIO(text[:end]), ":", format="extxyz")
    return {int(f.info["idx"]) for f in frames if "idx" in f.info}


def _worker_init() -> None:
    _threads_one()


def _job(args: tuple) -> ase.Atoms:
    index, seed, method, basis, frozen_core, sampling = args
    return water_dimer_frame(index, seed, method, basis, frozen_core, sampling)


def generate_water_dimers(
    out: str | os.PathLike[str],
    n: int,
    *,
    method: str = "mp2",
    basis: str = "aug-cc-pvdz",
    frozen_core: bool = True,
    seed: int = 0,
    workers: int = 1,
    sampling: DimerSampling | None = None,
    progress: bool | TextIO = True,
) -> dict[str, Any]:
    """Compute dimers ``0 … n−1`` of a seeded sequence and append them to an extxyz file.

    Indices already present in ``out`` are skipped, so an interrupted run continues with the same
    command.  Each frame is written in one ``write`` and flushed as soon as it is done (in order
    of completion; ``idx`` says which dimer it is).

    Parameters
    ----------
    out : str or path-like
        Output extxyz file (created, or appended to).
    n : int
        Number of dimers wanted in the file (indices ``0 … n−1``).
    method, basis, frozen_core
        As in :func:`compute_dimer`.
    seed : int
        Sampling seed (use the same one when resuming).
    workers : int
        Worker processes (each single-threaded).  ``1`` computes in this process with one
        OpenMP thread.
    sampling : DimerSampling, optional
        Sampling distributions.
    progress : bool or text stream
        Print one line per dimer (to stderr for ``True``).

    Returns
    -------
    dict
        ``{"path", "n_requested", "n_skipped", "n_computed", "seconds"}``.

    Raises
    ------
    QMError
        For an unknown method, a missing backend, a failed calculation, or an output file that
        holds frames of another method or basis.
    """
    method = method.lower()
    if method not in METHODS:
        raise QMError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    stream = sys.stderr if progress is True else (progress or None)

    def log(msg: str) -> None:
        if stream is not None:
            print(msg, file=stream, flush=True)

    path = Path(out)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file() and path.stat().st_size:
        _repair(path, log)
        _check_same_method(path, method, basis)
    done = done_indices(path)
    todo = [i for i in range(n) if i not in done]
    skipped = n - len(todo)
    if skipped:
        log(f"{path}: {skipped} of {n} dimers already done, {len(todo)} to compute")
    t0 = time.perf_counter()
    jobs = [(i, seed, method, basis, frozen_core, sampling) for i in todo]
    computed = 0

    def record(frame: ase.Atoms) -> None:
        nonlocal computed
        text = _frame_text(frame)
        with open(path, "a") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        computed += 1
        el = time.perf_counter() - t0
        eta = el / computed * (len(todo) - computed)
        log(
            f"[{skipped + computed}/{n}] idx {frame.info['idx']:d}  "
            f"R_OO {frame.info['R_OO']:.3f} Å  E_inter {frame.info['E_inter']:+.5f} eV  "
            f"cpu {frame.info['cpu_s']:.1f} s  elapsed {el:.0f} s  eta {eta:.0f} s"
        )

    if workers == 1 or len(jobs) <= 1:
        if not any(m in sys.modules for m in ("pyscf", "tblite")):
            _threads_one()
        for job in jobs:
            record(_job(job))
    else:
        import multiprocessing as mp

        saved = {v: os.environ.get(v) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
        _threads_one()  # inherited by the spawned workers before they import numpy
        try:
            ctx = mp.get_context("spawn")
            with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init) as ex:
                for frame in _imap(ex, jobs):
                    record(frame)
        finally:
            for var, val in saved.items():
                if val is None:
                    os.environ.pop(var, None)
                else:
                    os.environ[var] = val
    return {
        "path": str(path),
        "n_requested": n,
        "n_skipped": skipped,
        "n_computed": computed,
        "seconds": time.perf_counter() - t0,
    }


def _imap(ex: ProcessPoolExecutor, jobs: Iterable[tuple]):
    """Results of ``_job`` over ``jobs`` in completion order."""
    from concurrent.futures import FIRST_COMPLETED, wait

    pending = {ex.submit(_job, j) for j in jobs}
    while pending:
        finished, pending = wait(pending, return_when=FIRST_COMPLETED)
        for fut in finished:
            yield fut.result()


def _check_same_method(path: Path, method: str, basis: str) -> None:
    import ase.io

    text = path.read_text()
    n, end = _scan_frames(text)
    if n == 0:
        return
    first = ase.io.read(io.StringIO(text[:end]), 0, format="extxyz")
    m = str(first.info.get("method", method)).lower()
    b = str(first.info.get("basis", basis)).lower()
    want_b = "gfn2" if method == "xtb" else basis.lower()
    if m != method or b != want_b:
        raise QMError(
            f"{path} holds {m}/{b} frames; refusing to append {method}/{want_b} ones "
            "(choose another --out)"
        )

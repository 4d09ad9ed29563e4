"""The error of bad reference data (:class:`DataError`, whose message names the file, the
frame and the field) and the checks and field look-ups behind it: the cutoff, frame
selections, forces, energies and molecule ids of ``ase.Atoms`` frames."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import ase

__all__ = ["DataError"]


class DataError(ValueError):
    """Invalid or unreadable reference data.

    The message always names the file (or ``<atoms>`` for in-memory frames) and, when relevant,
    the 0-based frame index in the file and the offending field.
    """


def _error(src: str, msg: str, frame: int | None = None) -> DataError:
    if frame is None:
        return DataError(f"{src}: {msg}")
    return DataError(f"{src}: frame {frame}: {msg}")


def _read_failure(exc: BaseException) -> str:
    """One line for an exception ASE raised reading a file (a MemoryError passes)."""
    if isinstance(exc, MemoryError):
        raise exc
    if isinstance(exc, UnicodeDecodeError):
        from mctsff.runio import not_text

        return f"cannot read file ({not_text(exc)})"
    detail = " ".join(str(exc).split())[:200]
    return f"cannot read file ({type(exc).__name__}: {detail})"


def _check_cutoff(cutoff: Any, src: str) -> None:
    if isinstance(cutoff, bool) or not isinstance(cutoff, int | float | np.integer | np.floating):
        raise _error(src, f"cutoff must be a number, got {cutoff!r}")
    if not (math.isfinite(float(cutoff)) and float(cutoff) > 0):
        raise _error(src, f"cutoff must be a finite number > 0, got {cutoff!r}")


def _bad_kind(a: np.ndarray) -> str:
    return "NaN" if np.isnan(a).any() else "inf"


def _frame_selection(frames: Any, n: int, src: str) -> np.ndarray:
    """Normalise a frame selection to an int64 index array (non-empty, in range)."""
    if frames is None:
        sel = np.arange(n, dtype=np.int64)
    elif isinstance(frames, slice):
        sel = np.arange(n, dtype=np.int64)[frames]
    else:
        arr = np.asarray(frames)
        if arr.dtype == bool:
            if arr.shape != (n,):
                raise _error(src, f"boolean frame mask must have shape ({n},), got {arr.shape}")
            sel = np.flatnonzero(arr).astype(np.int64)
        else:
            if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
                raise _error(src, f"frames must be a slice or a sequence of int, got {frames!r}")
            sel = arr.astype(np.int64)
            bad = (sel < -n) | (sel >= n)
            if bad.any():
                raise _error(
                    src, f"frame index {int(sel[np.argmax(bad)])} out of range for {n} frames"
                )
            sel = np.where(sel < 0, sel + n, sel)
    if sel.size == 0:
        raise _error(src, "no frames selected")
    return sel


def _calc_results(atoms: ase.Atoms) -> dict[str, Any]:
    calc = getattr(atoms, "calc", None)
    res = getattr(calc, "results", None) if calc is not None else None
    return res if isinstance(res, dict) else {}


def _calc_result(atoms: ase.Atoms, name: str) -> Any:
    return _calc_results(atoms).get(name)


def _calc_keys(atoms: ase.Atoms) -> list[str]:
    return sorted(_calc_results(atoms))


def _available_arrays(atoms: ase.Atoms) -> list[str]:
    n = len(atoms)
    names = {k for k in atoms.arrays if k not in ("numbers", "positions")}
    for k, v in _calc_results(atoms).items():
        if np.ndim(v) >= 1 and len(v) == n:
            names.add(k)
    return sorted(names)


def _per_atom_forces(atoms: ase.Atoms, name: str, src: str, fid: int) -> np.ndarray:
    n = len(atoms)
    value = atoms.arrays.get(name)
    if value is None:
        value = _calc_result(atoms, name)
    if value is None and name == "forces" and getattr(atoms, "calc", None) is not None:
        try:
            value = atoms.get_forces(apply_constraint=False)
        except Exception:  # no forces available from this calculator
            value = None
    if value is None:
        raise _error(
            src,
            f"no per-atom array {name!r}; available arrays: {_available_arrays(atoms)}",
            fid,
        )
    try:
        f = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise _error(src, f"array {name!r} is not numeric", fid) from exc
    if f.shape != (n, 3):
        raise _error(src, f"array {name!r} has shape {f.shape}, expected ({n}, 3)", fid)
    if not np.isfinite(f).all():
        raise _error(src, f"array {name!r} contains {_bad_kind(f)}", fid)
    return f


def _get_energy(atoms: ase.Atoms, name: str) -> Any:
    if name in atoms.info:
        return atoms.info[name]
    value = _calc_result(atoms, name)
    if value is not None:
        return value
    if name == "energy" and getattr(atoms, "calc", None) is not None:
        try:
            return atoms.get_potential_energy()
        except Exception:  # calculator without energies
            return None
    return None


def _mol_array(atoms: ase.Atoms, name: str, src: str, fid: int) -> np.ndarray:
    n = len(atoms)
    if name not in atoms.arrays:
        raise _error(
            src,
            f"no per-atom molecule-id array {name!r}; available arrays: "
            f"{_available_arrays(atoms)} (or use molecules='bonds' / 'nearest-O')",
            fid,
        )
    raw = np.asarray(atoms.arrays[name])
    if raw.shape != (n,):
        raise _error(src, f"array {name!r} has shape {raw.shape}, expected ({n},)", fid)
    if np.issubdtype(raw.dtype, np.integer):
        return raw.astype(np.int64)
    try:
        val = raw.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise _error(src, f"array {name!r} is not integer molecule ids", fid) from exc
    if not np.isfinite(val).all() or np.any(val != np.rint(val)):
        raise _error(src, f"array {name!r} is not integer molecule ids", fid)
    return val.astype(np.int64)

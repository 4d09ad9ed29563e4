"""Run-folder files: written without losing work, read without running code.

A search run folder is someone's results, and a folder received from someone else is
untrusted data.  This module holds the few rules every writer and reader of one follows:

* :func:`atomic_write` / :func:`atomic_output` write through a fresh temporary file in
  the same folder (``tempfile.mkstemp``: a unique name, created exclusively, so a planted
  symlink is never followed), ``fsync`` it, rename it over the target with
  :func:`os.replace` and ``fsync`` the folder: a reader sees the old file or the new
  one, never a mix, and two writers never share a temporary file;
* :func:`open_run_folder` creates a run folder exclusively (an existing non-empty folder
  is refused unless the run resumes it or the caller asks to overwrite it), checks that
  it is writable before any work starts and returns a :class:`RunLock`
  (``fcntl.flock`` on ``.mctsff.lock``), so a second search on the same folder stops at
  once with one clear error; temporary files a killed writer left are removed once
  the lock is held;
* :func:`load_checkpoint` reads ``checkpoint.pkl`` with an unpickler that only builds
  the classes a checkpoint holds (:data:`CHECKPOINT_CLASSES`: plain containers, NumPy
  arrays and random generators, and mctsff's own grammar, tree, result and reward
  classes); any other global (``os.system``, ``builtins.eval``, ...) is refused, so
  opening a crafted checkpoint cannot run code.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import os
import pickle
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: Lock file of a run folder (held with ``fcntl.flock`` while a search writes the folder).
LOCK_NAME = ".mctsff.lock"
#: Files a search writes into its run folder (what ``overwrite`` removes first).
RUN_FILES = (
    "checkpoint.pkl",
    "pareto.json",
    "pareto.csv",
    "pareto.png",
    "potentials.png",
    "run.json",
)
#: ``(module, name)`` of every global a checkpoint may refer to; nothing else is loaded.
CHECKPOINT_CLASSES = frozenset(
    {
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "complex"),
        ("collections", "OrderedDict"),
        ("pathlib", "Path"),
        ("pathlib", "PosixPath"),
        ("pathlib", "PurePosixPath"),
        ("numpy", "dtype"),
        ("numpy", "ndarray"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy.random._pickle", "__generator_ctor"),
        ("numpy.random._pickle", "__bit_generator_ctor"),
        ("numpy.random._pcg64", "PCG64"),
        ("numpy.random._pcg64", "PCG64DXSM"),
        ("numpy.random._mt19937", "MT19937"),
        ("numpy.random._philox", "Philox"),
        ("numpy.random._sfc64", "SFC64"),
        ("numpy.random.bit_generator", "SeedSequence"),
        ("numpy.random.bit_generator", "__pyx_unpickle_SeedSequence"),
        ("mctsff.expr.grammar", "Grammar"),
        ("mctsff.engines.mcts", "_Node"),
        ("mctsff.engines.mcts", "_Proposal"),
        ("mctsff.expr.tree", "Derivation"),
        ("mctsff.fit.result", "FitResult"),
        ("mctsff.expr.program", "Program"),
        ("mctsff.engines.reward", "SPLReward"),
        ("mctsff.engines.reward", "TradeoffReward"),
    }
)


class RunFolderError(ValueError):
    """A run folder that cannot be created, locked, written or read (message says why)."""


# ----------------------------------------------------------------------------- writing
_UMASK: int | None = None


def _file_mode() -> int:
    """Permissions of a new file under the process umask (mkstemp makes them 0600)."""
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return 0o666 & ~_UMASK


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot sync a folder
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A fresh temporary path next to ``path``, renamed over it when the block ends.

    The temporary file is created exclusively by :func:`tempfile.mkstemp` (unique name,
    ``O_EXCL``: never a file or symlink someone put there); the block writes it (by
    name, e.g. ``fig.savefig(tmp)``); on success it is synced, renamed with
    :func:`os.replace` (which replaces a symlink at ``path`` instead of following it)
    and the folder synced.  On any error the temporary file is removed and ``path``
    keeps its old content.
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(  # the extension kept: matplotlib reads the format from it
        prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent
    )
    tmp = Path(tmp_name)
    try:
        os.close(fd)
        yield tmp
        os.chmod(tmp, _file_mode())
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and not exc.filename:  # a failed write names no file
            exc.filename = str(path)
        raise
    _fsync_dir(path.parent)


def atomic_write(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` through :func:`atomic_output`."""
    with atomic_output(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


def not_text(exc: UnicodeDecodeError) -> str:
    """Why a file that should be text is not: ``"not UTF-8 text (byte 0xff at offset 6)"``."""
    data = exc.object
    ok = isinstance(data, bytes | bytearray) and exc.start < len(data)
    byte = data[exc.start] if ok else None
    where = f"byte 0x{byte:02x} at offset {exc.start}" if byte is not None else exc.reason
    return f"not UTF-8 text ({where}): a binary file, or text in another encoding"


def write_error(exc: OSError, what: str | os.PathLike[str]) -> str:
    """One line for an error writing ``what`` (disk full and read-only named as such)."""
    reason = {
        errno.ENOSPC: "no space left on the device",
        errno.EDQUOT: "disk quota exceeded",
        errno.EROFS: "read-only file system",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
    }.get(exc.errno or 0, exc.strerror or str(exc))
    return f"cannot write {what}: {reason}"


# ----------------------------------------------------------------------------- the folder
class RunLock:
    """An exclusive ``fcntl.flock`` on a run folder's :data:`LOCK_NAME`.

    :meth:`release` removes the file and unlocks (a process that dies is unlocked by the
    system; its file stays and is reused).  A lock taken on a file that its holder
    removed meanwhile counts as not taken.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        path = folder / LOCK_NAME
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            self._fd: int | None = os.open(path, flags, 0o644)
        except OSError as exc:
            raise RunFolderError(write_error(exc, path)) from None
        self.path = path
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # the holder removes the file when it is done: a lock on a removed file is none
            if os.fstat(self._fd).st_ino != os.stat(path, follow_symlinks=False).st_ino:
                raise BlockingIOError
        except OSError:
            os.close(self._fd)
            self._fd = None
            raise RunFolderError(
                f"{folder}: another search is writing this run folder (locked); wait for it "
                "to end or give another --out"
            ) from None

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            self.release()

    def release(self) -> None:
        """Remove the lock file and unlock (idempotent)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()  # while locked: a later search makes a fresh one
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _own_file(name: str) -> bool:
    """A file :func:`open_run_folder` ignores when it asks whether a folder is empty."""
    return name == LOCK_NAME or (name.startswith(".") and ".tmp" in name)


def open_run_folder(
    folder: str | os.PathLike[str], *, resume: bool = False, overwrite: bool = False
) -> RunLock:
    """Create (or, to resume, open) a run folder, lock it and check that it is writable.

    Parameters
    ----------
    folder
        The run folder.
    resume
        The folder holds the run to continue: it must exist.
    overwrite
        An existing run folder may be reused: the files of the earlier run
        (:data:`RUN_FILES`) are removed once the folder is locked; other files stay.

    Returns
    -------
    RunLock
        Held until released (the caller releases it when the search ends).

    Raises
    ------
    RunFolderError
        An existing non-empty folder without ``resume`` or ``overwrite``, a path that is
        not a folder, a folder another search holds, or one that cannot be written.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise RunFolderError(f"{folder}: exists and is not a folder (give another --out)")
    if folder.is_dir() and not (resume or overwrite):
        try:
            names = [n for n in os.listdir(folder) if not _own_file(n)]
        except OSError as exc:
            raise RunFolderError(f"{folder}: cannot read ({exc.strerror})") from None
        if names:
            raise RunFolderError(
                f"{folder}: the folder exists and is not empty (holds {sorted(names)[0]!r}); "
                "give a new --out, --resume to continue the run in it, or --overwrite to "
                "replace it"
            )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunFolderError(write_error(exc, folder)) from None
    lock = RunLock(folder)
    try:
        fd, probe = tempfile.mkstemp(prefix=".probe.", suffix=".tmp", dir=folder)
        os.close(fd)  # writable: a file can be made here
        os.unlink(probe)
        for name in os.listdir(folder):  # temporaries of a writer that died (locked now)
            if name != LOCK_NAME and _own_file(name):
                with contextlib.suppress(OSError):
                    (folder / name).unlink()
        if overwrite and not resume:
            for name in RUN_FILES:
                with contextlib.suppress(FileNotFoundError):
                    (folder / name).unlink()
    except OSError as exc:
        lock.release()
        raise RunFolderError(write_error(exc, folder)) from None
    except BaseException:
        lock.release()
        raise
    return lock


# ----------------------------------------------------------------------------- reading
class _CheckpointUnpickler(pickle.Unpickler):
    """Builds only the globals of :data:`CHECKPOINT_CLASSES`."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in CHECKPOINT_CLASSES:
            raise pickle.UnpicklingError(
                f"refers to {module}.{name}, which a checkpoint never holds (not loaded)"
            )
        return super().find_class(module, name)


def _check_memo(data: bytes) -> None:
    """Refuse pickle data whose memo indices run beyond its opcodes.

    A pickler numbers the objects it memoises 0, 1, 2, ... (protocol 4 and 5, which
    checkpoints use, only with MEMOIZE); the C unpickler sizes its memo table to the
    largest index it is given and zeroes it, so ten damaged bytes (``N`` then
    ``LONG_BINPUT`` of 2**28) made it fill 4 GB, and an index read from text 25 GB.  The
    opcodes are read with :func:`pickletools.genops` (nothing is built, about 0.3 µs an
    opcode); damage it finds is raised as it is.
    """
    import pickletools

    for n, (op, arg, _) in enumerate(pickletools.genops(data)):
        if op.name in ("PUT", "BINPUT", "LONG_BINPUT") and int(arg) > n:
            raise pickle.UnpicklingError(
                f"memo index {arg} at opcode {n} (an index beyond the data's objects)"
            )


def loads_checkpoint(data: bytes) -> Any:
    """Unpickle checkpoint bytes, allowing only :data:`CHECKPOINT_CLASSES` and memo
    indices within the data (:func:`_check_memo`).

    Raises
    ------
    pickle.UnpicklingError, ValueError, EOFError, ...
        For damaged or foreign data (see :func:`load_checkpoint` for one clear error).
    """
    if data:  # (empty data: the unpickler's "Ran out of input")
        _check_memo(data)
    return _CheckpointUnpickler(io.BytesIO(data)).load()


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The state dictionary saved in ``path`` (read without running code from it).

    Raises
    ------
    RunFolderError
        One line naming the file: unreadable, empty, truncated, not a checkpoint, or
        referring to anything outside :data:`CHECKPOINT_CLASSES`.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read()
        state = loads_checkpoint(data)
    except OSError as exc:
        raise RunFolderError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except RecursionError:
        raise RunFolderError(f"{path}: not a checkpoint (nested too deeply)") from None
    except Exception as exc:  # any damage: truncated, garbage, foreign pickle
        detail = " ".join(str(exc).split())[:200] or type(exc).__name__  # one line
        raise RunFolderError(f"{path}: not a readable mctsff checkpoint ({detail})") from None
    if not isinstance(state, dict):
        raise RunFolderError(
            f"{path}: not an mctsff checkpoint (holds a {type(state).__name__}, not a dict)"
        )
    return state

"""The data files shipped with the package (:data:`DATA_DIR`, :func:`data_file`) and the
shipped datasets by short name (:data:`DATASETS`, :func:`dataset_path`,
:func:`shipped_datasets`, ``mctsff data list``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mctsff.data.validation import DataError

__all__ = ["DATASETS", "DATA_DIR", "data_file", "dataset_path", "shipped_datasets"]

#: Folder with the example data files shipped with the package.
DATA_DIR: Path = Path(__file__).resolve().parent


def data_file(name: str) -> Path:
    """Path of an example data file shipped with the package.

    Parameters
    ----------
    name : str
        File name inside :data:`DATA_DIR`, e.g. ``"water_dimers_mp2_sample20.extxyz"``.

    Returns
    -------
    pathlib.Path
        Absolute path of the file.

    Raises
    ------
    DataError
        If the file does not exist.
    """
    path = DATA_DIR / name
    if not path.is_file():
        available = sorted(p.name for p in DATA_DIR.iterdir() if p.is_file())
        raise DataError(f"{name}: no such data file in {DATA_DIR}; available: {available}")
    return path


#: Short names of the shipped datasets (``mctsff data list``; what ``mctsff fit`` and
#: ``mctsff search`` accept instead of a path): name -> file in :data:`DATA_DIR`.
DATASETS: dict[str, str] = {
    "water-dimers": "water_dimers_mp2_200.extxyz",
    "water-dimers-sample": "water_dimers_mp2_sample20.extxyz",
    "bulk-water": "bulk_water_dft_80x192.extxyz",
    "ala2-solvent": "ala2_solvent_forces.extxyz",
}


def dataset_path(name_or_path: str | os.PathLike) -> str:
    """The file a command line's data argument names.

    Parameters
    ----------
    name_or_path : str or path-like
        A path, or the short name of a shipped dataset (:data:`DATASETS`).  A path that
        exists wins over a name.

    Returns
    -------
    str
        The path as given when it exists, else the shipped file of the name.

    Raises
    ------
    DataError
        Neither an existing path nor a shipped name (the message lists the names).
    """
    text = os.fspath(name_or_path)
    if os.path.exists(text):
        return text
    if text in DATASETS:
        return str(data_file(DATASETS[text]))
    raise DataError(
        f"{text}: no such file, nor a shipped dataset (names: {', '.join(DATASETS)}; "
        "mctsff data list)"
    )


def _count_frames(path: Path) -> int:
    """Frames of an (ext)xyz file, counted from the atom-count lines without parsing them."""
    n = 0
    with path.open("rb") as fh:
        while line := fh.readline():
            if not line.strip():
                continue
            atoms = int(line)
            for _ in range(atoms + 1):
                fh.readline()
            n += 1
    return n


def _sources() -> dict[str, str]:
    """Entry of each file in ``DATA_DIR/SOURCES.md`` (``- `file` — text``), one line each."""
    entries: dict[str, str] = {}
    current = None
    for line in (DATA_DIR / "SOURCES.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("- `"):
            name, _, text = line[3:].partition("`")
            current = name
            entries[name] = text.lstrip(" —-")
        elif current is not None and line.startswith("  "):
            entries[current] += " " + line.strip()
        else:
            current = None
    return entries


def shipped_datasets() -> list[dict[str, Any]]:
    """The shipped datasets of :data:`DATASETS`: ``name``, ``file`` (path), ``frames``,
    ``bytes`` and ``source`` (their entry in ``SOURCES.md``)."""
    sources = _sources()
    rows = []
    for name, file in DATASETS.items():
        path = data_file(file)
        rows.append(
            dict(
                name=name,
                file=path,
                frames=_count_frames(path),
                bytes=path.stat().st_size,
                source=sources.get(file, ""),
            )
        )
    return rows

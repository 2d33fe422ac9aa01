"""Atomic writes: nothing half-written is ever left at the destination."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_file(path):
    """Yield a temp path beside ``path``; rename it over ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # keep the real extension last: some writers (mx.save_safetensors) append one otherwise
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path):
    """Yield a fresh temp dir beside ``path``; on success it replaces ``path`` (old one removed).

    A crash inside the block leaves ``path`` untouched; the swap itself is two renames, so a kill
    between them leaves the new folder complete under ``<path>.tmp-*`` and the old one in ``.old``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if path.exists():
        old = path.parent / f".{path.name}.old-{os.getpid()}"
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def save_folder(path, write_fn) -> Path:
    """Save a model folder the way PyLate / ST / transformers do: overwrite the files the layout
    owns, leave every other entry of ``path`` alone.

    ``write_fn(tmp)`` writes the whole layout into a fresh temp folder beside the destination;
    only when it succeeds are its entries moved into ``path`` (each file with one rename).
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".save.tmp-", dir=path))
    try:
        write_fn(tmp)
        _move_entries(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _move_entries(src: Path, dst: Path):
    for entry in sorted(src.iterdir()):
        target = dst / entry.name
        if entry.is_dir() and not entry.is_symlink():
            target.mkdir(exist_ok=True)
            _move_entries(entry, target)
        else:
            os.replace(entry, target)

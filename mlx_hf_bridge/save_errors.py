"""One exception for a save that the disk refused: which file, why, and what to do.

MLX's ``mx.save_safetensors`` reports a full disk as ``[write] Unable to write N bytes to file.``
and a read-only or forbidden folder as ``[save_safetensors] Failed to open file <path>`` (plain
``RuntimeError``, no errno); the cause is found by asking the filesystem (free space, read-only
flag, write permission).
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS})
_SIZED = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO})  # errors where sizes help
_FEW_BYTES = 1 << 20  # below this much free space a failed write is a full disk


class SaveError(OSError):
    """A save the filesystem refused (full, over quota, read-only, not writable).

    ``errno``, ``filename`` (the file or folder that could not be written), ``needed`` and
    ``free`` (bytes, when known). Nothing half-written is left behind when it is raised by a save.
    """

    def __init__(self, err: int, path, needed: int | None = None, free: int | None = None, detail: str = "",
                 needed_at_least: bool = False):
        super().__init__(err, os.strerror(err), str(path))
        self.needed, self.free, self.detail, self.needed_at_least = needed, free, detail, needed_at_least
        self.message = _message(err, Path(path), needed, free, detail, needed_at_least)

    def __str__(self):
        return self.message

    def relocated(self, staging: Path, dest: Path) -> "SaveError":
        """The same error naming the file's final place (``dest/...``) instead of the staging folder;
        sizes now count the whole save and the space its removal gives back."""
        path = Path(self.filename)
        staged = _size(staging)
        partial = _size(path) if path.is_file() else 0
        try:
            path = Path(dest) / path.relative_to(staging)
        except ValueError:
            return self
        if self.errno not in _SIZED:
            return SaveError(self.errno, path, detail=self.detail)
        # a writer that did not say how much it wanted: at least what was written before the disk filled
        at_least = self.needed_at_least or self.needed is None
        needed = (self.needed or partial) + staged - partial
        free = None if self.free is None else self.free + staged
        return SaveError(self.errno, path, needed, free, self.detail, at_least)


def _mb(n: int) -> str:
    return f"{max(n, 0) / 1e6:.1f} MB"


def _message(err, path: Path, needed, free, detail, needed_at_least=False) -> str:
    sizes = []
    if needed is not None:
        sizes.append(f"needs {'more than ' if needed_at_least else '~'}{_mb(needed)}")
    if free is not None:
        sizes.append(f"{_mb(free)} free")
    size = f" ({', '.join(sizes)})" if sizes else ""
    extra = f" [{detail}]" if detail else ""
    if err == errno.ENOSPC:
        return (f"No space left on device while writing {path}{size}{extra}: free space on that disk or choose "
                f"another output_dir / save folder. Nothing half-written was left behind.")
    if err == errno.EDQUOT:
        return (f"Disk quota exceeded while writing {path}{size}{extra}: free space within your quota or choose "
                f"another output_dir / save folder. Nothing half-written was left behind.")
    if err == errno.EROFS:
        return (f"Read-only file system: cannot write {path}{extra}. Remount it read-write or choose another "
                f"output_dir / save folder.")
    if err in (errno.EACCES, errno.EPERM):
        return (f"Permission denied while writing {path}{extra}: make the folder writable by this user "
                f"(chmod / chown) or choose another output_dir / save folder.")
    return (f"Could not write {path} ({os.strerror(err)}){size}{extra}: check the disk (quota, I/O errors) or "
            f"choose another output_dir / save folder. Nothing half-written was left behind.")


def _size(path: Path) -> int:
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def _existing_dir(path: Path) -> Path:
    path = Path(path)
    for candidate in (path, *path.parents):
        if candidate.is_dir():
            return candidate
    return Path(".")


def _free(path: Path) -> int | None:
    try:
        return shutil.disk_usage(_existing_dir(path)).free
    except OSError:
        return None


def _newest_file(folder: Path) -> Path | None:
    """The file a writer without a filename in its error was writing: the last one touched."""
    best = None
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            p = Path(dirpath) / name
            try:
                mtime = p.stat().st_mtime_ns
            except OSError:
                continue
            if best is None or mtime >= best[0]:
                best = (mtime, p)
    return best[1] if best else None


def _cause_of_mlx_error(exc: RuntimeError, path: Path, needed: int | None) -> int | None:
    text = str(exc)
    where = _existing_dir(path if not path.is_file() else path.parent)
    if "Unable to write" in text:
        free = _free(where)
        partial = path.stat().st_size if path.is_file() else 0
        remaining = max((needed or 0) - partial, 0)
        if free is not None and free < max(remaining, _FEW_BYTES):
            return errno.ENOSPC
        return errno.EIO  # space is there: a quota or an I/O error
    if "Failed to open" in text:
        try:
            st = os.statvfs(where)
            if st.f_flag & os.ST_RDONLY:
                return errno.EROFS
            if st.f_bavail == 0 or st.f_favail == 0:
                return errno.ENOSPC
        except OSError:
            pass
        if not os.access(where, os.W_OK):
            return errno.EACCES
    return None


def map_save_error(exc: BaseException, path, needed: int | None = None, staging: Path | None = None,
                   name_as=None):
    """The :class:`SaveError` for ``exc`` raised while saving ``path`` (``None``: not a disk refusal).

    ``staging``: the temp folder the save writes into; file names inside it are reported at their
    final place under ``path``. ``name_as``: the path to name instead of the one in ``exc`` (a
    temp name means nothing to the user).
    """
    path = Path(path)
    if isinstance(exc, SaveError):
        return exc.relocated(staging, path) if staging is not None else exc
    if isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS:
        err = exc.errno
        failing = Path(exc.filename) if isinstance(exc.filename, (str, os.PathLike)) else None
    elif isinstance(exc, RuntimeError) and ("Unable to write" in str(exc) or "Failed to open" in str(exc)):
        err = _cause_of_mlx_error(exc, path, needed)
        if err is None:
            return None
        failing = path
    else:
        return None
    if failing is None and staging is not None:
        failing = _newest_file(staging)
    failing = Path(name_as) if name_as is not None else (failing or path)
    free = _free(failing)
    detail = "" if isinstance(exc, OSError) else f"MLX: {str(exc).strip()}"
    sized = err in _SIZED
    error = SaveError(err, failing, needed if sized else None, free if sized else None, detail,
                      needed_at_least=sized and needed is None)
    return error.relocated(staging, path) if staging is not None else error

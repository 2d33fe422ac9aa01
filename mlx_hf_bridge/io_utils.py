"""Saving that never deletes a user's files, survives kill -9, and names a full or read-only disk.

Temp names carry their owner (``<name>.tmp-<host>-<pid>-<random>``): cleanup removes a temp only
when its owner is a dead process on this host, so two runs sharing a folder never delete each
other's saves in progress. Write failures (``ENOSPC``, ``EDQUOT``, ``EACCES``, ``EPERM``,
``EROFS``, and MLX's errno-less ``[write] Unable to write N bytes``) become one
:class:`SaveError` naming the file, the cause and the fix, after the temp files are removed.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import socket
import threading
from pathlib import Path

from .save_errors import SaveError, map_save_error

__all__ = ["SaveError", "map_errors", "atomic_file", "new_folder", "save_folder", "recover_folder",
           "write_safetensors", "owned_name", "owner_alive"]

COMPLETE = ".complete"  # inside a staging folder: every file is written, the moves may be rolled forward
STAGING_PREFIX = ".save."
_OWNER_RE = re.compile(r"\.(?:tmp|old|del)-(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)-[0-9a-f]+")
_IN_FLIGHT: set[str] = set()  # this process's staging folders that are being written right now
_IN_FLIGHT_LOCK = threading.Lock()
_test_hook = None  # tests: _test_hook(stage, path) at "staged", "complete", "moved" and "committed"


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())[:40] or "host"


def owned_name(stem: str, kind: str = "tmp", suffix: str = "") -> str:
    """``<stem><kind>-<host>-<pid>-<random><suffix>``: a temp name that says who owns it."""
    return f"{stem}{kind}-{_host()}-{os.getpid()}-{secrets.token_hex(4)}{suffix}"


def owner_alive(path) -> bool | None:
    """Whether the process that made the temp ``path`` may still be using it.

    ``None`` for a name this module did not make (leave it alone); a temp from another host is
    treated as alive (its pid means nothing here).
    """
    m = _OWNER_RE.search(Path(path).name)
    if m is None:
        return None
    pid = int(m.group("pid"))
    if m.group("host") != _host():
        return True
    if pid == os.getpid():
        with _IN_FLIGHT_LOCK:
            return str(Path(path)) in _IN_FLIGHT
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    except OSError:
        return True
    return True


def _hook(stage, path):
    if _test_hook is not None:
        _test_hook(stage, Path(path))


@contextlib.contextmanager
def _in_flight(path: Path):
    with _IN_FLIGHT_LOCK:
        _IN_FLIGHT.add(str(path))
    try:
        yield
    finally:
        with _IN_FLIGHT_LOCK:
            _IN_FLIGHT.discard(str(path))


# --- fsync (kill -9 needs none: the page cache survives the process; power loss does) ----------
def fsync_path(path: Path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_tree(root: Path):
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            fsync_path(Path(dirpath) / name)
        fsync_path(Path(dirpath))


# --- single files ------------------------------------------------------------------------------
def write_safetensors(path, tensors: dict, metadata: dict | None = None):
    """``mx.save_safetensors`` with its errno-less write failures turned into :class:`SaveError`."""
    import mlx.core as mx

    path = Path(path)
    try:
        if metadata is None:
            mx.save_safetensors(str(path), tensors)
        else:
            mx.save_safetensors(str(path), tensors, metadata=metadata)
    except (OSError, RuntimeError) as exc:
        needed = sum(int(getattr(t, "nbytes", 0)) for t in tensors.values())
        mapped = map_save_error(exc, path, needed=needed)
        if mapped is None:
            raise
        raise mapped from exc


@contextlib.contextmanager
def atomic_file(path):
    """Yield a temp path beside ``path``; rename it over ``path`` only if the block succeeds.

    A failure or kill leaves ``path`` as it was; the temp is removed (or, after a kill, by the
    next :func:`recover_folder` of that folder once its owner is dead).
    """
    path = Path(path)
    with map_errors(path, name_as=path):
        path.parent.mkdir(parents=True, exist_ok=True)
        # the real extension stays last: some writers (mx.save_safetensors) append one otherwise
        tmp = path.parent / owned_name(f".{path.name}.", suffix=f"{path.suffix}")
        with _in_flight(tmp):  # another thread's cleanup must not take it for a leftover
            try:
                yield tmp
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise


@contextlib.contextmanager
def map_errors(path: Path, needed: int | None = None, staging: Path | None = None, name_as=None):
    """Re-raise write failures as :class:`SaveError` naming the file under ``path``.

    ``needed``: the caller's estimate of the whole save (bytes); ``staging``: the temp folder, whose
    file names are reported at their final place under ``path``; ``name_as``: the path to name
    (instead of a temp's).
    """
    try:
        yield
    except (OSError, RuntimeError) as exc:
        mapped = map_save_error(exc, path, needed=None if staging is not None else needed, staging=staging,
                                name_as=name_as)
        if mapped is None:
            raise
        if staging is not None and needed and mapped.needed is not None:
            mapped = SaveError(mapped.errno, mapped.filename, max(needed, mapped.needed), mapped.free, mapped.detail)
        if mapped is exc:
            raise
        raise mapped from (exc.__cause__ if isinstance(exc, SaveError) else exc)


# --- new folders (checkpoint-N): one directory rename ---------------------------------------------
@contextlib.contextmanager
def new_folder(path, replace_existing: bool = False, size_hint: int | None = None):
    """Yield a temp folder beside ``path``; it becomes ``path`` with one rename when the block succeeds.

    ``path`` must not exist unless ``replace_existing``: then the old folder is renamed aside
    (``.<name>.old-<owner>``) first and removed after the swap. A kill between those two renames
    leaves the old folder aside and ``path`` missing; ``checkpoint.clean_stale_temps`` puts it back
    (an error there puts it back at once).
    """
    path = Path(path)
    with map_errors(path, needed=size_hint, name_as=path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / owned_name(f".{path.name}.")
        tmp.mkdir()
    old = None
    with _in_flight(tmp):
        try:
            with map_errors(path, needed=size_hint, staging=tmp):
                yield tmp
                fsync_tree(tmp)
                _hook("staged", tmp)
                if path.exists() and replace_existing:
                    old = path.parent / owned_name(f".{path.name}.", kind="old")
                    os.replace(path, old)
                    _hook("moved", old)
                os.replace(tmp, path)
                fsync_path(path.parent)
                _hook("committed", path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            if old is not None and old.exists() and not path.exists():
                os.replace(old, path)  # the swap did not happen: the previous folder goes back
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --- existing folders: write the layout's files, keep everything else -------------------------
def save_folder(path, write_fn, size_hint: int | None = None) -> Path:
    """Save a model folder the way PyLate / ST / transformers do: overwrite the files the layout
    owns, leave every other entry of ``path`` alone.

    ``write_fn(tmp)`` writes the whole layout into a staging folder inside ``path``
    (``.save.tmp-<owner>``); when it succeeds the files are fsynced, a ``.complete`` marker is
    written, and each entry is moved into ``path`` with one rename.

    Guarantee under kill -9 (or power loss): before the marker exists, ``path`` is untouched (the
    staging folder is removed by the next save once its owner is dead); once it exists, the next
    :func:`recover_folder` of ``path`` (every save runs one first) rolls the remaining moves
    forward, so the folder ends up exactly as after an uninterrupted save. Only in the short window
    of the renames themselves can a reader that does not recover (e.g. torch PyLate) see some new
    files next to some old ones. Entries the layout does not name are never touched.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"Cannot save into {path}: it is a file, not a folder. Pass a folder path (it is "
                              f"created when missing), or move the file away.")
    with map_errors(path, needed=size_hint, name_as=path):
        path.mkdir(parents=True, exist_ok=True)
        recover_folder(path)
        tmp = path / owned_name(STAGING_PREFIX)
        tmp.mkdir()
    committed = False
    with _in_flight(tmp):
        try:
            with map_errors(path, needed=size_hint, staging=tmp):
                write_fn(tmp)
                _hook("staged", tmp)
                _check_no_type_clash(tmp, path)
                fsync_tree(tmp)
                (tmp / COMPLETE).write_bytes(b"")
                fsync_path(tmp)
                committed = True
                _hook("complete", tmp)
                _move_entries(tmp, path)
                fsync_path(path)
                _hook("committed", path)
        except BaseException:
            if not committed:  # nothing reached ``path``
                shutil.rmtree(tmp, ignore_errors=True)
            raise  # committed: the staging folder stays for roll-forward
    shutil.rmtree(tmp, ignore_errors=True)
    return path


def _check_no_type_clash(src: Path, dst: Path):
    """A layout folder where ``dst`` has a file (or the reverse) would stop the moves half way."""
    for entry in src.iterdir():
        target = dst / entry.name
        if not (target.exists() or target.is_symlink()):
            continue
        if entry.is_dir() and not (target.is_dir() and not target.is_symlink()):
            raise FileExistsError(
                f"Cannot save into {dst}: {target} is a file but the model layout needs a folder there. "
                f"Move or rename {target}, or save to another folder."
            )
        if not entry.is_dir() and target.is_dir() and not target.is_symlink():
            raise IsADirectoryError(
                f"Cannot save into {dst}: {target} is a folder but the model layout writes a file there. "
                f"Move or rename {target}, or save to another folder."
            )
        if entry.is_dir():
            _check_no_type_clash(entry, target)


def _move_entries(src: Path, dst: Path, skip=(COMPLETE,)):
    for entry in sorted(src.iterdir()):
        if entry.name in skip:
            continue
        target = dst / entry.name
        if entry.is_dir() and not entry.is_symlink():
            target.mkdir(exist_ok=True)
            _move_entries(entry, target, skip=())
        else:
            try:
                os.replace(entry, target)
            except FileNotFoundError:  # another process rolled this one forward first
                continue
            _hook("moved", target)


def _rewritten_since(src: Path, dst: Path, since_ns: int) -> bool:
    """Whether a file the staging folder still holds was written at ``dst`` after the save was marked complete."""
    for entry in src.iterdir():
        if entry.name == COMPLETE:
            continue
        target = dst / entry.name
        if entry.is_dir() and not entry.is_symlink():
            if target.is_dir() and _rewritten_since(entry, target, since_ns):
                return True
        elif target.exists() and target.stat().st_mtime_ns > since_ns:
            return True
    return False


def recover_folder(path) -> dict:
    """Finish or discard what killed saves left in ``path``; never touches a live process's temps.

    A staging folder with ``.complete`` is rolled forward (its remaining files moved in), unless
    one of those files was written again since (then the newer save wins); one without is removed;
    stray temp files of :func:`atomic_file` are removed. Returns what was done.
    """
    path = Path(path)
    done = {"rolled_forward": [], "removed": []}
    if not path.is_dir():
        return done
    for entry in sorted(path.iterdir()):
        if not entry.name.startswith(".") or owner_alive(entry) is not False:
            continue
        if entry.name.startswith(STAGING_PREFIX) and entry.is_dir():
            marker = entry / COMPLETE
            if marker.exists() and not _rewritten_since(entry, path, marker.stat().st_mtime_ns):
                _move_entries(entry, path)
                done["rolled_forward"].append(entry)
            else:  # incomplete, or the folder was saved again since (by a tool that does not recover)
                done["removed"].append(entry)
            shutil.rmtree(entry, ignore_errors=True)
        elif entry.is_file() and ".tmp-" in entry.name:
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
            done["removed"].append(entry)
    return done

"""``output_dir`` before training: checked (a folder, writable, room for a checkpoint), then locked.

Two live runs on one ``output_dir`` overwrite and rotate each other's checkpoints, so ``train()``
holds ``output_dir/.mlx_hf_bridge.lock`` with ``fcntl.flock``: the kernel drops it when the process
dies, so a lock file left by a killed run never blocks. The holder unlinks the file before
unlocking; a newcomer re-checks that the file it locked is still the one at the path.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import logging
import os
import shutil
import socket
import tempfile
import warnings
from pathlib import Path

from mlx.utils import tree_flatten

import mlx.core as mx

logger = logging.getLogger(__name__)

LOCK_NAME = ".mlx_hf_bridge.lock"
_JSON_ALLOWANCE = 1 << 20  # config / trainer_state / optimizer.json / card: well under 1 MiB


class OutputDirInUseError(RuntimeError):
    """Another live training run holds ``output_dir``."""


def _holder_text(raw: str) -> str:
    try:
        info = json.loads(raw)
        return f"pid {info['pid']} on host {info['host']}, started {info['started']}"
    except (ValueError, KeyError, TypeError):
        return "a process that has not written its details yet"


@contextlib.contextmanager
def output_dir_lock(output_dir):
    """Hold the lock on ``output_dir`` (created if missing; removed again if it is left empty)."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; training still works, unguarded
        warnings.warn("fcntl is not available on this platform: output_dir is not locked against a second "
                      "training run.", RuntimeWarning, stacklevel=3)
        yield
        return
    out = Path(output_dir)
    created = []
    for parent in (out, *out.parents):
        if parent.exists():
            break
        created.append(parent)
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):  # e.g. ENOLCK on some NFS
                os.close(fd)
                with contextlib.suppress(OSError):
                    path.unlink()
                logger.warning("Cannot lock %s (%s): output_dir is not guarded against a second training run.",
                               path, err.strerror)
                yield
                return
            holder = _holder_text(os.read(fd, 4096).decode("utf-8", "replace"))
            os.close(fd)
            raise OutputDirInUseError(
                f"output_dir {out} is in use by another training run ({holder}): two runs in one folder overwrite "
                "and rotate each other's checkpoints. Fix: give this run another output_dir, or wait for that run "
                "to finish."
            ) from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # locked a file its holder had just unlinked: take the new one
    info = {"pid": os.getpid(), "host": socket.gethostname(),
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps(info).encode())
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)
        for folder in created:  # innermost first; stops at the first non-empty one
            try:
                folder.rmdir()
            except OSError:
                break


# --- pre-flight ------------------------------------------------------------------------------------
def checkpoint_bytes(model, save_only_model: bool = False) -> int:
    """Estimated size of one checkpoint: the weights (trainable ones as fp32 masters), the two AdamW
    moments, the tokenizer files (~64 bytes per vocabulary entry) and the JSON files."""
    trainable = {k for k, _ in tree_flatten(model.trainable_parameters())}
    weights = moments = 0
    for name, v in tree_flatten(model.parameters()):
        floating = mx.issubdtype(v.dtype, mx.floating)
        if name in trainable and floating:
            weights += v.size * 4
            moments += 2 * v.size * 4
        else:
            weights += v.nbytes
    tokenizer = getattr(model, "tokenizer", None)
    try:
        tokenizer_bytes = 64 * len(tokenizer) if tokenizer is not None else 0
    except TypeError:
        tokenizer_bytes = 0
    return weights + (0 if save_only_model else moments) + tokenizer_bytes + _JSON_ALLOWANCE


def _fmt_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def check_output_dir(output_dir, needed_bytes: int, will_save: bool):
    """Raise before any step when ``output_dir`` cannot take a checkpoint; writes nothing that stays."""
    out = Path(output_dir)
    existing = out
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        where = "is a file" if existing == out else f"cannot be created: {existing} is a file"
        raise NotADirectoryError(
            errno.ENOTDIR,
            f"output_dir={str(out)!r} {where}, not a folder. Fix: pass a folder path for output_dir (checkpoints "
            "and the model are written into it), or move the file away.")
    try:
        fd, probe = tempfile.mkstemp(prefix=".mlx_hf_bridge.write-test-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OSError(err.errno, f"output_dir={str(out)!r}: no space left on the device holding {existing} "
                                     "(cannot create even an empty file). Fix: free space there or choose another "
                                     "output_dir.") from None
        cause = "the file system is read-only" if err.errno == errno.EROFS else f"permission denied ({err.strerror})"
        raise PermissionError(
            err.errno,
            f"output_dir={str(out)!r} is not writable: {cause} at {existing}. Fix: choose a folder you can write "
            "to, or fix its permissions / remount it read-write.") from None
    free = shutil.disk_usage(existing).free
    if free >= needed_bytes:
        return
    message = (f"output_dir={str(out)!r}: one checkpoint needs about {_fmt_bytes(needed_bytes)} (weights, AdamW "
               f"moments, tokenizer), but only {_fmt_bytes(free)} is free on the device holding {existing}.")
    if will_save:
        raise OSError(errno.ENOSPC, message + " Fix: free space there, choose another output_dir, or set "
                                              "save_only_model=True (no optimizer state, ~1/3 of the size).")
    logger.warning("%s Training saves no checkpoints (save_strategy='no'), but a final save_model() would fail.",
                   message)

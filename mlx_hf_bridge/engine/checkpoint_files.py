"""Which ``checkpoint-N`` folders (and files) this bridge wrote, so that rotation and cleanup touch
nothing else.

Every checkpoint gets a manifest, ``mlx_hf_bridge_checkpoint.json``, written last: the files the
bridge put there. Rotation deletes a folder only when it has the manifest, and deletes the whole
folder only when nothing else is in it; otherwise it removes just the listed files. A user's
folder that merely is called ``checkpoint-3`` (or a torch Trainer's) has no manifest and is never
touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import warnings
from pathlib import Path

from ..io_utils import owned_name, owner_alive, recover_folder

MANIFEST = "mlx_hf_bridge_checkpoint.json"
WRITTEN_BY = "mlx_hf_bridge"
_TEMP_RE = re.compile(r"^\.(?P<name>checkpoint-\d+)\.(?P<kind>tmp|old|del)-")


def _files(folder: Path) -> list[str]:
    """Relative paths (posix) of every file and link under ``folder``."""
    out = []
    for dirpath, dirs, files in os.walk(folder):
        rel = Path(dirpath).relative_to(folder)
        out += [(rel / name).as_posix() for name in files]
        out += [(rel / d).as_posix() for d in dirs if (Path(dirpath) / d).is_symlink()]
    return sorted(out)


def write_manifest(folder: Path):
    """List what is in ``folder`` (the bridge's staging folder for one checkpoint) as the bridge's own."""
    from .. import __version__

    data = {"written_by": WRITTEN_BY, "version": __version__, "files": _files(folder)}
    (Path(folder) / MANIFEST).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def manifest(folder) -> list[str] | None:
    """The files the bridge wrote in ``folder``, or ``None`` when it did not write it."""
    path = Path(folder) / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("written_by") != WRITTEN_BY or not isinstance(data.get("files"), list):
        return None
    return [str(f) for f in data["files"]]


def foreign_files(folder) -> list[str] | None:
    """Files in ``folder`` the bridge did not write (``None``: not a bridge checkpoint at all)."""
    own = manifest(folder)
    if own is None:
        return None
    own = set(own) | {MANIFEST}
    return [f for f in _files(Path(folder)) if f not in own]


def only_own_files(folder) -> bool:
    return foreign_files(folder) == []


def remove_checkpoint(folder) -> bool:
    """Delete a checkpoint the bridge wrote; ``False`` (and nothing touched) for any other folder.

    A folder holding only the bridge's files disappears with one rename (never seen half deleted);
    one with other files loses only the listed files (``trainer_state.json`` first, so it stops
    counting as a checkpoint at once), and a warning names what was kept.
    """
    folder = Path(folder)
    foreign = foreign_files(folder)
    if foreign is None:
        return False
    if not foreign:
        trash = folder.parent / owned_name(f".{folder.name}.", kind="del")
        os.replace(folder, trash)
        shutil.rmtree(trash, ignore_errors=True)
        return True
    own = sorted(manifest(folder), key=lambda f: (f != "trainer_state.json", f))
    for rel in own:
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            (folder / rel).unlink()
    for rel in sorted({str(Path(f).parent) for f in own if Path(f).parent != Path(".")}, key=len, reverse=True):
        with contextlib.suppress(OSError):  # only the bridge's subfolders, and only when left empty
            (folder / rel).rmdir()
    (folder / MANIFEST).unlink(missing_ok=True)
    warnings.warn(
        f"Rotated checkpoint {folder}: removed the files mlx_hf_bridge wrote and kept {len(foreign)} other "
        f"file(s) ({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}).",
        stacklevel=3,
    )
    return True


def clean_temps(output_dir) -> dict:
    """Tidy what killed saves left in ``output_dir``: only temps whose owner process is dead.

    ``.checkpoint-N.old-*`` (a checkpoint moved aside for a replacement that never landed) goes back
    to ``checkpoint-N`` when that is missing; other checkpoint temps are removed; the final save's
    staging is finished or removed by :func:`io_utils.recover_folder`.
    """
    out = Path(output_dir)
    done = {"restored": [], "removed": [], "rolled_forward": []}
    if not out.is_dir():
        return done
    for entry in sorted(out.iterdir()):
        m = _TEMP_RE.match(entry.name)
        if not m or not entry.is_dir() or owner_alive(entry) is not False:
            continue
        final = out / m.group("name")
        if m.group("kind") == "old" and not final.exists():
            with contextlib.suppress(FileNotFoundError):
                os.replace(entry, final)
                done["restored"].append(final)
                continue
        shutil.rmtree(entry, ignore_errors=True)
        done["removed"].append(entry)
    recovered = recover_folder(out)
    done["removed"] += recovered["removed"]
    done["rolled_forward"] += recovered["rolled_forward"]
    return done

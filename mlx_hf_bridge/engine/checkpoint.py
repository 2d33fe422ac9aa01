"""``checkpoint-N/`` folders: written atomically, read without pickle, rotated like HF.

Layout (HF names, MLX formats): the model folder (``model.save``), ``optimizer.safetensors`` +
``optimizer.json``, ``scheduler.json``, ``rng_state.json``, ``trainer_state.json``,
``training_args.json``, and last the manifest ``mlx_hf_bridge_checkpoint.json`` (the files the
bridge wrote: rotation deletes nothing else). The folder only appears (one rename) once everything
is on disk, so a kill mid-save leaves earlier checkpoints untouched.
"""

from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten

from ..io_utils import new_folder, save_folder, write_safetensors
from . import checkpoint_files
from .state import TrainerState

PREFIX = "checkpoint"
_CKPT_RE = re.compile(rf"^{PREFIX}-(\d+)$")
TRAINER_STATE = "trainer_state.json"
REQUIRED = (TRAINER_STATE, "optimizer.safetensors", "optimizer.json", "scheduler.json", "rng_state.json")


# --- RNG: python, numpy and the MLX key, as JSON ------------------------------------------------
def get_rng_state() -> dict:
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": [version, list(internal), gauss],
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "mlx": np.array(mx.random.state[0]).tolist(),
    }


def set_rng_state(state: dict):
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    key = mx.random.state[0]
    key[...] = mx.array(np.asarray(state["mlx"], dtype=np.uint32))  # in place: the global key has no setter
    mx.eval(key)


# --- discovery ----------------------------------------------------------------------------------
def list_checkpoints(output_dir, resumable: bool = True) -> list[Path]:
    """``checkpoint-N`` folders, oldest first (by N); with ``resumable`` only those resume can use
    (``save_only_model`` checkpoints lack the optimizer/RNG files but still count for rotation)."""
    out = Path(output_dir)
    if not out.is_dir():
        return []
    need = REQUIRED if resumable else (TRAINER_STATE,)
    found = []
    for p in out.iterdir():
        m = _CKPT_RE.match(p.name)
        if m and p.is_dir() and all((p / f).is_file() for f in need):
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def latest_checkpoint(output_dir) -> Path | None:
    ckpts = list_checkpoints(output_dir)
    return ckpts[-1] if ckpts else None


def check_checkpoint(path) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"resume_from_checkpoint={str(path)!r} is not a folder. Pass a checkpoint-N folder or True.")
    missing = [f for f in REQUIRED if not (path / f).is_file()]
    if missing:
        raise ValueError(
            f"{path} is not a complete mlx_hf_bridge checkpoint (missing {missing}). Checkpoints saved with "
            "save_only_model=True cannot be resumed, nor can torch Trainer checkpoints (optimizer.pt, "
            "rng_state.pth are pickles); pass another checkpoint-N folder or start a new run."
        )
    return path


def clean_stale_temps(output_dir):
    """Tidy what killed saves left behind: temps whose owner process is dead (never a live run's
    save in progress); a checkpoint moved aside by an interrupted replacement is put back."""
    return checkpoint_files.clean_temps(output_dir)


# --- save / load ----------------------------------------------------------------------------------
def _write_json(path: Path, data):
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n", encoding="utf-8")


def _json_default(o):
    if hasattr(o, "value"):  # enums
        return o.value
    if isinstance(o, (np.integer, np.floating)):
        return o.item()
    return str(o)


EXTRA_PARAMETERS = "loss_parameters.safetensors"


def extra_parameters(trained) -> dict:
    """The trained parameters outside the model (``trained.model``), e.g. SoftmaxLoss's classifier: saved
    beside the model so a resume continues them exactly (the model folder holds only the model)."""
    if getattr(trained, "model", None) is None:
        return {}
    return {k: v for k, v in tree_flatten(trained.trainable_parameters()) if not k.startswith("model.")}


def load_extra_parameters(trained, path) -> None:
    from ..loading import read_safetensors

    own = extra_parameters(trained)
    if not own:
        return
    file = Path(path) / EXTRA_PARAMETERS
    if not file.exists():
        raise ValueError(
            f"{path} has no {EXTRA_PARAMETERS}: it was not written by a run whose loss trains parameters of its own "
            f"({sorted(own)[:3]}...). Resume with the loss that wrote it, or start a new run."
        )
    tensors = read_safetensors(file, _RESUME_FIX)
    if tensors.keys() != own.keys() or any(tensors[k].shape != own[k].shape for k in own):
        raise ValueError(f"{file} does not match the loss's own parameters {sorted(own)[:3]}...; resume with the same loss.")
    trained.update(tree_unflatten(list(tensors.items())))


def save_checkpoint(path, model, optimizer, scheduler_state: dict, state: TrainerState, args_dict: dict,
                    save_only_model: bool = False, _before_commit=None, extra_json: dict | None = None,
                    extra_parameters: dict | None = None) -> Path:
    """Write everything into a temp folder, then rename it to ``path`` (atomic on one filesystem).

    ``extra_json`` maps file names to JSON-able dicts written into the checkpoint before it is committed
    (e.g. the weights' health record). An existing ``path`` the bridge wrote (only its own files) is
    replaced by a swap of two renames (a kill between them is undone by :func:`clean_stale_temps`);
    an existing folder with other files keeps them (the checkpoint's files are written into it).
    A full or read-only disk raises ``io_utils.SaveError`` and leaves no temp behind.
    """
    path = Path(path)

    def write(tmp: Path):
        model.save(str(tmp))
        if extra_parameters:
            write_safetensors(tmp / EXTRA_PARAMETERS, extra_parameters)
        if not save_only_model:
            tensors = optimizer.state_tensors()
            write_safetensors(tmp / "optimizer.safetensors", tensors or {"__empty__": mx.zeros((0,))})
            _write_json(tmp / "optimizer.json", optimizer.state_json())
            _write_json(tmp / "scheduler.json", scheduler_state)
            _write_json(tmp / "rng_state.json", get_rng_state())
        _write_json(tmp / "training_args.json", args_dict)
        for name, data in (extra_json or {}).items():
            _write_json(tmp / name, data)
        if _before_commit is not None:  # test hook: simulate a crash before the folder is committed
            _before_commit(tmp)
        (tmp / TRAINER_STATE).write_text(state.to_json_string(), encoding="utf-8")
        checkpoint_files.write_manifest(tmp)

    # for the error on a full disk: the weights, and AdamW's two moments
    size = sum(int(v.nbytes) for _, v in tree_flatten(model.parameters())) * (1 if save_only_model else 3)
    if path.exists() and not checkpoint_files.only_own_files(path):
        save_folder(path, write, size_hint=size)  # not (only) ours: overwrite the checkpoint's names, keep the rest
    else:
        with new_folder(path, replace_existing=True, size_hint=size) as tmp:
            write(tmp)
    return path


_RESUME_FIX = "Resume from another checkpoint-N folder (or start a new run); this one is damaged"


def load_trainer_state(path) -> TrainerState:
    """The saved ``TrainerState``; first checks every resume file parses (the model is loaded between
    here and :func:`load_optimizer`, so a damaged file must be named before anything changes)."""
    path = Path(path)
    from ..errors import read_json
    from ..loading import check_safetensors_complete

    for name, what in (("optimizer.json", "the optimizer settings"), ("scheduler.json", "the LR scheduler state"),
                       ("rng_state.json", "the random-number state")):
        if (path / name).exists():
            read_json(path / name, what, _RESUME_FIX)
    if (path / "optimizer.safetensors").exists():
        check_safetensors_complete(path / "optimizer.safetensors", _RESUME_FIX)
    data = read_json(path / TRAINER_STATE, "the trainer state", _RESUME_FIX)
    return TrainerState.from_json_string(json.dumps(data))


def load_optimizer(path, optimizer):
    from ..errors import read_json
    from ..loading import read_safetensors

    path = Path(path)
    meta = read_json(path / "optimizer.json", "the optimizer settings", _RESUME_FIX)
    tensors = read_safetensors(path / "optimizer.safetensors", _RESUME_FIX)
    optimizer.load_state(meta, {k: v for k, v in tensors.items() if k != "__empty__"})


def load_rng(path):
    from ..errors import read_json

    set_rng_state(read_json(Path(path) / "rng_state.json", "the random-number state", _RESUME_FIX))


def load_model_weights(model, path):
    """Put the checkpoint's weights into ``model`` (the object the optimizer and losses hold).

    Uses ``model.load_checkpoint(path)`` when the model has one; otherwise rebuilds the model class
    from the folder, as sentence-transformers does (``type(model)(path)``), and copies its parameters.
    """
    if hasattr(model, "load_checkpoint"):
        model.load_checkpoint(str(path))
        return
    loaded = type(model)(str(path))
    ours = dict(tree_flatten(model.parameters()))
    theirs = dict(tree_flatten(loaded.parameters()))
    if ours.keys() != theirs.keys() or any(ours[k].shape != theirs[k].shape for k in ours):
        diff = sorted(set(ours) ^ set(theirs))[:5]
        raise ValueError(
            f"Checkpoint {path} does not match the model being trained (e.g. {diff}); resume with the same model."
        )
    model.update(tree_unflatten(list(theirs.items())))  # flat: non-array attrs (e.g. prompts dicts) may differ
    mx.eval(model.parameters())


def rotate_checkpoints(output_dir, save_total_limit, keep=None) -> list[Path]:
    """Delete the oldest checkpoints beyond ``save_total_limit``; never those in ``keep`` (a path or
    several: the best one, the newest one known to be good), which with the latest may exceed the limit
    (HF: ``save_total_limit=1`` with a best checkpoint keeps two).

    Only checkpoints this bridge wrote (with its manifest) count and are deleted; a user's folder
    that merely has a ``checkpoint-N`` name is left alone (see ``checkpoint_files``).
    """
    if not save_total_limit or save_total_limit <= 0:
        return []
    ckpts = [p for p in list_checkpoints(output_dir, resumable=False) if checkpoint_files.manifest(p) is not None]
    keeps = [keep] if isinstance(keep, (str, os.PathLike)) else list(keep or [])
    keeps = {Path(k).resolve() for k in keeps if k}
    kept = [p for p in ckpts if p.resolve() in keeps]
    latest_extra = int(bool(ckpts) and ckpts[-1].resolve() not in keeps)
    limit = max(save_total_limit, len(kept) + latest_extra)
    removable = [p for p in ckpts if p.resolve() not in keeps]
    deleted = []
    while len(ckpts) - len(deleted) > limit and removable:
        victim = removable.pop(0)
        # renamed away in one step (or only its listed files removed), so never seen half deleted
        if checkpoint_files.remove_checkpoint(victim):
            deleted.append(victim)
    return deleted

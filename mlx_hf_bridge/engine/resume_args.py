"""The warning when a run resumes with other training arguments than its checkpoint was saved with."""

from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger("mlx_hf_bridge.engine.trainer")  # the trainer's logger, as before the move

RESUME_KEYS = ("per_device_train_batch_size", "gradient_accumulation_steps", "seed", "data_seed",
               "num_train_epochs", "max_steps", "learning_rate", "lr_scheduler_type", "warmup_steps",
               "weight_decay", "max_grad_norm", "batch_sampler", "dataloader_drop_last")


def _plain(value):
    return getattr(value, "value", value)


def warn_if_args_changed(resume, now: dict, keys=RESUME_KEYS):
    from ..errors import read_json

    path = Path(resume) / "training_args.json"
    if not path.is_file():
        return
    saved = read_json(path, "the checkpoint's training arguments",
                      "Delete that file to resume without the check, or resume from another checkpoint")
    changed = [k for k in keys if k in saved and k in now and saved[k] != _plain(now[k])]
    if changed:
        logger.warning("Resuming %s with different %s than it was saved with: the run will not continue exactly.",
                       resume, ", ".join(f"{k} ({saved[k]!r} -> {_plain(now[k])!r})" for k in changed))

"""Which checkpoints are "good": finite weights that the step after them could train from.

A checkpoint's weights can be finite and still useless (lr 1e30: max|w| 1e30, the next loss NaN),
so each ``checkpoint-N/`` carries ``checkpoint_health.json``: ``weights_finite`` and
``max_abs_weight`` when saved, and ``verified`` -- "pending" until the next optimizer step has run
from those weights, then "ok" (that step's loss and gradient norm were finite) or "failed" (they
were not: resuming from it gives the same NaN at once, whatever the learning rate). The record is
rewritten atomically. A checkpoint without the record (older runs) is taken as good.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten

from ..io_utils import atomic_file
from .checkpoint import _CKPT_RE, check_checkpoint, list_checkpoints

logger = logging.getLogger(__name__)

HEALTH_FILE = "checkpoint_health.json"


def _number(x):
    return x if x is None or math.isfinite(x) else str(x)  # JSON has no nan/inf


def weights_record(model, step: int) -> dict:
    """The health record a checkpoint is saved with (one max-|w| reduction over the weights)."""
    arrays = [v for _, v in tree_flatten(model.parameters()) if mx.issubdtype(v.dtype, mx.floating)]
    if arrays:
        per_array = mx.stack([mx.abs(v).max().astype(mx.float32) for v in arrays])
        finite = mx.isfinite(per_array).all()
        mx.eval(per_array, finite)
        max_abs, finite = per_array.max().item(), bool(finite.item())
    else:
        max_abs, finite = 0.0, True
    return {"step": step, "weights_finite": finite, "max_abs_weight": _number(max_abs),
            "verified": "pending" if finite else "failed",
            "reason": None if finite else "its weights are not finite"}


def read_record(path) -> dict | None:
    try:
        return json.loads((Path(path) / HEALTH_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def record_next_step(path, step: int, loss: float, grad_norm: float, ok: bool):
    """Note in ``path``'s record what the first step from its weights gave (atomic rewrite)."""
    path = Path(path)
    if not path.is_dir():  # rotated away meanwhile
        return
    record = read_record(path) or {"step": None, "weights_finite": None, "max_abs_weight": None}
    bad = "loss" if not math.isfinite(loss) else "grad_norm"
    record.update(verified="ok" if ok else "failed", verified_by_step=step, next_step_loss=_number(loss),
                  next_step_grad_norm=_number(grad_norm),
                  reason=None if ok else f"the step after it (step {step}) gave a non-finite {bad} from its weights "
                                         f"(loss={loss}, grad_norm={grad_norm}), so resuming from it fails at once")
    try:
        with atomic_file(path / HEALTH_FILE) as tmp:
            tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    except OSError as err:  # a full disk must not hide the training error being reported
        logger.warning("Could not update %s: %s", path / HEALTH_FILE, err)


def why_not_good(path) -> str | None:
    """None when ``path`` is a good checkpoint, else the reason it is not."""
    record = read_record(path)
    if record is None:
        return None
    if record.get("weights_finite") is False:
        return record.get("reason") or "its weights are not finite"
    if record.get("verified") == "failed":
        return record.get("reason") or "the step after it gave a non-finite loss or gradient norm"
    return None


def _trained_from(path) -> bool:
    """A step has trained from ``path``'s weights with a finite loss (or it predates the records)."""
    record = read_record(path)
    return record is None or record.get("verified") == "ok"


def rotation_keeps(output_dir, best) -> list:
    """What checkpoint rotation must keep: the best checkpoint and, unless the best is one, the newest
    checkpoint a step has trained from finitely. The latest is only "pending" right after its save, so
    with ``save_total_limit=1`` a NaN at the next step would otherwise leave nothing to resume from."""
    if best and _trained_from(best):
        return [best]
    for path in reversed(list_checkpoints(output_dir, resumable=False)):
        if _trained_from(path):
            return [best, path]
    return [best]


def describe(path) -> str:
    """``path`` plus what its record says, for messages."""
    record = read_record(path) or {}
    bits = []
    if record.get("max_abs_weight") is not None:
        bits.append(f"max|w| {record['max_abs_weight']:.3g}" if isinstance(record["max_abs_weight"], float)
                    else f"max|w| {record['max_abs_weight']}")
    if record.get("verified") == "ok":
        bits.append(f"step {record.get('verified_by_step')} trained from it with a finite loss")
    elif record.get("verified") == "pending":
        bits.append("not yet trained from")
    return f"{path} ({', '.join(bits)})" if bits else str(path)


def latest_good_checkpoint(output_dir, up_to_step: int | None = None) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest resumable checkpoint that is good (at most ``up_to_step``), and the newer ones
    skipped on the way, each with its reason."""
    skipped = []
    for path in reversed(list_checkpoints(output_dir)):
        if up_to_step is not None and int(_CKPT_RE.match(path.name).group(1)) > up_to_step:
            continue
        reason = why_not_good(path)
        if reason is None:
            return path, skipped
        skipped.append((path, reason))
    return None, skipped


def stop_message(err, step: int, epoch: float, args) -> str:
    """The NonFiniteLossError text: the cause with its values, the last good checkpoint, the fix."""
    if err.cause == "weights":
        what = (f"{err}; the fused AdamW updates in place, so the model in memory now holds these non-finite "
                "weights (do not save it)")
    else:
        name = "loss" if err.cause == "loss" else "gradient norm"
        what = (f"the {name} was non-finite (loss={err.loss}, grad_norm={err.grad_norm}); this update was not "
                f"applied, the model holds the weights after step {step - 1}")
    found, skipped = latest_good_checkpoint(args.output_dir, up_to_step=step - 1)
    last = describe(found) if found is not None else "none"
    if skipped:
        last += " (not good: " + "; ".join(f"{p.name}: {r}" for p, r in skipped) + ")"
    then = (f"then train(resume_from_checkpoint=True), which resumes from {found.name}" if found is not None
            else "then start a new run (there is no good checkpoint to resume from)")
    return (f"Training stopped at step {step} (epoch {epoch:.2f}): {what}. Last good checkpoint: {last}. "
            f"Fix: lower learning_rate (it is {args.learning_rate}), keep max_grad_norm > 0 (it is "
            f"{args.max_grad_norm}), check the data for empty texts or NaN labels, {then}.")


def resolve_resume(resume_from_checkpoint, output_dir):
    """``train(resume_from_checkpoint=...)`` -> the folder to resume from (None: a fresh run).

    ``True`` takes the newest good checkpoint and logs the newer ones it skipped, with the reason.
    """
    if resume_from_checkpoint in (None, False):
        return None
    if resume_from_checkpoint is True:
        found, skipped = latest_good_checkpoint(output_dir)
        for path, reason in skipped:
            logger.warning("resume_from_checkpoint=True: skipping %s: %s.", path, reason)
        if found is None and skipped:
            raise ValueError(
                f"No good checkpoint in {output_dir}: " + "; ".join(f"{p.name}: {r}" for p, r in skipped)
                + ". Fix: start a new run (resume_from_checkpoint=None) with a lower learning_rate.")
        if found is None:
            raise ValueError(f"No valid checkpoint found in output directory ({output_dir})")
        return found
    path = check_checkpoint(resume_from_checkpoint)
    reason = why_not_good(path)
    if reason is not None:
        logger.warning("Resuming from %s although %s.", path, reason)
    return path

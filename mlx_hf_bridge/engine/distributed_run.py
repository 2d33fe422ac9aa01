"""What the training loop does differently under ``mlx.launch`` (torch DDP + accelerate semantics).

- each rank trains on its shard of every global batch (``ShardedBatchSampler``); a global step is
  ``world_size x per_device_train_batch_size x gradient_accumulation_steps`` samples;
- rank 0's trainable weights are broadcast once at the start and the gradients are averaged inside
  every step, so the weights stay identical on every rank;
- rank 0 alone writes checkpoints, health records and the final save; the others wait at a barrier;
- every rank resumes from the same checkpoint, and a checkpoint written on another number of
  processes is refused (its batches and data order would differ);
- evaluation runs in full on every rank without communication (same metrics, same best-model
  decisions everywhere), as on one process;
- a rank that dies makes the others raise ``DistributedError``; one that hangs trips the watchdog
  after ``ddp_timeout`` seconds (HF's argument, default 1800).
With one process every method is a no-op.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from . import distributed
from .sampling import ShardedBatchSampler

WORLD_FILE = "distributed.json"


class DataParallel:
    def __init__(self, args):
        self.world = distributed.group()
        self.rank = self.world.rank() if self.world is not None else 0
        self.size = self.world.size() if self.world is not None else 1
        timeout = getattr(args, "ddp_timeout", None)
        self.timeout = float(timeout) if timeout else distributed.DEFAULT_TIMEOUT
        self.per_device = int(args.per_device_train_batch_size)

    @classmethod
    def single(cls) -> "DataParallel":
        """The one-process stand-in (before train() looked for a group)."""
        dp = cls.__new__(cls)
        dp.world, dp.rank, dp.size, dp.timeout, dp.per_device = None, 0, 1, distributed.DEFAULT_TIMEOUT, 0
        return dp

    @property
    def active(self) -> bool:
        return self.world is not None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, sampler, num_examples: int):
        """This rank's share of ``sampler``; every rank must see the same data (else the collectives of
        one step would not pair up: a hang), so the sizes are compared first."""
        if not self.active:
            return sampler
        seen = distributed.agree(self.world, [float(num_examples), float(len(sampler))], "comparing the datasets",
                                 self.timeout)
        if any(row != seen[0] for row in seen):
            sizes = ", ".join(f"rank {r}: {int(n)} rows / {int(b)} batches" for r, (n, b) in enumerate(seen))
            raise distributed.DistributedError(
                f"The ranks have different training data ({sizes}). Every rank must load the same dataset in "
                "the same order (the engine gives each its shard); shuffle with a fixed seed, or not at all.")
        return ShardedBatchSampler(sampler, self.size, self.rank)

    def guard(self, what: str):
        return distributed.guard(self.world, what, self.timeout) if self.active else contextlib.nullcontext()

    def barrier(self, what: str):
        distributed.barrier(self.world, what, self.timeout)

    def on_main(self, what: str, fn, *args, **kwargs):
        """``fn`` on rank 0 only, then every rank waits for it; returns fn's result on rank 0, else None."""
        result = fn(*args, **kwargs) if self.is_main else None
        if self.active:
            self.barrier(f"waiting for rank 0 to finish {what}")
        return result

    # --- start-up --------------------------------------------------------------------------------------
    def start(self, runner, state):
        """Same weights everywhere (DDP's broadcast from rank 0), then gradients averaged every step."""
        state.is_world_process_zero = state.is_local_process_zero = self.is_main
        if not self.active:
            return
        from . import distributed_heartbeat

        distributed_heartbeat.start(self.world)  # once per process: names a rank that dies
        with self.guard("broadcasting rank 0's weights"):
            params = distributed.broadcast_from_zero(runner.params, self.world)
            import mlx.core as mx

            mx.eval(params)
        runner.params = params
        runner.model.update(_unflatten(params))
        runner.reducer = distributed.Reducer(self.world)

    def check_resume(self, resume):
        """Every rank must resume from the same checkpoint, written on as many processes as run now."""
        step = _step_of(resume)
        saved = saved_world_size(resume) if resume is not None else self.size
        if not self.active:
            _refuse_world_change(resume, saved, 1)
            return
        seen = distributed.agree(self.world, [float(step), float(saved)], "agreeing on the checkpoint to resume",
                                 self.timeout)
        steps = [int(s) for s, _ in seen]
        if len(set(steps)) > 1:
            where = ", ".join(f"rank {r}: {'none' if s < 0 else f'checkpoint-{s}'}" for r, s in enumerate(steps))
            raise distributed.DistributedError(
                f"The ranks resolved different checkpoints to resume from ({where}). Every rank must see the "
                "same output_dir: use a folder shared by all hosts, or copy the checkpoint to each host, or "
                "pass the same resume_from_checkpoint path to every rank.")
        _refuse_world_change(resume, saved, self.size)

    def world_record(self) -> dict:
        return {"world_size": self.size, "per_device_train_batch_size": self.per_device}


class ProcessZeroMixin:
    """transformers' ``Trainer.is_world_process_zero()`` / ``is_local_process_zero()`` (rank 0 of
    ``mlx.launch``; local = world: the ring backend gives no per-host rank)."""

    def is_world_process_zero(self) -> bool:
        return distributed.rank() == 0

    is_local_process_zero = is_world_process_zero


def _unflatten(flat: dict):
    from mlx.utils import tree_unflatten

    return tree_unflatten(list(flat.items()))


def _step_of(resume) -> int:
    if resume is None:
        return -1
    name = Path(resume).name
    return int(name.rsplit("-", 1)[-1]) if name.rsplit("-", 1)[-1].isdigit() else 0


def saved_world_size(checkpoint) -> int:
    """The number of processes that wrote ``checkpoint`` (1 when it has no record: single-process runs)."""
    path = Path(checkpoint) / WORLD_FILE
    if not path.is_file():
        return 1
    try:
        return int(json.loads(path.read_text())["world_size"])
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path} is unreadable ({err}). Delete it to resume as a single-process checkpoint.") from None


def _refuse_world_change(resume, saved: int, now: int):
    if resume is None or saved == now:
        return
    raise ValueError(
        f"{resume} was written by a run on {saved} process(es); this run has {now}. Resuming would change the "
        "samples of every step and the data order, so the run would not continue where it stopped. Fix: relaunch "
        f"on {saved} process(es) (mlx.launch -n {saved} ... for one host), or start a new run from its weights "
        "(load the model from that checkpoint folder and train without resume_from_checkpoint).")

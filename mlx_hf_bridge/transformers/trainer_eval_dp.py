"""transformers' evaluation under data parallel (``mlx.launch``), as accelerate runs it for the Trainer.

The evaluation batches (``per_device_eval_batch_size`` each, in the one-process order) are dealt out
to the ranks as accelerate's ``BatchSamplerShard`` does (``even_batches``: the last round is completed
with rows from the start of the set); after each step every rank pads its token axis to the widest
rank's (``pad_across_processes(dim=1, pad_index=-100)``), gathers losses, logits, labels and inputs of
every rank (``gather_for_metrics``) and, at the last step, keeps only the first
``len(dataset) % (batch x world)`` gathered rows, so the wrap-around rows are dropped. Every rank then
holds the predictions of a one-process run, in its order, and computes the same metrics.

Reproduced as transformers does it: a batch's loss is its mean, repeated for each of its rows, so
when the last round holds a short batch the kept rows carry the mean of that batch *with* its
wrap-around rows (``eval_loss`` then differs from one process; predictions and metrics do not).
"""

from __future__ import annotations

import numpy as np

from ..engine import distributed
from ..engine.sampling import ShardedBatchSampler

PAD_INDEX = -100


class EvalGather:
    """The collectives of one evaluation on ``world`` (bytes are gathered: exact for every dtype)."""

    def __init__(self, world, timeout: float):
        self.world, self.timeout = world, timeout

    def shard(self, sampler):
        return ShardedBatchSampler(sampler, self.world.size(), self.world.rank())

    def check_size(self, n_rows: int):
        seen = distributed.agree(self.world, [float(n_rows)], "comparing the evaluation datasets", self.timeout)
        if len({row[0] for row in seen}) > 1:
            sizes = ", ".join(f"rank {r}: {int(row[0])} rows" for r, row in enumerate(seen))
            raise distributed.DistributedError(
                f"The ranks evaluate different datasets ({sizes}). Every rank must pass the same eval_dataset: "
                "the Trainer gives each its shard.")

    def total(self, value: int) -> int:
        """The sum of ``value`` over the ranks (transformers' gathered ``num_items_in_batch``)."""
        return int(sum(row[0] for row in distributed.agree(self.world, [float(value)], "counting num_items_in_batch",
                                                           self.timeout)))

    def pad_across(self, value):
        """accelerate's ``pad_across_processes(value, dim=1, pad_index=-100)`` (nested structures too)."""
        if isinstance(value, (tuple, list)):
            return type(value)(self.pad_across(v) for v in value)
        if isinstance(value, dict):
            return {k: self.pad_across(v) for k, v in value.items()}
        if value is None or np.ndim(value) < 2:
            return value
        value = np.asarray(value)
        widest = int(max(row[0] for row in distributed.agree(self.world, [float(value.shape[1])],
                                                              "comparing evaluation shapes", self.timeout)))
        if widest == value.shape[1]:
            return value
        out = np.full((value.shape[0], widest, *value.shape[2:]), PAD_INDEX, dtype=value.dtype)
        out[:, : value.shape[1]] = value
        return out

    def gather(self, value):
        """Every rank's ``value`` concatenated along axis 0, in rank order (accelerate's ``gather``)."""
        if isinstance(value, (tuple, list)):
            return type(value)(self.gather(v) for v in value)
        if isinstance(value, dict):
            return {k: self.gather(v) for k, v in value.items()}
        if value is None:
            return None
        import mlx.core as mx

        value = np.ascontiguousarray(value)
        scalar = value.ndim == 0
        rows = value.reshape(1, -1) if scalar else value.reshape(value.shape[0], -1)
        raw = rows.view(np.uint8).reshape(rows.shape[0], -1)
        with distributed.guard(self.world, "gathering evaluation outputs", self.timeout):
            got = np.array(mx.distributed.all_gather(mx.array(raw), group=self.world))
        shape = (-1,) if scalar else (-1, *value.shape[1:])
        return np.ascontiguousarray(got).view(value.dtype).reshape(shape)


def truncate(value, rows: int):
    """accelerate's last-batch trim in ``gather_for_metrics``: the first ``rows`` gathered rows."""
    if isinstance(value, (tuple, list)):
        return type(value)(truncate(v, rows) for v in value)
    if isinstance(value, dict):
        return {k: truncate(v, rows) for k, v in value.items()}
    return value if value is None else value[:rows]


def last_batch_rows(n_rows: int, batch_size: int, world_size: int, drop_last: bool) -> int:
    """accelerate's ``gradient_state.remainder`` (0: keep the whole last gathered batch)."""
    return 0 if drop_last else n_rows % (batch_size * world_size)

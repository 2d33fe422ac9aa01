"""The data-parallel shard of a batch sampler = accelerate's BatchSamplerShard (no split, even batches)."""

from __future__ import annotations

import pytest

from mlx_hf_bridge.engine.sampling import DefaultBatchSampler, ShardedBatchSampler


class _Fixed:
    """A plain list of batches with a batch size, as accelerate sees a torch BatchSampler."""

    def __init__(self, batches, batch_size, drop_last):
        self.batches, self.batch_size, self.drop_last = batches, batch_size, drop_last

    def __iter__(self):
        return iter([list(b) for b in self.batches])

    def __len__(self):
        return len(self.batches)


CASES = [(n, bs, world, drop) for n in (1, 3, 7, 8, 12, 13, 17, 24) for bs in (1, 2, 4) for world in (2, 3)
         for drop in (False, True)]


@pytest.mark.parametrize("n,bs,world,drop", CASES)
def test_shards_equal_accelerate(n, bs, world, drop):
    accelerate = pytest.importorskip("accelerate.data_loader")
    ours_src = DefaultBatchSampler(list(range(n)), bs, drop, seed=3)
    batches = list(ours_src)
    ref_src = _Fixed(batches, bs, drop)
    for rank in range(world):
        ref = accelerate.BatchSamplerShard(ref_src, num_processes=world, process_index=rank)
        ours = ShardedBatchSampler(ours_src, world, rank)
        assert list(ours) == list(ref), (rank, batches)
        assert len(ours) == len(ref)


@pytest.mark.parametrize("world", [2, 3])
def test_variable_batch_sizes_equal_accelerate(world):
    accelerate = pytest.importorskip("accelerate.data_loader")
    batches = [[0, 1, 2], [3, 4], [5], [6, 7, 8, 9], [10]]
    for cut in range(1, len(batches) + 1):
        src = _Fixed(batches[:cut], None, False)
        for rank in range(world):
            ref = list(accelerate.BatchSamplerShard(src, num_processes=world, process_index=rank))
            assert list(ShardedBatchSampler(src, world, rank)) == ref


def test_two_ranks_of_four_are_the_batch_of_eight():
    """World 2 x per-device 4 sees the same samples per step as world 1 x batch 8 (same seed)."""
    data = list(range(24))
    eight = list(DefaultBatchSampler(data, 8, False, seed=5))
    four = DefaultBatchSampler(data, 4, False, seed=5)
    shards = [list(ShardedBatchSampler(four, 2, r)) for r in range(2)]
    assert [a + b for a, b in zip(*shards)] == eight

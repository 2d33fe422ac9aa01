"""sentence-transformers' batch samplers without torch: same algorithms, NumPy RNG.

Every sampler re-seeds from ``seed + epoch`` at the start of ``__iter__``, so the batch order of an
epoch is a pure function of (seed, epoch): a resumed run regenerates it and skips the batches
already done. The order differs from torch's ``randperm`` for the same seed (different RNG).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict, deque
from itertools import accumulate, cycle

import numpy as np


class DefaultBatchSampler:
    """Random order, consecutive chunks of ``batch_size`` (torch's RandomSampler + BatchSampler)."""

    def __init__(self, dataset, batch_size: int, drop_last: bool, valid_label_columns=None, generator=None, seed: int = 0):
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.drop_last = bool(drop_last)
        self.valid_label_columns = valid_label_columns
        self.seed = int(seed or 0)
        self.epoch = 0

    def set_epoch(self, epoch: int):
        self.epoch = int(epoch)

    def _rng(self):
        return np.random.default_rng(self.seed + self.epoch)

    def __iter__(self):
        order = self._rng().permutation(len(self.dataset))
        n = len(order)
        stop = n - n % self.batch_size if self.drop_last else n
        for i in range(0, stop, self.batch_size):
            yield order[i : i + self.batch_size].tolist()

    def __len__(self):
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


def _row_values(row: dict, exclude) -> set[str]:
    return {str(v) for k, v in row.items() if k not in exclude}


class NoDuplicatesBatchSampler(DefaultBatchSampler):
    """No text value repeats within a batch, across all non-label columns (ST's algorithm)."""

    def __init__(self, dataset, batch_size, drop_last, valid_label_columns=None, generator=None, seed=0,
                 precompute_hashes: bool = False):
        super().__init__(dataset, batch_size, drop_last, valid_label_columns, generator, seed)
        self.exclude = {"dataset_name", *(valid_label_columns or [])}
        self.precompute_hashes = precompute_hashes
        self._hashes = None

    def _values(self):
        if self._hashes is None:
            cols = [c for c in self.dataset.column_names if c not in self.exclude]
            data = {c: self.dataset[c] for c in cols}
            if self.precompute_hashes:  # 8-byte digests: less memory than the strings, deterministic
                self._hashes = [
                    {hashlib.blake2b(str(data[c][i]).encode(), digest_size=8).digest() for c in cols}
                    for i in range(len(self.dataset))
                ]
            else:
                self._hashes = [{str(data[c][i]) for c in cols} for i in range(len(self.dataset))]
        return self._hashes

    def __iter__(self):
        values = self._values()
        remaining = self._rng().permutation(len(self.dataset)).tolist()
        while remaining:
            batch, seen, rest = [], set(), []
            for pos, idx in enumerate(remaining):
                if len(batch) == self.batch_size:
                    rest.extend(remaining[pos:])
                    break
                if values[idx].isdisjoint(seen):
                    batch.append(idx)
                    seen |= values[idx]
                else:
                    rest.append(idx)
            remaining = rest
            if len(batch) == self.batch_size or not self.drop_last:
                yield batch  # as ST, duplicates left over form further (smaller) batches


class GroupByLabelBatchSampler(DefaultBatchSampler):
    """Labels take turns giving 2 samples each; every batch has >= 2 labels with >= 2 samples (ST)."""

    def __init__(self, dataset, batch_size, drop_last, valid_label_columns=None, generator=None, seed=0):
        super().__init__(dataset, batch_size, drop_last, valid_label_columns, generator, seed)
        if self.batch_size < 4 or self.batch_size % 2 == 1:
            raise ValueError(f"GroupByLabelBatchSampler: batch_size must be an even number >= 4, got {self.batch_size}.")
        column = next((c for c in valid_label_columns or [] if c in dataset.column_names), None)
        if column is None:
            raise ValueError(
                f"GroupByLabelBatchSampler needs a label column (one of {valid_label_columns}); "
                f"the dataset has {dataset.column_names}."
            )
        groups = defaultdict(list)
        for i, label in enumerate(dataset[column]):
            groups[label].append(i)
        self.groups = {k: v[: len(v) // 2 * 2] for k, v in groups.items() if len(v) >= 2}
        if len(self.groups) < 2:
            raise ValueError("GroupByLabelBatchSampler needs at least 2 distinct labels with >= 2 samples each.")
        pairs = sorted((len(v) // 2 for v in self.groups.values()), reverse=True)
        self._stream_length = 2 * sum(min(p, pairs[1]) for p in pairs)

    def __iter__(self):
        rng = self._rng()
        queues = {k: deque(np.asarray(v)[rng.permutation(len(v))].tolist()) for k, v in self.groups.items()}
        labels, batch = list(queues), []
        while len(labels) >= 2:
            labels = [labels[i] for i in rng.permutation(len(labels))]
            for label in labels:
                batch += [queues[label].popleft(), queues[label].popleft()]
                if len(batch) >= self.batch_size:
                    yield batch[: self.batch_size]
                    batch = batch[self.batch_size :]
            labels = [k for k in labels if queues[k]]
        if not self.drop_last and len(batch) >= 4:
            yield batch

    def __len__(self):
        n = self._stream_length // self.batch_size
        return n + int(not self.drop_last and self._stream_length % self.batch_size >= 4)


class MultiDatasetBatchSampler:
    """Base for multi-dataset samplers: every batch comes from one sub-dataset; indices are global."""

    def __init__(self, sizes: list[int], batch_samplers: list, seed: int = 0):
        self.sizes, self.batch_samplers, self.seed, self.epoch = list(sizes), batch_samplers, int(seed or 0), 0
        self.offsets = [0, *accumulate(self.sizes)]

    def set_epoch(self, epoch: int):
        self.epoch = int(epoch)
        for s in self.batch_samplers:
            if hasattr(s, "set_epoch"):
                s.set_epoch(epoch)


class RoundRobinBatchSampler(MultiDatasetBatchSampler):
    def __iter__(self):
        iters = [iter(s) for s in self.batch_samplers]
        for d in cycle(range(len(iters))):
            try:
                yield [i + self.offsets[d] for i in next(iters[d])]
            except StopIteration:
                return

    def __len__(self):
        return min(len(s) for s in self.batch_samplers) * len(self.batch_samplers)


class ProportionalBatchSampler(MultiDatasetBatchSampler):
    def __iter__(self):
        rng = np.random.default_rng(self.seed + self.epoch)
        which = np.repeat(np.arange(len(self.batch_samplers)), [len(s) for s in self.batch_samplers])
        iters = [iter(s) for s in self.batch_samplers]
        for d in which[rng.permutation(len(which))].tolist():
            batch = next(iters[d], None)
            if batch is not None:
                yield [i + self.offsets[d] for i in batch]

    def __len__(self):
        return sum(len(s) for s in self.batch_samplers)


BATCH_SAMPLERS = {
    "batch_sampler": DefaultBatchSampler,
    "no_duplicates": NoDuplicatesBatchSampler,
    "no_duplicates_hashed": lambda *a, **k: NoDuplicatesBatchSampler(*a, precompute_hashes=True, **k),
    "group_by_label": GroupByLabelBatchSampler,
}
MULTI_DATASET_SAMPLERS = {"round_robin": RoundRobinBatchSampler, "proportional": ProportionalBatchSampler}


class ShardedBatchSampler:
    """One rank's share of a batch sampler under data parallel (accelerate's ``BatchSamplerShard``,
    ``split_batches=False``, ``even_batches=True``): the sampler's batches of
    ``per_device_train_batch_size`` are dealt out in turn, so global step ``k`` trains on batches
    ``k*W .. k*W+W-1`` (rank ``r`` takes the ``r``-th). Every rank gets the same number of full batches:
    with ``drop_last`` an incomplete last round is dropped, otherwise it is completed with samples
    from the start of the epoch (accelerate's wrap-around)."""

    def __init__(self, batch_sampler, num_processes: int, process_index: int):
        self.batch_sampler, self.num_processes, self.process_index = batch_sampler, num_processes, process_index
        self.batch_size = getattr(batch_sampler, "batch_size", None)
        self.drop_last = bool(getattr(batch_sampler, "drop_last", False))

    def set_epoch(self, epoch: int):
        if hasattr(self.batch_sampler, "set_epoch"):
            self.batch_sampler.set_epoch(epoch)

    def __len__(self):
        full, rest = divmod(len(self.batch_sampler), self.num_processes)
        return full + int(rest > 0 and not self.drop_last)

    def __iter__(self):
        n, me, size = self.num_processes, self.process_index, self.batch_size
        batches = list(self.batch_sampler)
        # a round is yielded when its last batch is full (or batch sizes vary): as accelerate
        for start in range(0, len(batches) - n + 1, n):
            if size is None or len(batches[start + n - 1]) == size:
                yield batches[start + me]
        if self.drop_last or not batches:
            return
        tail = [list(b) for b in batches[(len(batches) - 1) // n * n :]]  # the last round
        if len(tail) == n and (size is None or len(tail[-1]) == size):
            return  # it was complete, and yielded above
        if size is None:  # variable sizes: whole batches from the start of the epoch fill the round
            pool = [list(b) for b in batches[:n]]
            while len(pool) < n:
                pool += pool
            yield (tail + pool[: n - len(tail)])[me]
            return
        # the round's full batches stand; its short last batch and the missing ones are filled with
        # samples from the start of the epoch, in order (accelerate's initial_data)
        pool = [i for b in batches[:n] for i in b]
        while len(pool) < n * size:
            pool += pool
        cursor, out = 0, []
        for pos in range(n):
            b = tail[pos] if pos < len(tail) else []
            need = size - len(b)
            out.append(b + pool[cursor : cursor + need])
            cursor += need
        yield out[me]

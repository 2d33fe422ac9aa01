"""GradCache (Gao et al., 2021), once, for every cached loss: PyLate's ``CachedContrastive``, ST 6's
``CachedMultiVectorMultipleNegativesRankingLoss`` and the dense ``CachedMultipleNegativesRankingLoss``
/ ``CachedMultipleNegativesSymmetricRankingLoss`` / ``CachedGISTEmbedLoss``.

1. embed every column in mini-batches **without** a graph (each slice evaluated at once, only its
   float32 embeddings kept), recording the random key of every slice;
2. (the loss's own part) compute the loss from the cached embeddings and d loss / d embeddings:
   ``self.cache[column][slice]``;
3. re-run every slice **with** gradients under its recorded key (the same dropout masks) and
   back-propagate ``sum(embeddings * cached_grad)`` into the parameters, slice by slice.

Only one slice's activations are alive at a time in passes 1 and 3, so peak memory follows
``mini_batch_size``, not the batch size. A loss subclasses :class:`GradCache`, implements
:meth:`GradCache.embed_slice` and pass 2, and exposes ``value_and_grad(features, labels) ->
(loss, grads)`` to the engine (``engine/step.py`` uses it instead of differentiating the call).
"""

from __future__ import annotations

from typing import Iterator

import mlx.core as mx
import numpy as np
from mlx.utils import tree_map
from tqdm.auto import trange

from ..colbert.embedding_grad import scattered_embedding_grad
from ..colbert.padding import trim, trimmed_width


class RandContext:
    """Snapshot of MLX's global random key, to replay a forward pass with the same dropout masks.

    Entering the context installs the snapshot; leaving it restores the key that was current on
    entry, so the replay does not advance the global random stream (ST's / PyLate's ``RandContext``
    with ``torch.random.fork_rng``).

    >>> import mlx_hf_bridge, mlx.core as mx
    >>> ctx = RandContext(); a = mx.random.uniform(shape=(2,))
    >>> with ctx:
    ...     b = mx.random.uniform(shape=(2,))
    >>> bool(mx.all(a == b))
    True
    """

    def __init__(self, *tensors) -> None:
        self.key = _copy_key()
        self._saved = None

    def __enter__(self) -> None:
        self._saved = _copy_key()
        _set_key(self.key)

    def __exit__(self, exc_type, exc_val, exc_tb) -> None:
        _set_key(self._saved)
        self._saved = None


def _copy_key() -> mx.array:
    return mx.array(np.array(mx.random.state[0]))


def _set_key(key: mx.array) -> None:
    current = mx.random.state[0]
    current[...] = key  # in place: the global key has no setter
    mx.eval(current)


def check_mini_batch_size(mini_batch_size) -> None:
    if mini_batch_size < 1:
        raise ValueError(f"mini_batch_size must be >= 1, got {mini_batch_size}")


class GradCache:
    """Passes 1 and 3 of GradCache, and the bookkeeping between them.

    Subclasses set ``model``, ``mini_batch_size``, ``show_progress_bar`` and ``padding_free``, and
    implement :meth:`embed_slice`; pass 2 fills ``self.cache`` (one gradient per column and slice,
    each shaped like that slice's embeddings). Padding-free: a column :meth:`trims` is encoded in
    length order (longest first) and each slice is cut to its own longest real row; embeddings come
    back in the batch's order (:meth:`original_order`), so only the padding computed changes.
    """

    model = None
    mini_batch_size: int = 32
    show_progress_bar: bool = False
    padding_free: bool = True
    cache: list[list[mx.array]] | None = None
    random_states: list[list[RandContext]] | None = None
    ranges: list[list[tuple[int, int]]] | None = None
    orders: list[mx.array | None] | None = None

    # -- what a loss provides -----------------------------------------------------------------------
    def embed_slice(self, minibatch: dict, column: int, packed: bool) -> mx.array:
        """One slice's embeddings (rows first), differentiable w.r.t. ``self.model``."""
        raise NotImplementedError

    def trims(self, column: int) -> bool:
        """Whether this column's slices may be cut to their longest real row (and run packed)."""
        return self.padding_free

    # -- slices -------------------------------------------------------------------------------------
    def _ranges(self, sentence_feature: dict) -> list[tuple[int, int]]:
        """(begin, end) rows of each slice, in encoding order."""
        rows = sentence_feature["input_ids"].shape[0]
        return [(begin, min(begin + self.mini_batch_size, rows)) for begin in range(0, rows, self.mini_batch_size)]

    def _minibatch(self, sentence_feature: dict, rows: tuple[int, int], width: int | None = None) -> dict:
        begin, end = rows
        # arrays are sliced by row; other entries (a column's ``task`` name) are per column
        minibatch = {k: v[begin:end] if isinstance(v, mx.array) else v for k, v in sentence_feature.items()}
        return trim(minibatch, width) if width is not None else minibatch

    def _slice_width(self, minibatch: dict, trims: bool) -> int | None:
        return trimmed_width(minibatch) if trims else None

    # -- encoding order (padding-free) ------------------------------------------------------------------
    def _encoding_order(self, sentence_features: list[dict]) -> list[dict]:
        """Each trimmed column's rows sorted by length (longest first), so a slice pads only to rows
        of similar length; ``self.orders`` puts the embeddings back in the batch's order."""
        self.orders, ordered = [], []
        for index, feature in enumerate(sentence_features):
            order = None
            if self.trims(index) and feature["input_ids"].shape[0] > self.mini_batch_size:
                lengths = np.asarray(feature["attention_mask"]).sum(axis=1)
                order = mx.array(np.argsort(-lengths, kind="stable"))
                feature = {k: mx.take(v, order, axis=0) if hasattr(v, "ndim") and v.ndim >= 1 else v
                           for k, v in feature.items()}
            self.orders.append(order)
            ordered.append(feature)
        return ordered

    def original_order(self, column: mx.array, index: int) -> mx.array:
        order = self.orders[index] if self.orders else None
        return column if order is None else mx.take(column, mx.argsort(order), axis=0)

    def encoding_order(self, column: mx.array, index: int) -> mx.array:
        """Inverse of :meth:`original_order` (for gradients computed in the batch's order)."""
        order = self.orders[index] if self.orders else None
        return column if order is None else mx.take(column, order, axis=0)

    # -- pass 1 ---------------------------------------------------------------------------------------
    def embed_minibatch_iter(self, sentence_feature: dict, trims: bool = False,
                             column: int = 0) -> Iterator[tuple[mx.array, RandContext]]:
        """Pass 1 for one column: (float32 embeddings without a graph, RandContext) per slice."""
        ranges = self._ranges(sentence_feature)
        bar = trange(len(ranges), desc="Embed mini-batches", disable=not self.show_progress_bar)
        for _, rows in zip(bar, ranges):
            random_state = RandContext()
            minibatch = self._minibatch(sentence_feature, rows)
            width = self._slice_width(minibatch, trims)
            if width is not None:
                minibatch = trim(minibatch, width)
            # fp32 cache: under a bf16 compute dtype the loss and its cached gradients stay exact
            reps = mx.stop_gradient(self.embed_slice(minibatch, column, trims).astype(mx.float32))
            mx.eval(reps)  # frees this slice's activations before the next one
            yield reps, random_state

    def _embed_all(self, sentence_features: list[dict]) -> list[list[mx.array]]:
        """Pass 1 over every column: ``reps[column][slice]``; records keys and ranges for pass 3."""
        reps, self.random_states = [], []
        self.ranges = [self._ranges(feature) for feature in sentence_features]
        for index, sentence_feature in enumerate(sentence_features):
            column, states = [], []
            for reps_mb, random_state in self.embed_minibatch_iter(sentence_feature, self.trims(index), index):
                column.append(reps_mb)
                states.append(random_state)
            reps.append(column)
            self.random_states.append(states)
        return reps

    def split_cache(self, column_grads: list[mx.array]) -> list[list[mx.array]]:
        """Full-column gradients (batch order) -> ``cache[column][slice]`` in encoding order."""
        return [[g[begin:end] for begin, end in ranges]
                for g, ranges in zip((self.encoding_order(g, i) for i, g in enumerate(column_grads)), self.ranges)]

    # -- pass 3 ---------------------------------------------------------------------------------------
    def _backward(self, sentence_features: list[dict]):
        """Re-run every slice with gradients and push the cached gradients into the parameters."""

        def surrogate(packed, column):
            return lambda minibatch, cached_grad: (
                self.embed_slice(minibatch, column, packed).astype(mx.float32) * cached_grad
            ).sum()

        grads = None
        with scattered_embedding_grad(self.model) as finish:
            for index, (sentence_feature, cached, states, ranges) in enumerate(
                zip(sentence_features, self.cache, self.random_states, self.ranges)
            ):
                packed = self.trims(index)  # as in pass 1
                grad_fn = finish.value_and_grad(surrogate(packed, index))
                for rows, cached_grad, random_state in zip(ranges, cached, states):
                    minibatch = self._minibatch(sentence_feature, rows)
                    width = self._replay_width(minibatch, cached_grad, packed)
                    if width is not None:
                        minibatch = trim(minibatch, width)
                    with random_state:
                        _, slice_grads = grad_fn(minibatch, cached_grad)
                        grads = slice_grads if grads is None else tree_map(mx.add, grads, slice_grads)
                        mx.eval(grads, finish.pending())  # one slice's graph at a time
            return finish(grads)

    def _replay_width(self, minibatch: dict, cached_grad: mx.array, trims: bool) -> int | None:
        """The width pass 1 encoded this slice at (it depends only on the slice's mask)."""
        return self._slice_width(minibatch, trims)

    def _clear(self) -> None:
        self.cache = self.random_states = self.orders = self.ranges = None

    @property
    def citation(self) -> str:
        return """
@misc{gao2021scaling,
    title={Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup},
    author={Luyu Gao and Yunyi Zhang and Jiawei Han and Jamie Callan},
    year={2021},
    eprint={2101.06983},
    archivePrefix={arXiv},
    primaryClass={cs.LG}
}
"""

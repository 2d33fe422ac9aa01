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


def token_budget_ranges(attention_mask, budget: int) -> list[tuple[int, int]]:
    """ST 6.2's ``mini_batch_num_tokens`` slices: as many rows as fit ``budget`` attended tokens
    (a longer row runs alone)."""
    import bisect

    cumulative = np.cumsum(np.asarray(attention_mask).sum(axis=1)).tolist()
    ranges, begin = [], 0
    while begin < len(cumulative):
        before = cumulative[begin - 1] if begin else 0
        end = max(bisect.bisect_right(cumulative, before + budget), begin + 1)
        ranges.append((begin, end))
        begin = end
    return ranges


class CachedDenseLoss(GradCache):
    """GradCache for a dense loss over ``model(features)["sentence_embedding"]`` (B, D) per column.

    A subclass implements :meth:`calculate_loss` on the full (B, D) columns, scoring anchors in
    blocks of ``mini_batch_size`` (ST's chunked loss stage); :meth:`loss_and_column_grads` takes its
    value and d loss / d columns block by block. ``MatryoshkaLoss`` wraps that method, as ST wraps
    ``calculate_loss``. Slices are cut to their longest real row (pooling ignores padding, so the
    embeddings are those of the padded batch; ST 6.2 trims each mini-batch too).
    """

    uses_gradient_cache = True  # ST 6's marker: MatryoshkaLoss treats the loss as cached
    mini_batch_num_tokens: int | None = None

    def _init_cache(self, model, mini_batch_size, mini_batch_num_tokens, show_progress_bar) -> None:
        try:
            first = model[0]
        except (KeyError, IndexError, TypeError):
            first = None
        # ST 6.2's has_static_embedding_input: directly, or as a Router route's input (ST 5.3 crashes there)
        inputs = [route[0] for route in first.sub_modules.values()] if type(first).__name__ == "Router" else [first]
        if any(type(module).__name__ == "StaticEmbedding" for module in inputs):
            raise ValueError(
                f"{type(self).__name__} is not compatible with a SentenceTransformer model based on a "
                "StaticEmbedding, whose inputs cannot be split into mini-batches along a batch dimension. "
                "Consider using the uncached loss instead."
            )
        check_mini_batch_size(mini_batch_size)
        if mini_batch_num_tokens is not None and mini_batch_num_tokens <= 0:
            raise ValueError("mini_batch_num_tokens must be a positive integer or None.")
        self.model = model
        self.mini_batch_size = mini_batch_size
        self.mini_batch_num_tokens = mini_batch_num_tokens
        self.show_progress_bar = show_progress_bar
        self.cache = self.random_states = self.ranges = self.orders = None

    def embed_slice(self, minibatch: dict, column: int, packed: bool) -> mx.array:
        from ..colbert.padding import packed_sequences

        with packed_sequences(self.model, packed):  # padded positions never reach the pooled embedding
            return self.model(minibatch)["sentence_embedding"]

    def _ranges(self, sentence_feature: dict) -> list[tuple[int, int]]:
        if self.mini_batch_num_tokens is None:
            return super()._ranges(sentence_feature)
        return token_budget_ranges(sentence_feature["attention_mask"], self.mini_batch_num_tokens)

    def _encoding_order(self, sentence_features: list[dict]) -> list[dict]:
        if self.mini_batch_num_tokens is not None:  # the token budget packs rows in the batch's order, as ST
            self.orders = [None] * len(sentence_features)
            return sentence_features
        return super()._encoding_order(sentence_features)

    # -- pass 2 ---------------------------------------------------------------------------------------
    def blocks(self, batch_size: int, desc: str = "Calculating loss"):
        starts = range(0, batch_size, self.mini_batch_size)
        bar = trange(len(starts), desc=desc, disable=not self.show_progress_bar)
        for _, begin in zip(bar, starts):
            yield begin, min(begin + self.mini_batch_size, batch_size)

    def block_loss(self, columns: list[mx.array], begin: int, end: int, labels=None) -> mx.array:
        """The loss of anchor rows ``begin:end``, already divided by the batch size."""
        raise NotImplementedError

    def calculate_loss(self, columns: list[mx.array], labels=None) -> mx.array:
        total = None
        for begin, end in self.blocks(columns[0].shape[0]):
            loss = mx.stop_gradient(self.block_loss(columns, begin, end, labels))
            mx.eval(loss)
            total = loss if total is None else total + loss
        return total

    def loss_and_column_grads(self, columns: list[mx.array], labels=None, with_grad: bool = True):
        """``(loss, [d loss / d column])``; blocks of anchors one at a time (bounded scoring memory)."""
        if not with_grad:
            return self.calculate_loss(columns, labels), None
        total, grads = None, [mx.zeros_like(c) for c in columns]
        for begin, end in self.blocks(columns[0].shape[0]):
            loss, block_grads = mx.value_and_grad(lambda cols: self.block_loss(cols, begin, end, labels))(columns)
            grads = [g + b for g, b in zip(grads, block_grads)]
            mx.eval(loss, grads)
            total = loss if total is None else total + loss
        return total, grads

    # -- public ---------------------------------------------------------------------------------------
    def check_inputs(self, sentence_features: list[dict], labels) -> None:
        """Column count / labels: raise before any forward pass."""

    def _columns(self, reps: list[list[mx.array]]) -> list[mx.array]:
        return [self.original_order(mx.concatenate(column, axis=0), i) for i, column in enumerate(reps)]

    def prepare(self, sentence_features: list[dict]) -> None:
        """Hook run on the batch before pass 1 (CachedGISTEmbedLoss embeds it with the guide)."""

    def value_and_grad(self, sentence_features, labels=None):
        """``(loss, grads)``: the loss value and the parameter gradients (a tree matching
        ``model.trainable_parameters()``) of the mean loss, computed with GradCache."""
        sentence_features = list(sentence_features)
        self.check_inputs(sentence_features, labels)
        try:
            self.prepare(sentence_features)
            encoding = self._encoding_order(sentence_features)
            columns = self._columns(self._embed_all(encoding))
            loss, column_grads = self.loss_and_column_grads(columns, labels)
            self.cache = self.split_cache(column_grads)
            mx.eval(loss, self.cache)
            return loss, self._backward(encoding)
        finally:
            self._clear()

    def __call__(self, sentence_features, labels=None) -> mx.array:
        """The loss value (pass 1 and the loss, no gradients; ST's ``no_grad`` path)."""
        sentence_features = list(sentence_features)
        self.check_inputs(sentence_features, labels)
        try:
            self.prepare(sentence_features)
            columns = self._columns(self._embed_all(self._encoding_order(sentence_features)))
            return mx.stop_gradient(self.loss_and_column_grads(columns, labels, with_grad=False)[0])
        finally:
            self._clear()

    forward = __call__

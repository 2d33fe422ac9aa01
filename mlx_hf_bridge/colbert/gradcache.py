"""``CachedContrastive``: GradCache (Gao et al., 2021) for ColBERT, as PyLate 1.6 computes it.

Pass 1 embeds every column in mini-batches without a graph; pass 2 takes d loss / d embeddings
from the full-batch loss; pass 3 re-runs each mini-batch (same dropout masks) and back-propagates
the cached gradients. Peak memory follows ``mini_batch_size``, not the batch size. Each
mini-batch is cut to its longest real row first (``padding_free``, see padding.py). Passes 1 and 3
are the bridge's one GradCache (``losses/gradcache.py``, shared with the dense cached losses);
pass 2, the ColBERT loss, is here.

>>> import mlx_hf_bridge
>>> from mlx_hf_bridge.losses import gradcache as core
>>> RandContext is core.RandContext and issubclass(CachedContrastive, core.GradCache)
True
"""

from __future__ import annotations

from typing import Callable, Iterable

import mlx.core as mx
from tqdm.auto import trange

from ..losses.gradcache import GradCache, RandContext, check_mini_batch_size
from . import distributed
from .conventions import PYLATE
from .loss_common import (
    _contrastive_targets,
    _gather_masks,
    _GatherWarning,
    check_contrastive_inputs,
    cross_entropy,
    fit_for_scoring,
    widen_across_ranks,
)
from .padding import pad_to
from .scores import ColBERTScores

__all__ = ["CachedContrastive", "RandContext", "SCALE_GRADIENTS"]


SCALE_GRADIENTS = ("pylate", "mean")


class CachedContrastive(GradCache):
    """GradCache (Gao et al., 2021) version of :class:`Contrastive`: large batches in bounded memory.

    The same loss as :class:`Contrastive` (same masks, query-major scores, ``arange(B) * N`` targets,
    temperature), computed in three passes so that peak memory grows with ``mini_batch_size``
    rather than with the batch size:

    1. embed every column in slices of ``mini_batch_size`` rows **without** a graph (each slice is
       evaluated and only its normalised embeddings are kept), recording the random key of every
       slice;
    2. compute the loss from the cached embeddings, scoring queries in chunks of
       ``score_mini_batch_size`` with ``reduction="sum"``, and take d loss / d embeddings with
       ``mx.value_and_grad`` (one chunk at a time);
    3. re-run every slice **with** gradients under its recorded random key (identical dropout
       masks) and back-propagate ``sum(embeddings * cached_grad)`` into the parameters,
       accumulating the parameter gradients slice by slice.

    Use :meth:`value_and_grad` for training (the trainer calls it). Calling the loss returns the
    loss value only (PyLate's no-grad path): it is **not** differentiable, so do not wrap the call
    in ``nn.value_and_grad``.

    .. warning:: **Gradient scale.** PyLate 1.6 caches the gradients of the **summed** chunk
       losses but returns the loss divided by B (``size_average=True``). Its parameter gradients
       are therefore **B times** those of :class:`Contrastive` on the same batch, while the
       reported loss is the mean (pylate-api.md §4.2). ``scale_gradients="pylate"`` (the default)
       reproduces this exactly, so clipping (``max_grad_norm``), logged ``grad_norm`` and SGD
       step sizes match PyLate. ``scale_gradients="mean"`` returns the gradients of the reported
       (mean) loss instead, identical to :class:`Contrastive`'s. With ``size_average=False`` both
       options agree.

    Inputs:

    +-----------------------------------------------+--------+
    | Texts (columns, in this order)                | Labels |
    +===============================================+========+
    | (query, positive) pairs                       | none   |
    +-----------------------------------------------+--------+
    | (query, positive, negative) triplets          | none   |
    +-----------------------------------------------+--------+
    | (query, positive, negative_1, ..., negative_n)| none   |
    +-----------------------------------------------+--------+

    Parameters
    ----------
    model
        The ColBERT model.
    score_metric
        Query-major scorer, as for :class:`Contrastive`. Defaults to :class:`ColBERTScores`.
    mini_batch_size
        Rows per model forward/backward slice (the memory knob).
    score_mini_batch_size
        Queries per scoring chunk in pass 2. Defaults to ``mini_batch_size``.
    size_average
        Report the mean (True) or the sum of the per-query losses.
    gather_across_devices
        Gather document embeddings across ``mx.distributed`` ranks (no-op with a warning on one).
    show_progress_bar
        Show tqdm bars for the embedding passes.
    temperature
        Scores are divided by it before the cross-entropy.
    scale_gradients
        ``"pylate"`` (default: B x the mean-loss gradients, as PyLate) or ``"mean"``.

    Examples
    --------
    >>> from mlx_hf_bridge.pylate import losses, models              # doctest: +SKIP
    >>> model = models.ColBERT("path/to/colbert")                    # doctest: +SKIP
    >>> loss = losses.CachedContrastive(model=model, mini_batch_size=1)              # doctest: +SKIP
    >>> anchors = model.tokenize(["fruits are healthy.", "chips are not healthy."], is_query=True)  # doctest: +SKIP
    >>> positives = model.tokenize(["fruits are good.", "chips are bad."], is_query=False, pad=True)  # doctest: +SKIP
    >>> value, grads = loss.value_and_grad([anchors, positives])                      # doctest: +SKIP
    >>> assert isinstance(value.item(), float)                                        # doctest: +SKIP
    """

    # (min text columns, max text columns or None, needs labels, roles): read by the trainer's checks
    expected_inputs = (2, None, False, "query, positive[, negative, ...]")

    def __init__(
        self,
        model,
        score_metric: Callable | None = None,
        mini_batch_size: int = 32,
        score_mini_batch_size: int | None = None,
        size_average: bool = True,
        gather_across_devices: bool = False,
        show_progress_bar: bool = False,
        temperature: float = 1.0,
        scale_gradients: str = "pylate",
        padding_free: bool = True,
    ) -> None:
        if scale_gradients not in SCALE_GRADIENTS:
            raise ValueError(f"scale_gradients must be one of {SCALE_GRADIENTS}, got {scale_gradients!r}")
        check_mini_batch_size(mini_batch_size)
        self.model = model
        self.score_metric = score_metric if score_metric is not None else ColBERTScores()
        self.mini_batch_size = mini_batch_size
        self.score_mini_batch_size = score_mini_batch_size if score_mini_batch_size is not None else mini_batch_size
        self.size_average = size_average
        self.gather_across_devices = gather_across_devices
        self.show_progress_bar = show_progress_bar
        self.temperature = temperature
        self.scale_gradients = scale_gradients
        self.padding_free = padding_free
        # encoder width of every (column, slice): set in pass 1, reused by pass 3
        self.widths: list[list[int]] | None = None
        self.orders: list[mx.array | None] | None = None  # length-sorted encoding order per column
        # Partial derivatives per column and slice, and the random keys per column and slice.
        self.cache: list[list[mx.array]] | None = None
        self.random_states: list[list[RandContext]] | None = None

    # how columns become embeddings and masks (conventions.py); the ST 6 façade swaps it
    columns = PYLATE

    def _logits(self, scores: mx.array) -> mx.array:
        return scores / self.temperature

    # -- passes 1 and 3 run in losses.gradcache.GradCache; what is ColBERT's: --------------------
    def embed_slice(self, minibatch: dict, column: int, packed: bool) -> mx.array:
        # a trimmed column's padded positions are never read, so its rows may also run packed
        return self.columns.embed(self.model, minibatch, column, packed)

    def trims(self, column: int) -> bool:
        return self.columns.trims(self.model, column, self.padding_free)

    def _embed_all(self, sentence_features: list[dict]) -> list[list[mx.array]]:
        reps = super()._embed_all(sentence_features)
        self.widths = [[r.shape[1] for r in column] for column in reps]  # pass 2 pads to them
        return reps

    # -- pass 2: loss and cached gradients w.r.t. the embeddings ------------------------------
    def _loss_terms(self, reps, masks):
        """Everything the chunked loss needs: anchors, documents, masks, targets, world."""
        columns = [
            self.original_order(mx.concatenate([pad_to(r, max(w)) for r in column], axis=0), i)
            for i, (column, w) in enumerate(zip(reps, self.widths))
        ]
        anchors, docs = columns[0], columns[1:]
        world = _GatherWarning.world(self.gather_across_devices)
        anchors, docs, masks = fit_for_scoring(anchors, docs, masks, fixed_width=world is not None)
        batch_size = anchors.shape[0]
        if world is not None:
            docs, masks = widen_across_ranks(world, docs, masks)
            # Gathered values only; the gradient is routed back to the local slice by hand below.
            docs = [mx.stop_gradient(distributed._gather_raw(d, world)) for d in docs]
            masks = _gather_masks(masks)
        q_mask = self.columns.query_mask(self.model, masks[0])
        docs_mask_stacked = mx.stack(masks[1:], axis=1)
        targets = _contrastive_targets(batch_size, len(docs), world.rank() if world is not None else 0)
        return anchors, docs, q_mask, docs_mask_stacked, targets, world

    def _loss_scale(self, world) -> int:
        """PyLate scales a loss over gathered documents by the world size; ST 6 does not."""
        return world.size() if world is not None and self.columns.gathered_loss_times_world else 1

    def _chunk_loss(self, anchors_chunk, docs, q_mask_chunk, docs_mask_stacked, targets_chunk, world_size):
        scores = self.score_metric(
            anchors_chunk, mx.stack(docs, axis=1), queries_mask=q_mask_chunk, documents_mask=docs_mask_stacked
        )
        loss = cross_entropy(self._logits(scores), targets_chunk, "sum")
        return loss * world_size if world_size > 1 else loss

    def _chunks(self, batch_size: int):
        starts = range(0, batch_size, self.score_mini_batch_size)
        bar = trange(len(starts), desc="Preparing caches", disable=not self.show_progress_bar)
        for _, begin in zip(bar, starts):
            yield begin, begin + self.score_mini_batch_size

    def calculate_loss(self, reps, masks) -> mx.array:
        """The loss from cached embeddings, without gradients (evaluation path)."""
        anchors, docs, q_mask, docs_mask, targets, world = self._loss_terms(reps, masks)
        world_size = self._loss_scale(world)
        batch_size = anchors.shape[0]
        losses = []
        for begin, end in self._chunks(batch_size):
            loss = self._chunk_loss(
                anchors[begin:end], docs, q_mask[begin:end] if q_mask is not None else None,
                docs_mask, targets[begin:end], world_size,
            )
            mx.eval(loss)
            losses.append(loss)
        loss = sum(losses[1:], losses[0])
        return loss / batch_size if self.size_average else loss

    def calculate_loss_and_cache_gradients(self, reps, masks) -> mx.array:
        """The loss, and ``self.cache``: d(sum of chunk losses)/d(embeddings) per column and slice."""
        anchors, docs, q_mask, docs_mask, targets, world = self._loss_terms(reps, masks)
        world_size = self._loss_scale(world)
        batch_size = anchors.shape[0]
        grad_fn = mx.value_and_grad(self._chunk_loss, argnums=(0, 1))
        losses, anchor_grads = [], []
        doc_grads = [mx.zeros_like(d) for d in docs]
        for begin, end in self._chunks(batch_size):
            loss, (g_anchor, g_docs) = grad_fn(
                anchors[begin:end], docs, q_mask[begin:end] if q_mask is not None else None,
                docs_mask, targets[begin:end], world_size,
            )
            doc_grads = [acc + g for acc, g in zip(doc_grads, g_docs)]
            mx.eval(loss, g_anchor, doc_grads)  # frees this chunk's scoring intermediates
            losses.append(loss)
            anchor_grads.append(g_anchor)
        if world is not None:
            # backward of all_gather: sum every rank's cotangent, keep this rank's rows
            rank = world.rank()
            doc_grads = [
                mx.distributed.all_sum(g, group=world)[rank * batch_size : (rank + 1) * batch_size]
                for g in doc_grads
            ]
        loss = sum(losses[1:], losses[0])
        if self.size_average:
            loss = loss / batch_size
        column_grads = [mx.concatenate(anchor_grads, axis=0), *doc_grads]
        if self.scale_gradients == "mean" and self.size_average:
            column_grads = [g / batch_size for g in column_grads]
        # back to encoding order, then per slice cut to the width that slice was encoded at
        column_grads = [g if order is None else mx.take(g, order, axis=0) for g, order in zip(column_grads, self.orders)]
        self.cache = [
            [g[begin:end, :width] for (begin, end), width in zip(ranges, widths)]
            for g, ranges, widths in zip(column_grads, self.ranges, self.widths)
        ]
        mx.eval(loss, self.cache)
        return loss

    # -- public --------------------------------------------------------------------------------
    def value_and_grad(self, sentence_features: Iterable[dict], labels=None):
        """``(loss, grads)``: the loss value and parameter gradients (a tree matching
        ``model.trainable_parameters()``), computed with GradCache. See the class docstring for
        the gradient scale."""
        sentence_features = list(sentence_features)
        check_contrastive_inputs(type(self).__name__, sentence_features)
        masks = self.columns.masks(self.model, sentence_features)
        encoding = self._encoding_order(sentence_features)
        reps = self._embed_all(encoding)
        loss = self.calculate_loss_and_cache_gradients(reps, masks)
        grads = self._backward(encoding)
        self._clear()
        self.widths = None
        return loss, grads

    def __call__(self, sentence_features: Iterable[dict], labels=None) -> mx.array:
        """The loss value (pass 1 + scoring, no gradients; PyLate's ``no_grad`` path)."""
        sentence_features = list(sentence_features)
        check_contrastive_inputs(type(self).__name__, sentence_features)
        masks = self.columns.masks(self.model, sentence_features)
        reps = self._embed_all(self._encoding_order(sentence_features))
        loss = mx.stop_gradient(self.calculate_loss(reps, masks))
        self._clear()
        self.widths = None
        return loss

    forward = __call__

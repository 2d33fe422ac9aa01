"""PyLate 1.6's ColBERT losses on MLX: ``Contrastive``, ``CachedContrastive`` and ``Distillation``.

Protocol (what :mod:`mlx_hf_bridge.engine` relies on): a loss keeps ``.model`` and is called as
``loss(sentence_features, labels=None) -> scalar mx.array``. ``sentence_features`` is the list of
per-column feature dicts the trainer collects from a :class:`~mlx_hf_bridge.pylate.utils.ColBERTCollator`
batch, in dataset column order. ``Contrastive`` and ``Distillation`` are differentiable w.r.t.
``loss.model``'s parameters (wrap them in ``nn.value_and_grad(model, ...)``).
``CachedContrastive`` additionally exposes ``value_and_grad(sentence_features, labels) -> (loss,
grads)``, which the trainer prefers: GradCache cannot be written as one differentiable function
without giving up its memory bound.

Shared conventions, as in PyLate (pylate-api.md §4):

* token embeddings are ``model(features)["token_embeddings"]``, L2-normalised on the last axis;
* masks: the query (feature 0) keeps its ``attention_mask``; every document column gets
  ``attention_mask AND skiplist_mask(input_ids)``; the query mask reaches the scorer **only when
  ``model.do_query_expansion`` is False** (otherwise the expansion tokens count);
* masking inside the scores is multiplicative (a masked similarity is 0, not -inf);
* contrastive scores are query-major: column ``d * N + j`` is the j-th document column of row d,
  so the targets are ``arange(B) * N``.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_map
from tqdm.auto import trange

from . import distributed
from .scores import ColBERTScores, colbert_kd_scores, skiplist_mask

logger = logging.getLogger(__name__)

__all__ = [
    "CachedContrastive",
    "Contrastive",
    "Distillation",
    "RandContext",
    "cross_entropy",
    "extract_skiplist_mask",
    "normalize",
]


# --- helpers -----------------------------------------------------------------------------------
def normalize(x: mx.array, eps: float = 1e-12) -> mx.array:
    """``torch.nn.functional.normalize(x, p=2, dim=-1)``: ``x / max(||x||, eps)``.

    >>> import mlx_hf_bridge, mlx.core as mx
    >>> normalize(mx.array([[3.0, 4.0], [0.0, 0.0]])).tolist()
    [[0.6000000238418579, 0.800000011920929], [0.0, 0.0]]
    """
    return x / mx.maximum(mx.linalg.norm(x, axis=-1, keepdims=True), eps)


def cross_entropy(logits: mx.array, targets: mx.array, reduction: str = "mean") -> mx.array:
    """``torch.nn.functional.cross_entropy`` for class-index targets (``"mean"`` or ``"sum"``).

    >>> import mlx_hf_bridge, mlx.core as mx
    >>> round(cross_entropy(mx.array([[0.0, 0.0]]), mx.array([0]), "sum").item(), 6)
    0.693147
    """
    losses = mx.logsumexp(logits, axis=-1) - mx.take_along_axis(logits, targets[:, None], axis=-1)[:, 0]
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")


def _model_attr(model, name: str):
    """``model.<name>``, or ``model.module.<name>`` for a wrapped model (as PyLate does)."""
    return getattr(model, name) if hasattr(model, name) else getattr(model.module, name)


def extract_skiplist_mask(sentence_features: Iterable[dict], skiplist: list[int]) -> list[mx.array]:
    """Boolean masks per feature: the query keeps its attention mask, documents also drop skiplist ids.

    >>> import mlx_hf_bridge, mlx.core as mx
    >>> features = [{"input_ids": mx.array([[1, 2, 3, 4]]), "attention_mask": mx.array([[1, 1, 1, 1]])}] * 3
    >>> [m.tolist() for m in extract_skiplist_mask(features, skiplist=[1, 2, 3])]
    [[[True, True, True, True]], [[False, False, False, True]], [[False, False, False, True]]]
    """
    sentence_features = list(sentence_features)
    masks = []
    for i, feature in enumerate(sentence_features):
        attention = feature["attention_mask"].astype(mx.bool_)
        masks.append(attention if i == 0 else attention & skiplist_mask(feature["input_ids"], skiplist))
    return masks


def _embed(model, features: dict) -> mx.array:
    return normalize(model(features)["token_embeddings"])


def _contrastive_targets(batch_size: int, n_docs: int, rank: int) -> mx.array:
    # Query-major layout: the positive of query i sits at column i * N (offset by this rank's block).
    return mx.arange(batch_size, dtype=mx.int32) * n_docs + rank * batch_size * n_docs


def _gather_masks(masks: list[mx.array]) -> list[mx.array]:
    return [masks[0], *[mx.concatenate(distributed.all_gather(m), axis=0) for m in masks[1:]]]


class _GatherWarning:
    """PyLate logs once when ``gather_across_devices=True`` runs without a distributed group."""

    @staticmethod
    def world(gather: bool):
        if not gather:
            return None
        world = distributed.group()
        if world is None:
            distributed._warn_once()
        return world


# --- Contrastive --------------------------------------------------------------------------------
class Contrastive:
    """In-batch (+ hard) negatives contrastive loss over ColBERT MaxSim scores (PyLate's ``Contrastive``).

    Every query is scored against every document of every column of the batch (positives and hard
    negatives of all rows). The scores ``(B, B * N)`` are in query-major order, so query i's own
    positive is column ``i * N``; the loss is ``cross_entropy(scores / temperature, arange(B) * N)``.

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

    The first column is tokenized as a query (its name must contain ``"query"`` or ``"anchor"`` for
    :class:`~mlx_hf_bridge.pylate.utils.ColBERTCollator`); all document columns must share one
    padded length (the collator pads to ``document_length``).

    Parameters
    ----------
    model
        The ColBERT model.
    score_metric
        ``score_metric(queries (A, Lq, H), documents (B, N, Ld, H), queries_mask=, documents_mask=)``
        returning ``(A, B * N)`` query-major scores. Defaults to :class:`ColBERTScores`.
    score_mini_batch_size
        Score queries in chunks of this size (lowers the transient scoring memory only).
    size_average
        Mean over the batch (True) or sum.
    gather_across_devices
        Gather the document embeddings of every rank (with gradients) for more in-batch negatives.
        A no-op with one warning when no ``mx.distributed`` group of size > 1 exists.
    temperature
        Scores are divided by it before the cross-entropy.

    Examples
    --------
    >>> from mlx_hf_bridge.pylate import losses, models              # doctest: +SKIP
    >>> model = models.ColBERT("path/to/colbert")                    # doctest: +SKIP
    >>> loss = losses.Contrastive(model=model)                       # doctest: +SKIP
    >>> anchor = model.tokenize(["fruits are healthy."], is_query=True)              # doctest: +SKIP
    >>> positive = model.tokenize(["fruits are good for health."], is_query=False)   # doctest: +SKIP
    >>> negative = model.tokenize(["fruits are bad for health."], is_query=False)    # doctest: +SKIP
    >>> value = loss(sentence_features=[anchor, positive, negative])                  # doctest: +SKIP
    >>> assert isinstance(value.item(), float)                                        # doctest: +SKIP
    """

    # (min text columns, max text columns or None, needs labels, roles): read by the trainer's checks
    expected_inputs = (2, None, False, "query, positive[, negative, ...]")

    def __init__(
        self,
        model,
        score_metric: Callable | None = None,
        score_mini_batch_size: int | None = None,
        size_average: bool = True,
        gather_across_devices: bool = False,
        temperature: float = 1.0,
    ) -> None:
        self.score_metric = score_metric if score_metric is not None else ColBERTScores()
        self.model = model
        self.score_mini_batch_size = score_mini_batch_size
        self.size_average = size_average
        self.gather_across_devices = gather_across_devices
        self.temperature = temperature

    def __call__(self, sentence_features: Iterable[dict], labels=None) -> mx.array:
        sentence_features = list(sentence_features)
        embeddings = [_embed(self.model, feature) for feature in sentence_features]
        skiplist = _model_attr(self.model, "skiplist")
        do_query_expansion = _model_attr(self.model, "do_query_expansion")
        masks = extract_skiplist_mask(sentence_features, skiplist)
        batch_size = embeddings[0].shape[0]
        world = _GatherWarning.world(self.gather_across_devices)
        if world is not None:
            # Only documents are gathered (queries stay local, open_clip#616); masks without gradients.
            embeddings = [embeddings[0], *[distributed.gather_with_gradients(e, world) for e in embeddings[1:]]]
            masks = _gather_masks(masks)
        n_docs = len(embeddings) - 1
        docs_stacked = mx.stack(embeddings[1:], axis=1)
        docs_mask_stacked = mx.stack(masks[1:], axis=1)
        q_mask = masks[0] if not do_query_expansion else None

        step = self.score_mini_batch_size or batch_size
        chunks = []
        for begin in range(0, batch_size, step):
            end = begin + step
            chunks.append(
                self.score_metric(
                    embeddings[0][begin:end],
                    docs_stacked,
                    queries_mask=q_mask[begin:end] if q_mask is not None else None,
                    documents_mask=docs_mask_stacked,
                )
            )
        scores = mx.concatenate(chunks, axis=0) if len(chunks) > 1 else chunks[0]
        targets = _contrastive_targets(batch_size, n_docs, world.rank() if world is not None else 0)
        loss = cross_entropy(scores / self.temperature, targets, "mean" if self.size_average else "sum")
        if world is not None:
            loss = loss * world.size()
        return loss

    forward = __call__

    @property
    def citation(self) -> str:
        return """
@inproceedings{khattab2020colbert,
    title={ColBERT: Efficient and Effective Passage Search via Contextualized Late Interaction over BERT},
    author={Khattab, Omar and Zaharia, Matei},
    booktitle={Proceedings of the 43rd International ACM SIGIR Conference on Research and Development in Information Retrieval},
    pages={39--48},
    year={2020}
}
"""


# --- CachedContrastive (GradCache) -------------------------------------------------------------
class RandContext:
    """Snapshot of MLX's global random key, to replay a forward pass with the same dropout masks.

    Entering the context installs the snapshot; leaving it restores the key that was current on
    entry, so the replay does not advance the global random stream (PyLate's ``RandContext`` with
    ``torch.random.fork_rng``).

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


SCALE_GRADIENTS = ("pylate", "mean")


class CachedContrastive:
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
    ) -> None:
        if scale_gradients not in SCALE_GRADIENTS:
            raise ValueError(f"scale_gradients must be one of {SCALE_GRADIENTS}, got {scale_gradients!r}")
        if mini_batch_size < 1:
            raise ValueError(f"mini_batch_size must be >= 1, got {mini_batch_size}")
        self.model = model
        self.score_metric = score_metric if score_metric is not None else ColBERTScores()
        self.mini_batch_size = mini_batch_size
        self.score_mini_batch_size = score_mini_batch_size if score_mini_batch_size is not None else mini_batch_size
        self.size_average = size_average
        self.gather_across_devices = gather_across_devices
        self.show_progress_bar = show_progress_bar
        self.temperature = temperature
        self.scale_gradients = scale_gradients
        # Partial derivatives per column and slice, and the random keys per column and slice.
        self.cache: list[list[mx.array]] | None = None
        self.random_states: list[list[RandContext]] | None = None

    # -- pass 1 and 3: slices of one column ---------------------------------------------------
    def _slices(self, sentence_feature: dict) -> range:
        return range(0, sentence_feature["input_ids"].shape[0], self.mini_batch_size)

    def embed_minibatch_iter(self, sentence_feature: dict) -> Iterator[tuple[mx.array, RandContext]]:
        """Pass 1 for one column: (normalised embeddings without a graph, RandContext) per slice."""
        starts = self._slices(sentence_feature)
        bar = trange(len(starts), desc="Embed mini-batches", disable=not self.show_progress_bar)
        for _, begin in zip(bar, starts):
            random_state = RandContext()
            minibatch = {k: v[begin : begin + self.mini_batch_size] for k, v in sentence_feature.items()}
            # fp32 cache: under a bf16 compute dtype the loss and its cached gradients stay exact
            reps = mx.stop_gradient(_embed(self.model, minibatch).astype(mx.float32))
            mx.eval(reps)  # frees this slice's activations before the next one
            yield reps, random_state

    def _embed_all(self, sentence_features: list[dict]) -> list[list[mx.array]]:
        reps, self.random_states = [], []
        for sentence_feature in sentence_features:
            column, states = [], []
            for reps_mb, random_state in self.embed_minibatch_iter(sentence_feature):
                column.append(reps_mb)
                states.append(random_state)
            reps.append(column)
            self.random_states.append(states)
        return reps

    # -- pass 2: loss and cached gradients w.r.t. the embeddings ------------------------------
    def _loss_terms(self, reps, masks):
        """Everything the chunked loss needs: anchors, documents, masks, targets, world."""
        anchors = mx.concatenate(reps[0], axis=0)
        docs = [mx.concatenate(column, axis=0) for column in reps[1:]]
        batch_size = anchors.shape[0]
        world = _GatherWarning.world(self.gather_across_devices)
        if world is not None:
            # Gathered values only; the gradient is routed back to the local slice by hand below.
            docs = [mx.stop_gradient(distributed._gather_raw(d, world)) for d in docs]
            masks = _gather_masks(masks)
        do_query_expansion = _model_attr(self.model, "do_query_expansion")
        q_mask = masks[0] if not do_query_expansion else None
        docs_mask_stacked = mx.stack(masks[1:], axis=1)
        targets = _contrastive_targets(batch_size, len(docs), world.rank() if world is not None else 0)
        return anchors, docs, q_mask, docs_mask_stacked, targets, world

    def _chunk_loss(self, anchors_chunk, docs, q_mask_chunk, docs_mask_stacked, targets_chunk, world_size):
        scores = self.score_metric(
            anchors_chunk, mx.stack(docs, axis=1), queries_mask=q_mask_chunk, documents_mask=docs_mask_stacked
        )
        loss = cross_entropy(scores / self.temperature, targets_chunk, "sum")
        return loss * world_size if world_size > 1 else loss

    def _chunks(self, batch_size: int):
        starts = range(0, batch_size, self.score_mini_batch_size)
        bar = trange(len(starts), desc="Preparing caches", disable=not self.show_progress_bar)
        for _, begin in zip(bar, starts):
            yield begin, begin + self.score_mini_batch_size

    def calculate_loss(self, reps, masks) -> mx.array:
        """The loss from cached embeddings, without gradients (evaluation path)."""
        anchors, docs, q_mask, docs_mask, targets, world = self._loss_terms(reps, masks)
        world_size = world.size() if world is not None else 1
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
        world_size = world.size() if world is not None else 1
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
        self.cache = [
            [g[begin : begin + self.mini_batch_size] for begin in range(0, g.shape[0], self.mini_batch_size)]
            for g in column_grads
        ]
        mx.eval(loss, self.cache)
        return loss

    # -- pass 3 ---------------------------------------------------------------------------------
    def _backward(self, sentence_features: list[dict]):
        """Re-run every slice with gradients and push the cached gradients into the parameters."""

        def surrogate(minibatch, cached_grad):
            return (_embed(self.model, minibatch).astype(mx.float32) * cached_grad).sum()

        grad_fn = nn.value_and_grad(self.model, surrogate)
        grads = None
        for sentence_feature, cached, states in zip(sentence_features, self.cache, self.random_states):
            for begin, cached_grad, random_state in zip(self._slices(sentence_feature), cached, states):
                minibatch = {k: v[begin : begin + self.mini_batch_size] for k, v in sentence_feature.items()}
                with random_state:
                    _, slice_grads = grad_fn(minibatch, cached_grad)
                    grads = slice_grads if grads is None else tree_map(mx.add, grads, slice_grads)
                    mx.eval(grads)  # one slice's graph at a time
        return grads

    # -- public --------------------------------------------------------------------------------
    def value_and_grad(self, sentence_features: Iterable[dict], labels=None):
        """``(loss, grads)``: the loss value and parameter gradients (a tree matching
        ``model.trainable_parameters()``), computed with GradCache. See the class docstring for
        the gradient scale."""
        sentence_features = list(sentence_features)
        masks = extract_skiplist_mask(sentence_features, _model_attr(self.model, "skiplist"))
        reps = self._embed_all(sentence_features)
        loss = self.calculate_loss_and_cache_gradients(reps, masks)
        grads = self._backward(sentence_features)
        self.cache = None
        self.random_states = None
        return loss, grads

    def __call__(self, sentence_features: Iterable[dict], labels=None) -> mx.array:
        """The loss value (pass 1 + scoring, no gradients; PyLate's ``no_grad`` path)."""
        sentence_features = list(sentence_features)
        masks = extract_skiplist_mask(sentence_features, _model_attr(self.model, "skiplist"))
        reps = self._embed_all(sentence_features)
        self.random_states = None
        return mx.stop_gradient(self.calculate_loss(reps, masks))

    forward = __call__

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


# --- Distillation -------------------------------------------------------------------------------
def _kl_div_log_target(log_input: mx.array, log_target: mx.array, reduction: str) -> mx.array:
    """``torch.nn.KLDivLoss(reduction, log_target=True)(log_input, log_target)``."""
    pointwise = mx.exp(log_target) * (log_target - log_input)
    if reduction == "batchmean":
        return pointwise.sum() / log_input.shape[0]
    if reduction == "sum":
        return pointwise.sum()
    raise ValueError(f"reduction must be 'batchmean' or 'sum', got {reduction!r}")


class Distillation:
    """Knowledge distillation from teacher scores (PyLate's ``Distillation``).

    Each query comes with ``n_ways`` documents and the teacher's scores for them. The student
    scores ``colbert_kd_scores(query, its documents)`` (B, n_ways) are min-max normalised per query
    (``normalize_scores``, eps 1e-8; the teacher scores are not), and the loss is
    ``KL(softmax(teacher) || softmax(student))`` with ``reduction="batchmean"`` (``size_average``)
    or ``"sum"``; there is no temperature.

    Inputs:

    +------------------------------------------------+---------------------------------------+
    | Texts (columns, in this order)                 | Labels                                |
    +================================================+=======================================+
    | (query, documents) with ``documents`` a list   | teacher scores, float (B, n_ways)     |
    | of n_ways texts per row (flattened to B*n_ways)| (the ``scores`` column)               |
    +------------------------------------------------+---------------------------------------+

    Parameters
    ----------
    model
        The ColBERT model.
    score_metric
        ``score_metric(queries (B, Lq, H), documents (B, n_ways, Ld, H), queries_mask=, documents_mask=)``
        returning (B, n_ways). Defaults to :func:`colbert_kd_scores`.
    size_average
        ``batchmean`` (True) or ``sum`` reduction of the KL divergence.
    normalize_scores
        Min-max normalise the student scores per query before the softmax.

    Examples
    --------
    >>> import mlx.core as mx                                        # doctest: +SKIP
    >>> from mlx_hf_bridge.pylate import losses, models              # doctest: +SKIP
    >>> model = models.ColBERT("path/to/colbert")                    # doctest: +SKIP
    >>> distillation = losses.Distillation(model=model)              # doctest: +SKIP
    >>> query = model.tokenize(["fruits are healthy."], is_query=True)                  # doctest: +SKIP
    >>> documents = model.tokenize(["fruits are good.", "fruits are bad."], is_query=False)  # doctest: +SKIP
    >>> value = distillation([query, documents], labels=mx.array([[0.7, 0.3]]))         # doctest: +SKIP
    """

    expected_inputs = (2, 2, True, "query, documents (a list per query) and a 'scores' label column")

    def __init__(
        self,
        model,
        score_metric: Callable = colbert_kd_scores,
        size_average: bool = True,
        normalize_scores: bool = True,
    ) -> None:
        self.score_metric = score_metric
        self.model = model
        self.reduction = "batchmean" if size_average else "sum"
        self.size_average = size_average
        self.normalize_scores = normalize_scores

    def loss_function(self, log_input: mx.array, log_target: mx.array) -> mx.array:
        return _kl_div_log_target(log_input, log_target, self.reduction)

    def __call__(self, sentence_features: Iterable[dict], labels) -> mx.array:
        sentence_features = list(sentence_features)
        queries_embeddings = _embed(self.model, sentence_features[0])
        documents_embeddings = _embed(self.model, sentence_features[1])
        batch_size = queries_embeddings.shape[0]
        documents_embeddings = documents_embeddings.reshape(batch_size, -1, *documents_embeddings.shape[1:])
        skiplist = _model_attr(self.model, "skiplist")
        do_query_expansion = _model_attr(self.model, "do_query_expansion")
        masks = extract_skiplist_mask(sentence_features, skiplist)
        documents_mask = masks[1].reshape(batch_size, -1, *masks[1].shape[1:])
        scores = self.score_metric(
            queries_embeddings,
            documents_embeddings,
            queries_mask=masks[0] if not do_query_expansion else None,
            documents_mask=documents_mask,
        )
        if self.normalize_scores:
            max_scores = scores.max(axis=1, keepdims=True)
            min_scores = scores.min(axis=1, keepdims=True)
            scores = (scores - min_scores) / (max_scores - min_scores + 1e-8)
        labels = labels if isinstance(labels, mx.array) else mx.array(np.asarray(labels, dtype=np.float32))
        return self.loss_function(
            nn.log_softmax(scores, axis=-1), nn.log_softmax(labels.astype(scores.dtype), axis=-1)
        )

    forward = __call__

    @property
    def citation(self) -> str:
        return """
@inproceedings{santhanam2022colbertv2,
    title={ColBERTv2: Effective and Efficient Retrieval via Lightweight Late Interaction},
    author={Santhanam, Keshav and Khattab, Omar and Saad-Falcon, Jon and Potts, Christopher and Zaharia, Matei},
    booktitle={Proceedings of the 2022 Conference of the North American Chapter of the Association for Computational Linguistics},
    pages={3715--3734},
    year={2022}
}
"""

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

from typing import Callable, Iterable

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from . import distributed
from .conventions import PYLATE
from .gradcache import CachedContrastive, RandContext
from .loss_common import (
    _contrastive_targets,
    _gather_masks,
    _GatherWarning,
    check_contrastive_inputs,
    check_distillation_inputs,
    column_width,
    cross_entropy,
    extract_skiplist_mask,
    fit_for_scoring,
    normalize,
    widen_across_ranks,
)
from .padding import trim
from .scores import ColBERTScores, colbert_kd_scores

__all__ = [
    "CachedContrastive",
    "Contrastive",
    "Distillation",
    "RandContext",
    "cross_entropy",
    "extract_skiplist_mask",
    "normalize",
]


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
        padding_free: bool = True,
    ) -> None:
        self.score_metric = score_metric if score_metric is not None else ColBERTScores()
        self.model = model
        self.padding_free = padding_free
        self.score_mini_batch_size = score_mini_batch_size
        self.size_average = size_average
        self.gather_across_devices = gather_across_devices
        self.temperature = temperature

    # how columns become embeddings and masks (conventions.py); the ST 6 façade swaps it
    columns = PYLATE

    def _logits(self, scores: mx.array) -> mx.array:
        return scores / self.temperature

    def _embed_column(self, feature: dict, column: int) -> mx.array:
        trims = self.columns.trims(self.model, column, self.padding_free)
        return self.columns.embed(self.model, trim(feature, column_width(feature, trims)), column, trims)

    def __call__(self, sentence_features: Iterable[dict], labels=None) -> mx.array:
        sentence_features = list(sentence_features)
        check_contrastive_inputs(type(self).__name__, sentence_features)
        embeddings = [self._embed_column(feature, column) for column, feature in enumerate(sentence_features)]
        masks = self.columns.masks(self.model, sentence_features)
        world = _GatherWarning.world(self.gather_across_devices)
        query, documents, masks = fit_for_scoring(embeddings[0], embeddings[1:], masks, fixed_width=world is not None)
        embeddings = [query, *documents]
        batch_size = embeddings[0].shape[0]
        if world is not None:
            documents, masks = widen_across_ranks(world, embeddings[1:], masks)
            # Only documents are gathered (queries stay local, open_clip#616); masks without gradients.
            embeddings = [embeddings[0], *[distributed.gather_with_gradients(e, world) for e in documents]]
            masks = _gather_masks(masks)
        n_docs = len(embeddings) - 1
        docs_stacked = mx.stack(embeddings[1:], axis=1)
        docs_mask_stacked = mx.stack(masks[1:], axis=1)
        q_mask = self.columns.query_mask(self.model, masks[0])

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
        loss = cross_entropy(self._logits(scores), targets, "mean" if self.size_average else "sum")
        if world is not None and self.columns.gathered_loss_times_world:
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


# --- Distillation -------------------------------------------------------------------------------
def _kl_div_log_target(log_input: mx.array, log_target: mx.array, reduction: str) -> mx.array:
    """``torch.nn.KLDivLoss(reduction, log_target=True)(log_input, log_target)``."""
    # torch's kl_div gives 0 where the target probability is 0 (log_target -inf: a candidate the teacher
    # excludes); exp(-inf) * (-inf - x) would be NaN
    pointwise = mx.where(log_target == -mx.inf, 0.0, mx.exp(log_target) * (log_target - log_input))
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
        padding_free: bool = True,
    ) -> None:
        self.score_metric = score_metric
        self.model = model
        self.padding_free = padding_free
        self.reduction = "batchmean" if size_average else "sum"
        self.size_average = size_average
        self.normalize_scores = normalize_scores

    def loss_function(self, log_input: mx.array, log_target: mx.array) -> mx.array:
        return _kl_div_log_target(log_input, log_target, self.reduction)

    columns = PYLATE  # conventions.py; the ST 6 façades swap it

    def _scores(self, sentence_features: list[dict]) -> mx.array:
        """Student scores (B, n_ways) of (query, documents flattened row-major: row b's j-th at b * n_ways + j)."""
        trims = [self.columns.trims(self.model, i, self.padding_free) for i in range(len(sentence_features))]
        widths = [column_width(f, t) for f, t in zip(sentence_features, trims)]
        queries_embeddings, documents_embeddings = (
            self.columns.embed(self.model, trim(sentence_features[i], widths[i]), i, trims[i]) for i in (0, 1)
        )
        masks = self.columns.masks(self.model, sentence_features)
        queries_embeddings, (documents_embeddings,), masks = fit_for_scoring(queries_embeddings, [documents_embeddings], masks)
        batch_size = queries_embeddings.shape[0]
        documents_embeddings = documents_embeddings.reshape(batch_size, -1, *documents_embeddings.shape[1:])
        documents_mask = masks[1].reshape(batch_size, -1, *masks[1].shape[1:])
        return self.score_metric(
            queries_embeddings,
            documents_embeddings,
            queries_mask=self.columns.query_mask(self.model, masks[0]),
            documents_mask=documents_mask,
        )

    def _objective(self, scores: mx.array, labels) -> mx.array:
        if self.normalize_scores:
            max_scores = scores.max(axis=1, keepdims=True)
            min_scores = scores.min(axis=1, keepdims=True)
            scores = (scores - min_scores) / (max_scores - min_scores + 1e-8)
        labels = labels if isinstance(labels, mx.array) else mx.array(np.asarray(labels, dtype=np.float32))
        return self.loss_function(
            nn.log_softmax(scores, axis=-1), nn.log_softmax(labels.astype(scores.dtype), axis=-1)
        )

    def __call__(self, sentence_features: Iterable[dict], labels) -> mx.array:
        sentence_features = list(sentence_features)
        check_distillation_inputs(sentence_features, labels)
        return self._objective(self._scores(sentence_features), labels)

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

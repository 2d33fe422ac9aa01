"""Distillation over N document columns (ST 6's ``(query, document_1, ..., document_N)`` layout):
the student scores come from :class:`~mlx_hf_bridge.colbert.losses.Distillation`'s pipeline (the
columns merged into its flattened layout), and two objectives on them — KL with temperatures, and
MarginMSE."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from .conventions import merge_document_columns
from .losses import Distillation, _kl_div_log_target


def as_labels(labels, dtype=mx.float32) -> mx.array:
    labels = labels if isinstance(labels, mx.array) else mx.array(np.asarray(labels, dtype=np.float32))
    return labels.astype(dtype)


def per_document(pairwise_fct):
    """A pairwise scorer ``(B, Lq, H) x (B, Ld, H) -> (B,)`` applied to each of the N documents: (B, N)."""

    def scores(queries, documents, queries_mask=None, documents_mask=None):
        return mx.stack([
            pairwise_fct(queries, documents[:, j], queries_mask=queries_mask,
                         documents_mask=None if documents_mask is None else documents_mask[:, j])
            for j in range(documents.shape[1])
        ], axis=1)

    return scores


class ColumnsDistillation(Distillation):
    """Student scores (B, N) of each query against its own N document columns; ``_objective`` is
    the subclass's. Input checks are the façade's (``_check``)."""

    def __init__(self, model, score_metric, padding_free: bool = True):
        super().__init__(model, score_metric=score_metric, size_average=True, normalize_scores=False,
                         padding_free=padding_free)

    def _check(self, sentence_features: list[dict], labels):
        """Raise on inputs the loss cannot use (names the problem and the fix)."""

    def __call__(self, sentence_features, labels) -> mx.array:
        sentence_features = list(sentence_features)
        self._check(sentence_features, labels)
        merged = [sentence_features[0], merge_document_columns(sentence_features[1:])]
        return self._objective(self._scores(merged), labels)

    forward = __call__


class TemperatureKLDistillation(ColumnsDistillation):
    """``KL(softmax(labels / T_t) || softmax(scores / T_s)) * T_s**2``, batchmean (Hinton et al.)."""

    def __init__(self, model, score_metric, student_temperature: float = 1.0, teacher_temperature: float = 1.0,
                 padding_free: bool = True):
        super().__init__(model, score_metric, padding_free)
        self.student_temperature, self.teacher_temperature = student_temperature, teacher_temperature

    def _objective(self, scores: mx.array, labels) -> mx.array:
        student = nn.log_softmax(scores / self.student_temperature, axis=-1)
        teacher = nn.log_softmax(mx.stop_gradient(as_labels(labels, scores.dtype)) / self.teacher_temperature, axis=-1)
        return _kl_div_log_target(student, teacher, "batchmean") * (self.student_temperature ** 2)


class MarginMSEDistillation(ColumnsDistillation):
    """``mean((s(q, pos) - s(q, neg_i) - margin_i) ** 2)``: column 1 is the positive, the rest negatives.

    ``labels`` are the teacher margins (B, k), or raw teacher scores (B, k + 1) turned into margins,
    or with one negative a flat (B,) margin."""

    def margins(self, labels, batch_size: int, n_negatives: int) -> mx.array:
        labels = as_labels(labels)
        if labels.ndim == 1:
            if n_negatives != 1:
                raise ValueError(
                    f"{type(self).__name__} got 1D labels (shape {tuple(labels.shape)}) but "
                    f"{n_negatives} negative columns (expected 1)."
                )
            labels = labels[:, None]
        if tuple(labels.shape) == (batch_size, n_negatives + 1):
            labels = labels[:, 0:1] - labels[:, 1:]
        if tuple(labels.shape) != (batch_size, n_negatives):
            raise ValueError(
                f"{type(self).__name__} got labels with shape {tuple(labels.shape)}, expected "
                f"{(batch_size, n_negatives)} for {n_negatives} negative columns. Ensure that your dataset "
                "labels/scores are 1) lists of differences between positive and negative scores "
                f"(length {n_negatives}), or 2) lists of positive and negative scores (length {n_negatives + 1})."
            )
        return labels

    def _objective(self, scores: mx.array, labels) -> mx.array:
        target = mx.stop_gradient(self.margins(labels, scores.shape[0], scores.shape[1] - 1)).astype(scores.dtype)
        student = scores[:, :1] - scores[:, 1:]
        return ((student - target) ** 2).mean()

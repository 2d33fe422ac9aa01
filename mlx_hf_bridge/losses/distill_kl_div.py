"""``DistillKLDivLoss`` (ST 5.3 / 6.2): KL divergence between the teacher's and the student's
score distributions over each query's candidates."""

from __future__ import annotations

import math
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from ..colbert.losses import _kl_div_log_target
from ..dense.similarity import pairwise_dot_score
from ._common import check_teacher_scores
from ._pairwise import check_columns, check_numeric, embed_columns, label_values, rows, similarity_fct_name

# a teacher score of -inf (a candidate excluded on purpose, as ST 6 allows) has probability 0; its log
# is clamped to the lowest float so that 0 * (log p - log q) stays 0 instead of 0 * -inf = NaN
_LOWEST = float(np.finfo(np.float32).min)


class DistillKLDivLoss:
    """``KL(softmax(teacher / T_t) || softmax(student / T_s)) * T_s ** 2`` (batchmean), the student's
    scores being ``similarity_fct(query, candidate_i)`` for each candidate column (Lin et al., 2020).

    ST 6.2 adds ``student_temperature`` / ``teacher_temperature`` (both default to ``temperature``), the
    checks (3+ columns, labels (B, N), positive finite temperatures) and a one-time look at the teacher
    target (NaN raises; a float32 softmax that underflows warns with the temperature to use); ST 5.3
    computes the same value with ``temperature`` only.

    Inputs:

    +------------------------------------------------+------------------------------------------------------------+
    | Texts (columns, in this order)                 | Labels                                                     |
    +================================================+============================================================+
    | (query, positive, negative)                    | [Teacher(query, positive), Teacher(query, negative)]       |
    +------------------------------------------------+------------------------------------------------------------+
    | (query, positive, negative_1, ..., negative_n) | [Teacher(query, positive), Teacher(query, negative_i)...]  |
    +------------------------------------------------+------------------------------------------------------------+

    Parameters
    ----------
    model
        The student SentenceTransformer.
    similarity_fct
        PAIRWISE similarity ``fct(a (B, D), b (B, D)) -> (B,)``; default ``util.pairwise_dot_score``.
    temperature
        Softens both distributions (default 1.0; ST 5.0.0 had 2.0).
    student_temperature, teacher_temperature
        Per-side overrides (ST 6.2).
    """

    expected_inputs = (3, None, True, "query, positive, negative_1, ... and a label column of teacher scores")

    def __init__(self, model, similarity_fct=pairwise_dot_score, temperature: float = 1.0,
                 student_temperature: float | None = None, teacher_temperature: float | None = None) -> None:
        self.model = model
        self.similarity_fct = similarity_fct
        self.temperature = temperature
        self.student_temperature = student_temperature if student_temperature is not None else temperature
        self.teacher_temperature = teacher_temperature if teacher_temperature is not None else temperature
        for label in ("temperature", "student_temperature", "teacher_temperature"):
            value = getattr(self, label)
            if not 0 < value < math.inf:
                raise ValueError(f"{label} must be a positive finite number, got {value}.")
        self._checked_teacher_scale = False

    def check_labels(self, labels, where: str):
        labels = check_numeric(type(self).__name__, labels, where, "teacher scores, one per candidate column")
        if labels.ndim != 2:
            raise ValueError(
                f"{type(self).__name__} expects teacher scores of shape (batch_size, N), one per candidate column; "
                f"the {where} gives labels of shape {tuple(labels.shape)}."
            )
        checked = self._checked_teacher_scale  # the first batch is still looked at (as ST), unless compiled
        try:
            self._check_teacher_scores(labels)
        finally:
            self._checked_teacher_scale = checked

    def _check(self, sentence_features, labels) -> mx.array:
        if len(sentence_features) < 3:
            raise ValueError(
                f"{type(self).__name__} expects at least 3 columns (query, positive, negative_1, ...), but got "
                f"{len(sentence_features)}. A softmax over one candidate is constant, so the loss and its gradient "
                "would be identically zero. Add at least a second candidate column."
            )
        labels = label_values(type(self).__name__, labels, "teacher scores")
        batch_size, n_ways = rows(sentence_features), len(sentence_features) - 1
        if tuple(labels.shape) != (batch_size, n_ways):
            raise ValueError(
                f"{type(self).__name__} expects teacher scores of shape (batch_size, N) = ({batch_size}, {n_ways}) "
                f"for N candidate columns, but got {tuple(labels.shape)}."
            )
        if not self._checked_teacher_scale:
            self._check_teacher_scores(labels)
        return labels

    def _check_teacher_scores(self, labels):
        """ST 6's first-batch look at the teacher target (NaN raises, an underflowing softmax warns),
        written once: the multi-vector loss's. Inside ``mx.compile`` the labels cannot be read; the
        trainer's pre-flight (:meth:`check_labels`) has looked at the first rows then."""
        try:
            values = np.asarray(labels, dtype=np.float64)
        except (ValueError, RuntimeError):
            return
        self._checked_teacher_scale = True
        check_teacher_scores(self, values, self.teacher_temperature)

    def __call__(self, sentence_features, labels) -> mx.array:
        sentence_features = list(sentence_features)
        check_columns(self, sentence_features, 3, None, "query, positive, negative_1, ...")
        labels = self._check(sentence_features, labels)
        return self.compute_loss_from_embeddings(embed_columns(self.model, sentence_features), labels)

    forward = __call__

    def compute_loss_from_embeddings(self, embeddings: list[mx.array], labels) -> mx.array:
        query = embeddings[0]
        scores = mx.stack([self.similarity_fct(query, other) for other in embeddings[1:]], axis=1)
        student = nn.log_softmax(scores / self.student_temperature, axis=1)
        teacher = mx.stop_gradient(label_values(type(self).__name__, labels)).astype(student.dtype)
        teacher = mx.maximum(nn.log_softmax(teacher / self.teacher_temperature, axis=1), _LOWEST)
        return _kl_div_log_target(student, teacher, "batchmean") * self.student_temperature ** 2

    def get_config_dict(self) -> dict[str, Any]:
        config: dict[str, Any] = {"similarity_fct": similarity_fct_name(self.similarity_fct),
                                  "temperature": self.temperature}
        if self.student_temperature != self.temperature:
            config["student_temperature"] = self.student_temperature
        if self.teacher_temperature != self.temperature:
            config["teacher_temperature"] = self.teacher_temperature
        return config

    @property
    def citation(self) -> str:
        return """
@misc{lin2020distillingdenserepresentationsranking,
      title={Distilling Dense Representations for Ranking using Tightly-Coupled Teachers},
      author={Sheng-Chieh Lin and Jheng-Hong Yang and Jimmy Lin},
      year={2020},
      eprint={2010.11386},
      archivePrefix={arXiv},
      primaryClass={cs.IR},
      url={https://arxiv.org/abs/2010.11386},
}
"""

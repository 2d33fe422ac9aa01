"""``MultiVectorDistillKLDivLoss`` (ST 6.2): the bridge's distillation pipeline over ST 6's
``(query, document_1, ..., document_N)`` columns, KL with student / teacher temperatures."""

from __future__ import annotations

import logging
import math
from typing import Any, Callable

from ....colbert.conventions import MULTI_VECTOR_ENCODER, RowChunks, colbert_kd_scores
from ....colbert.listwise import TemperatureKLDistillation
from ._common import check_teacher_scores, similarity_fct_name

logger = logging.getLogger(__name__)

def _rows(features) -> int:
    return int(features["input_ids"].shape[0])


class MultiVectorDistillKLDivLoss(TemperatureKLDistillation):
    """KL-divergence distillation for a ``MultiVectorEncoder`` (ST 6.2's signature and defaults).

    Student scores (B, N) of each query against its N candidate documents (MaxSim, ST 6's masking);
    ``KL(softmax(teacher / T_t) || softmax(student / T_s))`` (batchmean) times ``T_s ** 2``.

    Inputs:

    +--------------------------------------+--------------------------------------------+
    | Texts (columns, in this order)       | Labels                                     |
    +======================================+============================================+
    | (query, document_1, ..., document_N) | [Teacher(query, document_i) for i in 1..N] |
    +--------------------------------------+--------------------------------------------+

    Parameters
    ----------
    model
        A :class:`~mlx_hf_bridge.sentence_transformers.MultiVectorEncoder`.
    similarity_fct
        ``fct(queries (B, Lq, H), documents (B, N, Ld, H), queries_mask=, documents_mask=) -> (B, N)``.
        Defaults to ``scoring.colbert_kd_scores``.
    temperature
        Shared temperature of both sides (default 1.0), unless overridden per side.
    student_temperature, teacher_temperature
        Per-side overrides.
    mini_batch_size
        Rows per document forward, each chunk cut to its own longest row (less padding; same values).
    """

    expected_inputs = (3, None, True, "query, document_1, ..., document_N and a label column of N teacher scores")

    def __init__(
        self,
        model,
        *,
        similarity_fct: Callable | None = None,
        temperature: float = 1.0,
        student_temperature: float | None = None,
        teacher_temperature: float | None = None,
        mini_batch_size: int | None = None,
    ) -> None:
        similarity_fct = similarity_fct if similarity_fct is not None else colbert_kd_scores
        student = student_temperature if student_temperature is not None else temperature
        teacher = teacher_temperature if teacher_temperature is not None else temperature
        for label, value in (("temperature", temperature), ("student_temperature", student),
                             ("teacher_temperature", teacher)):
            if not 0 < value < math.inf:
                raise ValueError(f"{label} must be a positive finite number, got {value}.")
        super().__init__(model, similarity_fct, student_temperature=student, teacher_temperature=teacher)
        self.similarity_fct = similarity_fct
        self.temperature = temperature
        self.mini_batch_size = mini_batch_size
        self.columns = RowChunks(MULTI_VECTOR_ENCODER, mini_batch_size)
        self._checked_teacher_scale = False

    def _check(self, sentence_features, labels):
        if len(sentence_features) < 3:
            raise ValueError(
                f"{type(self).__name__} expects at least 3 sentence features "
                f"(query, document_1, ..., document_N with N >= 2), but got {len(sentence_features)}. "
                "A softmax over one document is constant, so the loss and its gradient would be "
                "identically zero. Add at least a second candidate document column."
            )
        batch, n_ways = _rows(sentence_features[0]), len(sentence_features) - 1
        shape = tuple(getattr(labels, "shape", ())) if labels is not None else None
        if shape != (batch, n_ways):
            raise ValueError(
                f"{type(self).__name__} expects teacher scores of shape (batch_size, N) = "
                f"({batch}, {n_ways}) for N candidate documents per query, but got {shape}. "
                "Give each row a label list with one teacher score per document column."
            )
        if not self._checked_teacher_scale:
            self._check_teacher_scores(labels)

    def _check_teacher_scores(self, labels):
        self._checked_teacher_scale = True
        check_teacher_scores(self, labels, self.teacher_temperature)

    def get_config_dict(self) -> dict[str, Any]:
        config: dict[str, Any] = {"similarity_fct": similarity_fct_name(self.similarity_fct),
                                  "temperature": self.temperature}
        if self.student_temperature != self.temperature:
            config["student_temperature"] = self.student_temperature
        if self.teacher_temperature != self.temperature:
            config["teacher_temperature"] = self.teacher_temperature
        config["mini_batch_size"] = self.mini_batch_size
        return config

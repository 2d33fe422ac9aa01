"""sentence-transformers 6.2's ``MultiVectorDistillationEvaluator`` on MLX: how closely a
``MultiVectorEncoder``'s scores follow a teacher's (KL divergence and Spearman correlation)."""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from ..colbert.scores import to_array
from . import metrics as stats
from .base import SentenceEvaluator, append_csv_row, as_numpy, epoch_text

logger = logging.getLogger(__name__)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    # float32 throughout, as torch.log_softmax on ST's float32 tensors
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


class MultiVectorDistillationEvaluator(SentenceEvaluator):
    """KL divergence (lower is better) and Spearman correlation (``primary_metric``) between teacher
    ``scores`` and the model's pairwise scores (``similarity_fct``, default ``model.similarity_pairwise``).

    ``documents`` is either one document per query (1-D ``scores``: one softmax over the whole
    dataset, KL summed, one global Spearman) or N candidates per query (2-D ``(num_queries, N)``
    ``scores``: per-query softmax with ``MultiVectorDistillKLDivLoss``'s temperatures, KL averaged over
    queries and scaled by ``student_temperature**2``, Spearman the mean of the per-query correlations,
    constant rows skipped, 0.0 if all are). Keys ``{name}_kl_divergence`` / ``{name}_spearman``; CSV
    ``distillation_evaluation[_{name}]_results.csv``.
    """

    def __init__(self, queries: list[str], documents: list, scores, *, temperature: float = 1.0,
                 student_temperature: float | None = None, teacher_temperature: float | None = None,
                 similarity_fct=None, name: str = "", batch_size: int = 16, show_progress_bar: bool = False,
                 write_csv: bool = True) -> None:
        super().__init__()
        if not (len(queries) == len(documents) == len(scores)):
            raise ValueError(
                f"queries ({len(queries)}), documents ({len(documents)}), and scores ({len(scores)}) "
                f"must all have the same length."
            )
        self.queries = list(queries)
        first = documents[0] if documents else None
        # a list of message dicts is one conversation, not a candidate list (ST's check)
        self.nested_documents = isinstance(first, (list, tuple)) and not (first and isinstance(first[0], dict))
        teacher = np.asarray(to_array(scores), dtype=np.float32)
        if self.nested_documents:
            n_ways = len(documents[0])
            if any(len(row) != n_ways for row in documents):
                raise ValueError("All per-query candidate lists in documents must have the same length.")
            self.documents = [list(row) for row in documents]
            if teacher.ndim != 2 or teacher.shape[1] != n_ways:
                raise ValueError(
                    f"With per-query candidate documents, scores must be 2-D (num_queries, {n_ways}), "
                    f"got shape {tuple(teacher.shape)}."
                )
        else:
            self.documents = list(documents)
            if teacher.ndim != 1:
                raise ValueError(
                    f"With one document per query, scores must be 1-D, got shape {tuple(teacher.shape)}. "
                    "Pass documents as a list of per-query candidate lists to use 2-D scores."
                )
        self.scores = teacher
        self.temperature = temperature
        self.student_temperature = student_temperature if student_temperature is not None else temperature
        self.teacher_temperature = teacher_temperature if teacher_temperature is not None else temperature
        for label in ("temperature", "student_temperature", "teacher_temperature"):
            value = getattr(self, label)
            if not 0 < value < math.inf:
                raise ValueError(f"{label} must be a positive finite number, got {value}.")
        self.similarity_fct = similarity_fct
        self.name = name
        self.batch_size = batch_size
        self.show_progress_bar = show_progress_bar
        self.write_csv = write_csv
        self.csv_file = "distillation_evaluation" + (f"_{name}" if name else "") + "_results.csv"
        self.csv_headers = ["epoch", "steps", "kl_divergence", "spearman"]

    def __call__(self, model, output_path: str | None = None, epoch: int = -1, steps: int = -1) -> dict[str, float]:
        out_txt = epoch_text(epoch, steps)
        logger.info(f"MultiVectorDistillationEvaluator: Evaluating the model on the {self.name} dataset{out_txt}:")
        encode = {"batch_size": self.batch_size, "show_progress_bar": self.show_progress_bar}
        query_embeddings = model.encode_query(self.queries, **encode)
        pairwise = self.similarity_fct if self.similarity_fct is not None else model.similarity_pairwise
        if self.nested_documents:
            n_ways = len(self.documents[0])
            flat = model.encode_document([d for row in self.documents for d in row], **encode)
            # (num_queries, n_ways), as the KD loss scores each query against its own candidates
            ways = [as_numpy(pairwise(query_embeddings, flat[way::n_ways])) for way in range(n_ways)]
            student = np.stack(ways, axis=1)
        else:
            student = as_numpy(pairwise(query_embeddings, model.encode_document(self.documents, **encode)))
        teacher_log_probs = _log_softmax(self.scores / np.float32(self.teacher_temperature))
        student_log_probs = _log_softmax(student / np.float32(self.student_temperature))
        # torch's kl_div(log_target=True): "batchmean" per query; the flat path's one global KL is summed
        pointwise = np.exp(teacher_log_probs) * (teacher_log_probs - student_log_probs)
        kl = pointwise.sum() / (len(pointwise) if self.nested_documents else 1)
        kl = float(np.float32(kl)) * self.student_temperature**2

        if self.nested_documents:
            per_query = [c for t, s in zip(self.scores, student) if (c := stats.spearman(t, s)) == c]
            spearman = sum(per_query) / len(per_query) if per_query else 0.0
        else:
            spearman = stats.spearman(self.scores, student)
            if spearman != spearman:  # NaN: constant scores
                spearman = 0.0

        metrics = {"kl_divergence": kl, "spearman": float(spearman)}
        logger.info(f"KL divergence:\t{kl:.4f}")
        logger.info(f"Spearman correlation:\t{spearman:.4f}")
        if output_path is not None and self.write_csv:
            append_csv_row(output_path, self.csv_file, self.csv_headers, [epoch, steps, kl, spearman])
        self.primary_metric = "spearman"
        metrics = self.prefix_name_to_metrics(metrics, self.name)
        self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
        return metrics

    def get_config_dict(self) -> dict[str, Any]:
        config_dict = {}
        if self.temperature != 1.0:
            config_dict["temperature"] = self.temperature
        if self.student_temperature != self.temperature:
            config_dict["student_temperature"] = self.student_temperature
        if self.teacher_temperature != self.temperature:
            config_dict["teacher_temperature"] = self.teacher_temperature
        if self.similarity_fct is not None:
            from ..losses._pairwise import similarity_fct_name

            config_dict["similarity_fct"] = similarity_fct_name(self.similarity_fct)
        return config_dict

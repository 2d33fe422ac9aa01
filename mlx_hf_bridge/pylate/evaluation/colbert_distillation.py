"""``pylate.evaluation.ColBERTDistillationEvaluator`` on MLX."""

from __future__ import annotations

import itertools
import logging
import os

import mlx.core as mx
import numpy as np

from ...colbert.losses import _kl_div_log_target
from ...colbert.scores import colbert_kd_scores

from .base import SentenceEvaluator, _truncation, csv_writer, evaluation_message, pad_sequence

logger = logging.getLogger(__name__)


class ColBERTDistillationEvaluator(SentenceEvaluator):
    """KL divergence between teacher scores and the model's (min-max normalised) MaxSim scores.

    Returns ``{"[<name>_]kl_divergence": x}`` and appends ``epoch,steps,kl_divergence`` to
    ``distillation_evaluation[_<name>]_results.csv``. (PyLate 1.6 raises on a non-empty ``name``
    because its ``primary_metric`` is None; here the name is simply prefixed.)
    """

    def __init__(
        self,
        queries: list[str],
        documents: list[list[str]],
        scores: list[list[float]],
        name: str = "",
        batch_size: int = 16,
        show_progress_bar: bool = False,
        write_csv: bool = True,
        truncate_dim: int | None = None,
        normalize_scores: bool = True,
    ) -> None:
        super().__init__()
        assert len(queries) == len(documents)
        self.queries = queries
        self.documents = list(itertools.chain.from_iterable(documents))
        self.scores = scores
        self.name = name
        self.truncate_dim = truncate_dim
        self.batch_size = batch_size
        self.show_progress_bar = show_progress_bar
        self.write_csv = write_csv
        self.normalize_scores = normalize_scores
        self.csv_file = "distillation_evaluation" + ("_" + name if name else "") + "_results.csv"
        self.csv_headers = ["epoch", "steps", "kl_divergence"]

    def __call__(self, model, output_path: str | None = None, epoch: int = -1, steps: int = -1) -> dict[str, float]:
        evaluation_message(epoch=epoch, steps=steps, name=self.name, truncate_dim=self.truncate_dim)
        with _truncation(model, self.truncate_dim):
            kwargs = dict(batch_size=self.batch_size, show_progress_bar=self.show_progress_bar, convert_to_tensor=True)
            queries_embeddings = pad_sequence(model.encode(self.queries, is_query=True, **kwargs))
            documents_embeddings = pad_sequence(model.encode(self.documents, is_query=False, **kwargs))
        documents_embeddings = documents_embeddings.reshape(
            queries_embeddings.shape[0], -1, *documents_embeddings.shape[1:]
        )
        scores = colbert_kd_scores(queries_embeddings, documents_embeddings)
        if self.normalize_scores:
            max_scores = scores.max(axis=1, keepdims=True)
            min_scores = scores.min(axis=1, keepdims=True)
            scores = (scores - min_scores) / (max_scores - min_scores + 1e-8)
        teacher = mx.array(np.asarray(self.scores, dtype=np.float32))
        log_softmax = lambda x: x - mx.logsumexp(x, axis=-1, keepdims=True)  # noqa: E731
        kl_divergence = _kl_div_log_target(log_softmax(scores), log_softmax(teacher), "batchmean").item()
        metrics = self.prefix_name_to_metrics({"kl_divergence": kl_divergence}, self.name)
        self.store_metrics_in_model_card_data(model, metrics)
        if output_path is not None and self.write_csv:
            csv_writer(
                path=os.path.join(output_path, self.csv_file),
                data=[epoch, steps, kl_divergence],
                header=self.csv_headers,
            )
        return metrics


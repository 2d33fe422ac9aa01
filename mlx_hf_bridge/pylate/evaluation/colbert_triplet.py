"""``pylate.evaluation.ColBERTTripletEvaluator`` on MLX."""

from __future__ import annotations

import logging
import os

import numpy as np

from ...colbert.scores import colbert_scores_pairwise

from .base import SentenceEvaluator, _truncation, csv_writer, evaluation_message

logger = logging.getLogger(__name__)


class ColBERTTripletEvaluator(SentenceEvaluator):
    """Accuracy of ``MaxSim(anchor, positive) > MaxSim(anchor, negative)`` over triplets.

    Anchors are encoded as queries, positives and negatives as documents. Returns
    ``{"accuracy": x}`` **without** a name prefix (PyLate's behaviour; the trainer logs it as
    ``eval_accuracy``) and appends ``epoch,steps,accuracy`` to
    ``triplet_evaluation[_<name>]_results.csv`` under ``output_path``.

    >>> from mlx_hf_bridge.pylate import evaluation, models           # doctest: +SKIP
    >>> evaluator = evaluation.ColBERTTripletEvaluator(anchors=["q"], positives=["p"], negatives=["n"])  # doctest: +SKIP
    >>> evaluator(models.ColBERT("path/to/colbert"), output_path=".")  # doctest: +SKIP
    {'accuracy': 1.0}
    """

    def __init__(
        self,
        anchors: list[str],
        positives: list[str],
        negatives: list[str],
        name: str = "",
        batch_size: int = 32,
        show_progress_bar: bool = False,
        write_csv: bool = True,
        truncate_dim: int | None = None,
    ) -> None:
        super().__init__()
        assert len(anchors) == len(positives)
        assert len(anchors) == len(negatives)
        self.anchors = anchors
        self.positives = positives
        self.negatives = negatives
        self.name = name
        self.truncate_dim = truncate_dim
        self.main_similarity_function = None
        self.similarity_fn_names = []
        self.margin = {"cosine": 0, "dot": 0, "manhattan": 0, "euclidean": 0}
        self.batch_size = batch_size
        if show_progress_bar is None:
            show_progress_bar = logger.getEffectiveLevel() in (logging.INFO, logging.DEBUG)
        self.show_progress_bar = show_progress_bar
        self.csv_file = "triplet_evaluation" + ("_" + name if name else "") + "_results.csv"
        self.write_csv = write_csv
        self.csv_headers = ["epoch", "steps", "accuracy"]
        self.metrics = ["accuracy"]
        self.primary_metric = "accuracy"

    def __call__(self, model, output_path: str | None = None, epoch: int = -1, steps: int = -1) -> dict[str, float]:
        evaluation_message(epoch=epoch, steps=steps, name=self.name, truncate_dim=self.truncate_dim)
        with _truncation(model, self.truncate_dim):
            kwargs = dict(batch_size=self.batch_size, show_progress_bar=self.show_progress_bar, convert_to_tensor=True)
            embeddings_anchors = model.encode(self.anchors, is_query=True, **kwargs)
            embeddings_positives = model.encode(self.positives, is_query=False, **kwargs)
            embeddings_negatives = model.encode(self.negatives, is_query=False, **kwargs)
        positive_scores = np.array(colbert_scores_pairwise(embeddings_anchors, embeddings_positives))
        negative_scores = np.array(colbert_scores_pairwise(embeddings_anchors, embeddings_negatives))
        metrics = {"accuracy": float(np.float32((positive_scores > negative_scores).sum()) / np.float32(len(positive_scores)))}
        for metric in self.metrics:
            logger.info(f"{metric.capitalize()}: \t{metrics[metric]:.2f}")
        self.store_metrics_in_model_card_data(model=model, metrics=metrics)
        if output_path is not None and self.write_csv:
            csv_writer(
                path=os.path.join(output_path, self.csv_file),
                header=self.csv_headers,
                data=[epoch, steps] + [metrics[metric] for metric in self.metrics],
            )
        return metrics


"""sentence-transformers' ``BinaryClassificationEvaluator`` on MLX."""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np

from . import metrics as stats
from .base import (
    SentenceEvaluator, append_csv_row, as_numpy, check_binary_labels, check_same_length, epoch_text, st6,
)
from .embedding_similarity import PAIRWISE

logger = logging.getLogger(__name__)

METRICS = ["accuracy", "accuracy_threshold", "f1", "precision", "recall", "f1_threshold", "ap", "mcc"]
# (display name, greater_is_better) per similarity, as ST's table
SIMILARITIES = {
    "cosine": ("Cosine-Similarity", True),
    "dot": ("Dot-Product", True),
    "manhattan": ("Manhattan-Distance", False),
    "euclidean": ("Euclidean-Distance", False),
}


class BinaryClassificationEvaluator(SentenceEvaluator):
    """How well the similarity of ``(sentences1[i], sentences2[i])`` separates ``labels`` (0 / 1):
    best accuracy and F1 with their thresholds, precision, recall, average precision and Matthews
    correlation, for each of ``similarity_fn_names`` (default: the model's). Keys
    ``{name}_cosine_accuracy`` ... (``max_*`` for several); ``primary_metric`` ``<fn>_ap`` (or
    ``max_ap``). CSV ``binary_classification_evaluation[_{name}]_results.csv``.

    Follows the installed release: ST 6.2 scores manhattan / euclidean as positive distances (ST 5.3
    as negative distances, with "lower is more similar", bug #3702) and its threshold search skips
    inside tied scores; ST 5.3's CSV omits the ``*_threshold`` columns' values (its header filter).
    """

    def __init__(
        self,
        sentences1: list[str],
        sentences2: list[str],
        labels: list[int],
        name: str = "",
        batch_size: int = 32,
        show_progress_bar: bool = False,
        write_csv: bool = True,
        truncate_dim: int | None = None,
        similarity_fn_names: list[Literal["cosine", "dot", "euclidean", "manhattan"]] | None = None,
    ):
        super().__init__()
        self.sentences1 = sentences1
        self.sentences2 = sentences2
        self.labels = labels
        self.truncate_dim = truncate_dim
        self.similarity_fn_names = similarity_fn_names or []
        self._st6 = st6()
        check_same_length(type(self).__name__, sentences1=sentences1, sentences2=sentences2, labels=labels)
        check_binary_labels(type(self).__name__, labels)
        self.write_csv = write_csv
        self.name = name
        self.batch_size = batch_size
        if show_progress_bar is None:
            show_progress_bar = logger.getEffectiveLevel() in (logging.INFO, logging.DEBUG)
        self.show_progress_bar = show_progress_bar
        self.csv_file = "binary_classification_evaluation" + ("_" + name if name else "") + "_results.csv"
        self.csv_headers = ["epoch", "steps"]
        self._append_csv_headers(self.similarity_fn_names)

    def _append_csv_headers(self, similarity_fn_names: list[str]) -> None:
        for v in similarity_fn_names:
            for m in METRICS:
                self.csv_headers.append(f"{v}_{m}")

    @classmethod
    def from_input_examples(cls, examples, **kwargs):
        return cls([e.texts[0] for e in examples], [e.texts[1] for e in examples], [e.label for e in examples], **kwargs)

    def __call__(self, model, output_path: str | None = None, epoch: int = -1, steps: int = -1) -> dict[str, float]:
        out_txt = epoch_text(epoch, steps, self.truncate_dim)
        logger.info(f"Binary Accuracy Evaluation of the model on the {self.name} dataset{out_txt}:")
        if not self.similarity_fn_names:
            self.similarity_fn_names = [model.similarity_fn_name]
            self._append_csv_headers(self.similarity_fn_names)
        scores = self.compute_metrics(model)

        file_output_data = [epoch, steps]
        for header_name in self.csv_headers:
            # ST 5.3 keeps only headers with one "_" (so no *_threshold values); ST 6.2 all metric columns
            keep = header_name not in ("epoch", "steps") if self._st6 else header_name.count("_") == 1
            if keep:
                sim_fct, metric = header_name.split("_", maxsplit=1)
                if sim_fct in scores:
                    file_output_data.append(scores[sim_fct][metric])
        if output_path is not None and self.write_csv:
            append_csv_row(output_path, self.csv_file, self.csv_headers, file_output_data)

        metrics = {f"{short}_{metric}": value for short, values in scores.items() for metric, value in values.items()}
        if len(self.similarity_fn_names) > 1:
            # ST 5.3 reads the metric names from scores["cosine"] (a KeyError without cosine)
            names = next(iter(scores.values())) if self._st6 else scores["cosine"]
            metrics.update({f"max_{metric}": max(scores[short][metric] for short in scores) for metric in names})
            self.primary_metric = "max_ap"
        else:
            self.primary_metric = f"{self.similarity_fn_names[0]}_ap"

        metrics = self.prefix_name_to_metrics(metrics, self.name)
        self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
        return metrics

    def _pair_embeddings(self, model):
        try:
            # Hashable sentences are embedded once each
            sentences = list({*self.sentences1, *self.sentences2})
        except TypeError:
            return self.embed_inputs(model, self.sentences1), self.embed_inputs(model, self.sentences2)
        embeddings = np.asarray(self.embed_inputs(model, sentences))
        emb_dict = dict(zip(sentences, embeddings))
        return (np.stack([emb_dict[s] for s in self.sentences1]), np.stack([emb_dict[s] for s in self.sentences2]))

    def compute_metrics(self, model) -> dict[str, dict[str, float]]:
        embeddings1, embeddings2 = self._pair_embeddings(model)
        labels = np.asarray(self.labels)
        output_scores = {}
        for similarity_fn_name in self.similarity_fn_names:
            name, greater_is_better = SIMILARITIES[similarity_fn_name]
            scores = as_numpy(PAIRWISE[similarity_fn_name](embeddings1, embeddings2))
            if self._st6 and not greater_is_better:
                scores = -scores  # distances, not negative distances (ST 6.2, #3702)
            acc, acc_threshold = stats.find_best_acc_and_threshold(scores, labels, greater_is_better, self._st6)
            f1, precision, recall, f1_threshold = stats.find_best_f1_and_threshold(
                scores, labels, greater_is_better, self._st6
            )
            ap = stats.average_precision(labels, scores * (1 if greater_is_better else -1))
            predicted_labels = (scores >= f1_threshold) if greater_is_better else (scores <= f1_threshold)
            mcc = stats.matthews_corrcoef(labels, predicted_labels)

            logger.info(f"Accuracy with {name}:             {acc * 100:.2f}\t(Threshold: {acc_threshold:.4f})")
            logger.info(f"F1 with {name}:                   {f1 * 100:.2f}\t(Threshold: {f1_threshold:.4f})")
            logger.info(f"Precision with {name}:            {precision * 100:.2f}")
            logger.info(f"Recall with {name}:               {recall * 100:.2f}")
            logger.info(f"Average Precision with {name}:    {ap * 100:.2f}")
            logger.info(f"Matthews Correlation with {name}: {mcc * 100:.2f}\n")
            output_scores[similarity_fn_name] = {
                "accuracy": acc, "accuracy_threshold": acc_threshold, "f1": f1, "f1_threshold": f1_threshold,
                "precision": precision, "recall": recall, "ap": ap, "mcc": mcc,
            }
        return output_scores

    compute_metrices = compute_metrics  # ST 5.3's name

    def embed_inputs(self, model, sentences, **kwargs):
        return model.encode(
            sentences,
            batch_size=self.batch_size,
            show_progress_bar=self.show_progress_bar,
            convert_to_numpy=True,
            truncate_dim=self.truncate_dim,
            **kwargs,
        )

    @staticmethod
    def find_best_acc_and_threshold(scores, labels, high_score_more_similar: bool):
        return stats.find_best_acc_and_threshold(scores, labels, high_score_more_similar, st6())

    @staticmethod
    def find_best_f1_and_threshold(scores, labels, high_score_more_similar: bool):
        return stats.find_best_f1_and_threshold(scores, labels, high_score_more_similar, st6())

    def get_config_dict(self):
        return {"truncate_dim": self.truncate_dim} if self.truncate_dim is not None else {}

"""sentence-transformers' ``EmbeddingSimilarityEvaluator`` on MLX."""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np

from ..dense.similarity import (
    SimilarityFunction,
    pairwise_cos_sim,
    pairwise_dot_score,
    pairwise_euclidean_sim,
    pairwise_manhattan_sim,
)
from . import metrics as stats
from .base import SentenceEvaluator, append_csv_row, as_numpy, check_same_length, config_of, epoch_text, st6

logger = logging.getLogger(__name__)

PAIRWISE = {
    "cosine": pairwise_cos_sim, "manhattan": pairwise_manhattan_sim,
    "euclidean": pairwise_euclidean_sim, "dot": pairwise_dot_score,
}


def similarity_value(similarity) -> SimilarityFunction | None:
    """ST's ``SimilarityFunction(x) if x else None`` (accepts our enum, a string, or ST's own enum)."""
    return SimilarityFunction(getattr(similarity, "value", similarity)) if similarity else None


class EmbeddingSimilarityEvaluator(SentenceEvaluator):
    """Pearson and Spearman correlation between gold ``scores`` and the similarity of
    ``(sentences1[i], sentences2[i])`` embeddings, for each of ``similarity_fn_names`` (default: the
    model's ``similarity_fn_name``). Keys ``{name}_pearson_cosine``, ``..._spearman_cosine`` (and
    ``pearson_max`` / ``spearman_max`` for several functions); ``primary_metric`` is
    ``spearman_<main_similarity>`` (else ``spearman_max`` / the only one). CSV
    ``similarity_evaluation[_{name}][_{precision}]_results.csv``.

    ``precision`` quantises the embeddings as ``encode(precision=...)`` does (normalised first);
    ST 6.2 calibrates int8 / uint8 over both sides together and compares quantised vectors as
    float32 (ST 5.3 encodes each side separately).
    """

    def __init__(
        self,
        sentences1: list[str],
        sentences2: list[str],
        scores: list[float],
        batch_size: int = 16,
        main_similarity: str | SimilarityFunction | None = None,
        similarity_fn_names: list[Literal["cosine", "euclidean", "manhattan", "dot"]] | None = None,
        name: str = "",
        show_progress_bar: bool = False,
        write_csv: bool = True,
        precision: Literal["float32", "int8", "uint8", "binary", "ubinary"] | None = None,
        truncate_dim: int | None = None,
    ):
        super().__init__()
        self.sentences1 = sentences1
        self.sentences2 = sentences2
        self.scores = scores
        self.write_csv = write_csv
        self.precision = precision
        self.truncate_dim = truncate_dim
        check_same_length(type(self).__name__, sentences1=sentences1, sentences2=sentences2, scores=scores)
        self.main_similarity = similarity_value(main_similarity)
        self.similarity_fn_names = similarity_fn_names or []
        if self.similarity_fn_names == [] and self.main_similarity is not None:
            self.similarity_fn_names = [self.main_similarity.value]
        self.name = name
        self.batch_size = batch_size
        if show_progress_bar is None:
            show_progress_bar = logger.getEffectiveLevel() in (logging.INFO, logging.DEBUG)
        self.show_progress_bar = show_progress_bar
        self.csv_file = (
            "similarity_evaluation" + ("_" + name if name else "") + ("_" + precision if precision else "") + "_results.csv"
        )
        self.csv_headers = ["epoch", "steps"]
        self._append_csv_headers(self.similarity_fn_names)

    def _append_csv_headers(self, similarity_fn_names: list[str]) -> None:
        for v in similarity_fn_names:
            for m in ("pearson", "spearman"):
                self.csv_headers.append(f"{v}_{m}")

    @classmethod
    def from_input_examples(cls, examples, **kwargs):
        return cls([e.texts[0] for e in examples], [e.texts[1] for e in examples], [e.label for e in examples], **kwargs)

    def _embeddings(self, model):
        if st6() and self.precision in ("int8", "uint8"):
            # Calibrate both sides together so the same sentence has the same quantized embedding (ST 6.2).
            embeddings = np.asarray(self.embed_inputs(model, [*self.sentences1, *self.sentences2]))
            return embeddings[: len(self.sentences1)], embeddings[len(self.sentences1) :]
        return np.asarray(self.embed_inputs(model, self.sentences1)), np.asarray(self.embed_inputs(model, self.sentences2))

    def __call__(self, model, output_path: str | None = None, epoch: int = -1, steps: int = -1) -> dict[str, float]:
        out_txt = epoch_text(epoch, steps, self.truncate_dim)
        logger.info(f"EmbeddingSimilarityEvaluator: Evaluating the model on the {self.name} dataset{out_txt}:")
        embeddings1, embeddings2 = self._embeddings(model)
        # Binary and ubinary embeddings are packed: unpack them for the distance metrics
        if self.precision == "binary":
            embeddings1 = embeddings1.astype(np.int16) + 128
            embeddings2 = embeddings2.astype(np.int16) + 128
        if self.precision in ("ubinary", "binary"):
            embeddings1 = np.unpackbits(embeddings1.astype(np.uint8), axis=1)
            embeddings2 = np.unpackbits(embeddings2.astype(np.uint8), axis=1)
        if self.precision in ("int8", "uint8", "ubinary", "binary"):
            embeddings1, embeddings2 = embeddings1.astype(np.float32), embeddings2.astype(np.float32)

        if not self.similarity_fn_names:
            self.similarity_fn_names = [model.similarity_fn_name]
            self._append_csv_headers(self.similarity_fn_names)

        metrics = {}
        for fn_name in self.similarity_fn_names:
            if fn_name in PAIRWISE:
                scores = as_numpy(PAIRWISE[fn_name](embeddings1, embeddings2))
                eval_pearson, eval_spearman = stats.pearson(self.scores, scores), stats.spearman(self.scores, scores)
                metrics[f"pearson_{fn_name}"] = eval_pearson
                metrics[f"spearman_{fn_name}"] = eval_spearman
                logger.info(
                    f"{fn_name.capitalize()}-Similarity:\tPearson: {eval_pearson:.4f}\tSpearman: {eval_spearman:.4f}"
                )

        if output_path is not None and self.write_csv:
            row = [metrics[f"{m}_{fn}"] for fn in self.similarity_fn_names for m in ("pearson", "spearman")]
            append_csv_row(output_path, self.csv_file, self.csv_headers, [epoch, steps] + row)

        if len(self.similarity_fn_names) > 1:
            metrics["pearson_max"] = max(metrics[f"pearson_{fn}"] for fn in self.similarity_fn_names)
            metrics["spearman_max"] = max(metrics[f"spearman_{fn}"] for fn in self.similarity_fn_names)

        if self.main_similarity:
            self.primary_metric = {
                SimilarityFunction.COSINE: "spearman_cosine", SimilarityFunction.EUCLIDEAN: "spearman_euclidean",
                SimilarityFunction.MANHATTAN: "spearman_manhattan", SimilarityFunction.DOT_PRODUCT: "spearman_dot",
            }.get(self.main_similarity)
        elif len(self.similarity_fn_names) > 1:
            self.primary_metric = "spearman_max"
        else:
            self.primary_metric = f"spearman_{self.similarity_fn_names[0]}"

        metrics = self.prefix_name_to_metrics(metrics, self.name)
        self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
        return metrics

    def embed_inputs(self, model, sentences, **kwargs):
        return model.encode(
            sentences,
            batch_size=self.batch_size,
            show_progress_bar=self.show_progress_bar,
            convert_to_numpy=True,
            precision=self.precision,
            normalize_embeddings=bool(self.precision),
            truncate_dim=self.truncate_dim,
            **kwargs,
        )

    @property
    def description(self) -> str:
        return "Semantic Similarity"

    def get_config_dict(self):
        return config_of(self, ("truncate_dim", "precision"))

"""sentence-transformers' ``TripletEvaluator`` on MLX."""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np

from ..dense.similarity import SimilarityFunction
from .base import SentenceEvaluator, append_csv_row, as_numpy, check_same_length, encode_fn, epoch_text, st6
from .embedding_similarity import PAIRWISE, similarity_value

logger = logging.getLogger(__name__)


class TripletEvaluator(SentenceEvaluator):
    """Accuracy of ``similarity(anchor, positive) > similarity(anchor, negative) + margin`` for each of
    ``similarity_fn_names`` (default: the model's). Keys ``{name}_cosine_accuracy`` (and
    ``max_accuracy`` for several); ``primary_metric`` ``<main_similarity_function>_accuracy`` (else
    ``max_accuracy`` / the only one). CSV ``triplet_evaluation[_{name}]_results.csv``.

    ST 6.2 embeds anchors with ``encode_query`` and positives / negatives with ``encode_document``
    and refuses unknown ``similarity_fn_names`` / ``margin`` keys; ST 5.3 uses ``encode`` for all three.
    Subclasses change the scoring through ``_get_similarity_functions`` (ST 6.2's hook).
    """

    always_st6 = False  # a subclass that exists only in ST 6 follows ST 6.2 whatever is installed

    def __init__(
        self,
        anchors: list[str],
        positives: list[str],
        negatives: list[str],
        main_similarity_function: str | SimilarityFunction | None = None,
        margin: float | dict[str, float] | None = None,
        name: str = "",
        batch_size: int = 16,
        show_progress_bar: bool = False,
        write_csv: bool = True,
        truncate_dim: int | None = None,
        similarity_fn_names: list[Literal["cosine", "dot", "euclidean", "manhattan"]] | None = None,
        main_distance_function: str | SimilarityFunction | None = "deprecated",
    ):
        super().__init__()
        self.anchors = anchors
        self.positives = positives
        self.negatives = negatives
        self.name = name
        self.truncate_dim = truncate_dim
        self._st6 = self.always_st6 or st6()
        check_same_length(type(self).__name__, anchors=anchors, positives=positives, negatives=negatives)

        if main_distance_function != "deprecated" and main_similarity_function is None:
            main_similarity_function = main_distance_function
            logger.warning(
                "The 'main_distance_function' parameter is deprecated. Please use 'main_similarity_function' instead. "
                "'main_distance_function' will be removed in a future release."
            )
        self.main_similarity_function = similarity_value(main_similarity_function)
        self.similarity_fn_names = similarity_fn_names or []
        fn_keys = list(self._get_similarity_functions())
        if self._st6:
            if not self.similarity_fn_names and self.main_similarity_function is not None:
                self.similarity_fn_names = [self.main_similarity_function.value]
            if unknown_names := sorted(set(self.similarity_fn_names) - set(fn_keys)):
                raise ValueError(
                    f"`similarity_fn_names` got unexpected names {unknown_names}, expected names in {fn_keys}."
                )
        if margin is None:
            self.margin = {k: 0 for k in fn_keys}
        elif isinstance(margin, (float, int)):
            self.margin = {k: margin for k in fn_keys}
        elif isinstance(margin, dict):
            if self._st6 and (unknown_keys := sorted(set(margin) - set(fn_keys))):
                raise ValueError(f"`margin` got unexpected keys {unknown_keys}, expected keys in {fn_keys}.")
            self.margin = {**{k: 0 for k in fn_keys}, **margin}
        else:
            raise ValueError(f"`margin` should be a float or a dictionary with keys in {fn_keys}.")

        self.batch_size = batch_size
        if show_progress_bar is None:
            show_progress_bar = logger.getEffectiveLevel() in (logging.INFO, logging.DEBUG)
        self.show_progress_bar = show_progress_bar
        self.csv_file: str = "triplet_evaluation" + ("_" + name if name else "") + "_results.csv"
        self.csv_headers = ["epoch", "steps"]
        self.write_csv = write_csv
        self._append_csv_headers(self.similarity_fn_names)

    def _append_csv_headers(self, similarity_fn_names):
        for fn_name in similarity_fn_names:
            self.csv_headers.append(f"accuracy_{fn_name}")

    @classmethod
    def from_input_examples(cls, examples, **kwargs):
        return cls([e.texts[0] for e in examples], [e.texts[1] for e in examples], [e.texts[2] for e in examples],
                   **kwargs)

    def __call__(self, model, output_path: str | None = None, epoch: int = -1, steps: int = -1) -> dict[str, float]:
        out_txt = epoch_text(epoch, steps, self.truncate_dim)
        logger.info(f"TripletEvaluator: Evaluating the model on the {self.name} dataset{out_txt}:")
        roles = ("query", "document", "document") if self._st6 else (None, None, None)
        embeddings_anchors = self.embed_inputs(model, self.anchors, encode_fn_name=roles[0])
        embeddings_positives = self.embed_inputs(model, self.positives, encode_fn_name=roles[1])
        embeddings_negatives = self.embed_inputs(model, self.negatives, encode_fn_name=roles[2])

        if not self.similarity_fn_names:
            self.similarity_fn_names = [model.similarity_fn_name]
            self._append_csv_headers(self.similarity_fn_names)

        similarity_functions = self._get_similarity_functions()
        metrics = {}
        for fn_name in self.similarity_fn_names:
            if fn_name in similarity_functions:
                positive_scores, negative_scores = similarity_functions[fn_name](
                    embeddings_anchors, embeddings_positives, embeddings_negatives
                )
                # ST compares float32 tensors: the margin is added in float32 too
                hits = as_numpy(positive_scores) > as_numpy(negative_scores) + np.float32(self.margin[fn_name])
                accuracy = float(np.float32(hits.astype(np.float32).mean()))
                metrics[f"{fn_name}_accuracy"] = accuracy
                logger.info(f"Accuracy {fn_name.capitalize()} Similarity:\t{accuracy:.2%}")

        if output_path is not None and self.write_csv:
            append_csv_row(output_path, self.csv_file, self.csv_headers, [epoch, steps] + list(metrics.values()))

        if len(self.similarity_fn_names) > 1:
            metrics["max_accuracy"] = max(metrics.values())

        if self.main_similarity_function:
            self.primary_metric = f"{self.main_similarity_function.value}_accuracy"
        elif len(self.similarity_fn_names) > 1:
            self.primary_metric = "max_accuracy"
        else:
            self.primary_metric = f"{self.similarity_fn_names[0]}_accuracy"

        metrics = self.prefix_name_to_metrics(metrics, self.name)
        self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
        return metrics

    def embed_inputs(self, model, sentences, encode_fn_name: str | None = None, **kwargs):
        return encode_fn(model, encode_fn_name)(
            sentences,
            batch_size=self.batch_size,
            show_progress_bar=self.show_progress_bar,
            convert_to_numpy=True,
            truncate_dim=self.truncate_dim,
            **kwargs,
        )

    def _get_similarity_functions(self) -> dict:
        """name -> fn(anchors, positives, negatives) -> (positive scores, negative scores)."""
        return {name: (lambda a, p, n, fn=PAIRWISE[name]: (fn(a, p), fn(a, n)))
                for name in ("cosine", "dot", "manhattan", "euclidean")}

    def get_config_dict(self):
        config_dict = {}
        if self.margin != {k: 0 for k in self._get_similarity_functions()}:
            config_dict["margin"] = self.margin
        if self.truncate_dim is not None:
            config_dict["truncate_dim"] = self.truncate_dim
        return config_dict

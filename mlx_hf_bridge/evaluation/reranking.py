"""sentence-transformers' ``RerankingEvaluator`` on MLX."""

from __future__ import annotations

import logging

import numpy as np
import tqdm

from ..dense.similarity import cos_sim
from . import metrics as stats
from .base import EvaluatorInputError, SentenceEvaluator, append_csv_row, as_numpy, encode_fn, epoch_text, st6

logger = logging.getLogger(__name__)


class RerankingEvaluator(SentenceEvaluator):
    """Re-ranks each sample's ``positive`` + ``negative`` documents by ``similarity_fct`` with its
    ``query`` (``encode_query`` / ``encode_document``): MAP (sklearn's average precision), MRR@k and
    nDCG@k (sklearn's, ties averaged). Keys ``{name}_map``, ``_mrr@{at_k}``, ``_ndcg@{at_k}`` (=
    ``primary_metric``); CSV ``RerankingEvaluator[_{name}]_results_@{at_k}.csv``. Samples without a
    positive or a negative are dropped. ST 6.2 also accepts a single string for either; ST 5.3 takes a
    string as a list of its characters (reproduced where ST 5.3 is installed).
    """

    def __init__(
        self,
        samples: list[dict],
        at_k: int = 10,
        name: str = "",
        write_csv: bool = True,
        similarity_fct=cos_sim,
        batch_size: int = 64,
        show_progress_bar: bool = False,
        use_batched_encoding: bool = True,
        truncate_dim: int | None = None,
        mrr_at_k: int | None = None,
    ):
        super().__init__()
        self.samples = samples
        self.name = name
        if mrr_at_k is not None:
            logger.warning(f"The `mrr_at_k` parameter has been deprecated; please use `at_k={mrr_at_k}` instead.")
            self.at_k = mrr_at_k
        else:
            self.at_k = at_k
        self.similarity_fct = similarity_fct
        self.batch_size = batch_size
        self.show_progress_bar = show_progress_bar
        self.use_batched_encoding = use_batched_encoding
        self.truncate_dim = truncate_dim

        if isinstance(self.samples, dict):
            self.samples = list(self.samples.values())
        for i, sample in enumerate(self.samples):  # ST fails later with a bare KeyError
            if missing := [key for key in ("query", "positive", "negative") if key not in sample]:
                raise EvaluatorInputError(
                    f"RerankingEvaluator samples[{i}] has no {missing} entry (keys: {sorted(sample)}); each sample "
                    "is a dict with 'query', 'positive' (list of relevant documents) and 'negative' (list)."
                )
        if st6():
            self.samples = [
                {
                    **sample,
                    "positive": [sample["positive"]] if isinstance(sample["positive"], str) else sample["positive"],
                    "negative": [sample["negative"]] if isinstance(sample["negative"], str) else sample["negative"],
                }
                for sample in self.samples
            ]
        self.samples = [s for s in self.samples if len(s["positive"]) > 0 and len(s["negative"]) > 0]

        self.csv_file = "RerankingEvaluator" + ("_" + name if name else "") + f"_results_@{self.at_k}.csv"
        self.csv_headers = ["epoch", "steps", "MAP", f"MRR@{self.at_k}", f"NDCG@{self.at_k}"]
        self.write_csv = write_csv
        self.primary_metric = f"ndcg@{self.at_k}"

    def __call__(self, model, output_path: str | None = None, epoch: int = -1, steps: int = -1) -> dict[str, float]:
        out_txt = epoch_text(epoch, steps, self.truncate_dim)
        logger.info(f"RerankingEvaluator: Evaluating the model on the {self.name} dataset{out_txt}:")
        scores = self.compute_metrics(model)
        mean_ap, mean_mrr, mean_ndcg = scores["map"], scores["mrr"], scores["ndcg"]

        num_positives = [len(sample["positive"]) for sample in self.samples]
        num_negatives = [len(sample["negative"]) for sample in self.samples]
        logger.info(
            f"Queries: {len(self.samples)} \t Positives: Min {np.min(num_positives):.1f}, Mean "
            f"{np.mean(num_positives):.1f}, Max {np.max(num_positives):.1f} \t Negatives: Min "
            f"{np.min(num_negatives):.1f}, Mean {np.mean(num_negatives):.1f}, Max {np.max(num_negatives):.1f}"
        )
        logger.info(f"MAP: {mean_ap * 100:.2f}")
        logger.info(f"MRR@{self.at_k}: {mean_mrr * 100:.2f}")
        logger.info(f"NDCG@{self.at_k}: {mean_ndcg * 100:.2f}")

        if output_path is not None and self.write_csv:
            append_csv_row(output_path, self.csv_file, self.csv_headers, [epoch, steps, mean_ap, mean_mrr, mean_ndcg])

        metrics = {"map": mean_ap, f"mrr@{self.at_k}": mean_mrr, f"ndcg@{self.at_k}": mean_ndcg}
        metrics = self.prefix_name_to_metrics(metrics, self.name)
        self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
        return metrics

    def compute_metrics(self, model):
        if self.use_batched_encoding:
            return self.compute_metrics_batched(model)
        return self.compute_metrics_individual(model)

    def _score_sample(self, query_emb, docs_emb, num_pos: int, num_neg: int, totals: dict) -> None:
        pred_scores = as_numpy(self.similarity_fct(query_emb, docs_emb))
        if pred_scores.ndim > 1:
            pred_scores = pred_scores[0]
        is_relevant = [1] * num_pos + [0] * num_neg
        mrr_score = 0
        for rank, index in enumerate(np.argsort(-pred_scores, kind="stable")[: self.at_k].tolist()):
            if is_relevant[index]:
                mrr_score = 1 / (rank + 1)
                break
        totals["mrr"].append(mrr_score)
        totals["ndcg"].append(stats.ndcg_score(is_relevant, pred_scores.tolist(), k=self.at_k))
        totals["map"].append(stats.average_precision(is_relevant, pred_scores))

    @staticmethod
    def _means(totals: dict) -> dict:
        return {"map": np.mean(totals["map"]), "mrr": np.mean(totals["mrr"]), "ndcg": np.mean(totals["ndcg"])}

    def compute_metrics_batched(self, model):
        totals = {"mrr": [], "ndcg": [], "map": []}
        all_query_embs = self.embed_inputs(
            model, [sample["query"] for sample in self.samples], encode_fn_name="query",
            show_progress_bar=self.show_progress_bar,
        )
        all_docs = [doc for sample in self.samples for doc in [*sample["positive"], *sample["negative"]]]
        all_docs_embs = self.embed_inputs(
            model, all_docs, encode_fn_name="document", show_progress_bar=self.show_progress_bar
        )
        docs_idx = 0
        for query_idx, instance in enumerate(self.samples):
            num_pos, num_neg = len(instance["positive"]), len(instance["negative"])
            docs_emb = all_docs_embs[docs_idx : docs_idx + num_pos + num_neg]
            docs_idx += num_pos + num_neg
            if num_pos == 0 or num_neg == 0:
                continue
            self._score_sample(all_query_embs[query_idx], docs_emb, num_pos, num_neg, totals)
        return self._means(totals)

    def compute_metrics_individual(self, model):
        totals = {"mrr": [], "ndcg": [], "map": []}
        for instance in tqdm.tqdm(self.samples, disable=not self.show_progress_bar, desc="Samples"):
            positive, negative = list(instance["positive"]), list(instance["negative"])
            if len(positive) == 0 or len(negative) == 0:
                continue
            query_emb = self.embed_inputs(model, [instance["query"]], encode_fn_name="query", show_progress_bar=False)
            docs_emb = self.embed_inputs(model, positive + negative, encode_fn_name="document", show_progress_bar=False)
            self._score_sample(query_emb, docs_emb, len(positive), len(negative), totals)
        return self._means(totals)

    # ST 5.3's names (ST 6.2 keeps them as aliases)
    compute_metrices = compute_metrics
    compute_metrices_batched = compute_metrics_batched
    compute_metrices_individual = compute_metrics_individual

    def embed_inputs(self, model, sentences, encode_fn_name: str | None = None, show_progress_bar: bool | None = None,
                     **kwargs):
        return encode_fn(model, encode_fn_name)(
            sentences,
            batch_size=self.batch_size,
            show_progress_bar=show_progress_bar,
            convert_to_tensor=True,
            truncate_dim=self.truncate_dim,
            **kwargs,
        )

    def get_config_dict(self):
        config_dict = {"at_k": self.at_k}
        if self.truncate_dim is not None:
            config_dict["truncate_dim"] = self.truncate_dim
        return config_dict

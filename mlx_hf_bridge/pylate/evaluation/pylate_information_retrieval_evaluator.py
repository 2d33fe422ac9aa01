"""``pylate.evaluation.PyLateInformationRetrievalEvaluator`` on MLX."""

from __future__ import annotations

import json
import logging
import os

import numpy as np
from tqdm.auto import trange

from ...colbert import ir_metrics

from .base import SentenceEvaluator, _truncation, pad_sequence

logger = logging.getLogger(__name__)


class PyLateInformationRetrievalEvaluator(SentenceEvaluator):
    """sentence-transformers' ``InformationRetrievalEvaluator`` for ColBERT models (PyLate's subclass).

    Queries are encoded with ``is_query=True``, the corpus in chunks of ``corpus_chunk_size`` with
    ``is_query=False``; both are zero-padded and scored with ``model.similarity`` (MaxSim). Reports
    accuracy@k, precision@k, recall@k, nDCG@k, MRR@k and MAP@k under keys such as
    ``{name}_MaxSim_ndcg@10``; ``primary_metric`` is ``{name}_MaxSim_ndcg@{max(ndcg_at_k)}``; the CSV
    is ``Information-Retrieval_evaluation[_<name>]_results.csv`` with ST's columns
    (``MaxSim-Accuracy@1``, ...).

    >>> from mlx_hf_bridge.pylate import evaluation, models           # doctest: +SKIP
    >>> evaluator = evaluation.PyLateInformationRetrievalEvaluator(
    ...     queries={"q1": "what is mlx?"}, corpus={"d1": "MLX is an array framework.", "d2": "Paris."},
    ...     relevant_docs={"q1": {"d1"}}, name="tiny")                 # doctest: +SKIP
    >>> evaluator(models.ColBERT("path/to/colbert"))["tiny_MaxSim_ndcg@10"]  # doctest: +SKIP
    1.0
    """

    def __init__(
        self,
        queries: dict[str, str],
        corpus: dict[str, str],
        relevant_docs: dict[str, set[str]],
        corpus_chunk_size: int = 50000,
        mrr_at_k: list[int] = [10],
        ndcg_at_k: list[int] = [10],
        accuracy_at_k: list[int] = [1, 3, 5, 10],
        precision_recall_at_k: list[int] = [1, 3, 5, 10],
        map_at_k: list[int] = [100],
        show_progress_bar: bool = False,
        batch_size: int = 32,
        name: str = "",
        write_csv: bool = True,
        truncate_dim: int | None = None,
        score_functions: dict | None = None,
        main_score_function: str | None = None,
        query_prompt: str | None = None,
        query_prompt_name: str | None = None,
        corpus_prompt: str | None = None,
        corpus_prompt_name: str | None = None,
        write_predictions: bool = False,
    ) -> None:
        super().__init__()
        self.queries_ids = [qid for qid in queries if qid in relevant_docs and len(relevant_docs[qid]) > 0]
        self.queries = [queries[qid] for qid in self.queries_ids]
        self.corpus_ids = list(corpus.keys())
        self.corpus = [corpus[cid] for cid in self.corpus_ids]
        self.query_prompt = query_prompt
        self.query_prompt_name = query_prompt_name
        self.corpus_prompt = corpus_prompt
        self.corpus_prompt_name = corpus_prompt_name
        self.relevant_docs = relevant_docs
        self.corpus_chunk_size = corpus_chunk_size
        self.mrr_at_k = mrr_at_k
        self.ndcg_at_k = ndcg_at_k
        self.accuracy_at_k = accuracy_at_k
        self.precision_recall_at_k = precision_recall_at_k
        self.map_at_k = map_at_k
        self.show_progress_bar = show_progress_bar
        self.batch_size = batch_size
        self.name = name
        self.write_csv = write_csv
        self.score_functions = score_functions
        self.score_function_names = sorted(self.score_functions.keys()) if score_functions else []
        self.main_score_function = getattr(main_score_function, "value", main_score_function) or None
        self.truncate_dim = truncate_dim
        if name:
            name = "_" + name
        self.csv_file = "Information-Retrieval_evaluation" + name + "_results.csv"
        self.csv_headers = ["epoch", "steps"]
        self._append_csv_headers(self.score_function_names)
        self.write_predictions = write_predictions
        if self.write_predictions:
            self.predictions_file = "Information-Retrieval_evaluation" + name + "_predictions.jsonl"

    def _append_csv_headers(self, score_function_names):
        for score_name in score_function_names:
            for k in self.accuracy_at_k:
                self.csv_headers.append(f"{score_name}-Accuracy@{k}")
            for k in self.precision_recall_at_k:
                self.csv_headers.append(f"{score_name}-Precision@{k}")
                self.csv_headers.append(f"{score_name}-Recall@{k}")
            for k in self.mrr_at_k:
                self.csv_headers.append(f"{score_name}-MRR@{k}")
            for k in self.ndcg_at_k:
                self.csv_headers.append(f"{score_name}-NDCG@{k}")
            for k in self.map_at_k:
                self.csv_headers.append(f"{score_name}-MAP@{k}")

    def __call__(self, model, output_path: str | None = None, epoch: int = -1, steps: int = -1, *args, **kwargs):
        if epoch != -1:
            out_txt = f" after epoch {epoch}" if steps == -1 else f" in epoch {epoch} after {steps} steps"
        else:
            out_txt = ""
        if self.truncate_dim is not None:
            out_txt += f" (truncated to {self.truncate_dim})"
        logger.info(f"Information Retrieval Evaluation of the model on the {self.name} dataset{out_txt}:")

        if self.score_functions is None:
            self.score_functions = {model.similarity_fn_name: model.similarity}
            self.score_function_names = [model.similarity_fn_name]
            self._append_csv_headers(self.score_function_names)

        scores = self.compute_metrices(model, *args, output_path=output_path, **kwargs)

        if output_path is not None and self.write_csv:
            os.makedirs(output_path, exist_ok=True)
            csv_path = os.path.join(output_path, self.csv_file)
            if not os.path.isfile(csv_path):
                fOut = open(csv_path, mode="w", encoding="utf-8")
                fOut.write(",".join(self.csv_headers))
                fOut.write("\n")
            else:
                fOut = open(csv_path, mode="a", encoding="utf-8")
            output_data = [epoch, steps]
            for name in self.score_function_names:
                for k in self.accuracy_at_k:
                    output_data.append(scores[name]["accuracy@k"][k])
                for k in self.precision_recall_at_k:
                    output_data.append(scores[name]["precision@k"][k])
                    output_data.append(scores[name]["recall@k"][k])
                for k in self.mrr_at_k:
                    output_data.append(scores[name]["mrr@k"][k])
                for k in self.ndcg_at_k:
                    output_data.append(scores[name]["ndcg@k"][k])
                for k in self.map_at_k:
                    output_data.append(scores[name]["map@k"][k])
            fOut.write(",".join(map(str, output_data)))
            fOut.write("\n")
            fOut.close()

        if not self.primary_metric:
            if self.main_score_function is None:
                score_function = max(
                    [(name, scores[name]["ndcg@k"][max(self.ndcg_at_k)]) for name in self.score_function_names],
                    key=lambda x: x[1],
                )[0]
                self.primary_metric = f"{score_function}_ndcg@{max(self.ndcg_at_k)}"
            else:
                self.primary_metric = f"{self.main_score_function}_ndcg@{max(self.ndcg_at_k)}"

        metrics = {
            f"{score_function}_{metric_name.replace('@k', '@' + str(k))}": value
            for score_function, values_dict in scores.items()
            for metric_name, values in values_dict.items()
            for k, value in values.items()
        }
        metrics = self.prefix_name_to_metrics(metrics, self.name)
        self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
        return metrics

    def _max_k(self) -> int:
        return max(
            max(self.mrr_at_k), max(self.ndcg_at_k), max(self.accuracy_at_k),
            max(self.precision_recall_at_k), max(self.map_at_k),
        )

    def compute_metrices(self, model, corpus_model=None, corpus_embeddings=None, output_path: str | None = None):
        if corpus_model is None:
            corpus_model = model
        max_k = self._max_k()
        with _truncation(model, self.truncate_dim):
            query_embeddings = pad_sequence(
                model.encode(
                    self.queries,
                    prompt_name=self.query_prompt_name,
                    prompt=self.query_prompt,
                    batch_size=self.batch_size,
                    is_query=True,
                    show_progress_bar=self.show_progress_bar,
                    convert_to_tensor=True,
                )
            )
        heaps = {name: [[] for _ in range(len(self.queries))] for name in self.score_functions}

        for corpus_start_idx in trange(
            0, len(self.corpus), self.corpus_chunk_size, desc="Corpus Chunks", disable=not self.show_progress_bar
        ):
            corpus_end_idx = min(corpus_start_idx + self.corpus_chunk_size, len(self.corpus))
            if corpus_embeddings is None:
                with _truncation(corpus_model, self.truncate_dim):
                    sub_corpus_embeddings = pad_sequence(
                        corpus_model.encode(
                            self.corpus[corpus_start_idx:corpus_end_idx],
                            prompt_name=self.corpus_prompt_name,
                            prompt=self.corpus_prompt,
                            is_query=False,
                            batch_size=self.batch_size,
                            show_progress_bar=False,
                            convert_to_tensor=True,
                        )
                    )
            else:
                sub_corpus_embeddings = corpus_embeddings[corpus_start_idx:corpus_end_idx]
            for name, score_function in self.score_functions.items():
                pair_scores = np.array(score_function(query_embeddings, sub_corpus_embeddings), dtype=np.float32)
                ir_metrics.push_top_k(heaps[name], pair_scores, self.corpus_ids, corpus_start_idx, max_k)

        queries_result_list = {name: ir_metrics.results_as_dicts(heaps[name]) for name in heaps}

        if self.write_predictions and output_path is not None:
            os.makedirs(output_path, exist_ok=True)
            for name in queries_result_list:
                json_path = os.path.join(output_path, self.predictions_file.replace(".jsonl", f"_{name}.jsonl"))
                with open(json_path, mode="w", encoding="utf-8") as fOut:
                    for query_itr, results in enumerate(queries_result_list[name]):
                        prediction = {
                            "query_id": self.queries_ids[query_itr],
                            "query": self.queries[query_itr],
                            "results": sorted(results, key=lambda x: x["score"], reverse=True),
                        }
                        fOut.write(json.dumps(prediction) + "\n")

        logger.info(f"Queries: {len(self.queries)}")
        logger.info(f"Corpus: {len(self.corpus)}\n")
        scores = {name: self.compute_metrics(queries_result_list[name]) for name in self.score_functions}
        for name in self.score_function_names:
            logger.info(f"Score-Function: {name}")
            self.output_scores(scores[name])
        return scores

    def compute_metrics(self, queries_result_list: list) -> dict:
        return ir_metrics.compute_metrics(
            queries_result_list,
            self.queries_ids,
            self.relevant_docs,
            accuracy_at_k=self.accuracy_at_k,
            precision_recall_at_k=self.precision_recall_at_k,
            mrr_at_k=self.mrr_at_k,
            ndcg_at_k=self.ndcg_at_k,
            map_at_k=self.map_at_k,
        )

    compute_dcg_at_k = staticmethod(ir_metrics.compute_dcg_at_k)

    def output_scores(self, scores):
        for k in scores["accuracy@k"]:
            logger.info("Accuracy@{}: {:.2f}%".format(k, scores["accuracy@k"][k] * 100))
        for k in scores["precision@k"]:
            logger.info("Precision@{}: {:.2f}%".format(k, scores["precision@k"][k] * 100))
        for k in scores["recall@k"]:
            logger.info("Recall@{}: {:.2f}%".format(k, scores["recall@k"][k] * 100))
        for k in scores["mrr@k"]:
            logger.info("MRR@{}: {:.4f}".format(k, scores["mrr@k"][k]))
        for k in scores["ndcg@k"]:
            logger.info("NDCG@{}: {:.4f}".format(k, scores["ndcg@k"][k]))
        for k in scores["map@k"]:
            logger.info("MAP@{}: {:.4f}".format(k, scores["map@k"][k]))

    def get_config_dict(self) -> dict:
        config = {}
        for key in ("truncate_dim", "query_prompt", "query_prompt_name", "corpus_prompt", "corpus_prompt_name"):
            if getattr(self, key) is not None:
                config[key] = getattr(self, key)
        return config

"""sentence-transformers' ``InformationRetrievalEvaluator`` on MLX."""

from __future__ import annotations

import json
import logging
import os

from tqdm.auto import trange

from ..colbert import ir_metrics
from ..dense.similarity import SimilarityFunction
from .base import SentenceEvaluator, append_joined_row, as_numpy, config_of, encode_fn, epoch_text, st6

logger = logging.getLogger(__name__)


class InformationRetrievalEvaluator(SentenceEvaluator):
    """Retrieval metrics of ``queries`` against ``corpus`` given ``relevant_docs`` (qid -> set of cids).

    Queries are embedded with ``model.encode_query``, the corpus in chunks of ``corpus_chunk_size``
    with ``model.encode_document``, scored with each score function (default: the model's
    ``similarity``) and the best ``max(k)`` documents kept per query. Reports accuracy@k,
    precision@k, recall@k, MRR@k, nDCG@k and MAP@k as ``{name}_{score_fn}_ndcg@10`` etc.;
    ``primary_metric`` is the best (or ``main_score_function``'s) ``ndcg@max(ndcg_at_k)``. The CSV
    is ``Information-Retrieval_evaluation[_{name}]_results.csv`` with ST's columns.

    Release differences (follows the installed sentence-transformers; ST 6.2 when none): ST 6.2
    breaks score ties by ascending corpus_id (ST 5.3: heap order) and resolves the model's similarity
    on every call (ST 5.3: once, from the first model).
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
        main_score_function: str | SimilarityFunction | None = None,
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
        self._corpus_id_ranks = None
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
        self._score_functions_from_model = score_functions is None
        self.score_function_names = sorted(self.score_functions.keys()) if score_functions else []
        self.main_score_function = (
            SimilarityFunction(getattr(main_score_function, "value", main_score_function)) if main_score_function else None
        )
        self.truncate_dim = truncate_dim
        self._st6 = st6()
        if name:
            name = "_" + name
        self.csv_file: str = "Information-Retrieval_evaluation" + name + "_results.csv"
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

    def _model_score_functions(self, model) -> dict:
        return {model.similarity_fn_name: model.similarity}

    def _resolve_score_functions(self, model) -> bool:
        """Fills in the model's similarity; True when an ST 6.2 re-resolution changed the CSV columns."""
        if self._st6 and self._score_functions_from_model:
            self.score_functions = self._model_score_functions(model)
            if self.score_function_names != sorted(self.score_functions):
                changed = bool(self.score_function_names)
                self.score_function_names = sorted(self.score_functions)
                self.csv_headers = ["epoch", "steps"]
                self._append_csv_headers(self.score_function_names)
                self.primary_metric = None
                return changed
        elif self.score_functions is None:
            self.score_functions = self._model_score_functions(model)
            self.score_function_names = [model.similarity_fn_name]
            self._append_csv_headers(self.score_function_names)
        return False

    def __call__(self, model, output_path: str | None = None, epoch: int = -1, steps: int = -1, *args, **kwargs):
        out_txt = epoch_text(epoch, steps, self.truncate_dim)
        logger.info(f"Information Retrieval Evaluation of the model on the {self.name} dataset{out_txt}:")
        headers_changed = self._resolve_score_functions(model)
        scores = self.compute_all_metrics(model, *args, output_path=output_path, **kwargs)

        if output_path is not None and self.write_csv:
            if headers_changed and os.path.isfile(os.path.join(output_path, self.csv_file)):
                logger.warning(
                    f"{self.csv_file} was written with different score function columns, so the rows appended "
                    f"for {self.score_function_names} are labeled with the previous score function."
                )
            append_joined_row(output_path, self.csv_file, self.csv_headers, [epoch, steps] + self._row(scores))

        if not self.primary_metric:
            k = max(self.ndcg_at_k)
            if self.main_score_function is None:
                best = max([(name, scores[name]["ndcg@k"][k]) for name in self.score_function_names], key=lambda x: x[1])
                self.primary_metric = f"{best[0]}_ndcg@{k}"
            else:
                self.primary_metric = f"{getattr(self.main_score_function, 'value', self.main_score_function)}_ndcg@{k}"

        metrics = {
            f"{score_function}_{metric_name.replace('@k', '@' + str(k))}": value
            for score_function, values_dict in scores.items()
            for metric_name, values in values_dict.items()
            for k, value in values.items()
        }
        metrics = self.prefix_name_to_metrics(metrics, self.name)
        self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
        return metrics

    def _row(self, scores) -> list:
        row = []
        for name in self.score_function_names:
            row += [scores[name]["accuracy@k"][k] for k in self.accuracy_at_k]
            for k in self.precision_recall_at_k:
                row += [scores[name]["precision@k"][k], scores[name]["recall@k"][k]]
            row += [scores[name]["mrr@k"][k] for k in self.mrr_at_k]
            row += [scores[name]["ndcg@k"][k] for k in self.ndcg_at_k]
            row += [scores[name]["map@k"][k] for k in self.map_at_k]
        return row

    def get_corpus_id_ranks(self):
        """Position of each corpus entry in ascending ``corpus_ids`` order, cached (ST 6.2)."""
        if self._corpus_id_ranks is None:
            self._corpus_id_ranks = ir_metrics.corpus_id_ranks(self.corpus_ids)
        return self._corpus_id_ranks

    def compute_all_metrics(self, model, corpus_model=None, corpus_embeddings=None, output_path: str | None = None):
        if corpus_model is None:
            corpus_model = model
        max_k = max(
            max(self.mrr_at_k), max(self.ndcg_at_k), max(self.accuracy_at_k),
            max(self.precision_recall_at_k), max(self.map_at_k),
        )
        query_embeddings = self.embed_inputs(
            model, self.queries, encode_fn_name="query", prompt_name=self.query_prompt_name, prompt=self.query_prompt
        )
        hits = {name: [[] for _ in range(len(query_embeddings))] for name in self.score_functions}

        for corpus_start_idx in trange(
            0, len(self.corpus), self.corpus_chunk_size, desc="Corpus Chunks", disable=not self.show_progress_bar
        ):
            corpus_end_idx = min(corpus_start_idx + self.corpus_chunk_size, len(self.corpus))
            if corpus_embeddings is None:
                sub_corpus_embeddings = self.embed_inputs(
                    corpus_model,
                    self.corpus[corpus_start_idx:corpus_end_idx],
                    encode_fn_name="document",
                    prompt_name=self.corpus_prompt_name,
                    prompt=self.corpus_prompt,
                )
            else:
                sub_corpus_embeddings = corpus_embeddings[corpus_start_idx:corpus_end_idx]
            for name, score_function in self.score_functions.items():
                pair_scores = as_numpy(score_function(query_embeddings, sub_corpus_embeddings))
                if self._st6:
                    ir_metrics.push_top_k_by_id(
                        hits[name], pair_scores, self.corpus_ids, self.get_corpus_id_ranks(), corpus_start_idx, max_k
                    )
                else:
                    ir_metrics.push_top_k(hits[name], pair_scores, self.corpus_ids, corpus_start_idx, max_k)

        queries_result_list = {name: ir_metrics.results_as_dicts(hits[name]) for name in hits}
        if self.write_predictions and output_path is not None:
            self._write_predictions(queries_result_list, output_path)

        logger.info(f"Queries: {len(self.queries)}")
        logger.info(f"Corpus: {len(self.corpus)}\n")
        scores = {name: self.compute_metrics(queries_result_list[name]) for name in self.score_functions}
        for name in self.score_function_names:
            logger.info(f"Score-Function: {name}")
            self.output_scores(scores[name])
        return scores

    compute_metrices = compute_all_metrics  # ST 5.3's name (ST 6.2 keeps it as an alias)

    def _write_predictions(self, queries_result_list: dict, output_path: str) -> None:
        os.makedirs(output_path, exist_ok=True)
        for name, results_per_query in queries_result_list.items():
            json_path = os.path.join(output_path, self.predictions_file.replace(".jsonl", f"_{name}.jsonl"))
            with open(json_path, mode="w", encoding="utf-8") as f_out:
                for query_itr, results in enumerate(results_per_query):
                    if self._st6:
                        results = sorted(results, key=lambda x: (-x["score"], x["corpus_id"]))
                    else:
                        results = sorted(results, key=lambda x: x["score"], reverse=True)
                    prediction = {"query_id": self.queries_ids[query_itr], "query": self.queries[query_itr],
                                  "results": results}
                    f_out.write(json.dumps(prediction) + "\n")

    def embed_inputs(self, model, sentences, encode_fn_name: str | None = None, prompt_name: str | None = None,
                     prompt: str | None = None, **kwargs):
        return encode_fn(model, encode_fn_name)(
            sentences,
            prompt_name=prompt_name,
            prompt=prompt,
            batch_size=self.batch_size,
            show_progress_bar=self.show_progress_bar,
            convert_to_tensor=True,
            truncate_dim=self.truncate_dim,
            **kwargs,
        )

    def compute_metrics(self, queries_result_list: list) -> dict:
        return ir_metrics.compute_metrics(
            queries_result_list, self.queries_ids, self.relevant_docs,
            accuracy_at_k=self.accuracy_at_k, precision_recall_at_k=self.precision_recall_at_k,
            mrr_at_k=self.mrr_at_k, ndcg_at_k=self.ndcg_at_k, map_at_k=self.map_at_k, tie_break_by_id=self._st6,
        )

    compute_dcg_at_k = staticmethod(ir_metrics.compute_dcg_at_k)

    def output_scores(self, scores) -> None:
        for label, key, fmt in (("Accuracy", "accuracy@k", "pct"), ("Precision", "precision@k", "pct"),
                                ("Recall", "recall@k", "pct"), ("MRR", "mrr@k", "f"), ("NDCG", "ndcg@k", "f"),
                                ("MAP", "map@k", "f")):
            for k, value in scores[key].items():
                logger.info(f"{label}@{k}: {value * 100:.2f}%" if fmt == "pct" else f"{label}@{k}: {value:.4f}")

    def get_config_dict(self) -> dict:
        return config_of(self, ("truncate_dim", "query_prompt", "query_prompt_name", "corpus_prompt", "corpus_prompt_name"))

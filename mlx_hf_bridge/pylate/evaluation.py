"""``pylate.evaluation`` on MLX: ``ColBERTTripletEvaluator``, ``PyLateInformationRetrievalEvaluator``
and ``ColBERTDistillationEvaluator``.

Same constructors, metric keys, ``primary_metric`` and CSV files as PyLate 1.6 / sentence-transformers
5.3; embeddings come from the MLX model's ``encode`` and MaxSim runs in MLX over zero-padded
embeddings (padding scores 0, as PyLate's ``pad_sequence`` does). The IR metric math lives in
:mod:`mlx_hf_bridge.colbert.ir_metrics`.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import os
from contextlib import nullcontext

import mlx.core as mx
import numpy as np
from tqdm.auto import trange

from ..colbert import ir_metrics
from ..colbert.losses import _kl_div_log_target
from ..colbert.scores import colbert_kd_scores, colbert_scores_pairwise
from ..sentence_transformers.evaluation import SentenceEvaluator as _BaseEvaluator

logger = logging.getLogger(__name__)

__all__ = [
    "ColBERTDistillationEvaluator",
    "ColBERTTripletEvaluator",
    "PyLateInformationRetrievalEvaluator",
    "csv_writer",
]


# --- shared plumbing -----------------------------------------------------------------------------
def csv_writer(path: str, data: list, header: list[str]) -> None:
    """Append ``data`` to the CSV at ``path``, writing ``header`` first when the file is new."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    mode = "w" if not os.path.isfile(path) else "a"
    with open(path, newline="", mode=mode, encoding="utf-8") as f:
        writer = csv.writer(f)
        if mode == "w":
            writer.writerow(header)
        writer.writerow(data)


def evaluation_message(epoch: int, steps: int, name: str, truncate_dim: int | None = None) -> None:
    out_txt = ""
    if epoch != -1:
        out_txt = f" after epoch {epoch}" if steps == -1 else f" in epoch {epoch} after {steps} steps"
    if truncate_dim is not None:
        out_txt += f" (truncated to {truncate_dim})"
    logger.info(f"TripletEvaluator: Evaluating the model on the {name} dataset{out_txt}:")


def _truncation(model, truncate_dim):
    # PyLate enters ST's truncate_sentence_embeddings, which does not affect token embeddings.
    if truncate_dim is None or not hasattr(model, "truncate_sentence_embeddings"):
        return nullcontext()
    return model.truncate_sentence_embeddings(truncate_dim)


def pad_sequence(arrays) -> mx.array:
    """``torch.nn.utils.rnn.pad_sequence(arrays, batch_first=True, padding_value=0)`` for (L_i, D) arrays."""
    arrays = [np.asarray(a, dtype=np.float32) for a in arrays]
    longest = max(a.shape[0] for a in arrays)
    return mx.array(np.stack([np.pad(a, [(0, longest - a.shape[0])] + [(0, 0)] * (a.ndim - 1)) for a in arrays]))


class SentenceEvaluator(_BaseEvaluator):
    """sentence-transformers' ``SentenceEvaluator`` semantics for name prefixes and model cards."""

    def __init__(self):
        self.greater_is_better = True
        self.primary_metric = None

    def prefix_name_to_metrics(self, metrics: dict, name: str) -> dict:
        def maybe_to_float(value):
            try:
                return float(value)
            except (TypeError, ValueError):
                return value

        if not name:
            return {key: maybe_to_float(value) for key, value in metrics.items()}
        metrics = {name + "_" + key: maybe_to_float(value) for key, value in metrics.items()}
        if getattr(self, "primary_metric", None) and not self.primary_metric.startswith(name + "_"):
            self.primary_metric = name + "_" + self.primary_metric
        return metrics

    def store_metrics_in_model_card_data(self, model, metrics: dict, epoch: int = 0, step: int = 0) -> None:
        card_data = getattr(model, "model_card_data", None)
        if hasattr(card_data, "set_evaluation_metrics"):
            card_data.set_evaluation_metrics(self, metrics, epoch, step)

    @property
    def description(self) -> str:
        class_name = self.__class__.__name__
        if class_name.startswith("ColBERT") or class_name.startswith("PyLate"):
            class_name = class_name.split("ColBERT", 1)[-1].split("PyLate", 1)[-1]
        class_name = class_name[: -len("Evaluator")] if class_name.endswith("Evaluator") else class_name
        out, prev = [], ""
        for ch in class_name:
            if ch.isupper() and prev and not prev.isupper():
                out.append(" ")
            out.append(ch)
            prev = ch
        return "".join(out).strip()

    def get_config_dict(self) -> dict:
        return {"truncate_dim": self.truncate_dim} if getattr(self, "truncate_dim", None) is not None else {}


# --- triplets ------------------------------------------------------------------------------------
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


# --- knowledge distillation ----------------------------------------------------------------------
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


# --- information retrieval -----------------------------------------------------------------------
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

"""sentence-transformers' ``NanoBEIREvaluator`` on MLX: NanoBEIR loaded through ``datasets`` as ST does."""

from __future__ import annotations

import logging
from typing import Any, Literal

import numpy as np
from tqdm.auto import tqdm

from ..dense.similarity import SimilarityFunction
from .base import SentenceEvaluator, append_joined_row, epoch_text, st6
from .information_retrieval import InformationRetrievalEvaluator

logger = logging.getLogger(__name__)

DatasetNameType = Literal[
    "climatefever", "dbpedia", "fever", "fiqa2018", "hotpotqa", "msmarco", "nfcorpus", "nq", "quoraretrieval",
    "scidocs", "arguana", "scifact", "touche2020",
]
DATASET_NAME_TO_HUMAN_READABLE = {
    "climatefever": "ClimateFEVER", "dbpedia": "DBPedia", "fever": "FEVER", "fiqa2018": "FiQA2018",
    "hotpotqa": "HotpotQA", "msmarco": "MSMARCO", "nfcorpus": "NFCorpus", "nq": "NQ",
    "quoraretrieval": "QuoraRetrieval", "scidocs": "SCIDOCS", "arguana": "ArguAna", "scifact": "SciFact",
    "touche2020": "Touche2020",
}


class NanoBEIREvaluator(SentenceEvaluator):
    """An :class:`InformationRetrievalEvaluator` per NanoBEIR dataset (``dataset_id``'s ``corpus`` /
    ``queries`` / ``qrels`` subsets, split ``Nano<Name>``), plus their ``aggregate_fn`` (mean) under
    ``NanoBEIR_{aggregate_key}[_{truncate_dim}]_...``; ``primary_metric`` is the aggregate's best (or
    ``main_score_function``'s) ``ndcg@max(ndcg_at_k)``. Per-dataset keys and CSVs are the IR
    evaluator's (``NanoSciFact_cosine_ndcg@10``...); the aggregate CSV is
    ``NanoBEIR_evaluation_{aggregate_key}_results.csv``.
    """

    information_retrieval_class = InformationRetrievalEvaluator

    def __init__(
        self,
        dataset_names: list[DatasetNameType | str] | None = None,
        dataset_id: str = "sentence-transformers/NanoBEIR-en",
        mrr_at_k: list[int] = [10],
        ndcg_at_k: list[int] = [10],
        accuracy_at_k: list[int] = [1, 3, 5, 10],
        precision_recall_at_k: list[int] = [1, 3, 5, 10],
        map_at_k: list[int] = [100],
        show_progress_bar: bool = False,
        batch_size: int = 32,
        write_csv: bool = True,
        truncate_dim: int | None = None,
        score_functions: dict | None = None,
        main_score_function: str | SimilarityFunction | None = None,
        aggregate_fn=np.mean,
        aggregate_key: str = "mean",
        query_prompts: str | dict[str, str] | None = None,
        corpus_prompts: str | dict[str, str] | None = None,
        write_predictions: bool = False,
    ):
        super().__init__()
        if dataset_names is None:
            dataset_names = list(DATASET_NAME_TO_HUMAN_READABLE.keys())
        self.dataset_names = dataset_names
        self.dataset_id = dataset_id
        self.aggregate_fn = aggregate_fn
        self.aggregate_key = aggregate_key
        self.write_csv = write_csv
        self.query_prompts = query_prompts
        self.corpus_prompts = corpus_prompts
        self.show_progress_bar = show_progress_bar
        self.score_functions = score_functions
        self.score_function_names = sorted(self.score_functions.keys()) if score_functions else []
        self._st6 = st6()
        self._score_functions_from_model = score_functions is None
        # As ST 6.2 (ST 5.3 keeps a string as given and then fails on its `.value`)
        self.main_score_function = (
            SimilarityFunction(getattr(main_score_function, "value", main_score_function)) if main_score_function else None
        )
        self.truncate_dim = truncate_dim
        self.name = f"NanoBEIR_{aggregate_key}"
        if self.truncate_dim:
            self.name += f"_{self.truncate_dim}"
        self.mrr_at_k = mrr_at_k
        self.ndcg_at_k = ndcg_at_k
        self.accuracy_at_k = accuracy_at_k
        self.precision_recall_at_k = precision_recall_at_k
        self.map_at_k = map_at_k

        # Bad names and prompts fail before any dataset is loaded
        self._validate_dataset_names()
        self._validate_prompts()

        ir_evaluator_kwargs = {
            "mrr_at_k": mrr_at_k, "ndcg_at_k": ndcg_at_k, "accuracy_at_k": accuracy_at_k,
            "precision_recall_at_k": precision_recall_at_k, "map_at_k": map_at_k,
            "show_progress_bar": show_progress_bar, "batch_size": batch_size, "write_csv": write_csv,
            "truncate_dim": truncate_dim, "score_functions": score_functions,
            "main_score_function": main_score_function, "write_predictions": write_predictions,
        }
        self.evaluators = [
            self._load_dataset(name, **ir_evaluator_kwargs)
            for name in tqdm(self.dataset_names, desc="Loading NanoBEIR datasets", leave=False)
        ]
        self.csv_file: str = f"NanoBEIR_evaluation_{aggregate_key}_results.csv"
        self.csv_headers = ["epoch", "steps"]
        self._append_csv_headers(self.score_function_names)

    _append_csv_headers = InformationRetrievalEvaluator._append_csv_headers

    def _resolve_score_functions(self, model) -> bool:
        if self._st6 and self._score_functions_from_model:
            # From a sub-evaluator, so the aggregate labels cannot drift from the per-dataset ones
            self.score_functions = self.evaluators[0]._model_score_functions(model)
            if self.score_function_names != sorted(self.score_functions):
                changed = bool(self.score_function_names)
                self.score_function_names = sorted(self.score_functions)
                self.csv_headers = ["epoch", "steps"]
                self._append_csv_headers(self.score_function_names)
                self.primary_metric = None
                return changed
        elif self.score_functions is None:
            self.score_functions = {model.similarity_fn_name: model.similarity}
            self.score_function_names = [model.similarity_fn_name]
            self._append_csv_headers(self.score_function_names)
        return False

    def __call__(self, model, output_path: str | None = None, epoch: int = -1, steps: int = -1, *args, **kwargs):
        per_metric_results: dict[str, list] = {}
        per_dataset_results: dict[str, float] = {}
        out_txt = epoch_text(epoch, steps, self.truncate_dim)
        logger.info(f"NanoBEIR Evaluation of the model on {self.dataset_names} dataset{out_txt}:")
        headers_changed = self._resolve_score_functions(model)

        num_underscores_in_name = self.name.count("_")
        for evaluator in tqdm(self.evaluators, desc="Evaluating datasets", disable=not self.show_progress_bar):
            logger.info(f"Evaluating {evaluator.name}")
            evaluation = evaluator(model, output_path, epoch, steps)
            for full_key, metric_value in evaluation.items():
                metric = full_key.split("_", maxsplit=num_underscores_in_name)[-1]
                per_metric_results.setdefault(metric, []).append(metric_value)
                per_dataset_results[full_key] = metric_value

        agg_results = {metric: self.aggregate_fn(values) for metric, values in per_metric_results.items()}

        if output_path is not None and self.write_csv:
            if headers_changed:
                logger.warning(
                    f"{self.csv_file} was written with different score function columns, so the rows appended "
                    f"for {self.score_function_names} are labeled with the previous score function."
                )
            row = [epoch, steps]
            for name in self.score_function_names:
                row += [agg_results[f"{name}_accuracy@{k}"] for k in self.accuracy_at_k]
                for k in self.precision_recall_at_k:
                    row += [agg_results[f"{name}_precision@{k}"], agg_results[f"{name}_recall@{k}"]]
                row += [agg_results[f"{name}_mrr@{k}"] for k in self.mrr_at_k]
                row += [agg_results[f"{name}_ndcg@{k}"] for k in self.ndcg_at_k]
                row += [agg_results[f"{name}_map@{k}"] for k in self.map_at_k]
            append_joined_row(output_path, self.csv_file, self.csv_headers, row)

        if not self.primary_metric:
            k = max(self.ndcg_at_k)
            if self.main_score_function is None:
                best = max([(n, agg_results[f"{n}_ndcg@{k}"]) for n in self.score_function_names], key=lambda x: x[1])
                self.primary_metric = f"{best[0]}_ndcg@{k}"
            else:
                self.primary_metric = f"{self.main_score_function.value}_ndcg@{k}"

        logger.info(f"Average Queries: {np.mean([len(e.queries) for e in self.evaluators])}")
        logger.info(f"Average Corpus: {np.mean([len(e.corpus) for e in self.evaluators])}\n")
        agg_results = self.prefix_name_to_metrics(agg_results, self.name)
        self.store_metrics_in_model_card_data(model, agg_results, epoch, steps)
        per_dataset_results.update(agg_results)
        return per_dataset_results

    def _get_human_readable_name(self, dataset_name: str) -> str:
        human_readable_name = f"Nano{DATASET_NAME_TO_HUMAN_READABLE[dataset_name.lower()]}"
        if self.truncate_dim is not None:
            human_readable_name += f"_{self.truncate_dim}"
        return human_readable_name

    def _load_dataset(self, dataset_name: str, **ir_evaluator_kwargs) -> InformationRetrievalEvaluator:
        if dataset_name.lower() not in DATASET_NAME_TO_HUMAN_READABLE:
            raise ValueError(f"Dataset '{dataset_name}' is not a valid NanoBEIR dataset.")
        split_name = f"Nano{DATASET_NAME_TO_HUMAN_READABLE[dataset_name.lower()]}"
        corpus = self._load_dataset_subset_split("corpus", split=split_name, required_columns=["_id", "text"])
        queries = self._load_dataset_subset_split("queries", split=split_name, required_columns=["_id", "text"])
        qrels = self._load_dataset_subset_split("qrels", split=split_name, required_columns=["query-id", "corpus-id"])
        corpus_dict = {sample["_id"]: sample["text"] for sample in corpus if len(sample["text"]) > 0}
        queries_dict = {sample["_id"]: sample["text"] for sample in queries if len(sample["text"]) > 0}
        qrels_dict: dict[str, set] = {}
        for sample in qrels:
            corpus_ids = sample.get("corpus-id")
            relevant = qrels_dict.setdefault(sample["query-id"], set())
            if isinstance(corpus_ids, list):
                relevant.update(corpus_ids)
            else:
                relevant.add(corpus_ids)
        if self.query_prompts is not None:
            ir_evaluator_kwargs["query_prompt"] = self.query_prompts.get(dataset_name, None)
        if self.corpus_prompts is not None:
            ir_evaluator_kwargs["corpus_prompt"] = self.corpus_prompts.get(dataset_name, None)
        return self.information_retrieval_class(
            queries=queries_dict, corpus=corpus_dict, relevant_docs=qrels_dict,
            name=self._get_human_readable_name(dataset_name), **ir_evaluator_kwargs,
        )

    def _load_dataset_subset_split(self, subset: str, split: str, required_columns: list[str]):
        try:
            from datasets import load_dataset
        except ImportError:  # pragma: no cover - datasets is a main dependency
            raise ValueError(
                "datasets is not available. Please install it to use the NanoBEIREvaluator via `pip install datasets`."
            ) from None
        try:
            dataset = load_dataset(self.dataset_id, subset, split=split)
        except Exception as e:
            raise ValueError(f"Could not load subset '{subset}' split '{split}' from dataset '{self.dataset_id}'.") from e
        if missing_columns := set(required_columns) - set(dataset.column_names):
            raise ValueError(
                f"Subset '{subset}' split '{split}' from dataset '{self.dataset_id}' is missing required columns: "
                f"{list(missing_columns)}."
            )
        return dataset

    def _validate_dataset_names(self):
        if len(self.dataset_names) == 0:
            raise ValueError("dataset_names cannot be empty. Use None to evaluate on all datasets.")
        if missing := [n for n in self.dataset_names if n.lower() not in DATASET_NAME_TO_HUMAN_READABLE]:
            raise ValueError(
                f"Dataset(s) {missing} are not valid NanoBEIR datasets. "
                f"Valid dataset names are: {list(DATASET_NAME_TO_HUMAN_READABLE.keys())}"
            )

    def _validate_prompts(self):
        error_msg = ""
        for kind, attr in (("query", "query_prompts"), ("corpus", "corpus_prompts")):
            prompts = getattr(self, attr)
            if prompts is None:
                continue
            if isinstance(prompts, str):
                setattr(self, attr, {name: prompts for name in self.dataset_names})
            elif missing := [name for name in self.dataset_names if name not in prompts]:
                error_msg += f"The following datasets are missing {kind} prompts: {missing}\n"
        if error_msg:
            raise ValueError(error_msg.strip())

    def store_metrics_in_model_card_data(self, *args, **kwargs):
        # One dataset's aggregate would duplicate its own entries in the model card
        if len(self.dataset_names) > 1:
            super().store_metrics_in_model_card_data(*args, **kwargs)

    def get_config_dict(self) -> dict[str, Any]:
        config_dict = {"dataset_names": self.dataset_names, "dataset_id": self.dataset_id}
        for key in ("truncate_dim", "query_prompts", "corpus_prompts"):
            if getattr(self, key) is not None:
                config_dict[key] = getattr(self, key)
        return config_dict

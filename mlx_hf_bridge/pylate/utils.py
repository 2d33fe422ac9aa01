"""``pylate.utils`` on MLX: ``ColBERTCollator``, ``KDProcessing``, ``iter_batch``, ``convert_to_tensor``
and the distributed helpers (``mx.distributed``; no-ops on one process).

The collator follows PyLate 1.6's column rules exactly (pylate-api.md §6.1); its values are
``mx.array`` instead of torch tensors.
"""

from __future__ import annotations

import ast
import logging
from typing import Callable

import mlx.core as mx
import numpy as np
import tqdm

from ..colbert.distributed import all_gather, all_gather_with_gradients, get_rank, get_world_size
from ..engine.data import start_batch
from ..errors import check_texts, describe

logger = logging.getLogger(__name__)

__all__ = [
    "iter_batch",
    "convert_to_tensor",
    "ColBERTCollator",
    "KDProcessing",
    "all_gather",
    "all_gather_with_gradients",
    "get_rank",
    "get_world_size",
]


# --- tensors / batches ---------------------------------------------------------------------------
def convert_to_tensor(x) -> mx.array:
    """PyLate's ``convert_to_tensor``, returning an ``mx.array``.

    >>> import mlx_hf_bridge, numpy as np
    >>> convert_to_tensor([np.array([1.0, 1.0]), np.array([2.0, 2.0])]).tolist()
    [[1.0, 1.0], [2.0, 2.0]]
    >>> convert_to_tensor([]).shape, convert_to_tensor([[1.0, 2.0]]).dtype
    ((0,), mlx.core.float32)
    """
    if isinstance(x, mx.array):
        return x
    if hasattr(x, "detach"):  # a torch tensor from a user script
        return mx.array(x.detach().cpu().numpy())
    if isinstance(x, np.ndarray):
        return mx.array(x)
    if isinstance(x, (list, tuple)):
        if len(x) == 0:
            return mx.array([], dtype=mx.float32)
        if isinstance(x[0], np.ndarray):
            return mx.array(np.array(x, dtype=np.float32))
        if isinstance(x[0], (list, tuple)):
            return mx.array(np.array(x, dtype=np.float32))
        if isinstance(x[0], mx.array):
            return mx.stack(list(x))
        if hasattr(x[0], "detach"):
            return mx.stack([convert_to_tensor(e) for e in x])
    return mx.array(np.asarray(x))


def iter_batch(X: list, batch_size: int, tqdm_bar: bool = True, desc: str = ""):
    """Iterate over a list by batch.

    >>> sum(len(b) for b in iter_batch(["a", "b", "c", "d", "e"], batch_size=2, tqdm_bar=False))
    5
    """
    batchs = [X[pos : pos + batch_size] for pos in range(0, len(X), batch_size)]
    if tqdm_bar:
        for batch in tqdm.tqdm(iterable=batchs, position=0, total=1 + len(X) // batch_size, desc=desc):
            yield batch
    else:
        yield from batchs


# --- collator ------------------------------------------------------------------------------------
class ColBERTCollator:
    """Collate dataset rows into the flat batch PyLate's trainer consumes (PyLate's ``ColBERTCollator``).

    Rules, in order: the batch starts as ``{"return_loss": True}``; a ``dataset_name`` column is
    moved to ``batch["dataset_name"]``; the first column found among ``valid_label_columns``
    (default ``["label", "scores"]``) becomes ``batch["label"]`` (an ``mx.array``); every other
    column, in dataset order, is skipped when its name contains ``"_id"``, else its values are
    flattened when they are lists (KD documents), prefixed with its prompt, tokenized with
    ``tokenize_fn(texts, is_query=("query" in name or "anchor" in name), pad=True, task=...)`` and
    stored as ``f"{column}_{key}"``.

    Parameters
    ----------
    tokenize_fn
        Usually ``model.tokenize``. ``preprocess_fn=model.preprocess``, the spelling of PyLate's
        sentence-transformers-v6 branch, is accepted too (keyword); one of the two is required.
    valid_label_columns
        Candidate label columns (the first present wins).
    router_mapping
        Column -> task (or dataset -> column -> task), passed to ``tokenize_fn`` as ``task``.
    prompts
        A prompt string, a column -> prompt mapping, or dataset -> column -> prompt.
    include_prompt_lengths
        Also store ``f"{column}_prompt_length"``.
    all_special_ids
        Special ids not counted in a prompt's length when they end it.

    Examples
    --------
    >>> from mlx_hf_bridge.pylate import models, utils               # doctest: +SKIP
    >>> model = models.ColBERT("path/to/colbert")                    # doctest: +SKIP
    >>> collator = utils.ColBERTCollator(tokenize_fn=model.tokenize)  # doctest: +SKIP
    >>> batch = collator([{"query": "fruits are healthy.", "positive": "fruits are good.",
    ...                    "negative": "fruits are bad."}])          # doctest: +SKIP
    >>> sorted(k for k in batch if k.endswith("input_ids"))          # doctest: +SKIP
    ['negative_input_ids', 'positive_input_ids', 'query_input_ids']
    """

    def __init__(
        self,
        tokenize_fn: Callable | None = None,
        valid_label_columns: list[str] | None = None,
        router_mapping: dict | None = None,
        prompts: dict | str | None = None,
        include_prompt_lengths: bool = False,
        all_special_ids: set[int] | None = None,
        _prompt_length_mapping: dict | None = None,
        _warned_columns: set | None = None,
        preprocess_fn: Callable | None = None,
    ):
        if tokenize_fn is None and preprocess_fn is None:
            raise TypeError("ColBERTCollator needs the model's tokenizer: ColBERTCollator(model.tokenize) "
                            "(or preprocess_fn=model.preprocess).")
        self.tokenize_fn = preprocess_fn if preprocess_fn is not None else tokenize_fn
        self.preprocess_fn = self.tokenize_fn
        self.router_mapping = router_mapping if router_mapping is not None else {}
        self.prompts = prompts if prompts is not None else {}
        self.all_special_ids = all_special_ids if all_special_ids is not None else set()
        self._prompt_length_mapping = _prompt_length_mapping if _prompt_length_mapping is not None else {}
        self._warned_columns = _warned_columns if _warned_columns is not None else set()
        if valid_label_columns is None:
            valid_label_columns = ["label", "scores"]
        self.valid_label_columns = valid_label_columns
        self.include_prompt_lengths = include_prompt_lengths

    def __call__(self, features: list[dict]) -> dict:
        batch = {"return_loss": True}
        column_names = start_batch(features, self.valid_label_columns, batch, self._warn_once_about_column_order)

        router_mapping = self.router_mapping
        if router_mapping and isinstance(router_mapping, dict) and isinstance(next(iter(router_mapping.values())), dict):
            if "dataset_name" in batch and batch["dataset_name"] in router_mapping:
                router_mapping = router_mapping[batch["dataset_name"]]
            else:
                router_mapping = {}

        prompts = self.prompts
        if prompts and isinstance(prompts, dict):
            is_multi_dataset = "dataset_name" in batch
            if is_multi_dataset and batch["dataset_name"] in prompts:
                prompts = prompts[batch["dataset_name"]]
            elif isinstance(next(iter(prompts.values())), dict):
                if not is_multi_dataset:
                    raise ValueError(
                        "The prompts provided to the trainer are a nested dictionary. In this setting, the first "
                        "level of the dictionary should map to dataset names and the second level to column names. "
                        "However, as the provided dataset is a not a DatasetDict, no dataset names can be inferred. "
                        f"The keys to the provided prompts dictionary are {list(prompts.keys())!r}"
                    )
                logger.warning(
                    "Prompts were provided as a nested dictionary for multiple datasets, but no prompts were "
                    "found for dataset %r. Available datasets with prompts are: %r. Proceeding without prompts "
                    "for this dataset.",
                    batch["dataset_name"],
                    list(prompts.keys()),
                )
                prompts = {}

        for column_name in column_names:
            # Id columns are kept in the dataset (sentence-transformers needs them) but never tokenized.
            if "_id" in column_name:
                continue
            task = router_mapping.get(column_name, None)
            texts = _column_texts(features, column_name)

            prompt = None
            if isinstance(prompts, str):
                prompt = prompts
            elif isinstance(prompts, dict) and column_name in prompts:
                prompt = prompts[column_name]

            if prompt:
                if self.include_prompt_lengths:
                    prompt_length = self._get_prompt_length(prompt, task=task)
                    if prompt_length is not None:
                        batch[f"{column_name}_prompt_length"] = mx.array(
                            [prompt_length] * len(features), dtype=mx.int32
                        )
                texts = [prompt + text for text in texts]
            is_query = "query" in column_name or "anchor" in column_name
            tokenized = self.tokenize_fn(texts, is_query=is_query, pad=True, task=task)
            for key, value in tokenized.items():
                batch[f"{column_name}_{key}"] = value
        return batch

    def _get_prompt_length(self, prompt: str, task: str | None = None) -> int | None:
        if (prompt, task) in self._prompt_length_mapping:
            return self._prompt_length_mapping[(prompt, task)]
        tokenized_prompt = self.tokenize_fn([prompt], task=task)
        if "input_ids" not in tokenized_prompt:
            return None
        input_ids = np.asarray(tokenized_prompt["input_ids"])
        prompt_length = input_ids.shape[-1]
        if int(input_ids[..., -1].reshape(-1)[0]) in self.all_special_ids:
            prompt_length -= 1
        self._prompt_length_mapping[(prompt, task)] = prompt_length
        return prompt_length

    def _warn_once_about_column_order(self, column_names: list[str]) -> None:
        if tuple(column_names) not in self._warned_columns:
            self.maybe_warn_about_column_order(column_names)

    def maybe_warn_about_column_order(self, column_names: list[str]) -> None:
        """Warn once per column list when conventional names sit at unexpected positions."""
        column_name_to_expected_idx = {
            "anchor": 0,
            "positive": 1,
            "negative": 2,
            "question": 0,
            "answer": 1,
            "query": 0,
            "response": 1,
            "hypothesis": 0,
            "entailment": 1,
            "contradiction": 2,
        }
        for column_name, expected_idx in column_name_to_expected_idx.items():
            if column_name in column_names and column_names.index(column_name) != expected_idx:
                if column_name in ("anchor", "positive", "negative"):
                    proposed_fix_columns = ["anchor", "positive", "negative"]
                elif column_name in ("question", "answer"):
                    proposed_fix_columns = ["question", "answer"]
                elif column_name in ("query", "response"):
                    proposed_fix_columns = ["query", "response"]
                else:
                    proposed_fix_columns = ["hypothesis", "entailment", "contradiction"]
                logger.warning(
                    f"Column {column_name!r} is at index {column_names.index(column_name)}, whereas "
                    f"a column with this name is usually expected at index {expected_idx}. Note that the column "
                    "order can be important for some losses, e.g. MultipleNegativesRankingLoss will always "
                    "consider the first column as the anchor and the second as the positive, regardless of "
                    "the dataset column names. Consider renaming the columns to match the expected order, e.g.:\n"
                    f"dataset = dataset.select_columns({proposed_fix_columns})"
                )
                break
        self._warned_columns.add(tuple(column_names))


def _column_texts(features: list[dict], column: str) -> list[str]:
    """A column's texts, flattened when its rows are lists (KD documents). Anything else than a
    str (or, for list rows, a list of str) is refused, naming the column, the row and the type."""
    values = [row[column] for row in features]
    if not isinstance(values[0], list):
        return check_texts(values, f"column {column!r}")
    texts = []
    for row, value in enumerate(values):
        if not isinstance(value, list):
            raise TypeError(
                f"column {column!r}, row {row}: expected a list of texts (row 0 is a list), got {describe(value)}. "
                "A column holds either one text per row or a list of texts per row (Distillation's documents)."
            )
        texts.extend(check_texts(value, f"column {column!r}, row {row}", unit="item"))
    return texts


# --- knowledge-distillation processing -----------------------------------------------------------
def _is_dataset_dict(x) -> bool:
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a dependency
        return isinstance(x, dict)
    return isinstance(x, datasets.DatasetDict)


class KDProcessing:
    """Attach query and document texts to knowledge-distillation rows (PyLate's ``KDProcessing``).

    The training rows hold ``query_id``, ``document_ids`` and ``scores``; ``transform`` (for
    ``dataset.set_transform``) and ``map`` (for ``dataset.map``) add ``query`` (text) and
    ``documents`` (list of texts, ``""`` with a warning for an unknown id) and keep the first
    ``n_ways`` scores / ids. String-encoded lists are parsed with ``ast.literal_eval``.

    Parameters
    ----------
    queries
        Dataset (or DatasetDict) with ``query_id`` and ``text``.
    documents
        Dataset (or DatasetDict) with ``document_id`` and ``text``.
    split
        Split used when ``queries`` / ``documents`` are DatasetDicts.
    n_ways
        Number of scores / documents kept per query.

    Examples
    --------
    >>> import mlx_hf_bridge, datasets
    >>> queries = datasets.Dataset.from_dict({"query_id": [1], "text": ["q one"]})
    >>> documents = datasets.Dataset.from_dict({"document_id": [7, 8], "text": ["seven", "eight"]})
    >>> kd = KDProcessing(queries=queries, documents=documents, n_ways=2)
    >>> kd.map({"query_id": 1, "document_ids": "[8, 7, 9]", "scores": [0.5, 0.2, 0.1]})
    {'scores': [0.5, 0.2], 'query': 'q one', 'documents': ['eight', 'seven']}
    """

    def __init__(self, queries, documents, split: str = "train", n_ways: int = 32) -> None:
        self.queries = queries[split] if _is_dataset_dict(queries) else queries
        self.documents = documents[split] if _is_dataset_dict(documents) else documents
        self.n_ways = n_ways
        self.queries_index = {query_id: i for i, query_id in enumerate(self.queries["query_id"])}
        self.documents_index = {document_id: i for i, document_id in enumerate(self.documents["document_id"])}

    def _document_texts(self, document_ids) -> list[str]:
        documents = []
        for document_id in document_ids:
            try:
                documents.append(self.documents[self.documents_index[document_id]]["text"])
            except KeyError:
                documents.append("")
                logger.warning(f"Unable to find document: {document_id}")
        return documents

    def transform(self, examples: dict) -> dict:
        """Batched: update the input batch with the queries and documents."""
        if isinstance(examples["scores"][0], str):
            examples["scores"] = [ast.literal_eval(node_or_string=score) for score in examples["scores"]]
        examples["scores"] = [score[: self.n_ways] for score in examples["scores"]]
        if isinstance(examples["document_ids"][0], str):
            examples["document_ids"] = [ast.literal_eval(node_or_string=ids) for ids in examples["document_ids"]]
        examples["document_ids"] = [ids[: self.n_ways] for ids in examples["document_ids"]]
        examples["query"] = [self.queries[self.queries_index[query_id]]["text"] for query_id in examples["query_id"]]
        examples["documents"] = [self._document_texts(ids) for ids in examples["document_ids"]]
        return examples

    def map(self, example: dict) -> dict:
        """One row: returns ``scores``, ``query`` and ``documents``."""
        if isinstance(example["scores"], str):
            example["scores"] = ast.literal_eval(node_or_string=example["scores"])
        example["scores"] = example["scores"][: self.n_ways]
        if isinstance(example["document_ids"], str):
            example["document_ids"] = ast.literal_eval(node_or_string=example["document_ids"])
        example["document_ids"] = example["document_ids"][: self.n_ways]
        processed_example = {
            "scores": example["scores"],
            "query": self.queries[self.queries_index[example["query_id"]]]["text"],
        }
        processed_example["documents"] = self._document_texts(example["document_ids"])
        return processed_example

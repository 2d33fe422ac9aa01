"""sentence-transformers' data flow without torch: datasets -> rows -> collator -> features.

Column order defines roles (first = anchor/query, then positive, then negatives); ``label`` /
``scores`` become the labels; a ``dataset_name`` key selects the loss in multi-dataset training.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import mlx.core as mx
import numpy as np

logger = logging.getLogger(__name__)

ST_LABEL_COLUMNS = ["label", "labels", "score", "scores"]
RESERVED_COLUMNS = {"return_loss", "dataset_name"}


class Source:
    """A Dataset, DatasetDict or dict of Datasets behind one global row index (ConcatDataset-like)."""

    def __init__(self, dataset, split: str, add_dataset_name: bool = False):
        self.split = split
        self.parts = list(dataset.items()) if isinstance(dataset, Mapping) else [(None, dataset)]
        self.add_dataset_name = add_dataset_name
        for name, ds in self.parts:
            _check_dataset(ds, split, name)
        self.sizes = [len(ds) for _, ds in self.parts]
        self.offsets = np.cumsum([0, *self.sizes]).tolist()

    def __len__(self):
        return int(sum(self.sizes))

    @property
    def is_multi(self) -> bool:
        return self.parts[0][0] is not None

    def rows(self, indices) -> list[dict]:
        """Rows for global ``indices`` (each batch comes from a single part)."""
        indices = [int(i) for i in indices]
        part = int(np.searchsorted(self.offsets, indices[0], side="right") - 1)
        name, ds = self.parts[part]
        local = [i - self.offsets[part] for i in indices]
        if any(not 0 <= i < self.sizes[part] for i in local):
            raise IndexError("a batch mixes rows of several datasets; multi-dataset samplers must not do that")
        columns = ds[local] if hasattr(ds, "column_names") and not isinstance(ds, list) else None
        if isinstance(columns, Mapping):
            keys = list(columns)
            rows = [{k: columns[k][j] for k in keys} for j in range(len(local))]
        else:
            rows = [dict(ds[i]) for i in local]
        if self.add_dataset_name:
            for row in rows:
                row["dataset_name"] = name
        return rows


def _check_dataset(ds, split, name=None):
    where = f"{split} dataset" + (f" {name!r}" if name else "")
    if type(ds).__name__ in ("IterableDataset", "IterableDatasetDict"):
        raise TypeError(
            f"The {where} is an IterableDataset; the MLX trainer needs a map-style datasets.Dataset "
            "(e.g. Dataset.from_list(list(iterable.take(n))))."
        )
    if not hasattr(ds, "column_names") or not hasattr(ds, "__len__"):
        raise TypeError(
            f"The {where} must be a datasets.Dataset (or a DatasetDict / dict of them), got {type(ds).__name__}. "
            "Build one with datasets.Dataset.from_dict({...})."
        )
    if len(ds) == 0:
        raise ValueError(f"The {where} is empty (0 rows). Check the split/filtering that produced it.")
    if bad := set(ds.column_names) & RESERVED_COLUMNS:
        raise ValueError(
            f"The {where} has reserved column name(s) {sorted(bad)}; rename them "
            "(dataset.rename_column(old, new)): they are used internally."
        )


def label_column(column_names, valid_label_columns) -> str | None:
    return next((c for c in valid_label_columns if c in column_names), None)


def check_label_types(ds, valid_label_columns, split, name=None):
    """Labels must be numbers (or lists of numbers, e.g. distillation scores)."""
    col = label_column(ds.column_names, valid_label_columns)
    if col is None:
        return
    sample = ds[: min(len(ds), 32)][col]  # first rows only: never load a whole column for this
    for value in sample:
        flat = value if isinstance(value, (list, tuple, np.ndarray)) else [value]
        for v in flat:
            if isinstance(v, (bool, int, float, np.number)) and not isinstance(v, str):
                continue
            where = f"{split} dataset" + (f" {name!r}" if name else "")
            raise TypeError(
                f"Column {col!r} of the {where} is used as the labels but holds {type(v).__name__} values "
                f"(e.g. {v!r}); labels must be numbers. Convert them (e.g. dataset.cast_column) or rename the "
                f"column if it is text (label columns: {valid_label_columns})."
            )


class DefaultCollator:
    """ST's SentenceTransformerDataCollator: every text column -> ``tokenize_fn(texts)``.

    Like ST it passes no ``is_query``, so a ColBERT model tokenizes every column as a query;
    PyLate scripts pass ``data_collator=utils.ColBERTCollator(model.tokenize)`` for that reason.
    """

    def __init__(self, tokenize_fn, valid_label_columns=None, router_mapping=None, prompts=None, stamp_task=False):
        self.tokenize_fn = tokenize_fn
        # ST 6.2 stamps each routed column's task in the batch (a Router after the input module reads it)
        self.stamp_task = stamp_task
        self.valid_label_columns = list(valid_label_columns or ST_LABEL_COLUMNS)
        self.router_mapping = router_mapping or {}
        self.prompts = prompts

    def __call__(self, rows: list[dict]) -> dict:
        columns = list(rows[0])
        batch = {}
        if "dataset_name" in columns:
            columns.remove("dataset_name")
            batch["dataset_name"] = rows[0]["dataset_name"]
        col = label_column(columns, self.valid_label_columns)
        if col is not None:
            values = [r[col] for r in rows]
            check_numeric_labels(values, col)
            batch["label"] = mx.array(np.asarray(values))
            columns.remove(col)
        routes, prompts = self.router_mapping, self.prompts
        ds_name = batch.get("dataset_name")
        if routes and isinstance(next(iter(routes.values())), dict):
            routes = routes.get(ds_name, {})
        if isinstance(prompts, dict) and ds_name in prompts:
            prompts = prompts[ds_name]
        for column in columns:
            prompt = prompts if isinstance(prompts, str) else (prompts or {}).get(column)
            texts = [(prompt or "") + r[column] for r in rows] if prompt else [r[column] for r in rows]
            task = routes.get(column)
            out = self.tokenize_fn(texts, task=task) if task is not None else self.tokenize_fn(texts)
            for key, value in out.items():
                batch[f"{column}_{key}"] = value
            if self.stamp_task and task is not None:
                batch[f"{column}_task"] = task
        return batch


def to_mx(inputs: dict) -> dict:
    """NumPy/list values (from any collator) -> mx.array; strings and None pass through."""
    out = {}
    for key, value in inputs.items():
        if isinstance(value, np.ndarray) or (isinstance(value, (list, tuple)) and value and not isinstance(value[0], str)):
            value = mx.array(np.asarray(value))
        elif hasattr(value, "numpy") and not isinstance(value, mx.array):  # a torch tensor from a torch collator
            value = mx.array(value.numpy())
        out[key] = value
    return out


def collect_features(inputs: dict):
    """ST's collect_features: ``{col}_input_ids`` / ``_attention_mask`` / ... -> [ {input_ids, ...}, ... ].

    Feature order is the dict's insertion order, i.e. the dataset's column order.
    """
    features = []
    for column in inputs:
        for suffix in ("input_ids", "sentence_embedding", "pixel_values"):
            if column.endswith("_" + suffix):
                prefix = column[: -len(suffix)]
                features.append({k[len(prefix):]: v for k, v in inputs.items() if k.startswith(prefix)})
                break
    return features, inputs.get("label")


# --- what every collator does before tokenizing ---------------------------------------------------
def start_batch(features: list[dict], valid_label_columns, batch: dict, on_columns=None) -> list[str]:
    """The column handling ST's and PyLate's collators share: ``dataset_name`` goes to the batch as
    is, ``on_columns(names)`` sees every column (the column-order warning), the first valid label
    column becomes ``batch["label"]``. Returns the text columns, in order."""
    column_names = list(features[0].keys())
    if "dataset_name" in column_names:
        column_names.remove("dataset_name")
        batch["dataset_name"] = features[0]["dataset_name"]
    if on_columns is not None:
        on_columns(column_names)
    for label_column in valid_label_columns:
        if label_column in column_names:
            batch["label"] = label_array(features, label_column)
            column_names.remove(label_column)
            break
    return column_names


def check_numeric_labels(values: list, column: str) -> None:
    """Text labels cannot become an array: name the column and the fix (instead of MLX's bad_cast)."""
    first = values[0] if values else None
    if isinstance(first, str) or (isinstance(first, (list, tuple)) and first and isinstance(first[0], str)):
        raise TypeError(
            f"label column {column!r} holds text ({values[0]!r}); labels must be numbers (a score, a class index or "
            "a list of scores). Map the text labels to numbers first, e.g. dataset.class_encode_column"
            f"({column!r}), or rename the column if it is a text input."
        )


def label_array(features: list[dict], column: str) -> mx.array:
    values = [row[column] for row in features]
    check_numeric_labels(values, column)
    try:
        return mx.array(values)
    except (ValueError, TypeError, RuntimeError) as exc:
        lengths = sorted({len(v) if isinstance(v, (list, tuple)) else 1 for v in values})
        raise ValueError(
            f"label column {column!r} cannot form one array ({exc}; row lengths {lengths}). Every row needs "
            "the same number of numbers, e.g. Distillation's scores one per document of that row."
        ) from None

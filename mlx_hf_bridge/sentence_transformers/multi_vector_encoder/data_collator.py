"""``MultiVectorEncoderDataCollator`` (ST 6.2): ST 6's ``BaseDataCollator`` rules, values as ``mx.array``."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from ...engine.data import start_batch

logger = logging.getLogger(__name__)

DEFAULT_LABEL_COLUMNS = ("label", "labels", "score", "scores")
# ST 6's hint table: a column of this name is usually at this index
EXPECTED_INDEX = {"anchor": 0, "positive": 1, "negative": 2, "question": 0, "answer": 1, "query": 0, "response": 1,
                  "hypothesis": 0, "entailment": 1, "contradiction": 2}
FIX_GROUPS = (("anchor", "positive", "negative"), ("question", "answer"), ("query", "response"),
              ("hypothesis", "entailment", "contradiction"))


@dataclass
class MultiVectorEncoderDataCollator:
    """Rows -> one flat batch: ``{column}_{feature}`` per text column, ``label``, ``{column}_task``.

    As ST 6.2: a ``dataset_name`` column is moved to ``batch["dataset_name"]``; the first of
    ``valid_label_columns`` present becomes ``batch["label"]``; every other column, in dataset
    order, is preprocessed with ``preprocess_fn(texts, prompt=..., task=...[, max_length=...])``:
    the task comes from ``router_mapping``, else column 0 is ``"query"`` and the rest
    ``"document"``; prompts and router mappings may be nested per dataset; ``max_length`` is an int
    or a task -> length mapping. Column names are not consulted for roles.
    """

    preprocess_fn: Callable
    valid_label_columns: list[str] = field(default_factory=lambda: list(DEFAULT_LABEL_COLUMNS))
    router_mapping: dict | None = field(default_factory=dict, repr=False)
    prompts: str | dict | None = field(default_factory=dict, repr=False)
    max_length: int | dict | None = field(default=None, repr=False)
    _warned_columns: set = field(default_factory=set, init=False, repr=False)

    def _resolve_router_mapping(self, batch: dict) -> dict:
        mapping = self.router_mapping
        if mapping and isinstance(mapping, dict) and isinstance(next(iter(mapping.values())), dict):
            return mapping.get(batch["dataset_name"], {}) if "dataset_name" in batch else {}
        return mapping or {}

    def _resolve_prompts(self, batch: dict):
        prompts = self.prompts
        if not isinstance(prompts, dict) or not prompts:
            return prompts
        if "dataset_name" in batch and batch["dataset_name"] in prompts:
            return prompts[batch["dataset_name"]]
        if isinstance(next(iter(prompts.values())), dict):
            if "dataset_name" not in batch:
                raise ValueError(
                    "The prompts provided to the trainer are a nested dictionary. In this setting, the first "
                    "level of the dictionary should map to dataset names and the second level to column names. "
                    "However, as the provided dataset is a not a DatasetDict, no dataset names can be inferred. "
                    f"The keys to the provided prompts dictionary are {list(prompts.keys())!r}"
                )
            return {}
        return prompts

    @staticmethod
    def _get_prompt_for_column(prompts, column_name: str):
        if isinstance(prompts, str):
            return prompts
        if isinstance(prompts, dict):
            return prompts.get(column_name)
        return None

    def _get_task_for_column(self, column_name: str, column_position: int, router_mapping: dict) -> str:
        task = router_mapping.get(column_name)
        return task if task is not None else ("query" if column_position == 0 else "document")

    def _get_max_length_for_task(self, task):
        if isinstance(self.max_length, int):
            return self.max_length
        if isinstance(self.max_length, dict) and task is not None:
            return self.max_length.get(task)
        return None

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        if not features:
            return {}
        batch: dict[str, Any] = {}
        column_names = start_batch(features, self.valid_label_columns, batch, self._warn_once_about_column_order)
        router_mapping, prompts = self._resolve_router_mapping(batch), self._resolve_prompts(batch)
        id_like = [c for c in column_names if c == "id" or c.endswith(("_id", "_ids", "_idx"))]
        if id_like:
            logger.warning(
                "Column(s) %s look like ID columns, but they will be tokenized and trained on as text. If they hold "
                "IDs, resolve them to their values first, or remove them from the dataset.", id_like,
            )
        for position, column in enumerate(column_names):
            task = self._get_task_for_column(column, position, router_mapping)
            prompt = self._get_prompt_for_column(prompts, column)
            inputs = [row[column] for row in features]
            max_length = self._get_max_length_for_task(task)
            kwargs = {"max_length": max_length} if max_length is not None else {}
            for key, value in self.preprocess_fn(inputs, prompt=prompt, task=task, **kwargs).items():
                batch[f"{column}_{key}"] = value
            if task is not None:
                batch[f"{column}_task"] = task
        return batch

    def _warn_once_about_column_order(self, column_names: list[str]) -> None:
        if tuple(column_names) not in self._warned_columns:
            self.maybe_warn_about_column_order(column_names)

    def maybe_warn_about_column_order(self, column_names: list[str]) -> None:
        """ST 6's warning when a well-known column name sits at an unusual index (roles are positional)."""
        for name, expected in EXPECTED_INDEX.items():
            if name in column_names and column_names.index(name) != expected:
                fix = next(list(group) for group in FIX_GROUPS if name in group)
                logger.warning(
                    "Column %r is at index %d, whereas a column with this name is usually expected at index %d. "
                    "Note that the column order can be important for some losses, e.g. MultipleNegativesRankingLoss "
                    "will always consider the first column as the anchor and the second as the positive, regardless "
                    "of the dataset column names. Consider renaming the columns to match the expected order, e.g.:\n"
                    "dataset = dataset.select_columns(%s)", name, column_names.index(name), expected, fix,
                )
                break
        self._warned_columns.add(tuple(column_names))

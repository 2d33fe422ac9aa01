"""sentence-transformers' evaluator base (``SentenceEvaluator`` / ST 6's ``BaseEvaluator``) and the
plumbing every dense evaluator shares: which ST release's semantics apply, CSV rows, log lines,
encode calls and turning MLX / numpy outputs into float32 numpy.

An evaluator is any callable ``evaluator(model, output_path=None, epoch=-1, steps=-1) -> dict``;
the trainer prefixes its keys with ``eval_``.
"""

from __future__ import annotations

import csv
import functools
import os
import re
from importlib import metadata
from typing import Any

import numpy as np


@functools.lru_cache(maxsize=1)
def st_major() -> int:
    """The installed sentence-transformers major release (6 when none is installed: the newest).

    ST 5.3 and 6.2 differ in observable details (IR tie order, threshold search, F1 / AP over tied
    scores, which encode method a triplet uses...); the evaluators follow the installed release, so a
    script gives the numbers it gives on torch in the same environment.
    """
    try:
        return int(metadata.version("sentence-transformers").split(".")[0])
    except (metadata.PackageNotFoundError, ValueError):
        return 6


def st6() -> bool:
    return st_major() >= 6


class EvaluatorInputError(ValueError, AssertionError):
    """Bad evaluator input, raised at construction (before any encoding). An ``AssertionError`` too,
    as ST's own checks are ``assert`` statements, so either ``except`` works."""


def check_same_length(evaluator: str, **columns) -> None:
    """All ``columns`` have one entry per example (ST asserts this without a message)."""
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{name}: {n}" for name, n in lengths.items())
        raise EvaluatorInputError(
            f"{evaluator} needs one entry per example in each of {', '.join(lengths)} (got {shown}); "
            "pass lists of the same length."
        )


def check_binary_labels(evaluator: str, labels) -> None:
    bad = [(i, label) for i, label in enumerate(labels) if not (label == 0 or label == 1)]
    if bad:
        i, label = bad[0]
        raise EvaluatorInputError(
            f"{evaluator} needs labels 0 or 1; labels[{i}] is {label!r} ({len(bad)} such labels). "
            "Map the classes to 0 (dissimilar) and 1 (similar)."
        )


def epoch_text(epoch: int, steps: int, truncate_dim: int | None = None) -> str:
    """ST's `` after epoch 1`` / `` in epoch 1 after 10 steps`` / `` (truncated to 32)`` log suffix."""
    out = ""
    if epoch != -1:
        out = f" after epoch {epoch}" if steps == -1 else f" in epoch {epoch} after {steps} steps"
    if truncate_dim is not None:
        out += f" (truncated to {truncate_dim})"
    return out


def append_csv_row(output_path: str, csv_file: str, headers: list, row: list) -> None:
    """``csv.writer`` append of ``row`` to ``output_path/csv_file`` (``headers`` first when new), as ST."""
    os.makedirs(output_path, exist_ok=True)
    path = os.path.join(output_path, csv_file)
    exists = os.path.isfile(path)
    with open(path, newline="", mode="a" if exists else "w", encoding="utf-8") as f:
        writer = csv.writer(f)
        if not exists:
            writer.writerow(headers)
        writer.writerow(row)


def append_joined_row(output_path: str, csv_file: str, headers: list, row: list) -> None:
    """The IR / NanoBEIR evaluators' hand-written CSV: ``",".join(map(str, ...))`` lines (no quoting)."""
    os.makedirs(output_path, exist_ok=True)
    path = os.path.join(output_path, csv_file)
    exists = os.path.isfile(path)
    with open(path, mode="a" if exists else "w", encoding="utf-8") as f:
        if not exists:
            f.write(",".join(headers) + "\n")
        f.write(",".join(map(str, row)) + "\n")


def as_numpy(x) -> np.ndarray:
    """An ``mx.array`` / numpy / list output as float32 numpy (what ST's ``.cpu().numpy()`` gives)."""
    if isinstance(x, (list, tuple)) and x and not isinstance(x[0], (int, float)):
        x = [np.asarray(v) for v in x]
        return np.stack(x).astype(np.float32, copy=False)
    return np.asarray(x, dtype=np.float32)


def encode_fn(model, encode_fn_name: str | None):
    """``model.encode_query`` / ``encode_document`` / ``encode`` for ``"query"`` / ``"document"`` / None."""
    if encode_fn_name == "query":
        return model.encode_query
    if encode_fn_name == "document":
        return model.encode_document
    return model.encode


class SentenceEvaluator:
    """Base class for all evaluators (ST 5.3's ``SentenceEvaluator``, ST 6.2's ``BaseEvaluator``).

    ``greater_is_better`` says whether a higher primary score is better (``load_best_model_at_end``);
    ``primary_metric`` names the key of the returned dict used for model selection. Subclasses
    implement ``__call__``. A ``primary_metric`` of None is left alone by ``prefix_name_to_metrics``
    (ST 6.2; ST 5.3 raises ``AttributeError`` there, a bug not reproduced).
    """

    greater_is_better = True
    primary_metric: str | None = None

    def __init__(self):
        self.greater_is_better = True
        self.primary_metric = None

    def __call__(self, model, output_path: str | None = None, epoch: int = -1, steps: int = -1):
        raise NotImplementedError

    def prefix_name_to_metrics(self, metrics: dict[str, float], name: str) -> dict[str, float]:
        def maybe_to_float(value: Any) -> Any:
            try:
                return float(value)
            except (TypeError, ValueError):
                return value

        if not name:
            return {key: maybe_to_float(value) for key, value in metrics.items()}
        metrics = {name + "_" + key: maybe_to_float(value) for key, value in metrics.items()}
        if getattr(self, "primary_metric", None) is not None and not self.primary_metric.startswith(name + "_"):
            self.primary_metric = name + "_" + self.primary_metric
        return metrics

    def store_metrics_in_model_card_data(self, model, metrics: dict[str, Any], epoch: int = 0, step: int = 0) -> None:
        # ST calls model.model_card_data unconditionally; a model without card data (a stand-in) skips it.
        card_data = getattr(model, "model_card_data", None)
        if hasattr(card_data, "set_evaluation_metrics"):
            card_data.set_evaluation_metrics(self, metrics, epoch, step)

    @property
    def description(self) -> str:
        """``BinaryClassificationEvaluator`` -> ``Binary Classification`` (ST's rule: "CE" prefix ->
        "CrossEncoder", drop "Evaluator" and what follows, a space before each inner capital)."""
        class_name = self.__class__.__name__
        if class_name.startswith("CE"):
            class_name = "CrossEncoder" + class_name[2:]
        if "Evaluator" in class_name:
            class_name = class_name[: class_name.index("Evaluator")]
        return re.sub(r"([a-z])([A-Z])", r"\g<1> \g<2>", class_name)

    def get_config_dict(self) -> dict[str, Any]:
        """Configuration values worth storing in the model card."""
        return {}

    def embed_inputs(self, model, sentences, **kwargs):
        return model.encode(sentences, **kwargs)


BaseEvaluator = SentenceEvaluator  # ST 6.2's name


def config_of(evaluator, keys) -> dict[str, Any]:
    """The ``get_config_dict`` entries among ``keys`` that are not None (ST's pattern)."""
    return {key: getattr(evaluator, key) for key in keys if getattr(evaluator, key) is not None}

"""Plumbing shared by the PyLate evaluators: CSV files, log lines, padding, ST's naming rules."""

from __future__ import annotations

import csv
import logging
import os
from contextlib import nullcontext

import mlx.core as mx
import numpy as np

from ...sentence_transformers.evaluation import SentenceEvaluator as _BaseEvaluator

logger = logging.getLogger(__name__)


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


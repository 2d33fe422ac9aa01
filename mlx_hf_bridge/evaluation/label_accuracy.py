"""sentence-transformers' ``LabelAccuracyEvaluator`` on MLX (the same in ST 5.3 and 6.2)."""

from __future__ import annotations

import logging

import mlx.core as mx
import numpy as np

from .base import EvaluatorInputError, SentenceEvaluator, append_csv_row, epoch_text

logger = logging.getLogger(__name__)


def _examples_and_batch_size(dataloader) -> tuple[list, int]:
    """A torch ``DataLoader`` over ``InputExample`` rows (ST's input: its dataset and batch size are
    read, torch is not needed) or a plain sequence of examples (batches of 32)."""
    dataset = getattr(dataloader, "dataset", None)
    if dataset is not None:
        return list(dataset), int(getattr(dataloader, "batch_size", None) or 1)
    if isinstance(dataloader, (list, tuple)):
        return list(dataloader), 32
    raise EvaluatorInputError(
        f"LabelAccuracyEvaluator needs a DataLoader over InputExample rows (or a list of them), got "
        f"{type(dataloader).__name__}."
    )


class LabelAccuracyEvaluator(SentenceEvaluator):
    """Accuracy of ``softmax_model`` (a :class:`SoftmaxLoss`, whose classifier predicts the label of a
    sentence pair) on ``dataloader``'s ``InputExample(texts=[a, b], label=class)`` rows. Returns
    ``{name}_accuracy`` (= ``primary_metric``); CSV ``accuracy_evaluation{_name}_results.csv`` with
    ``epoch, steps, accuracy``. Batches are tokenized as ST's ``smart_batching_collate`` does (the
    model's ``tokenize`` per column); the accuracy does not depend on the batch order.

    Checked at construction, before any encoding (ST fails later, mid-evaluation): a missing
    ``softmax_model``, no examples, examples without ``texts`` / an integer ``label``.
    """

    def __init__(self, dataloader, name: str = "", softmax_model=None, write_csv: bool = True):
        super().__init__()
        self.dataloader = dataloader
        self.name = name
        self.softmax_model = softmax_model
        if name:
            name = "_" + name
        self.write_csv = write_csv
        self.csv_file = "accuracy_evaluation" + name + "_results.csv"
        self.csv_headers = ["epoch", "steps", "accuracy"]
        self.primary_metric = "accuracy"
        if softmax_model is None or not hasattr(softmax_model, "classifier"):
            raise EvaluatorInputError(
                "LabelAccuracyEvaluator needs softmax_model=: the SoftmaxLoss whose classifier predicts the labels "
                f"(got {type(softmax_model).__name__}), e.g. LabelAccuracyEvaluator(dataloader, softmax_model=loss)."
            )
        self.examples, self.batch_size = _examples_and_batch_size(dataloader)
        if not self.examples:
            raise EvaluatorInputError("LabelAccuracyEvaluator got no examples (an empty dataloader): accuracy is undefined.")
        for i, example in enumerate(self.examples):
            texts, label = getattr(example, "texts", None), getattr(example, "label", None)
            if not isinstance(texts, (list, tuple)) or len(texts) != 2:
                raise EvaluatorInputError(
                    f"LabelAccuracyEvaluator: example {i} has texts={texts!r}; each needs two texts "
                    "(InputExample(texts=[sentence_a, sentence_b], label=class_index))."
                )
            if isinstance(label, bool) or not isinstance(label, (int, np.integer)):
                raise EvaluatorInputError(
                    f"LabelAccuracyEvaluator: example {i} has label={label!r}; labels are class indices (int)."
                )

    def __call__(self, model, output_path: str | None = None, epoch: int = -1, steps: int = -1) -> dict[str, float]:
        model.eval()
        logger.info("Evaluation on the " + self.name + " dataset" + epoch_text(epoch, steps) + ":")
        total = correct = 0
        for start in range(0, len(self.examples), self.batch_size):
            batch = self.examples[start:start + self.batch_size]
            features = [model.tokenize([example.texts[column] for example in batch]) for column in range(2)]
            labels = np.array([int(example.label) for example in batch])
            _, prediction = self.softmax_model(features, labels=None)
            predicted = np.array(mx.argmax(prediction, axis=1))
            total += len(batch)
            correct += int((predicted == labels).sum())
        accuracy = correct / total
        logger.info(f"Accuracy: {accuracy:.4f} ({correct}/{total})\n")
        if output_path is not None and self.write_csv:
            append_csv_row(output_path, self.csv_file, self.csv_headers, [epoch, steps, accuracy])
        metrics = self.prefix_name_to_metrics({"accuracy": accuracy}, self.name)
        self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
        return metrics

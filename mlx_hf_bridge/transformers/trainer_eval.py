"""transformers' ``evaluate`` / ``predict`` / ``prediction_step`` on MLX, plus ``EvalPrediction``,
``PredictionOutput`` and ``EarlyStoppingCallback`` with transformers' semantics.

Same numbers as transformers' evaluation loop: the loss of each batch is the model's mean loss,
weighted by the rows of the batch (accelerate's ``gather_for_metrics`` trims the repeated last
batch); logits and labels of successive batches are concatenated with -100 padding along axis 1
(token-level outputs of different lengths); ``compute_metrics`` receives NumPy arrays; metric names
get the ``eval_`` (``test_`` in predict) prefix; ``eval_runtime`` / ``eval_samples_per_second`` /
``eval_steps_per_second`` are added as transformers' ``speed_metrics`` computes them.
"""

from __future__ import annotations

import logging
import math
import time
from typing import NamedTuple

import mlx.core as mx
import numpy as np

from ..engine import distributed
from ..engine.callbacks import TrainerCallback
from . import trainer_data as TD
from .trainer_eval_dp import EvalGather, last_batch_rows, truncate

logger = logging.getLogger(__name__)


class EvalPrediction:
    """transformers' EvalPrediction: ``predictions``, ``label_ids`` (and ``inputs`` / ``losses`` when
    ``include_for_metrics`` asks); unpacks as a tuple of the fields that are set."""

    def __init__(self, predictions, label_ids, inputs=None, losses=None):
        self.predictions, self.label_ids, self.inputs, self.losses = predictions, label_ids, inputs, losses
        self.elements = (predictions, label_ids) + tuple(x for x in (inputs, losses) if x is not None)

    def __iter__(self):
        return iter(self.elements)

    def __getitem__(self, idx):
        if idx < 0 or idx >= len(self.elements):
            raise IndexError("tuple index out of range")
        return self.elements[idx]


class EvalLoopOutput(NamedTuple):
    predictions: object
    label_ids: object
    metrics: dict | None
    num_samples: int | None


class PredictionOutput(NamedTuple):
    predictions: object
    label_ids: object
    metrics: dict | None


def speed_metrics(split, start_time, num_samples=None, num_steps=None) -> dict:
    runtime = time.time() - start_time
    result = {f"{split}_runtime": round(runtime, 4)}
    if runtime == 0:
        return result
    if num_samples is not None:
        result[f"{split}_samples_per_second"] = round(num_samples / runtime, 3)
    if num_steps is not None:
        result[f"{split}_steps_per_second"] = round(num_steps / runtime, 3)
    return result


def denumpify(metrics):
    if isinstance(metrics, (list, tuple)):
        return type(metrics)(denumpify(m) for m in metrics)
    if isinstance(metrics, dict):
        return type(metrics)({k: denumpify(v) for k, v in metrics.items()})
    if isinstance(metrics, np.generic):
        return metrics.item()
    if isinstance(metrics, (np.ndarray, mx.array)) and np.asarray(metrics).size == 1:
        return np.asarray(metrics).item()
    return metrics


def _host(value):
    if isinstance(value, (tuple, list)):
        return type(value)(_host(v) for v in value)
    if isinstance(value, dict):
        return {k: _host(v) for k, v in value.items()}
    if isinstance(value, mx.array):
        return np.array(value.astype(mx.float32) if value.dtype == mx.bfloat16 else value)
    return value


class EvaluationMixin:
    """The evaluation half of the transformers façade (the Trainer supplies data, collate, compute_loss)."""

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval") -> dict:
        override = eval_dataset is not None
        eval_dataset = eval_dataset if override else self.eval_dataset
        if isinstance(eval_dataset, dict):
            metrics = {}
            for name, part in eval_dataset.items():
                prefix = f"{metric_key_prefix}_{name}"
                metrics.update(self.evaluate(part, ignore_keys=ignore_keys, metric_key_prefix=prefix))
            return metrics
        if eval_dataset is None:
            raise ValueError("Trainer: evaluation requires an eval_dataset.")
        start = time.time()
        output = self.evaluation_loop(eval_dataset, "Evaluation", True if self.compute_metrics is None else None,
                                      ignore_keys, metric_key_prefix)
        output.metrics.update(speed_metrics(metric_key_prefix, start, output.num_samples,
                                            math.ceil(output.num_samples / self._total_eval_batch())))
        self.log(output.metrics)
        self.control = self._event("on_evaluate", metrics=output.metrics)
        return output.metrics

    def predict(self, test_dataset, ignore_keys=None, metric_key_prefix="test") -> PredictionOutput:
        start = time.time()
        output = self.evaluation_loop(test_dataset, "Prediction", None, ignore_keys, metric_key_prefix)
        output.metrics.update(speed_metrics(metric_key_prefix, start, output.num_samples,
                                            math.ceil(output.num_samples / self._total_eval_batch())))
        self.control = self._event("on_predict", metrics=output.metrics)
        return PredictionOutput(output.predictions, output.label_ids, output.metrics)

    def _total_eval_batch(self) -> int:
        return int(self.args.eval_batch_size) * distributed.world_size()

    _gather = None  # the running evaluation's EvalGather (prediction_step counts items over the ranks with it)

    def _eval_batches(self, dataset, gather=None):
        """The one-process batches in order; under data parallel, this rank's share of them."""
        order = self.eval_order(dataset)
        batches = TD.EpochSampler(len(dataset), int(self.args.eval_batch_size), self.args.dataloader_drop_last,
                                  lambda epoch: order)
        return list(gather.shard(batches) if gather is not None else batches)

    def _eval_gather(self):
        """The collectives of a sharded evaluation, or None on one process (or inside ``local_only``)."""
        world = distributed.group()
        if world is None:
            return None
        timeout = float(getattr(self.args, "ddp_timeout", None) or distributed.DEFAULT_TIMEOUT)
        return EvalGather(world, timeout)

    def evaluation_loop(self, dataset, description, prediction_loss_only=None, ignore_keys=None,
                        metric_key_prefix="eval") -> EvalLoopOutput:
        args = self.args
        TD.check_dataset(dataset, "evaluation")
        prediction_loss_only = args.prediction_loss_only if prediction_loss_only is None else prediction_loss_only
        if not hasattr(self, "model_preparation_time") and not getattr(self, "_model_prepared", False):
            self.model_preparation_time = 0.0  # transformers times accelerate's prepare_model, if train() did not
        self._model_prepared = True
        self.model.eval()
        include = set(args.include_for_metrics or [])
        self._gather = gather = self._eval_gather()
        if gather is not None:
            gather.check_size(len(dataset))
        batches = self._eval_batches(dataset, gather)
        world = gather.world.size() if gather is not None else 1
        keep = last_batch_rows(len(dataset), int(args.eval_batch_size), world, args.dataloader_drop_last)
        pad = gather.pad_across if gather is not None else (lambda v: v)
        share = gather.gather if gather is not None else (lambda v: v)
        losses, preds, labels, inputs_seen, n_seen = [], None, None, None, 0
        try:
            for step, indices in enumerate(batches):
                batch = self.collate_rows(dataset, indices)
                loss, logits, batch_labels = self.prediction_step(self.model, batch, prediction_loss_only,
                                                                  ignore_keys)
                n_seen += len(indices)
                # accelerate trims the last gathered batch to the rows of the set (wrap-around rows dropped)
                trim = (lambda v: truncate(v, keep)) if step == len(batches) - 1 and keep and world > 1 else \
                    (lambda v: v)
                if loss is not None:
                    losses.append(trim(share(np.full(len(indices), float(np.asarray(loss)), dtype=np.float32))))
                if "inputs" in include:
                    main = getattr(self.model, "main_input_name", "input_ids")
                    inputs_seen = TD.nested_concat(inputs_seen, trim(share(pad(np.asarray(batch[main])))))
                batch_labels = pad(_host(batch_labels)) if batch_labels is not None else None
                if logits is not None:
                    logits = pad(_host(logits))
                    if self.preprocess_logits_for_metrics is not None:
                        logits = _host(self.preprocess_logits_for_metrics(logits, batch_labels))
                    preds = TD.nested_concat(preds, trim(share(logits)))
                if batch_labels is not None:
                    labels = TD.nested_concat(labels, trim(share(batch_labels)))
                self.control = self._event("on_prediction_step")
        finally:
            self._gather = None
        all_losses = np.concatenate(losses) if losses else None
        metrics = {}
        if self.compute_metrics is not None and preds is not None and labels is not None:
            extra = {"losses": all_losses if "loss" in include else None,
                     "inputs": inputs_seen if "inputs" in include else None}
            metrics = self.compute_metrics(EvalPrediction(preds, labels, **extra)) or {}
        metrics = denumpify(dict(metrics))
        if all_losses is not None:
            metrics[f"{metric_key_prefix}_loss"] = all_losses.mean().item()
        if hasattr(self, "model_preparation_time"):
            metrics[f"{metric_key_prefix}_model_preparation_time"] = self.model_preparation_time
        for key in list(metrics):
            if not key.startswith(f"{metric_key_prefix}_"):
                metrics[f"{metric_key_prefix}_{key}"] = metrics.pop(key)
        if self.is_in_train:
            self.model.train()
        return EvalLoopOutput(preds, labels, metrics, len(dataset) or n_seen)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """transformers' prediction_step: (mean loss or None, logits or None, labels or None), NumPy."""
        has_labels = bool(self.label_names) and all(inputs.get(k) is not None for k in self.label_names)
        return_loss = inputs.get("return_loss")
        if return_loss is None:
            return_loss = self.can_return_loss
        loss_without_labels = not self.label_names and return_loss
        if ignore_keys is None:
            config = getattr(self.model, "config", None)
            ignore_keys = list(getattr(config, "keys_to_ignore_at_inference", ["past_key_values"]) or [])
        labels = None
        if has_labels or loss_without_labels:
            labels = tuple(np.asarray(inputs.get(name)) for name in self.label_names)
            labels = labels[0] if len(labels) == 1 else labels
        model_inputs = self.model_inputs(inputs)
        if has_labels or loss_without_labels:
            n_items = self.items_in([inputs])
            if n_items is not None and self._gather is not None and self._averages_tokens():
                n_items = self._gather.total(n_items)  # transformers gathers the count here too
            loss, outputs = self.compute_loss(model, model_inputs, return_outputs=True, num_items_in_batch=n_items)
            loss = np.asarray(loss.astype(mx.float32)).mean()
            skip = [*ignore_keys, "loss"]
        else:
            loss, outputs, skip = None, model(**model_inputs), ignore_keys
        logits = tuple(v for k, v in outputs.items() if k not in skip) if isinstance(outputs, dict) else \
            tuple(outputs)[1 if loss is not None else 0:]
        if prediction_loss_only:
            return loss, None, None
        logits = _host(logits)
        return loss, (logits[0] if len(logits) == 1 else logits), labels


class EarlyStoppingCallback(TrainerCallback):
    """transformers' EarlyStoppingCallback: stop when ``metric_for_best_model`` failed to improve (by
    more than ``early_stopping_threshold``) for ``early_stopping_patience`` evaluations."""

    def __init__(self, early_stopping_patience: int = 1, early_stopping_threshold: float | None = 0.0):
        self.early_stopping_patience = early_stopping_patience
        self.early_stopping_threshold = early_stopping_threshold
        self.early_stopping_patience_counter = 0

    def check_metric_value(self, args, state, control, metric_value):
        better = np.greater if args.greater_is_better else np.less
        if state.best_metric is None or (better(metric_value, state.best_metric)
                                         and abs(metric_value - state.best_metric) > self.early_stopping_threshold):
            self.early_stopping_patience_counter = 0
        else:
            self.early_stopping_patience_counter += 1

    def on_train_begin(self, args, state, control, **kwargs):
        if not args.load_best_model_at_end:
            logger.warning("Using EarlyStoppingCallback without load_best_model_at_end=True. Once training is "
                           "finished, the best model will not be loaded automatically.")
        if args.metric_for_best_model is None:
            raise AssertionError("EarlyStoppingCallback requires metric_for_best_model to be defined")
        if str(args.eval_strategy) == "no":
            raise AssertionError("EarlyStoppingCallback requires IntervalStrategy of steps or epoch")

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        name = args.metric_for_best_model
        name = name if name.startswith("eval_") else f"eval_{name}"
        value = (metrics or {}).get(name)
        if value is None:
            logger.warning(f"early stopping required metric_for_best_model, but did not find {name} so early "
                           "stopping is disabled")
            return
        self.check_metric_value(args, state, control, value)
        if self.early_stopping_patience_counter >= self.early_stopping_patience:
            control.should_training_stop = True

    def state(self) -> dict:
        return {"args": {"early_stopping_patience": self.early_stopping_patience,
                         "early_stopping_threshold": self.early_stopping_threshold},
                "attributes": {"early_stopping_patience_counter": self.early_stopping_patience_counter}}

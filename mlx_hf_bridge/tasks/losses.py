"""transformers' task losses (torch.nn semantics) and its ``problem_type`` rule, checked on the host.

One implementation each: ``cross_entropy`` (mean over targets != -100, as ``nn.CrossEntropyLoss``),
``bce_with_logits`` (``nn.BCEWithLogitsLoss``), ``mse`` (``nn.MSELoss``), and the Trainer's ``label_smoothed_loss`` (transformers' LabelSmoother).
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np

IGNORE_INDEX = -100
PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")
# torch: labels.dtype == torch.long or torch.int
_CLASS_INDEX_DTYPES = (mx.int64, mx.int32)


def cross_entropy(logits: mx.array, targets: mx.array, ignore_index: int = IGNORE_INDEX,
                  num_items_in_batch=None) -> mx.array:
    """``nn.CrossEntropyLoss()(logits (N, C), targets (N,))``; all targets ignored gives NaN, as torch.
    With ``num_items_in_batch``: the sum over kept targets divided by it (transformers'
    ``fixed_cross_entropy``, what its Trainer asks of heads that take loss kwargs)."""
    keep = targets != ignore_index
    safe = mx.where(keep, targets, 0)
    logz = mx.logsumexp(logits, axis=-1)
    picked = mx.take_along_axis(logits, safe[:, None].astype(mx.int32), axis=-1)[:, 0]
    nll = mx.where(keep, logz - picked, 0.0)
    if num_items_in_batch is not None:
        return nll.sum() / mx.array(num_items_in_batch).astype(nll.dtype)
    return nll.sum() / keep.sum().astype(nll.dtype)


def bce_with_logits(logits: mx.array, targets: mx.array) -> mx.array:
    """``nn.BCEWithLogitsLoss()``: mean of ``max(x, 0) - x y + log(1 + exp(-|x|))``."""
    targets = targets.astype(logits.dtype)
    return mx.mean(mx.maximum(logits, 0) - logits * targets + mx.log1p(mx.exp(-mx.abs(logits))))


def mse(predictions: mx.array, targets: mx.array) -> mx.array:
    return mx.mean(mx.square(predictions - targets.astype(predictions.dtype)))


def infer_problem_type(num_labels: int, labels: mx.array) -> str:
    """transformers' rule on the first labelled forward: 1 label -> regression; integer (int32/int64)
    labels -> single-label; anything else (floats) -> multi-label."""
    if num_labels == 1:
        return "regression"
    if num_labels > 1 and labels.dtype in _CLASS_INDEX_DTYPES:
        return "single_label_classification"
    return "multi_label_classification"


def check_class_indices(labels: mx.array, num_classes: int, what: str, allow_ignore: bool = True):
    """torch fails on an out-of-range target mid-step ("Target out of bounds"); name it before."""
    if mx.issubdtype(labels.dtype, mx.floating):
        raise ValueError(
            f"{what} labels are floats ({labels.dtype}) but this loss needs class indices 0..{num_classes - 1}. "
            "Cast them to integers, or for multi-label targets set problem_type='multi_label_classification'."
        )
    values = _host_values(labels)
    if values is None:
        return
    bad = (values < 0) | (values >= num_classes)
    if allow_ignore:
        bad &= values != IGNORE_INDEX
    if bad.any():
        found = sorted(set(values[bad].tolist()))[:5]
        raise ValueError(
            f"{what} labels {found} are outside 0..{num_classes - 1} (num_labels={num_classes}"
            f"{'; -100 marks ignored positions' if allow_ignore else ''}). Fix the labels, or load the model with "
            f"num_labels=<number of classes> (and id2label / label2id)."
        )


def _host_values(labels: mx.array):
    """The labels on the host, or None inside ``mx.compile`` (no eval allowed there: a compiled step
    skips the check; an eager forward on the data, e.g. the first batch, names bad labels)."""
    try:
        return np.asarray(labels)
    except ValueError as exc:
        if "function transformations" in str(exc):
            return None
        raise


def sequence_classification_loss(config, logits: mx.array, labels: mx.array) -> mx.array:
    """``BertForSequenceClassification`` / ``ModernBertForSequenceClassification``'s loss, setting
    ``config.problem_type`` on first use exactly as they do (it is then saved with the config)."""
    num_labels = int(config.num_labels)
    if config.problem_type is None:
        config.problem_type = infer_problem_type(num_labels, labels)
    problem = config.problem_type
    if problem == "regression":
        if num_labels == 1:
            return mse(logits.squeeze(), labels.squeeze())
        _check_same_shape(logits, labels, problem)
        return mse(logits, labels)
    if problem == "single_label_classification":
        check_class_indices(labels, num_labels, "single_label_classification", allow_ignore=True)
        return cross_entropy(logits.reshape(-1, num_labels), labels.reshape(-1))
    if problem == "multi_label_classification":
        _check_same_shape(logits, labels, problem)
        if not mx.issubdtype(labels.dtype, mx.floating):  # torch: "result type Float can't be cast to ... Long"
            raise ValueError(
                f"multi_label_classification needs float multi-hot labels, got {labels.dtype} (torch's "
                "BCEWithLogitsLoss refuses integer targets too). Cast them, e.g. labels.astype(np.float32).")
        return bce_with_logits(logits, labels)
    raise ValueError(f"config.problem_type={problem!r} is not one of {', '.join(PROBLEM_TYPES)}.")


def _check_same_shape(logits, labels, problem):
    if tuple(labels.shape) != tuple(logits.shape):
        raise ValueError(
            f"{problem} needs labels shaped like the logits {tuple(logits.shape)} (one value per label), got "
            f"{tuple(labels.shape)}. For class indices use problem_type='single_label_classification'; "
            "for multi-hot targets pass a float array (batch, num_labels)."
        )


def token_loss(logits: mx.array, labels: mx.array, num_classes: int, what: str, num_items_in_batch=None) -> mx.array:
    """Token classification / MLM: cross entropy over every position, -100 ignored."""
    check_class_indices(labels, num_classes, what, allow_ignore=True)
    return cross_entropy(logits.reshape(-1, num_classes), labels.reshape(-1), num_items_in_batch=num_items_in_batch)


def label_smoothed_loss(logits, labels, epsilon: float, num_items_in_batch=None, ignore_index: int = IGNORE_INDEX):
    """transformers' LabelSmoother: (1 - eps) * NLL + eps * mean(-log p) over the classes, summed over the
    positions whose label is not ``ignore_index`` and divided by their number (or, from transformers 5.24,
    by ``num_items_in_batch`` when the Trainer passes it: the accumulation window's count)."""
    if mx.issubdtype(labels.dtype, mx.floating):
        raise ValueError("label_smoothing_factor needs class-id labels (integers); these labels are floats "
                         "(regression / multi-label). Set label_smoothing_factor=0.0.")
    log_probs = -(logits - mx.logsumexp(logits, axis=-1, keepdims=True)).astype(mx.float32)
    labels = labels[..., None] if labels.ndim == log_probs.ndim - 1 else labels
    padding = labels == ignore_index
    nll = mx.where(padding, 0.0, mx.take_along_axis(log_probs, mx.maximum(labels, 0).astype(mx.int32), axis=-1))
    smoothed = mx.where(padding, 0.0, log_probs.sum(axis=-1, keepdims=True))
    active = (padding.size - padding.sum()).astype(mx.float32) if num_items_in_batch is None else \
        mx.array(num_items_in_batch, dtype=mx.float32)
    return (1 - epsilon) * nll.sum() / active + epsilon * smoothed.sum() / (active * log_probs.shape[-1])

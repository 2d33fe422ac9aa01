"""What the pairwise / regression / distillation / triplet losses share: embedding the columns,
turning labels into arrays with clear errors, and the ``loss_fct`` callables ST takes from torch
(``nn.MSELoss()``, ``nn.Identity()``, ``nn.CrossEntropyLoss()``) written on MLX."""

from __future__ import annotations

import warnings

import mlx.core as mx
import numpy as np

from ..colbert.loss_common import cross_entropy
from ._common import similarity_fct_name  # noqa: F401  (re-exported to the losses)
from ._inbatch import check_columns  # noqa: F401  (one column check for every dense loss)


def embed_columns(model, sentence_features) -> list[mx.array]:
    """``model(features)["sentence_embedding"]`` per text column (B, D) each, in column order."""
    return [model(features)["sentence_embedding"] for features in sentence_features]


def rows(sentence_features) -> int:
    return int(sentence_features[0]["input_ids"].shape[0])


def _kind(values: np.ndarray) -> str:
    return "text" if values.dtype.kind in "USO" else values.dtype.name


def label_values(loss_name: str, labels, what: str = "float scores") -> mx.array:
    """``labels`` as an ``mx.array`` (lists and numpy arrays too); text or missing labels raise."""
    if labels is None:
        raise ValueError(
            f"{loss_name} needs labels ({what}): name the dataset column 'label' or 'score' "
            "(the collator's label columns: label, labels, score, scores)."
        )
    if isinstance(labels, mx.array):
        return labels
    values = np.asarray(labels)
    if values.dtype.kind not in "biuf":
        raise ValueError(
            f"{loss_name} needs numeric labels ({what}) but got {_kind(values)} values "
            f"(e.g. {values.reshape(-1)[:1].tolist()}). Map them to numbers first, e.g. "
            "dataset.map(lambda row: {'score': float(row['score'])}) or a dict from class name to index."
        )
    return mx.array(values)


def check_numeric(loss_name: str, labels, where: str, what: str) -> mx.array:
    """The pre-flight form of :func:`label_values` (``check_labels(labels, where)``)."""
    try:
        return label_values(loss_name, labels, what)
    except ValueError as exc:
        raise ValueError(f"{exc} (the {where})") from None


def per_example(loss, labels, batch_size: int) -> mx.array:
    """One float label per row, flattened (ST 6's ``labels.numel() != batch_size`` check)."""
    labels = label_values(type(loss).__name__, labels)
    if labels.size != batch_size:
        raise ValueError(
            f"{type(loss).__name__} expects {batch_size} labels (one per example), but got {labels.size} labels "
            f"with shape {tuple(labels.shape)}."
        )
    return labels.reshape(-1)


def warn_non_binary_once(loss, labels: mx.array, consequence: str):
    """ST 6.2's one-time warning for labels other than 0 / 1 (read on the first batch only)."""
    if loss._checked_labels:
        return
    try:
        non_binary = bool(((labels != 0) & (labels != 1)).any().item())
    except (ValueError, RuntimeError):  # inside mx.compile labels cannot be read: try the next call
        return
    loss._checked_labels = True
    if non_binary:
        warnings.warn(f"{type(loss).__name__} expects binary labels (0 or 1). {consequence}", UserWarning,
                      stacklevel=4)


# --- torch's loss modules that ST uses as defaults, on MLX ------------------------------------
class _TorchNamed:
    """A callable that reports torch's class path in ``get_config_dict`` (ST's ``fullname``)."""

    torch_name = ""

    def __repr__(self):
        return f"{type(self).__name__}()"


class MSELoss(_TorchNamed):
    """``torch.nn.MSELoss()`` (mean reduction)."""

    torch_name = "torch.nn.modules.loss.MSELoss"

    def __call__(self, input: mx.array, target: mx.array) -> mx.array:
        return mx.square(input - target.astype(input.dtype)).mean()


class L1Loss(_TorchNamed):
    """``torch.nn.L1Loss()`` (mean reduction)."""

    torch_name = "torch.nn.modules.loss.L1Loss"

    def __call__(self, input: mx.array, target: mx.array) -> mx.array:
        return mx.abs(input - target.astype(input.dtype)).mean()


class Identity(_TorchNamed):
    """``torch.nn.Identity()``."""

    torch_name = "torch.nn.modules.linear.Identity"

    def __call__(self, x):
        return x


class CrossEntropyLoss(_TorchNamed):
    """``torch.nn.CrossEntropyLoss()`` (mean): class-index targets (B,), or class probabilities with
    the logits' shape (B, C)."""

    torch_name = "torch.nn.modules.loss.CrossEntropyLoss"

    def __call__(self, input: mx.array, target: mx.array) -> mx.array:
        if target.shape == input.shape and mx.issubdtype(target.dtype, mx.floating):
            log_probs = input - mx.logsumexp(input, axis=-1, keepdims=True)
            return -(target.astype(input.dtype) * log_probs).sum(axis=-1).mean()
        return cross_entropy(input, target.astype(mx.int32), "mean")


_FROM_TORCH = {cls.torch_name: cls for cls in (MSELoss, L1Loss, Identity, CrossEntropyLoss)}


def as_mlx_callable(fn, parameter: str):
    """A ``loss_fct`` / ``cos_score_transformation`` argument on MLX: MLX callables pass; a torch
    module of a kind above (default settings) becomes its MLX twin; any other torch module is refused."""
    module = type(fn).__module__
    if not module.startswith("torch"):
        return fn
    name = f"{module}.{type(fn).__qualname__}"
    twin = _FROM_TORCH.get(name)
    if twin is None or getattr(fn, "reduction", "mean") != "mean" or getattr(fn, "weight", None) is not None \
            or getattr(fn, "label_smoothing", 0.0) or getattr(fn, "ignore_index", -100) != -100:
        raise ValueError(
            f"{parameter}={fn!r} is a torch module, which cannot run on MLX arrays. Use one of "
            f"{sorted(_FROM_TORCH)} with its default settings (translated to MLX), or pass an MLX callable "
            "fn(input, target) -> scalar mx.array."
        )
    return twin()


def fullname(obj) -> str:
    """ST's ``util.fullname`` (torch's class path for the translated torch modules)."""
    named = getattr(obj, "torch_name", "")
    if named:
        return named
    cls = obj if isinstance(obj, type) else type(obj)
    module = cls.__module__
    return cls.__qualname__ if module in (None, str.__module__) else f"{module}.{cls.__qualname__}"

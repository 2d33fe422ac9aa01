"""transformers' data collators for the MLX trainers: ``DataCollatorWithPadding``,
``DataCollatorForLanguageModeling``, ``DataCollatorForTokenClassification``, ``DefaultDataCollator``
and ``default_data_collator``, with HF's names, arguments and rules.

They *are* transformers' collators (its NumPy code paths: padding, the MLM 80/10/10 masking, label
padding), so behaviour cannot drift from the library; this layer only decides what comes out:

- ``return_tensors`` defaults to ``"np"`` here (HF: ``"pt"``); ``"mlx"`` gives ``mx.array`` values.
- ``"pt"`` (HF's default, so scripts that spell it out keep working) is *mapped* to NumPy with one
  warning: the MLX trainers take NumPy batches, and torch tensors would only be converted back.
  ``"tf"`` / ``"jax"`` are refused.
- dtypes are those of HF's torch path (int64 ids and labels, float32 floats): its NumPy path would
  give float64 for float features, which MLX has no use for.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from transformers.data import data_collator as _hf

_warned_pt = False


def _output_kind(return_tensors) -> str:
    global _warned_pt
    kind = "np" if return_tensors is None else return_tensors
    if kind == "pt":
        if not _warned_pt:
            _warned_pt = True
            warnings.warn("return_tensors='pt': mlx_hf_bridge's collators return NumPy arrays (the MLX trainers' "
                          "batch format) instead of torch tensors; pass return_tensors='np' or 'mlx' to silence this.",
                          UserWarning, stacklevel=3)
        return "np"
    if kind not in ("np", "mlx"):
        raise ValueError(f"return_tensors={return_tensors!r} is not supported on MLX: use 'np' (default) or 'mlx' "
                         "('pt' is accepted and returns NumPy).")
    return kind


def _finish(batch, kind: str) -> dict:
    out = {}
    for key, value in dict(batch).items():
        value = np.asarray(value)
        if value.dtype == np.float64:
            value = value.astype(np.float32)  # torch.tensor(python floats) is float32
        elif value.dtype.kind in "iu" and value.dtype != np.int64 and value.dtype != np.bool_:
            value = value.astype(np.int64)  # torch.long
        out[key] = value
    if kind == "mlx":
        import mlx.core as mx

        return {k: mx.array(v) for k, v in out.items()}
    return out


class _Outputs:
    """Runs HF's NumPy path and hands back NumPy / MLX values (see the module docstring)."""

    def _resolve(self):
        object.__setattr__(self, "_kind", _output_kind(self.return_tensors))
        self.return_tensors = "np"

    def __call__(self, features, return_tensors=None):
        kind = self._kind if return_tensors is None else _output_kind(return_tensors)
        return _finish(super().__call__(features, return_tensors="np") if self._takes_kind else
                       super().__call__(features), kind)

    _takes_kind = True


@dataclass
class DataCollatorWithPadding(_Outputs, _hf.DataCollatorWithPadding):
    return_tensors: str = "np"
    _takes_kind = False

    def __post_init__(self):
        self._resolve()


@dataclass
class DataCollatorForTokenClassification(_Outputs, _hf.DataCollatorForTokenClassification):
    return_tensors: str = "np"

    def __post_init__(self):
        self._resolve()


@dataclass
class DataCollatorForLanguageModeling(_Outputs, _hf.DataCollatorForLanguageModeling):
    return_tensors: str = "np"

    def __post_init__(self):
        self._resolve()
        super().__post_init__()


@dataclass
class DefaultDataCollator(_Outputs, _hf.DefaultDataCollator):
    return_tensors: str = "np"

    def __post_init__(self):
        self._resolve()


def default_data_collator(features, return_tensors="np") -> dict:
    return _finish(_hf.numpy_default_data_collator(features), _output_kind(return_tensors))


__all__ = ["DataCollatorForLanguageModeling", "DataCollatorForTokenClassification", "DataCollatorWithPadding",
           "DefaultDataCollator", "default_data_collator"]

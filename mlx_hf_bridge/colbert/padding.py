"""Padding-free batching with PyLate-identical results.

PyLate's collator pads every document to ``document_length``; attention masks padded keys and
MaxSim multiplies padded similarities by 0. So real tokens never depend on padding, and the only
trace padding leaves on the loss is the 0 it contributes to each per-query-token max: a document
with *any* masked position scores ``max(0, best real similarity)``. We therefore cut padding down
to the longest real sequence in a (mini-)batch, rounded up to a bucket length so compiled shapes
stay few, and remember which documents had padding in the fixed layout (``zero_floor``) so
scoring can add the 0 back exactly.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np

BUCKET = 32  # like mlx-lm: pad to multiples of 32 -> a bounded set of shapes


def bucket_length(length: int, maximum: int, multiple: int = BUCKET) -> int:
    return int(min(maximum, max(multiple, -(-length // multiple) * multiple)))


def trim_features(features: dict, multiple: int = BUCKET) -> dict:
    """Cut trailing padding to the bucketed longest real row; adds ``zero_floor`` (B,) bool.

    ``zero_floor[i]`` is True when row i had a masked position in the *original* layout (padding
    up to the original width): its MaxSim must be floored at 0 to equal the fixed-padding score.
    """
    mask = np.asarray(features["attention_mask"])
    width = mask.shape[1]
    real = mask.sum(axis=1)
    # rows padded on the right (HF tokenizers): the last attended position + 1 is the real length
    last = np.where(mask.any(axis=1), width - np.argmax(mask[:, ::-1], axis=1), 0)
    keep = bucket_length(int(last.max()) if len(last) else 0, width, multiple)
    out = {k: v[:, :keep] if _is_token_tensor(v, width) else v for k, v in features.items()}
    out["zero_floor"] = mx.array(real < width)
    return out


def _is_token_tensor(value, width) -> bool:
    return hasattr(value, "shape") and len(value.shape) == 2 and value.shape[1] == width


def floor_with_zero(max_sims: mx.array, zero_floor: mx.array, axis_docs: int) -> mx.array:
    """Apply PyLate's implicit ``max(0, ·)`` to the per-token maxima of documents that had padding.

    ``max_sims`` has the document axis at ``axis_docs``; ``zero_floor`` is (n_docs,) bool.
    """
    shape = [1] * max_sims.ndim
    shape[axis_docs] = zero_floor.shape[0]
    floor = zero_floor.reshape(shape)
    return mx.where(floor, mx.maximum(max_sims, 0.0), max_sims)

"""Padding-free batching with PyLate-identical results.

PyLate's collator pads every document to ``document_length`` (and queries to ``query_length``).
Attention masks padded keys, and MaxSim multiplies padded similarities by 0, so real tokens never
depend on padding; the one trace padding leaves on the loss is the 0 it adds to every
per-query-token max: a document with *any* masked position scores ``max(0, best real sim)``.

So the encoder only sees each (mini-)batch cut to its longest real row, rounded up to a multiple
of 32 (like mlx-lm) so the set of shapes stays small. For scoring, the document columns are
zero-padded to one width ``W``; when ``W`` is below ``document_length`` every document had padding
in PyLate's layout, and one extra masked (zero) column reproduces PyLate's implicit ``max(0, ·)``
exactly. Queries are cut only without query expansion: with expansion every position counts.
"""

from __future__ import annotations

from contextlib import contextmanager

import mlx.core as mx
import numpy as np

BUCKET = 32


def bucket_length(length: int, maximum: int, multiple: int = BUCKET) -> int:
    """``length`` rounded up to a multiple of ``multiple``, at most ``maximum``."""
    return int(min(maximum, max(multiple, -(-length // multiple) * multiple)))


def real_width(attention_mask) -> int:
    """Last attended position + 1, over all rows (right padding, as HF tokenizers do)."""
    mask = np.asarray(attention_mask).astype(bool)
    if not mask.any():
        return 1
    width = mask.shape[1]
    return int((width - np.argmax(mask[:, ::-1], axis=1))[mask.any(axis=1)].max())


def trim(features: dict, width: int) -> dict:
    """Cut every (B, L) token tensor of ``features`` to its first ``width`` positions."""
    full = features["attention_mask"].shape[1]
    if width >= full:
        return features
    return {k: v[:, :width] if hasattr(v, "ndim") and v.ndim == 2 and v.shape[1] == full else v for k, v in features.items()}


def trimmed_width(features: dict, multiple: int = BUCKET) -> int:
    full = features["attention_mask"].shape[1]
    return bucket_length(real_width(features["attention_mask"]), full, multiple)


def pad_to(x: mx.array, width: int) -> mx.array:
    """Zero-pad (or cut) axis 1 of ``x`` to ``width``."""
    current = x.shape[1]
    if current == width:
        return x
    if current > width:
        return x[:, :width]
    pads = [(0, 0), (0, width - current)] + [(0, 0)] * (x.ndim - 2)
    return mx.pad(x, pads)


def scoring_width(widths, full: int) -> int:
    """The common document width for scoring: the widest column, +1 masked zero position when
    that is below the fixed-padding width (every document was padded there)."""
    widest = max(widths)
    return widest if widest >= full else widest + 1


def encoder_backbone(model):
    """The HF encoder inside a ColBERT (``model.transformer.auto_model``), or None."""
    backbone = getattr(getattr(model, "transformer", None), "auto_model", None)
    return backbone if hasattr(backbone, "get_input_embeddings") else None


@contextmanager
def packed_sequences(model, enabled: bool = True):
    """Within the block the model's backbone packs right-padded rows end to end where it can
    (ModernBERT with the fused CPU attention: ``models/packing.py``); a no-op otherwise."""
    backbone = encoder_backbone(model)
    if not enabled or not hasattr(backbone, "pack_sequences"):
        yield
        return
    previous = backbone.pack_sequences
    backbone.pack_sequences = True
    try:
        yield
    finally:
        backbone.pack_sequences = previous

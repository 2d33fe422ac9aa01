"""Pieces every ColBERT loss shares: normalisation, cross-entropy, masks, gathering, padding-free.

Conventions, as in PyLate (pylate-api.md §4): token embeddings are
``model(features)["token_embeddings"]``, L2-normalised on the last axis; the query (feature 0)
keeps its ``attention_mask`` and every document column gets ``attention_mask AND
skiplist_mask(input_ids)``; the query mask reaches the scorer only when
``model.do_query_expansion`` is False; masking inside the scores is multiplicative.
"""

from __future__ import annotations

from typing import Iterable

import mlx.core as mx
import numpy as np

from . import distributed, padding
from .scores import skiplist_mask

def normalize(x: mx.array, eps: float = 1e-12) -> mx.array:
    """``torch.nn.functional.normalize(x, p=2, dim=-1)``: ``x / max(||x||, eps)``.

    >>> import mlx_hf_bridge, mlx.core as mx
    >>> normalize(mx.array([[3.0, 4.0], [0.0, 0.0]])).tolist()
    [[0.6000000238418579, 0.800000011920929], [0.0, 0.0]]
    """
    # sqrt(max(sum x², eps²)) == max(||x||, eps), with torch's zero (not NaN) gradient at x = 0:
    # packed encoding leaves padded positions exactly 0
    return x / mx.sqrt(mx.maximum((x * x).sum(axis=-1, keepdims=True), eps * eps))


def cross_entropy(logits: mx.array, targets: mx.array, reduction: str = "mean") -> mx.array:
    """``torch.nn.functional.cross_entropy`` for class-index targets (``"mean"`` or ``"sum"``).

    >>> import mlx_hf_bridge, mlx.core as mx
    >>> round(cross_entropy(mx.array([[0.0, 0.0]]), mx.array([0]), "sum").item(), 6)
    0.693147
    """
    losses = mx.logsumexp(logits, axis=-1) - mx.take_along_axis(logits, targets[:, None], axis=-1)[:, 0]
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")


def _model_attr(model, name: str):
    """``model.<name>``, or ``model.module.<name>`` for a wrapped model (as PyLate does)."""
    return getattr(model, name) if hasattr(model, name) else getattr(model.module, name)


def extract_skiplist_mask(sentence_features: Iterable[dict], skiplist: list[int]) -> list[mx.array]:
    """Boolean masks per feature: the query keeps its attention mask, documents also drop skiplist ids.

    >>> import mlx_hf_bridge, mlx.core as mx
    >>> features = [{"input_ids": mx.array([[1, 2, 3, 4]]), "attention_mask": mx.array([[1, 1, 1, 1]])}] * 3
    >>> [m.tolist() for m in extract_skiplist_mask(features, skiplist=[1, 2, 3])]
    [[[True, True, True, True]], [[False, False, False, True]], [[False, False, False, True]]]
    """
    sentence_features = list(sentence_features)
    masks = []
    for i, feature in enumerate(sentence_features):
        attention = feature["attention_mask"].astype(mx.bool_)
        masks.append(attention if i == 0 else attention & skiplist_mask(feature["input_ids"], skiplist))
    return masks


def _embed(model, features: dict, packed: bool = False) -> mx.array:
    """Normalised token embeddings; ``packed``: the backbone may run the rows packed end to end
    where it supports that (same outputs at real tokens, 0 at padding): only for columns whose
    padded positions are never read (:func:`trims_column`)."""
    with padding.packed_sequences(model, packed):
        return normalize(model(features)["token_embeddings"])


def _contrastive_targets(batch_size: int, n_docs: int, rank: int) -> mx.array:
    # Query-major layout: the positive of query i sits at column i * N (offset by this rank's block).
    return mx.arange(batch_size, dtype=mx.int32) * n_docs + rank * batch_size * n_docs


def _gather_masks(masks: list[mx.array]) -> list[mx.array]:
    return [masks[0], *[mx.concatenate(distributed.all_gather(m), axis=0) for m in masks[1:]]]


class _GatherWarning:
    """PyLate logs once when ``gather_across_devices=True`` runs without a distributed group."""

    @staticmethod
    def world(gather: bool):
        if not gather:
            return None
        world = distributed.group()
        if world is None:
            distributed._warn_once()
        return world




# --- input checks: a wrong batch names its column and the expected shape (MLX's own errors,
# ``[broadcast_shapes]`` / ``[stack]``, name neither) ---------------------------------------------
def _rows(feature) -> int:
    return int(feature["input_ids"].shape[0])


def check_contrastive_inputs(loss_name: str, sentence_features: list[dict]):
    """(query, positive[, negative...]): one text per row in every column."""
    if len(sentence_features) < 2:
        raise ValueError(
            f"{loss_name} needs at least 2 text columns (query, positive[, negative, ...]); got "
            f"{len(sentence_features)}. Add the positive document column to the dataset."
        )
    batch = _rows(sentence_features[0])
    for column, feature in enumerate(sentence_features[1:], start=1):
        rows = _rows(feature)
        if rows != batch:
            hint = (f" ({rows // batch} texts per row: a list-valued column, which the collator flattens)"
                    if rows % batch == 0 and rows > batch else "")
            raise ValueError(
                f"{loss_name}: text column {column} has {rows} rows for {batch} queries{hint}; every column must "
                f"hold one text per row (expected shape ({batch},)). Give each document its own column "
                "(positive, negative_1, ...), or use losses.Distillation for a list of documents per query."
            )


def check_distillation_inputs(sentence_features: list[dict], labels):
    """(query, documents as a list per row) + labels (B, n_ways), one score per document."""
    if len(sentence_features) != 2:
        raise ValueError(
            f"Distillation takes 2 text columns (query, documents) and a 'scores' label column; got "
            f"{len(sentence_features)} text columns. Put each query's documents in one list-valued column."
        )
    if labels is None:
        raise ValueError("Distillation needs the teacher scores: a 'scores' (or 'label') column, one score per document.")
    batch, docs = _rows(sentence_features[0]), _rows(sentence_features[1])
    shape = tuple(getattr(labels, "shape", None) or np.shape(labels))
    per_row = docs // batch if batch and docs % batch == 0 else None
    if per_row is None or len(shape) != 2 or shape != (batch, per_row):
        expected = f"({batch}, {per_row})" if per_row is not None else f"({batch}, n) with {docs} documents = {batch} x n"
        raise ValueError(
            f"Distillation: the labels (scores column) have shape {shape}, the batch has {batch} queries and {docs} "
            f"documents (column 1); expected labels of shape {expected}: one teacher score per document of each "
            "row, and the same number of documents in every row (KDProcessing(n_ways=...) trims both)."
        )


# --- padding-free (see padding.py for why the results equal PyLate's fixed padding) ------------
def trims_column(model, column: int, padding_free: bool) -> bool:
    """Documents are always cut; queries only without query expansion (every position counts)."""
    return padding_free and (column > 0 or not _model_attr(model, "do_query_expansion"))


def column_width(feature: dict, trims: bool) -> int:
    return padding.trimmed_width(feature) if trims else feature["attention_mask"].shape[1]


def widen_across_ranks(world, documents: list[mx.array], masks: list[mx.array]):
    """Document columns (one width after :func:`fit_for_scoring`) and their masks zero / False-padded
    to the widest rank's width, so that they can be all-gathered: ST 6's ``all_gather_padded`` (each
    rank's collator pads to its own longest row). PyLate's fixed collator width agrees already."""
    from ..engine import distributed as engine_distributed

    width = documents[0].shape[1]
    widest = int(max(row[0] for row in engine_distributed.agree(world, [float(width)], "comparing document widths")))
    if widest == width:
        return documents, masks
    return [padding.pad_to(d, widest) for d in documents], [masks[0], *[padding.pad_to(m, widest) for m in masks[1:]]]


def fit_for_scoring(queries: mx.array, documents: list[mx.array], masks: list[mx.array], fixed_width: bool = False):
    """Bring trimmed embeddings back to one scoring layout: queries and their mask to the query
    width; every document column to :func:`padding.scoring_width` (with the masks cut or padded
    to it: ST 6's collator pads each column to its own longest row, PyLate's all to one width).
    ``fixed_width`` keeps documents at the collator's width (ranks must agree to all-gather)."""
    query_width = queries.shape[1]
    full = max(m.shape[1] for m in masks[1:])
    doc_width = full if fixed_width else padding.scoring_width([d.shape[1] for d in documents], full)
    documents = [padding.pad_to(d, doc_width) for d in documents]
    masks = [masks[0][:, :query_width], *[padding.pad_to(m, doc_width) for m in masks[1:]]]
    return queries, documents, masks

"""Where PyLate 1.6 and sentence-transformers 6 differ *before* the loss math: how a batch column
becomes token embeddings and a scoring mask, and which masks reach MaxSim.

The losses (``losses.Contrastive`` / ``Distillation``, ``gradcache.CachedContrastive``) are written
once; they ask their ``columns`` convention for these four things:

========================  ==============================================  ==============================================
                          PyLate ``ColBERT``                              ST 6 ``MultiVectorEncoder``
========================  ==============================================  ==============================================
embeddings                ``normalize(model(f)["token_embeddings"])``     ``model(f, task)["token_embeddings"]`` (its own
                                                                          ``Normalize`` module, if saved, normalises)
scoring mask              ``attention_mask``; documents also drop         the model's ``MultiVectorMask`` output:
                          ``model.skiplist`` ids                          expansion positions in, skiplist per task
query mask in MaxSim      only without ``do_query_expansion``             always
queries cut (padding)     only without query expansion                    only without ``query_expansion``
========================  ==============================================  ==============================================

Masked similarities are then scored by each family's MaxSim (``scores.ColBERTScores``: multiplied
by 0; :func:`colbert_scores` below: ST 6's, excluded from the max).
"""

from __future__ import annotations

import mlx.core as mx

from . import padding, scores
from .loss_common import _embed, _model_attr, extract_skiplist_mask, trims_column


class PyLateColumns:
    """PyLate 1.6's conventions (pylate-api.md §4)."""

    name = "pylate"
    # PyLate multiplies a loss over gathered documents by the world size (Contrastive: ``loss *= get_world_size()``)
    gathered_loss_times_world = True

    def embed(self, model, features: dict, column: int, packed: bool) -> mx.array:
        return _embed(model, features, packed=packed)

    def masks(self, model, sentence_features: list[dict]) -> list[mx.array]:
        return extract_skiplist_mask(sentence_features, _model_attr(model, "skiplist"))

    def trims(self, model, column: int, padding_free: bool) -> bool:
        return trims_column(model, column, padding_free)

    def query_mask(self, model, mask: mx.array):
        return None if _model_attr(model, "do_query_expansion") else mask


def column_task(features: dict, column: int) -> str:
    """The task a column was tokenized with: the collator's stamp, else column 0 = query (ST 6)."""
    task = features.get("task")
    return task if isinstance(task, str) else ("query" if column == 0 else "document")


class MultiVectorEncoderColumns:
    """sentence-transformers 6.2's conventions (``multi_vector_encoder/losses``).

    The scoring mask is what the model's ``MultiVectorMask`` modules make of the tokenized column
    (ST 6 reads it from the model output; no other supported module changes ``attention_mask``),
    computed here on the full-width features so that padding-free cuts cannot change it."""

    name = "multi_vector_encoder"
    gathered_loss_times_world = False  # ST 6 does not scale it

    def embed(self, model, features: dict, column: int, packed: bool) -> mx.array:
        # packed rows leave padded positions exactly 0; modules.Normalize has a zero gradient there
        with padding.packed_sequences(model, packed):
            return model(features, task=column_task(features, column))["token_embeddings"]

    def masks(self, model, sentence_features: list[dict]) -> list[mx.array]:
        from ..modules import MultiVectorMask

        masks = []
        for column, features in enumerate(sentence_features):
            out, task = dict(features), column_task(features, column)
            for module in model:
                if isinstance(module, MultiVectorMask):
                    out = module(out, task=task)
            masks.append(out["attention_mask"].astype(mx.bool_))
        return masks

    def trims(self, model, column: int, padding_free: bool) -> bool:
        # expansion positions carry attention 0 yet are scored: such queries keep their width
        return padding_free and (column > 0 or getattr(model.transformer, "query_expansion", None) is None)

    def query_mask(self, model, mask: mx.array):
        return mask


PYLATE = PyLateColumns()
MULTI_VECTOR_ENCODER = MultiVectorEncoderColumns()


class RowChunks:
    """``base``, with document columns embedded in row chunks of ``mini_batch_size``, each cut to its
    own longest real row (ST 6's ``mini_batch_size`` on its uncached losses). Rows never interact,
    so the values are those of one forward; only the padding computed shrinks."""

    def __init__(self, base, mini_batch_size: int | None):
        if mini_batch_size is not None and mini_batch_size < 1:
            raise ValueError(f"mini_batch_size must be a positive integer or None, got {mini_batch_size}.")
        self.base, self.mini_batch_size = base, mini_batch_size

    def __getattr__(self, name):
        return getattr(self.base, name)

    def embed(self, model, features: dict, column: int, packed: bool) -> mx.array:
        rows, step = features["input_ids"].shape[0], self.mini_batch_size
        if column == 0 or step is None or rows <= step:
            return self.base.embed(model, features, column, packed)
        chunks = []
        for begin in range(0, rows, step):
            chunk = {k: v[begin : begin + step] if isinstance(v, mx.array) else v for k, v in features.items()}
            if packed:
                chunk = padding.trim(chunk, padding.trimmed_width(chunk))
            chunks.append(self.base.embed(model, chunk, column, packed))
        width = max(c.shape[1] for c in chunks)
        return mx.concatenate([padding.pad_to(c, width) for c in chunks], axis=0)


def merge_document_columns(columns: list[dict]) -> dict:
    """N document columns (B rows each) -> one column of B * N rows, row b's j-th document at
    ``b * N + j`` (the flattened layout of PyLate's list-valued column); widths zero-padded to the
    widest (padding carries attention 0). Non-array entries (the ``task``) come from the first."""
    keys = [k for k, v in columns[0].items() if isinstance(v, mx.array)]
    if any(set(k for k, v in c.items() if isinstance(v, mx.array)) != set(keys) for c in columns[1:]):
        raise ValueError("The document columns were tokenized into different features; tokenize them alike.")
    merged = {k: v for k, v in columns[0].items() if not isinstance(v, mx.array)}
    for key in keys:
        values = [c[key] for c in columns]
        if values[0].ndim == 1:
            merged[key] = mx.stack(values, axis=1).reshape(-1)
            continue
        width = max(v.shape[1] for v in values)
        values = [padding.pad_to(v, width) for v in values]
        merged[key] = mx.stack(values, axis=1).reshape(-1, width, *values[0].shape[2:])
    return merged


# --- ST 6's scoring functions (multi_vector_encoder.scoring) on the one MaxSim (scores.maxsim) ---
def colbert_scores(queries_embeddings, documents_embeddings, queries_mask=None, documents_mask=None,
                   chunk_elements=None, length_normalize: bool = False) -> mx.array:
    """(Q, Lq, H) x (D, N, Ld, H) -> (Q, D * N), query-major: column ``j * N + n`` is group j's n-th document."""
    docs = scores.to_array(documents_embeddings)
    groups, n_docs, width, dim = docs.shape
    flat_mask = None if documents_mask is None else scores.to_array(documents_mask).reshape(groups * n_docs, width)
    return scores.maxsim(queries_embeddings, docs.reshape(groups * n_docs, width, dim), queries_mask, flat_mask,
                         length_normalize=length_normalize)


def colbert_scores_pairwise(queries_embeddings, documents_embeddings, queries_mask=None, documents_mask=None,
                            chunk_elements=None, length_normalize: bool = False) -> mx.array:
    """(B, Lq, H) x (B, Ld, H) -> (B,): query i against document i."""
    return scores.maxsim_pairwise(queries_embeddings, documents_embeddings, queries_mask, documents_mask,
                                  length_normalize=length_normalize)


def colbert_kd_scores(queries_embeddings, documents_embeddings, queries_mask=None, documents_mask=None,
                      chunk_elements=None, length_normalize: bool = False) -> mx.array:
    """(B, Lq, H) x (B, N, Ld, H) -> (B, N): each query against its own N documents."""
    docs = scores.to_array(documents_embeddings)
    masks = None if documents_mask is None else scores.to_array(documents_mask)
    return mx.stack([
        scores.maxsim_pairwise(queries_embeddings, docs[:, j], queries_mask, None if masks is None else masks[:, j],
                               length_normalize=length_normalize)
        for j in range(docs.shape[1])
    ], axis=1)


def mean_colbert_scores(*args, length_normalize: bool = True, **kwargs) -> mx.array:
    return colbert_scores(*args, length_normalize=length_normalize, **kwargs)


def mean_colbert_scores_pairwise(*args, length_normalize: bool = True, **kwargs) -> mx.array:
    return colbert_scores_pairwise(*args, length_normalize=length_normalize, **kwargs)


def mean_colbert_kd_scores(*args, length_normalize: bool = True, **kwargs) -> mx.array:
    return colbert_kd_scores(*args, length_normalize=length_normalize, **kwargs)

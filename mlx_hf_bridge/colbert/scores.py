"""PyLate's MaxSim scores in MLX, with PyLate's *multiplicative* masking.

A masked similarity becomes 0 (not -inf), so a document with any masked position scores
``max(0, best real similarity)`` per query token — exactly what PyLate computes.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np

from .. import kernels


def to_array(x) -> mx.array:
    """Lists of equal-length arrays are stacked, like PyLate's ``convert_to_tensor``."""
    if isinstance(x, mx.array):
        return x
    if isinstance(x, (list, tuple)):
        if len(x) and not isinstance(x[0], (int, float)):
            return mx.stack([to_array(e) for e in x])
        return mx.array(np.asarray(x))
    if hasattr(x, "detach"):  # a torch tensor passed by a user script
        x = x.detach().cpu().float().numpy()
    return mx.array(np.asarray(x))


def colbert_scores(queries_embeddings, documents_embeddings, queries_mask=None, documents_mask=None, backend=None):
    """(A, Lq, H) x (B, Ld, H) -> (A, B): sum over query tokens of the max over document tokens."""
    q = to_array(queries_embeddings)
    d = to_array(documents_embeddings)
    if q.ndim == 2:
        q = q[None]
    if d.ndim == 2:
        d = d[None]
    queries_mask = None if queries_mask is None else to_array(queries_mask)
    documents_mask = None if documents_mask is None else to_array(documents_mask)
    return token_maxima(q, d, queries_mask, documents_mask).sum(axis=-1)


def token_maxima(q, d, queries_mask=None, documents_mask=None, exclude_masked_documents: bool = False):
    """(A, Lq, H) x (B, Ld, H) -> (A, B, Lq): each query token's best document-token similarity, the
    MaxSim core of both libraries. PyLate (the default) multiplies masked similarities by 0 (the CPU
    kernel computes exactly that); ST 6 (``exclude_masked_documents``) leaves masked document tokens
    out of the max. Masked query tokens give 0 either way."""
    if not exclude_masked_documents:
        maxima = kernels.maxsim(q, d, queries_mask, documents_mask)  # (A, Lq, B): the CPU kernel
        if maxima is not None:
            return maxima.transpose(0, 2, 1)
    sims = mx.einsum("ash,bth->abst", q, d)
    if queries_mask is not None:
        sims = sims * queries_mask.astype(sims.dtype)[:, None, :, None]
    if documents_mask is not None:
        if exclude_masked_documents:
            sims = mx.where(documents_mask.astype(mx.bool_)[None, :, None, :], sims, mx.finfo(sims.dtype).min)
        else:
            sims = sims * documents_mask.astype(sims.dtype)[None, :, None, :]
    return sims.max(axis=-1)


def colbert_scores_pairwise(queries_embeddings, documents_embeddings, backend=None):
    """Score query i against document i only (no masks), like PyLate's pairwise loop."""
    scores = []
    for q, d in zip(queries_embeddings, documents_embeddings):
        q, d = to_array(q), to_array(d)
        scores.append((q @ d.T).max(axis=-1).sum())
    return mx.stack(scores)


def colbert_kd_scores(queries_embeddings, documents_embeddings, queries_mask=None, documents_mask=None, backend=None):
    """(B, Lq, H) x (B, K, Ld, H) -> (B, K): each query against its own K documents."""
    q = to_array(queries_embeddings)
    d = to_array(documents_embeddings)
    sims = mx.einsum("bsh,bkth->bkst", q, d)
    if queries_mask is not None:
        sims = sims * to_array(queries_mask).astype(sims.dtype)[:, None, :, None]
    if documents_mask is not None:
        sims = sims * to_array(documents_mask).astype(sims.dtype)[:, :, None, :]
    return sims.max(axis=-1).sum(axis=-1)


class ColBERTScores:
    """(A, Lq, H) x (B, N, Ld, H) -> (A, B*N) in PyLate's query-major order: column ``b*N + j``."""

    def __call__(self, queries_embeddings, documents_embeddings, queries_mask=None, documents_mask=None):
        d = to_array(documents_embeddings)
        B, N, Ld, H = d.shape
        flat_mask = None if documents_mask is None else to_array(documents_mask).reshape(B * N, Ld)
        return colbert_scores(queries_embeddings, d.reshape(B * N, Ld, H), queries_mask, flat_mask)


def skiplist_mask(input_ids, skiplist) -> mx.array:
    """False where the token id is in ``skiplist`` (documents' punctuation)."""
    ids = to_array(input_ids)
    mask = mx.ones(ids.shape, dtype=mx.bool_)
    for token_id in set(skiplist):
        mask = mask & (ids != token_id)
    return mask


# --- sentence-transformers 6's MaxSim (util.similarity.maxsim) ------------------------------------
# ST 6 masks differently from PyLate: a masked document token is excluded from the max (filled with
# the dtype minimum, not multiplied by 0), and a document with no token left scores EMPTY_DOCUMENT_SCORE.
EMPTY_DOCUMENT_SCORE = -1e9


def _multi_vector_side(embeddings, mask):
    """One side of an ST 6 scoring call -> (B, T, H) array and its (B, T) mask or None.

    A list of (n_i, H) items is zero-padded with a length mask, a bare 2D input is one item, a 3D
    input without a mask is masked by its all-zero rows (ST 6's ``_zero_row_mask``)."""
    if isinstance(mask, (list, tuple)):
        rows = [np.asarray(to_array(m)) for m in mask]
        width = max((len(r) for r in rows), default=0)
        mask = mx.array(np.stack([np.pad(r, (0, width - len(r))) for r in rows]))
    elif mask is not None:
        mask = to_array(mask)
    if isinstance(embeddings, (list, tuple)):
        items = [to_array(e).astype(mx.float32) for e in embeddings]
        lengths = [int(e.shape[0]) for e in items]
        width, dim = max(lengths, default=0), next((int(e.shape[-1]) for e in items if e.shape[0]), 1)
        padded = mx.stack([mx.pad(e.reshape(-1, dim), [(0, width - n), (0, 0)]) for e, n in zip(items, lengths)])
        if mask is None:
            mask = mx.arange(width)[None, :] < mx.array(lengths)[:, None]
        return padded, mask
    x = to_array(embeddings)
    if not mx.issubdtype(x.dtype, mx.floating):
        x = x.astype(mx.float32)
    if x.ndim == 2:
        x = x[None]
        mask = mask[None] if mask is not None and mask.ndim == 1 else mask
    if mask is None:
        mask = mx.any(x != 0, axis=-1)
    return x, mask


def _fit_width(mask, width: int, name: str):
    if mask.shape[-1] != width:
        raise ValueError(f"`{name}` covers {mask.shape[-1]} tokens, but the padded embeddings have {width}.")
    return mask


def _query_counts(a_mask):
    return mx.maximum(a_mask.astype(mx.bool_).sum(axis=-1), 1).astype(mx.float32)


def maxsim(a, b, a_mask=None, b_mask=None, length_normalize: bool = False, **_ignored):
    """ST 6's ``maxsim``: (A, B) scores, sum over query tokens of the max over document tokens."""
    a, a_mask = _multi_vector_side(a, a_mask)
    b, b_mask = _multi_vector_side(b, b_mask)
    if a.shape[0] == 0 or b.shape[0] == 0:
        return mx.zeros((a.shape[0], b.shape[0]), dtype=mx.float32)
    a_mask = _fit_width(a_mask, a.shape[1], "a_mask")
    b_mask = _fit_width(b_mask, b.shape[1], "b_mask").astype(mx.bool_)
    if b.shape[1] == 0:
        return mx.full((a.shape[0], b.shape[0]), EMPTY_DOCUMENT_SCORE, dtype=mx.float32)
    best = token_maxima(a, b, a_mask.astype(mx.float32), b_mask, exclude_masked_documents=True)
    scores = mx.where(mx.any(b_mask, axis=-1)[None, :], best.astype(mx.float32).sum(axis=-1), EMPTY_DOCUMENT_SCORE)
    return scores / _query_counts(a_mask)[:, None] if length_normalize else scores


def maxsim_pairwise(a, b, a_mask=None, b_mask=None, length_normalize: bool = False, **_ignored):
    """ST 6's ``maxsim_pairwise``: (B,) scores of query i against document i."""
    a, a_mask = _multi_vector_side(a, a_mask)
    b, b_mask = _multi_vector_side(b, b_mask)
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"`a` and `b` must hold the same number of items to score as pairs, got {a.shape[0]} and {b.shape[0]}."
        )
    if a.shape[0] == 0:
        return mx.zeros((0,), dtype=mx.float32)
    a_mask = _fit_width(a_mask, a.shape[1], "a_mask")
    b_mask = _fit_width(b_mask, b.shape[1], "b_mask").astype(mx.bool_)
    if b.shape[1] == 0:
        return mx.full((a.shape[0],), EMPTY_DOCUMENT_SCORE, dtype=mx.float32)
    sims = mx.einsum("bsh,bth->bst", a, b)
    sims = mx.where(b_mask[:, None, :], sims, mx.finfo(sims.dtype).min)
    best = sims.max(axis=-1).astype(mx.float32) * a_mask.astype(mx.float32)
    scores = mx.where(mx.any(b_mask, axis=-1), best.sum(axis=-1), EMPTY_DOCUMENT_SCORE)
    return scores / _query_counts(a_mask) if length_normalize else scores


def mean_maxsim(a, b, a_mask=None, b_mask=None, length_normalize: bool = True, **kwargs):
    return maxsim(a, b, a_mask, b_mask, length_normalize=length_normalize, **kwargs)


def mean_maxsim_pairwise(a, b, a_mask=None, b_mask=None, length_normalize: bool = True, **kwargs):
    return maxsim_pairwise(a, b, a_mask, b_mask, length_normalize=length_normalize, **kwargs)

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
    maxima = kernels.maxsim(q, d, queries_mask, documents_mask)  # (A, Lq, B): the CPU kernel
    if maxima is not None:
        return maxima.sum(axis=1)
    sims = mx.einsum("ash,bth->abst", q, d)
    if queries_mask is not None:
        sims = sims * queries_mask.astype(sims.dtype)[:, None, :, None]
    if documents_mask is not None:
        sims = sims * documents_mask.astype(sims.dtype)[None, :, None, :]
    return sims.max(axis=-1).sum(axis=-1)


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

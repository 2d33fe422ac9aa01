"""PyLate 1.6's XTR (``pylate.scores.xtr``, ``pylate.rank.score_xtr``) in MLX / numpy.

PyLate's training-time XTR differs from sentence-transformers 6.2's (:mod:`.xtr`), and the bridge
reproduces each library's own rule:

* only an explicit ``documents_mask`` masks document tokens (to the dtype minimum); there is no
  "all-zero row is padding" fallback;
* after the global top-``k`` over all ``Q*N`` in-batch document tokens, PyLate multiplies the
  similarities by the retrieved mask, so a token that was not retrieved counts as 0 in the max over
  a document's tokens: a document's per-token score is ``max(0, best retrieved)`` unless every one of
  its tokens was retrieved (then it may be negative), and a retrieved masked token keeps the dtype
  minimum;
* ``Z`` counts the query tokens whose per-document score is > 0, clamped to 1e-3 (not 1).
``k`` larger than the pooled token count is refused (torch's ``topk`` raises there too).
Ties at the k-th value: as in :mod:`.xtr`, the lowest flat index is kept (torch's CPU order is
implementation-defined).
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np

from .xtr import _first_max, _floating, _retrieved
from .scores import to_array


def pylate_xtr_scores(queries_embeddings, documents_embeddings, queries_mask=None, documents_mask=None,
                      k: int = 256) -> mx.array:
    """(Q, Lq, H) x (D, N, Ld, H) -> (Q, D*N) float32, query-major (query i's positive at column i*N)."""
    q = _floating(queries_embeddings)
    docs = _floating(documents_embeddings)
    n_queries, q_tokens, dim = q.shape
    groups, n_docs, d_tokens, _ = docs.shape
    n_flat = groups * n_docs
    pool = n_flat * d_tokens
    if isinstance(k, bool) or int(k) != k or not 0 < k <= pool:
        raise ValueError(
            f"XTRScores: k={k!r} must be a positive integer no larger than the in-batch document tokens "
            f"({n_flat} documents x {d_tokens} tokens = {pool}); lower k (PyLate's torch.topk fails here too).")
    sims = mx.einsum("qsh,dth->qsdt", q, docs.reshape(n_flat, d_tokens, dim))
    if documents_mask is not None:
        keep = to_array(documents_mask).reshape(n_flat, d_tokens).astype(mx.bool_)
        sims = mx.where(keep[None, None], sims, mx.finfo(sims.dtype).min)
    clubbed = sims.reshape(n_queries, q_tokens, pool)
    used = mx.ones((n_queries, q_tokens), dtype=mx.bool_) if queries_mask is None else (
        to_array(queries_mask).astype(mx.bool_))
    retrieved = _retrieved(clubbed, int(k), used)
    masked = (clubbed * retrieved).reshape(n_queries, q_tokens, n_flat, d_tokens)
    token_scores = _first_max(masked)  # (Q, Lq, D*N)
    if queries_mask is not None:
        token_scores = token_scores * to_array(queries_mask).astype(token_scores.dtype)[:, :, None]
    z = mx.maximum((token_scores > 0).astype(mx.float32).sum(axis=1), 1e-3)
    return (token_scores.sum(axis=1) / z).astype(mx.float32)


def pylate_xtr_kd_scores(queries_embeddings, documents_embeddings, queries_mask=None, documents_mask=None,
                         k: int = 256) -> mx.array:
    """(Q, Lq, H) x (Q, N, Ld, H) -> (Q, N): the top-k over all Q*N documents, each query's own N kept."""
    docs = _floating(documents_embeddings)
    n_queries, n_docs = docs.shape[:2]
    scores = pylate_xtr_scores(queries_embeddings, docs, queries_mask, documents_mask, k=k)
    own = mx.arange(n_queries)[:, None] * n_docs + mx.arange(n_docs)[None, :]
    return mx.take_along_axis(scores, own, axis=1)


def score_xtr(query_doc_ids, query_scores, k: int) -> list[dict]:
    """PyLate's ``rank.score_xtr``: per document, the sum over query tokens of its best retrieved score,
    or that token's minimum retrieved score where none of its tokens was retrieved (min imputation);
    top ``k`` descending. Documents are numbered in first-seen order (ties keep it)."""
    if len(query_doc_ids) != len(query_scores):
        raise ValueError(
            "query_doc_ids and query_scores must have the same number of query tokens. "
            f"Got {len(query_doc_ids)} and {len(query_scores)}.")
    if not query_doc_ids:
        return []
    for q_idx, (ids, scores) in enumerate(zip(query_doc_ids, query_scores)):
        if len(ids) != len(scores):
            raise ValueError(
                "Each query token must have matching document IDs and scores lengths. "
                f"Token {q_idx} has {len(ids)} IDs and {len(scores)} scores.")
    numbering: dict = {}
    rows, cols, values = [], [], []
    for q_idx, (ids, scores) in enumerate(zip(query_doc_ids, query_scores)):
        for doc_id, score in zip(ids, scores):
            rows.append(numbering.setdefault(doc_id, len(numbering)))
            cols.append(q_idx)
            values.append(score)
    if not values:
        return []
    table = np.full((len(numbering), len(query_doc_ids)), -np.inf, dtype=np.float32)
    np.maximum.at(table, (np.array(rows), np.array(cols)), np.asarray(values, dtype=np.float32))
    imputed = np.array([min(s) if len(s) else 0.0 for s in query_scores], dtype=np.float32)
    table = np.where(np.isneginf(table), imputed[None, :], table)
    totals = table.sum(axis=1, dtype=np.float32)
    order = np.argsort(-totals, kind="stable")[: min(k, len(numbering))]
    names = list(numbering)
    return [{"id": names[i], "score": float(totals[i])} for i in order]

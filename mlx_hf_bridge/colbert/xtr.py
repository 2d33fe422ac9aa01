"""sentence-transformers 6.2's XTR scoring (``multi_vector_encoder.scoring.xtr``) in MLX.

XTR (Lee et al. 2023) scores like MaxSim, except that each query token first *retrieves* its
``top_k`` best matches among all in-batch document tokens, and a document is only scored on the
tokens that were retrieved:

* similarities of masked document tokens sit at the dtype minimum (never retrieved before a real one);
* per query token, the ``top_k`` best similarities over every document token of the batch are kept,
  the rest become the dtype minimum;
* a document's per-token score is its best retrieved similarity, 0 where none of its real tokens was
  retrieved (XTR's imputation); masked query tokens contribute nothing;
* the score is the sum over query tokens divided by Z, the number of query tokens that retrieved at
  least one real token of that document (clamped to 1); a document without any real token scores
  ``scores.EMPTY_DOCUMENT_SCORE``, below every real one.

The top-k is a selection, so gradients flow only into the retrieved similarities, as in torch.
Ties at the k-th value: torch's CPU ``topk`` picks among equal values in an implementation-defined
order (neither lowest nor highest index; CUDA differs again), so no rule reproduces it. The bridge
keeps the lowest flat (document, token) index among ties, and logs a warning once when such a tie
decides what is retrieved. Only exactly equal similarities tie: duplicate texts in one batch (which
``BatchSamplers.NO_DUPLICATES`` prevents) or quantised embeddings.
"""

from __future__ import annotations

import logging

import mlx.core as mx

from .scores import EMPTY_DOCUMENT_SCORE, to_array

logger = logging.getLogger(__name__)
_warned_ties = False


def _check_top_k(top_k) -> int:
    if isinstance(top_k, bool) or top_k <= 0 or int(top_k) != top_k:  # ST 6.2's check and message
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}.")
    return int(top_k)


def _floating(x) -> mx.array:
    x = to_array(x)
    return x if mx.issubdtype(x.dtype, mx.floating) else x.astype(mx.float32)


def _retrieved(clubbed: mx.array, k: int, rows_used: mx.array) -> mx.array:
    """(Q, Lq, P) -> bool (Q, Lq, P): the top ``k`` entries of each row, the lowest index first among
    ties. ``rows_used`` (Q, Lq): the unmasked query tokens (ties elsewhere cannot matter)."""
    values = mx.stop_gradient(clubbed)
    kth = mx.topk(values, k, axis=-1).min(axis=-1, keepdims=True)
    above = values > kth
    at_kth = values == kth
    room = k - above.sum(axis=-1, keepdims=True)  # how many of the tied entries fit
    keep_tied = at_kth & (mx.cumsum(at_kth.astype(mx.int32), axis=-1) <= room)
    _warn_if_ties_decide(at_kth, room, kth, clubbed.dtype, rows_used)
    return above | keep_tied


def _warn_if_ties_decide(at_kth, room, kth, dtype, rows_used) -> None:
    global _warned_ties
    if _warned_ties:
        return
    # a tie among masked (dtype-minimum) entries retrieves nothing real, so it cannot matter
    deciding = (at_kth.sum(axis=-1, keepdims=True) > room) & (kth > mx.finfo(dtype).min) & rows_used[..., None]
    try:
        ties = bool(mx.any(deciding))
    except (ValueError, RuntimeError):  # inside mx.compile nothing can be read: no warning there
        return
    if ties:
        _warned_ties = True
        logger.warning(
            "XTR scoring: equal similarities straddle the top_k boundary, so which of them are retrieved is a "
            "tie. The bridge keeps the lowest (document, token) index; torch's topk breaks such ties in an "
            "implementation-defined order, so scores can differ from sentence-transformers on these rows. Such "
            "ties come from duplicate texts in a batch (use batch_sampler=BatchSamplers.NO_DUPLICATES) or "
            "quantised embeddings."
        )


def _first_max(x: mx.array) -> mx.array:
    """``x.max(-1)`` whose gradient goes to the first maximal entry only, as torch's ``max(dim)`` (MLX's
    ``max`` splits it among equal entries)."""
    first = mx.argmax(mx.stop_gradient(x), axis=-1, keepdims=True)
    return mx.take_along_axis(x, first, axis=-1).squeeze(-1)


def xtr_scores(queries_embeddings, documents_embeddings, queries_mask=None, documents_mask=None,
               top_k: int = 256, chunk_elements: int | None = None) -> mx.array:
    """(Q, Lq, H) x (D, N, Ld, H) -> (Q, D * N) float32, query-major (column ``j * N + n``).

    ``chunk_elements`` is accepted for ST's signature: it only bounds torch's transient matmul memory,
    the scores are the same."""
    top_k = _check_top_k(top_k)
    q = _floating(queries_embeddings)
    docs = _floating(documents_embeddings)
    n_queries, q_tokens, dim = q.shape
    groups, n_docs, d_tokens, _ = docs.shape
    n_flat = groups * n_docs
    docs = docs.reshape(n_flat, d_tokens, dim)
    # ST 6's fallback: all-zero rows are padding (on both sides)
    doc_mask = mx.any(docs != 0, axis=-1) if documents_mask is None else (
        to_array(documents_mask).reshape(n_flat, d_tokens).astype(mx.bool_))
    query_mask = mx.any(q != 0, axis=-1) if queries_mask is None else to_array(queries_mask).astype(mx.bool_)

    sims = mx.einsum("qsh,dth->qsdt", q, docs)  # in the input dtype, like torch's matmul
    lowest = mx.finfo(sims.dtype).min
    sims = mx.where(doc_mask[None, None], sims, lowest)
    clubbed = sims.reshape(n_queries, q_tokens, n_flat * d_tokens)
    retrieved = _retrieved(clubbed, min(top_k, n_flat * d_tokens), query_mask)
    kept = mx.where(retrieved, clubbed, lowest).reshape(n_queries, q_tokens, n_flat, d_tokens)

    real_retrieved = retrieved.reshape(kept.shape) & doc_mask[None, None]
    alpha = mx.any(real_retrieved, axis=-1) & query_mask[:, :, None]  # (Q, Lq, D*N)
    token_scores = mx.where(alpha, _first_max(kept).astype(mx.float32), 0.0)
    z = mx.maximum(alpha.astype(mx.float32).sum(axis=1), 1.0)
    result = token_scores.sum(axis=1) / z
    return mx.where(mx.any(doc_mask, axis=-1)[None, :], result, EMPTY_DOCUMENT_SCORE)


def xtr_kd_scores(queries_embeddings, documents_embeddings, queries_mask=None, documents_mask=None,
                  top_k: int = 256, chunk_elements: int | None = None) -> mx.array:
    """(Q, Lq, H) x (Q, N, Ld, H) -> (Q, N): the top-k still runs over all Q * N documents, then each
    query keeps the scores of its own N."""
    docs = _floating(documents_embeddings)
    n_queries, n_docs = docs.shape[:2]
    scores = xtr_scores(queries_embeddings, docs, queries_mask, documents_mask, top_k=top_k)
    own = mx.arange(n_queries)[:, None] * n_docs + mx.arange(n_docs)[None, :]
    return mx.take_along_axis(scores, own, axis=1)


def xtr_scores_pairwise(queries_embeddings, documents_embeddings, queries_mask=None, documents_mask=None,
                        top_k: int = 256, chunk_elements: int | None = None) -> mx.array:
    """(B, Lq, H) x (B, Ld, H) -> (B,): query i against document i, the top-k over the batch's documents
    (so a pair's score depends on the rest of the batch once top_k is below the pooled token count)."""
    docs = _floating(documents_embeddings)
    if docs.ndim == 3:
        docs = docs[:, None]
    if documents_mask is not None:
        documents_mask = to_array(documents_mask)
        if documents_mask.ndim == 2:
            documents_mask = documents_mask[:, None]
    return xtr_kd_scores(queries_embeddings, docs, queries_mask, documents_mask, top_k=top_k)[:, 0]


class XTRScores:
    """:func:`xtr_scores` with ``top_k`` / ``chunk_elements`` bound, for a loss's ``similarity_fct``."""

    def __init__(self, top_k: int = 256, *, chunk_elements: int | None = None) -> None:
        self.top_k = top_k
        self.chunk_elements = chunk_elements

    def get_config_dict(self) -> dict:
        return {"top_k": self.top_k, "chunk_elements": self.chunk_elements}

    def __call__(self, queries_embeddings, documents_embeddings, queries_mask=None, documents_mask=None):
        return xtr_scores(queries_embeddings, documents_embeddings, queries_mask, documents_mask,
                          top_k=self.top_k, chunk_elements=self.chunk_elements)


class XTRKDScores(XTRScores):
    """:func:`xtr_kd_scores` with its settings bound ((Q, N) output, for ``MultiVectorDistillKLDivLoss``)."""

    def __call__(self, queries_embeddings, documents_embeddings, queries_mask=None, documents_mask=None):
        return xtr_kd_scores(queries_embeddings, documents_embeddings, queries_mask, documents_mask,
                             top_k=self.top_k, chunk_elements=self.chunk_elements)

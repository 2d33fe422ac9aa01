"""sentence-transformers' ``util.semantic_search`` on MLX: the ``top_k`` corpus entries per query, scored
in query x corpus chunks."""

from __future__ import annotations

from typing import Callable

import numpy as np

from .similarity import cos_sim, dot_score, normalize_embeddings


def semantic_search(query_embeddings, corpus_embeddings, query_chunk_size: int = 100,
                    corpus_chunk_size: int = 500000, top_k: int = 10,
                    score_function: Callable = cos_sim) -> list[list[dict[str, int | float]]]:
    """For each query, ``[{"corpus_id": j, "score": s}, ...]``: its ``top_k`` corpus entries by
    ``score_function`` (default cosine), highest first. Like ST, cosine scores come from the dot
    product of normalised chunks (the same values). Equal scores are ordered by ascending corpus id
    (ST's order there follows its heap and torch's topk, not a documented rule).

    >>> semantic_search([[1.0, 0.0]], [[0.0, 1.0], [1.0, 0.1], [1.0, 1.0]], top_k=2)[0][0]["corpus_id"]
    1
    """
    if top_k < 1:
        raise ValueError(f"top_k must be a positive number of corpus entries per query, got {top_k}.")
    queries = normalize_embeddings(query_embeddings) if score_function is cos_sim else query_embeddings
    queries = np.asarray(queries, dtype=np.float32)
    queries = queries[None] if queries.ndim == 1 else queries
    corpus = np.asarray(corpus_embeddings, dtype=np.float32)
    if corpus.ndim != 2 or queries.ndim != 2:
        raise ValueError(
            f"semantic_search needs 2D query and corpus embeddings (n, dim); got {queries.shape} and {corpus.shape}."
        )
    best_scores = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_ids = np.zeros((len(queries), 0), dtype=np.int64)
    for start in range(0, len(corpus), corpus_chunk_size):
        chunk = corpus[start:start + corpus_chunk_size]
        if score_function is cos_sim:
            chunk = np.asarray(normalize_embeddings(chunk))
        rows = []
        for q_start in range(0, len(queries), query_chunk_size):
            q_chunk = queries[q_start:q_start + query_chunk_size]
            fn = dot_score if score_function is cos_sim else score_function
            rows.append(np.asarray(fn(q_chunk, chunk), dtype=np.float32))
        scores = np.concatenate(rows)
        best_scores = np.concatenate([best_scores, scores], axis=1)
        best_ids = np.concatenate([best_ids, np.broadcast_to(np.arange(start, start + len(chunk)), scores.shape)], axis=1)
        # keep top_k per query: by score, then corpus id (a stable sort of ids already ascending)
        order = np.argsort(-best_scores, axis=1, kind="stable")[:, :top_k]
        best_scores = np.take_along_axis(best_scores, order, axis=1)
        best_ids = np.take_along_axis(best_ids, order, axis=1)
    return [[{"corpus_id": int(j), "score": float(s)} for j, s in zip(ids, scores)]
            for ids, scores in zip(best_ids, best_scores)]


def information_retrieval(*args, **kwargs) -> list[list[dict[str, int | float]]]:
    """Deprecated alias of :func:`semantic_search` (ST's)."""
    return semantic_search(*args, **kwargs)

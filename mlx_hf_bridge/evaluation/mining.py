"""sentence-transformers' ``util.paraphrase_mining`` / ``paraphrase_mining_embeddings`` on MLX.

Both releases' candidate rules: ST 5.3 takes each (query chunk, corpus chunk)'s top ``top_k + 1``
into a priority queue capped at ``max_pairs`` (a pair keeps the lower of its two scores when both
directions enter); ST 6.2 keeps each query's ``top_k`` neighbours over all corpus chunks and each
pair once, with the score of its first direction. Ties inside a top-k cut are broken by index
(torch leaves that order unspecified).
"""

from __future__ import annotations

import heapq

import numpy as np

from ..dense.similarity import cos_sim
from .base import as_numpy, st6


def _top(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the ``k`` largest scores (descending; ties by index) and their column indices."""
    k = min(k, scores.shape[1])
    idx = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, idx, axis=1), idx


def paraphrase_mining(
    model,
    sentences: list[str],
    show_progress_bar: bool = False,
    batch_size: int = 32,
    query_chunk_size: int = 5000,
    corpus_chunk_size: int = 100000,
    max_pairs: int = 500000,
    top_k: int = 100,
    score_function=cos_sim,
    truncate_dim: int | None = None,
    prompt_name: str | None = None,
    prompt: str | None = None,
) -> list[list[float | int]]:
    """``[[score, i, j], ...]`` (i < j), highest score first, for the most similar pairs of ``sentences``."""
    embeddings = model.encode(
        sentences,
        show_progress_bar=show_progress_bar,
        batch_size=batch_size,
        convert_to_tensor=True,
        truncate_dim=truncate_dim,
        prompt_name=prompt_name,
        prompt=prompt,
    )
    return paraphrase_mining_embeddings(
        embeddings, query_chunk_size=query_chunk_size, corpus_chunk_size=corpus_chunk_size,
        max_pairs=max_pairs, top_k=top_k, score_function=score_function,
    )


def paraphrase_mining_embeddings(
    embeddings,
    query_chunk_size: int = 5000,
    corpus_chunk_size: int = 100000,
    max_pairs: int = 500000,
    top_k: int = 100,
    score_function=cos_sim,
) -> list[list[float | int]]:
    if st6():
        return _mine_st6(embeddings, query_chunk_size, corpus_chunk_size, max_pairs, top_k, score_function)
    return _mine_st5(embeddings, query_chunk_size, corpus_chunk_size, max_pairs, top_k, score_function)


def _mine_st5(embeddings, query_chunk_size, corpus_chunk_size, max_pairs, top_k, score_function):
    top_k += 1  # a sentence is most similar to itself
    pairs: list[tuple] = []  # ST's queue.PriorityQueue: a min-heap of (score, i, j)
    min_score, num_added, n = -1, 0, len(embeddings)
    for corpus_start_idx in range(0, n, corpus_chunk_size):
        for query_start_idx in range(0, n, query_chunk_size):
            scores = as_numpy(score_function(
                embeddings[query_start_idx : query_start_idx + query_chunk_size],
                embeddings[corpus_start_idx : corpus_start_idx + corpus_chunk_size],
            ))
            values, idx = _top(scores, top_k)
            for query_itr, (row_values, row_idx) in enumerate(zip(values.tolist(), idx.tolist())):
                i = query_start_idx + query_itr
                for score, corpus_itr in zip(row_values, row_idx):
                    j = corpus_start_idx + corpus_itr
                    if i != j and score > min_score:
                        heapq.heappush(pairs, (score, i, j))
                        num_added += 1
                        if num_added >= max_pairs:
                            min_score = heapq.heappop(pairs)[0]
    added_pairs, pairs_list = set(), []
    while pairs:
        score, i, j = heapq.heappop(pairs)
        sorted_i, sorted_j = sorted([i, j])
        if sorted_i != sorted_j and (sorted_i, sorted_j) not in added_pairs:
            added_pairs.add((sorted_i, sorted_j))
            pairs_list.append([score, sorted_i, sorted_j])
    return sorted(pairs_list, key=lambda x: x[0], reverse=True)


def _mine_st6(embeddings, query_chunk_size, corpus_chunk_size, max_pairs, top_k, score_function):
    pairs: list[tuple] = []  # min-heap of (score, i, j), i < j, at most max_pairs
    queued_pairs: set = set()
    min_score, n = float("-inf"), len(embeddings)
    for query_start_idx in range(0, n, query_chunk_size):
        query_embeddings = embeddings[query_start_idx : query_start_idx + query_chunk_size]
        best_values = best_idx = None  # each query's top_k + 1 over all corpus chunks
        for corpus_start_idx in range(0, n, corpus_chunk_size):
            scores = as_numpy(score_function(query_embeddings, embeddings[corpus_start_idx : corpus_start_idx + corpus_chunk_size]))
            values, idx = _top(scores, top_k + 1)
            idx = idx + corpus_start_idx
            if best_values is not None:
                values, idx = np.concatenate([best_values, values], axis=1), np.concatenate([best_idx, idx], axis=1)
                values, pos = _top(values, top_k + 1)
                idx = np.take_along_axis(idx, pos, axis=1)
            best_values, best_idx = values, idx
        for query_itr, (row_values, row_idx) in enumerate(zip(best_values.tolist(), best_idx.tolist())):
            i = query_start_idx + query_itr
            for j, score in [(j, s) for j, s in zip(row_idx, row_values) if i != j][:top_k]:
                if score <= min_score:
                    continue
                pair = (i, j) if i < j else (j, i)
                if pair in queued_pairs:
                    continue
                queued_pairs.add(pair)
                if len(pairs) < max_pairs:
                    heapq.heappush(pairs, (score, *pair))
                else:
                    evicted = heapq.heappushpop(pairs, (score, *pair))
                    queued_pairs.discard(evicted[1:])
                    min_score = evicted[0]
    return sorted(([score, i, j] for score, i, j in pairs), key=lambda x: x[0], reverse=True)

"""Retrieval metric math of sentence-transformers' ``InformationRetrievalEvaluator``, in numpy.

Each query's best ``k`` (score, corpus_id) pairs are kept across corpus chunks either with ST 5.3's
heap (``push_top_k``: ties in heap order; PyLate 1.6 uses it) or with ST 6.2's total order
``(-score, corpus_id)`` (``push_top_k_by_id``: ties to the smaller corpus_id, whatever the chunking);
``compute_metrics`` turns them into accuracy@k, precision@k, recall@k, MRR@k, nDCG@k (binary
relevance, ideal DCG over all relevant documents) and MAP@k (normalised by ``min(k, #relevant)``),
with ST's exact definitions and key layout (``tie_break_by_id`` sorts as ST 6.2 does).

>>> import mlx_hf_bridge
>>> results = [[{"corpus_id": "a", "score": 0.9}, {"corpus_id": "b", "score": 0.5}]]
>>> m = compute_metrics(results, ["q"], {"q": {"b"}}, accuracy_at_k=[1, 2], precision_recall_at_k=[1],
...                     mrr_at_k=[10], ndcg_at_k=[10], map_at_k=[100])
>>> m["accuracy@k"], float(m["mrr@k"][10]), round(float(m["ndcg@k"][10]), 4)
({1: 0.0, 2: 1.0}, 0.5, 0.6309)
"""

from __future__ import annotations

import heapq

import numpy as np

__all__ = [
    "compute_dcg_at_k", "compute_metrics", "corpus_id_ranks", "push_top_k", "push_top_k_by_id", "results_as_dicts",
]


def push_top_k(heaps: list[list], scores: np.ndarray, corpus_ids: list, offset: int, max_k: int) -> None:
    """Merge one corpus chunk's (n_queries, chunk) scores into the per-query min-heaps of size ``max_k``."""
    scores = np.asarray(scores, dtype=np.float32)
    k = min(max_k, scores.shape[1])
    if k <= 0:
        return
    if k < scores.shape[1]:
        top_idx = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        top_idx = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    top_values = np.take_along_axis(scores, top_idx, axis=1)
    for heap, idx_row, value_row in zip(heaps, top_idx.tolist(), top_values.tolist()):
        for sub_corpus_id, score in zip(idx_row, value_row):
            item = (score, corpus_ids[offset + sub_corpus_id])
            if len(heap) < max_k:
                heapq.heappush(heap, item)
            else:
                heapq.heappushpop(heap, item)


def corpus_id_ranks(corpus_ids: list) -> np.ndarray:
    """Position of each corpus entry in ascending ``corpus_ids`` order (ST 6.2's tie key)."""
    order = sorted(range(len(corpus_ids)), key=corpus_ids.__getitem__)
    ranks = np.empty(len(corpus_ids), dtype=np.int64)
    ranks[np.asarray(order, dtype=np.int64)] = np.arange(len(corpus_ids))
    return ranks


def push_top_k_by_id(
    hits: list[list], scores: np.ndarray, corpus_ids: list, ranks: np.ndarray, offset: int, max_k: int
) -> None:
    """ST 6.2: merge one chunk into each query's list of its best ``max_k`` under ``(-score, corpus_id)``.

    The chunk's own top ``min(max_k, chunk)`` is taken under the same order, so a score tied at the
    cut goes to the smaller corpus_id and the result does not depend on ``corpus_chunk_size``.
    """
    scores = np.asarray(scores, dtype=np.float32)
    k = min(max_k, scores.shape[1])
    if k <= 0:
        return
    chunk_ranks = ranks[offset : offset + scores.shape[1]]
    for query_hits, row in zip(hits, scores):
        threshold = np.partition(row, row.shape[0] - k)[row.shape[0] - k]
        candidates = np.flatnonzero(row >= threshold)
        if len(candidates) > k:  # ties at the cut: the smallest corpus_ids among them
            order = np.lexsort((chunk_ranks[candidates], -row[candidates]))
            candidates = candidates[order[:k]]
        query_hits.extend(zip(row[candidates].tolist(), [corpus_ids[offset + i] for i in candidates.tolist()]))
        query_hits.sort(key=lambda x: (-x[0], x[1]))
        del query_hits[max_k:]


def results_as_dicts(heaps: list[list]) -> list[list[dict]]:
    """ST's ``[{"corpus_id", "score"}]`` per query (heap order; ``compute_metrics`` sorts)."""
    return [[{"corpus_id": corpus_id, "score": score} for score, corpus_id in heap] for heap in heaps]


def compute_dcg_at_k(relevances, k: int) -> float:
    dcg = 0
    for i in range(min(len(relevances), k)):
        dcg += relevances[i] / np.log2(i + 2)
    return dcg


def compute_metrics(
    queries_result_list: list[list[dict]],
    queries_ids: list,
    relevant_docs: dict,
    accuracy_at_k=(1, 3, 5, 10),
    precision_recall_at_k=(1, 3, 5, 10),
    mrr_at_k=(10,),
    ndcg_at_k=(10,),
    map_at_k=(100,),
    tie_break_by_id: bool = False,
) -> dict[str, dict[int, float]]:
    """ST's ``InformationRetrievalEvaluator.compute_metrics`` for one score function (hits sorted by
    descending score: stable in ST 5.3, ties by ascending corpus_id in ST 6.2 ``tie_break_by_id``)."""
    num_hits_at_k = {k: 0 for k in accuracy_at_k}
    precisions_at_k = {k: [] for k in precision_recall_at_k}
    recall_at_k = {k: [] for k in precision_recall_at_k}
    MRR = {k: 0 for k in mrr_at_k}
    ndcg = {k: [] for k in ndcg_at_k}
    AveP_at_k = {k: [] for k in map_at_k}
    n_queries = len(queries_ids)

    for query_itr in range(len(queries_result_list)):
        query_id = queries_ids[query_itr]
        if tie_break_by_id:
            top_hits = sorted(queries_result_list[query_itr], key=lambda x: (-x["score"], x["corpus_id"]))
        else:
            top_hits = sorted(queries_result_list[query_itr], key=lambda x: x["score"], reverse=True)
        query_relevant_docs = relevant_docs[query_id]
        hits = [hit["corpus_id"] in query_relevant_docs for hit in top_hits]

        for k_val in accuracy_at_k:
            if any(hits[0:k_val]):
                num_hits_at_k[k_val] += 1
        for k_val in precision_recall_at_k:
            num_correct = sum(hits[0:k_val])
            precisions_at_k[k_val].append(num_correct / k_val)
            recall_at_k[k_val].append(num_correct / len(query_relevant_docs))
        for k_val in mrr_at_k:
            for rank, hit in enumerate(hits[0:k_val]):
                if hit:
                    MRR[k_val] += 1.0 / (rank + 1)
                    break
        for k_val in ndcg_at_k:
            predicted_relevance = [1 if hit else 0 for hit in hits[0:k_val]]
            true_relevances = [1] * len(query_relevant_docs)
            ndcg[k_val].append(
                compute_dcg_at_k(predicted_relevance, k_val) / compute_dcg_at_k(true_relevances, k_val)
            )
        for k_val in map_at_k:
            num_correct = 0
            sum_precisions = 0
            for rank, hit in enumerate(hits[0:k_val]):
                if hit:
                    num_correct += 1
                    sum_precisions += num_correct / (rank + 1)
            AveP_at_k[k_val].append(sum_precisions / min(k_val, len(query_relevant_docs)))

    for k in num_hits_at_k:
        num_hits_at_k[k] /= n_queries
    for k in precisions_at_k:
        precisions_at_k[k] = np.mean(precisions_at_k[k])
    for k in recall_at_k:
        recall_at_k[k] = np.mean(recall_at_k[k])
    for k in ndcg:
        ndcg[k] = np.mean(ndcg[k])
    for k in MRR:
        MRR[k] /= n_queries
    for k in AveP_at_k:
        AveP_at_k[k] = np.mean(AveP_at_k[k])

    return {
        "accuracy@k": num_hits_at_k,
        "precision@k": precisions_at_k,
        "recall@k": recall_at_k,
        "ndcg@k": ndcg,
        "mrr@k": MRR,
        "map@k": AveP_at_k,
    }

"""``pylate.rank.rerank``: exact MaxSim over each query's candidate documents."""

from __future__ import annotations

from typing import TypedDict

import mlx.core as mx
import numpy as np

from ..colbert.pylate_xtr import score_xtr as _score_xtr
from ..colbert.scores import colbert_scores


class RerankResult(TypedDict):
    id: str | int
    score: float


def _zero_pad(arrays) -> np.ndarray:
    arrays = [np.asarray(a, dtype=np.float32) for a in arrays]
    longest = max(a.shape[0] for a in arrays)
    return np.stack([np.pad(a, [(0, longest - a.shape[0]), (0, 0)]) for a in arrays])


def rerank(documents_ids, queries_embeddings, documents_embeddings, device=None) -> list[list[RerankResult]]:
    """For each query, score its candidates (zero-padded, as PyLate does) and sort descending."""
    results = []
    for query, ids, docs in zip(queries_embeddings, documents_ids, documents_embeddings):
        if len(ids) == 0:
            results.append([])
            continue
        query = np.asarray(query, dtype=np.float32)
        if query.ndim == 3:
            query = query[0]
        scores = np.array(colbert_scores(mx.array(query)[None], mx.array(_zero_pad(docs))))[0]
        order = np.argsort(-scores, kind="stable")
        results.append([{"id": ids[i], "score": float(scores[i])} for i in order])
    return results


def score_xtr(query_doc_ids, query_scores, k: int, device: str = "cpu") -> list[RerankResult]:
    """PyLate's XTR scoring of retrieved tokens (min imputation); see :func:`..colbert.pylate_xtr.score_xtr`."""
    return [RerankResult(**r) for r in _score_xtr(query_doc_ids, query_scores, k)]


__all__ = ["RerankResult", "rerank", "score_xtr"]

"""``pylate.indexes.PLAID`` with PyLate 1.6's constructor, folder and query interface, on MLX.

The search is :class:`mlx_hf_bridge.indexes.PlaidIndex` (no torch, no fast-plaid). Differences
from PyLate's fast-plaid backend, on purpose:
- ``store_embeddings=True`` (bridge option, default) keeps the float32 tokens memory-mapped and
  scores the ``n_full_scores`` candidates on them: returned scores are exact MaxSim scores. ``store_embeddings=False`` gives fast-plaid's decompressed scores and a ~8x smaller index.
- ``remove_documents`` really removes the tokens; re-adding an indexed id replaces it (fast-plaid
  would keep both and could return the id twice).
- ``use_fast=False`` (Stanford backend) uses the same MLX search; ``centroid_score_threshold``
  (a Stanford option) is honoured as centroid-interaction pruning.
- ``device``, ``use_triton``, ``num_threads``, ``low_memory`` and ``batch_size`` are accepted and
  have no effect (MLX picks its device).
"""

from __future__ import annotations

import logging
import os
import shutil

import numpy as np

from ...indexes import PlaidIndex, as_token_matrices
from ..rank import RerankResult
from .base import Base

logger = logging.getLogger(__name__)
_STANFORD_ONLY = ("embedding_size", "nranks", "index_bsize", "ndocs", "ncells", "search_batch_size")


class PLAID(Base):
    is_end_to_end_index = True

    def __init__(self, index_folder: str = "indexes", index_name: str = "colbert", override: bool = False,
                 use_fast: bool = True, nbits: int = 4, kmeans_niters: int = 4, max_points_per_centroid: int = 256,
                 n_samples_kmeans: int | None = None, seed: int = 42, use_triton: bool | None = None,
                 n_ivf_probe: int = 8, n_full_scores: int = 8192, batch_size: int = 1 << 18,
                 num_threads: int | None = None, show_progress: bool = True, device=None, low_memory: bool = False,
                 store_embeddings: bool = True, **kwargs) -> None:
        unknown = set(kwargs) - set(_STANFORD_ONLY) - {"centroid_score_threshold"}
        if unknown:
            raise TypeError(f"PLAID() got unexpected keyword arguments: {sorted(unknown)}")
        ignored = sorted(set(kwargs) & set(_STANFORD_ONLY))
        if ignored:
            logger.warning("PLAID on MLX ignores the Stanford PLAID parameters %s.", ", ".join(ignored))
        self.use_fast, self.show_progress, self.batch_size = use_fast, show_progress, batch_size
        self._warned_k = False
        self.index_folder, self.index_name = index_folder, index_name
        self.index_path = os.path.join(index_folder, index_name)
        if override and os.path.exists(self.index_path):
            shutil.rmtree(self.index_path)
        os.makedirs(self.index_path, exist_ok=True)
        self._index = PlaidIndex(os.path.join(self.index_path, "plaid_mlx"), nbits=nbits, kmeans_niters=kmeans_niters,
                                 max_points_per_centroid=max_points_per_centroid, n_samples_kmeans=n_samples_kmeans,
                                 seed=seed, n_ivf_probe=n_ivf_probe, n_full_scores=n_full_scores,
                                 centroid_score_threshold=kwargs.get("centroid_score_threshold"),
                                 store_embeddings=store_embeddings)

    @property
    def is_indexed(self) -> bool:
        return self._index.data is not None

    def add_documents(self, documents_ids, documents_embeddings, **kwargs) -> "PLAID":
        if isinstance(documents_ids, (str, int)):
            documents_ids = [documents_ids]
        self._index.add(list(documents_ids), documents_embeddings)
        return self

    def remove_documents(self, documents_ids) -> "PLAID":
        if isinstance(documents_ids, (str, int)):
            documents_ids = [documents_ids]
        self._index.remove(list(documents_ids))
        return self

    def update_documents(self, documents_ids, documents_embeddings) -> "PLAID":
        return self.add_documents(documents_ids, documents_embeddings)  # an indexed id is replaced

    def __call__(self, queries_embeddings, k: int = 10, subset=None) -> list[list[RerankResult]]:
        if self._index.n_documents == 0:
            raise ValueError("The index is empty. Please add documents before querying.")
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}.")
        queries = as_token_matrices(queries_embeddings, "queries_embeddings")
        dim = self._index.data.codec.dim
        bad = [i for i, q in enumerate(queries) if q.shape[1] != dim]
        if bad:
            raise ValueError(f"Query {bad[0]} has {queries[bad[0]].shape[1]}-dimensional token embeddings; "
                             f"the index holds {dim}-dimensional tokens (was it built with another model?).")
        if k > self._index.n_documents and not self._warned_k:
            self._warned_k = True  # once per index: PyLate's own tests ask k=30 of 2 documents
            logger.warning("k=%d is larger than the %d indexed documents: every document is returned.",
                           k, self._index.n_documents)
        subsets = self._subset_rows(subset, len(queries))
        ids = self._index.data.ids
        results = []
        for query, rows in zip(queries, subsets):
            found, scores = self._index.search(query, k, rows)
            results.append([RerankResult(id=ids[r], score=float(s)) for r, s in zip(found, scores)])
        return results

    def _subset_rows(self, subset, n_queries):
        if subset is None:
            return [None] * n_queries
        if len(subset) and isinstance(subset[0], (list, tuple)):
            if len(subset) != n_queries:
                raise ValueError(f"subset has {len(subset)} lists for {n_queries} queries.")
            return [self._index.rows_of(s) for s in subset]
        return [self._index.rows_of(subset)] * n_queries

    def get_documents_embeddings(self, document_ids):
        """Stored tokens of each id, per query group (``store_embeddings=True`` only)."""
        data = self._index.data
        if data is None or data.embeddings is None:
            raise NotImplementedError("This PLAID index keeps only compressed tokens (store_embeddings=False); "
                                      "build it with store_embeddings=True to read embeddings back.")
        rows = {i: r for r, i in enumerate(data.ids)}
        off = data.doc_offsets
        return [[np.asarray(data.embeddings[off[rows[i]]:off[rows[i] + 1]]) for i in group] for group in document_ids]

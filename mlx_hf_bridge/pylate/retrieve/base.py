"""PyLate 1.6's ``retrieve.base.BaseRetriever``: input handling, end-to-end short cut, batching."""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod

import numpy as np
import tqdm

from ...indexes import as_token_matrices
from ..utils import iter_batch

logger = logging.getLogger(__name__)


class BaseRetriever(ABC):
    default_k_token: int = 100
    default_batch_size: int = 50
    progress_desc: str = "Retrieving documents"

    def __init__(self, index) -> None:
        self.index = index

    def retrieve(self, queries_embeddings, k: int = 10, k_token: int | None = None, device: str | None = None,
                 batch_size: int | None = None, subset=None):
        """Ranked ``[{"id": ..., "score": ...}]`` per query; ``device`` is accepted and unused (MLX)."""
        k_token = self.default_k_token if k_token is None else k_token
        batch_size = self.default_batch_size if batch_size is None else batch_size
        if self.index.is_end_to_end_index:
            return self.index(queries_embeddings=queries_embeddings, k=k, subset=subset)
        self._validate_subset_token_path(subset)
        queries = as_token_matrices(queries_embeddings, "queries_embeddings")  # a 2-D input is one query
        if k > k_token:
            logger.warning(f"k ({k}) is greater than k_token ({k_token}), setting k_token to k.")
            k_token = k
        results = []
        for batch in tqdm.tqdm(iter_batch(queries, batch_size=batch_size, tqdm_bar=False),
                               desc=f"{self.progress_desc} (bs={batch_size})", disable=not self._show_progress(),
                               total=math.ceil(len(queries) / batch_size)):
            hits = self.index(queries_embeddings=batch, k=k_token)
            results.extend(self._score_batch(batch, hits, k=k, device=device))
        return results

    def _validate_subset_token_path(self, subset) -> None:
        """The ColBERT token path ignores ``subset`` as PyLate does; XTR refuses it."""

    def _show_progress(self) -> bool:
        return True

    @abstractmethod
    def _score_batch(self, batch_queries_embeddings: list[np.ndarray], hits: dict, *, k: int, device):
        ...

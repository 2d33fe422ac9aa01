"""``pylate.retrieve.ColBERT``: token-index hits re-ranked by exact MaxSim (PyLate's ``rank.rerank``)."""

from __future__ import annotations

from ..rank import rerank
from .base import BaseRetriever


class ColBERT(BaseRetriever):
    default_k_token = 100
    default_batch_size = 50
    progress_desc = "Retrieving documents"

    def _score_batch(self, batch_queries_embeddings, hits, *, k, device):
        # PyLate builds each candidate list from a set: the order of ties follows that set's order
        documents_ids = [list({d for token in query for d in token}) for query in hits["documents_ids"]]
        documents_embeddings = self.index.get_documents_embeddings(documents_ids)
        reranked = rerank(documents_ids=documents_ids, queries_embeddings=batch_queries_embeddings,
                          documents_embeddings=documents_embeddings, device=device)
        return [query_results[:k] for query_results in reranked]

"""``pylate.retrieve.XTR``: documents scored from their retrieved tokens only (PyLate's ``rank.score_xtr``)."""

from __future__ import annotations

from .base import BaseRetriever


class XTR(BaseRetriever):
    default_k_token = 10_000
    default_batch_size = 1
    progress_desc = "Retrieving documents (XTR)"

    def _validate_subset_token_path(self, subset) -> None:
        if subset is not None:
            raise NotImplementedError("Subset filtering is not implemented for XTR retrieval yet.")

    def _score_batch(self, batch_queries_embeddings, hits, *, k, device):
        try:
            from ..rank import score_xtr
        except ImportError as error:
            raise NotImplementedError("retrieve.XTR needs pylate.rank.score_xtr, which this mlx_hf_bridge "
                                      "version does not provide yet.") from error
        return [score_xtr(query_doc_ids=ids, query_scores=scores, k=k, device=device)
                for ids, scores in zip(hits["documents_ids"], hits["distances"])]

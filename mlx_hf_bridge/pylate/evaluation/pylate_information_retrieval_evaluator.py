"""``pylate.evaluation.PyLateInformationRetrievalEvaluator`` on MLX: the dense
``InformationRetrievalEvaluator`` (``evaluation/information_retrieval.py``) with ColBERT's encode calls."""

from __future__ import annotations

import logging

from ...evaluation.information_retrieval import InformationRetrievalEvaluator
from .base import SentenceEvaluator, _truncation, pad_sequence

logger = logging.getLogger(__name__)


class PyLateInformationRetrievalEvaluator(SentenceEvaluator, InformationRetrievalEvaluator):
    """sentence-transformers' ``InformationRetrievalEvaluator`` for ColBERT models (PyLate's subclass).

    Queries are encoded with ``is_query=True``, the corpus in chunks of ``corpus_chunk_size`` with
    ``is_query=False``; both are zero-padded and scored with ``model.similarity`` (MaxSim). Reports
    accuracy@k, precision@k, recall@k, nDCG@k, MRR@k and MAP@k under keys such as
    ``{name}_MaxSim_ndcg@10``; ``primary_metric`` is ``{name}_MaxSim_ndcg@{max(ndcg_at_k)}``; the CSV
    is ``Information-Retrieval_evaluation[_<name>]_results.csv`` with ST's columns
    (``MaxSim-Accuracy@1``, ...). PyLate 1.6 runs on ST 5.3, so ST 5.3's semantics apply whichever
    sentence-transformers is installed (score ties in heap order, the similarity resolved once).

    >>> from mlx_hf_bridge.pylate import evaluation, models           # doctest: +SKIP
    >>> evaluator = evaluation.PyLateInformationRetrievalEvaluator(
    ...     queries={"q1": "what is mlx?"}, corpus={"d1": "MLX is an array framework.", "d2": "Paris."},
    ...     relevant_docs={"q1": {"d1"}}, name="tiny")                 # doctest: +SKIP
    >>> evaluator(models.ColBERT("path/to/colbert"))["tiny_MaxSim_ndcg@10"]  # doctest: +SKIP
    1.0
    """

    def __init__(self, queries: dict[str, str], corpus: dict[str, str], relevant_docs: dict[str, set[str]],
                 corpus_chunk_size: int = 50000, mrr_at_k: list[int] = [10], ndcg_at_k: list[int] = [10],
                 accuracy_at_k: list[int] = [1, 3, 5, 10], precision_recall_at_k: list[int] = [1, 3, 5, 10],
                 map_at_k: list[int] = [100], show_progress_bar: bool = False, batch_size: int = 32, name: str = "",
                 write_csv: bool = True, truncate_dim: int | None = None, score_functions: dict | None = None,
                 main_score_function: str | None = None, query_prompt: str | None = None,
                 query_prompt_name: str | None = None, corpus_prompt: str | None = None,
                 corpus_prompt_name: str | None = None, write_predictions: bool = False) -> None:
        InformationRetrievalEvaluator.__init__(
            self, queries, corpus, relevant_docs, corpus_chunk_size=corpus_chunk_size, mrr_at_k=mrr_at_k,
            ndcg_at_k=ndcg_at_k, accuracy_at_k=accuracy_at_k, precision_recall_at_k=precision_recall_at_k,
            map_at_k=map_at_k, show_progress_bar=show_progress_bar, batch_size=batch_size, name=name,
            write_csv=write_csv, truncate_dim=truncate_dim, score_functions=score_functions,
            query_prompt=query_prompt, query_prompt_name=query_prompt_name, corpus_prompt=corpus_prompt,
            corpus_prompt_name=corpus_prompt_name, write_predictions=write_predictions,
        )
        # a ColBERT score name such as "MaxSim" is not one of ST's dense SimilarityFunction values
        self.main_score_function = getattr(main_score_function, "value", main_score_function) or None
        self._st6 = False

    def embed_inputs(self, model, sentences, encode_fn_name: str | None = None, prompt_name: str | None = None,
                     prompt: str | None = None, **kwargs):
        is_query = encode_fn_name == "query"
        with _truncation(model, self.truncate_dim):
            return pad_sequence(model.encode(
                sentences, prompt_name=prompt_name, prompt=prompt, batch_size=self.batch_size, is_query=is_query,
                show_progress_bar=self.show_progress_bar if is_query else False, convert_to_tensor=True,
            ))

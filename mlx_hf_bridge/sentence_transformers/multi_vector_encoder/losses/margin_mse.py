"""``MultiVectorMarginMSELoss`` (ST 6.2): the bridge's distillation pipeline over ST 6's
``(query, positive, negative_1, ..., negative_k)`` columns, MSE on the score margins."""

from __future__ import annotations

from typing import Any, Callable

from ....colbert.conventions import MULTI_VECTOR_ENCODER, RowChunks, colbert_scores_pairwise
from ....colbert.listwise import MarginMSEDistillation, per_document
from ._common import similarity_fct_name


class MultiVectorMarginMSELoss(MarginMSEDistillation):
    """Margin-MSE distillation for a ``MultiVectorEncoder`` (ST 6.2's signature and defaults).

    Student margins ``s(q, pos) - s(q, neg_i)`` (pairwise MaxSim, ST 6's masking) are MSE-matched
    (mean over all entries) to the teacher's.

    Inputs:

    +------------------------------------------------+-----------------------------------------------------------------------+
    | Texts (columns, in this order)                 | Labels                                                                |
    +================================================+=======================================================================+
    | (query, positive, negative)                    | M(query, positive) - M(query, negative)                               |
    +------------------------------------------------+-----------------------------------------------------------------------+
    | (query, positive, negative)                    | [M(query, positive), M(query, negative)]                              |
    +------------------------------------------------+-----------------------------------------------------------------------+
    | (query, positive, negative_1, ..., negative_k) | [M(query, positive) - M(query, negative_i) for i in 1..k]             |
    +------------------------------------------------+-----------------------------------------------------------------------+
    | (query, positive, negative_1, ..., negative_k) | [M(query, positive), M(query, negative_1), ..., M(query, negative_k)] |
    +------------------------------------------------+-----------------------------------------------------------------------+

    Parameters
    ----------
    model
        A :class:`~mlx_hf_bridge.sentence_transformers.MultiVectorEncoder`.
    similarity_fct
        Pairwise scorer ``fct(queries (B, Lq, H), documents (B, Ld, H), queries_mask=, documents_mask=) -> (B,)``.
        Defaults to ``scoring.colbert_scores_pairwise``.
    mini_batch_size
        Rows per document forward, each chunk cut to its own longest row (less padding; same values).
    """

    expected_inputs = (3, None, True, "query, positive, negative_1, ... and a label column of teacher margins or scores")

    def __init__(self, model, *, similarity_fct: Callable | None = None, mini_batch_size: int | None = None) -> None:
        similarity_fct = similarity_fct if similarity_fct is not None else colbert_scores_pairwise
        super().__init__(model, per_document(similarity_fct))
        self.similarity_fct = similarity_fct
        self.mini_batch_size = mini_batch_size
        self.columns = RowChunks(MULTI_VECTOR_ENCODER, mini_batch_size)

    def _check(self, sentence_features, labels):
        if len(sentence_features) < 3:
            raise ValueError(
                f"{type(self).__name__} expects at least 3 sentence features (query, positive, negative), but "
                f"got {len(sentence_features)}."
            )
        if labels is None:
            raise ValueError(f"{type(self).__name__} needs teacher margins or scores: a 'label' (or 'score') column.")
        self.margins(labels, int(sentence_features[0]["input_ids"].shape[0]), len(sentence_features) - 2)

    def get_config_dict(self) -> dict[str, Any]:
        return {"similarity_fct": similarity_fct_name(self.similarity_fct), "mini_batch_size": self.mini_batch_size}

    @property
    def citation(self) -> str:
        return """
@misc{hofstaetter2020improving,
    title={Improving Efficient Neural Ranking Models with Cross-Architecture Knowledge Distillation},
    author={Sebastian Hofstätter and Sophia Althammer and Michael Schröder and Mete Sertkan and Allan Hanbury},
    year={2020},
    eprint={2010.02666},
    archivePrefix={arXiv},
    primaryClass={cs.IR}
}
"""

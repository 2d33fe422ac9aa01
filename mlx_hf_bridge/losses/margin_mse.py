"""``MarginMSELoss`` (ST 5.3 / 6.2): MSE between the student's and the teacher's score margins."""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from ..colbert.listwise import MarginMSEDistillation
from ..dense.similarity import pairwise_dot_score
from ._pairwise import check_columns, check_numeric, embed_columns, label_values, rows, similarity_fct_name


class MarginMSELoss:
    """``MSE(sim(Q, Pos) - sim(Q, Neg_i), gold margin_i)`` (Hofstätter et al., 2020); ``sim`` is the dot
    product by default. The labels are the teacher's margins, or its raw scores
    ``[M(Q, Pos), M(Q, Neg_1), ...]`` (turned into margins), as in ST.

    Inputs:

    +------------------------------------------------+------------------------------------------------------------------------+
    | Texts (columns, in this order)                 | Labels                                                                 |
    +================================================+========================================================================+
    | (query, document_one, document_two) triplets   | M(query, document_one) - M(query, document_two)                        |
    +------------------------------------------------+------------------------------------------------------------------------+
    | (query, document_one, document_two) triplets   | [M(query, document_one), M(query, document_two)]                       |
    +------------------------------------------------+------------------------------------------------------------------------+
    | (query, positive, negative_1, ..., negative_n) | [M(query, positive) - M(query, negative_i) for i in 1..n]              |
    +------------------------------------------------+------------------------------------------------------------------------+
    | (query, positive, negative_1, ..., negative_n) | [M(query, positive), M(query, negative_1), ..., M(query, negative_n)]  |
    +------------------------------------------------+------------------------------------------------------------------------+

    Parameters
    ----------
    model
        The SentenceTransformer.
    similarity_fct
        PAIRWISE similarity ``fct(a (B, D), b (B, D)) -> (B,)``; default ``util.pairwise_dot_score``.
    """

    expected_inputs = (3, None, True, "query, positive, negative_1, ... and a label column of teacher margins or scores")

    def __init__(self, model, similarity_fct=pairwise_dot_score) -> None:
        self.model = model
        self.similarity_fct = similarity_fct

    def check_labels(self, labels, where: str):
        labels = check_numeric(type(self).__name__, labels, where, "teacher margins or scores")
        if labels.ndim not in (1, 2):
            raise ValueError(
                f"{type(self).__name__}: the {where} gives labels of shape {tuple(labels.shape)}; expected one margin "
                "per row (batch_size,), or a list per row: n margins or n + 1 teacher scores for n negatives."
            )

    # ST's label rules (margins, or n + 1 scores turned into margins), written once for both families
    margins = MarginMSEDistillation.margins

    def __call__(self, sentence_features, labels) -> mx.array:
        sentence_features = list(sentence_features)
        check_columns(self, sentence_features, 3, None, "query, positive, negative_1, ...")
        labels = label_values(type(self).__name__, labels, "teacher margins or scores")
        self.margins(labels, rows(sentence_features), len(sentence_features) - 2)  # before the forward pass
        return self.compute_loss_from_embeddings(embed_columns(self.model, sentence_features), labels)

    forward = __call__

    def compute_loss_from_embeddings(self, embeddings: list[mx.array], labels) -> mx.array:
        query, positive, negatives = embeddings[0], embeddings[1], embeddings[2:]
        target = mx.stop_gradient(self.margins(labels, query.shape[0], len(negatives)))
        scores_pos = self.similarity_fct(query, positive)
        margins = mx.stack([scores_pos - self.similarity_fct(query, negative) for negative in negatives], axis=1)
        return mx.square(margins - target.astype(margins.dtype)).mean()

    def get_config_dict(self) -> dict[str, Any]:
        return {"similarity_fct": similarity_fct_name(self.similarity_fct)}  # ST 6.2's (ST 5.3 has none)

    @property
    def citation(self) -> str:
        return """
@misc{hofstätter2021improving,
    title={Improving Efficient Neural Ranking Models with Cross-Architecture Knowledge Distillation},
    author={Sebastian Hofstätter and Sophia Althammer and Michael Schröder and Mete Sertkan and Allan Hanbury},
    year={2021},
    eprint={2010.02666},
    archivePrefix={arXiv},
    primaryClass={cs.IR}
}
"""

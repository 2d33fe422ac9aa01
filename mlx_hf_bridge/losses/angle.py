"""``AnglELoss`` (ST 5.3 / 6.2): CoSENT with the AnglE pairwise angle similarity."""

from __future__ import annotations

import mlx.core as mx

from ..dense.similarity import pairwise_angle_sim
from ._pairwise import check_columns, per_example, rows
from .cosent import CoSENTLoss


class AnglELoss(CoSENTLoss):
    """AnglE (Angle Optimized) loss: :class:`CoSENTLoss` with ``util.pairwise_angle_sim`` (the
    authors' reference code, as ST) and scale 20.

    (anchor, positive, negative_1, ..., negative_n) tuples become pairs: (anchor, positive) with the
    label (1 when there is none) and (anchor, negative_i) with ``1 - label``.

    Inputs:

    +-------------------------------------------------+------------------------+
    | Texts (columns, in this order)                  | Labels                 |
    +=================================================+========================+
    | (sentence_A, sentence_B) pairs                  | float similarity score |
    +-------------------------------------------------+------------------------+
    | (anchor, positive, negative) triplets           | none                   |
    +-------------------------------------------------+------------------------+
    | (anchor, positive, negative_1, ..., negative_n) | none                   |
    +-------------------------------------------------+------------------------+

    Parameters
    ----------
    model
        The SentenceTransformer.
    scale
        Multiplies the similarities (an inverse temperature), default 20.
    """

    expected_inputs = (2, None, False, "sentence_A, sentence_B and a 'score' column, or anchor, positive, negative_1, ...")

    def __init__(self, model, scale: float = 20.0) -> None:
        super().__init__(model, scale, similarity_fct=pairwise_angle_sim)

    def check_labels(self, labels, where: str):
        if labels is not None:
            super().check_labels(labels, where)

    def _check(self, sentence_features, labels):
        check_columns(self, sentence_features, 2, None, "sentence_A, sentence_B or anchor, positive, negative_1, ...")
        if len(sentence_features) == 2 and labels is None:
            raise ValueError("AnglELoss requires labels for datasets with pairs.")
        if labels is not None:
            per_example(self, labels, rows(sentence_features))

    def compute_loss_from_embeddings(self, embeddings: list[mx.array], labels) -> mx.array:
        if len(embeddings) > 2:
            anchors, others = embeddings[0], embeddings[1:]
            batch_size = anchors.shape[0]
            combined = [mx.tile(anchors, (len(others), 1)), mx.concatenate(others, axis=0)]
            labels = (mx.ones((batch_size,), mx.float32) if labels is None
                      else per_example(self, labels, batch_size).astype(mx.float32))
            combined_labels = mx.concatenate([labels, mx.tile(1 - labels, (len(others) - 1,))])
            return super().compute_loss_from_embeddings(combined, combined_labels)
        if labels is None:
            raise ValueError("AnglELoss requires labels for datasets with pairs.")
        return super().compute_loss_from_embeddings(embeddings, labels)

    @property
    def citation(self) -> str:
        return """
@inproceedings{li-li-2024-aoe,
    title = "{A}o{E}: Angle-optimized Embeddings for Semantic Textual Similarity",
    author = "Li, Xianming and Li, Jing",
    year = "2024",
    publisher = "Association for Computational Linguistics",
    url = "https://aclanthology.org/2024.acl-long.101/",
    doi = "10.18653/v1/2024.acl-long.101"
}
"""

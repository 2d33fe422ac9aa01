"""``CoSENTLoss`` (ST 5.3 / 6.2): a ranking loss over every pair of scored pairs in the batch."""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from ..dense.similarity import pairwise_cos_sim
from ._pairwise import check_columns, check_numeric, embed_columns, per_example, rows


class CoSENTLoss:
    """CoSENT (Consistent SENTence embedding) loss.

    ``loss = log(1 + sum(exp(scale * (s(k, l) - s(i, j)))))`` over every two pairs of the batch whose
    labels order them (label of (i, j) strictly above that of (k, l)); ``s`` is ``similarity_fct``.
    ST 5.3 writes it as a masked (B, B) matrix, ST 6.2 as sorted suffix sums (``logcumsumexp``): the
    same value; the bridge uses the matrix (labels stay on the device, no sort).

    Inputs:

    +--------------------------------+------------------------+
    | Texts (columns, in this order) | Labels                 |
    +================================+========================+
    | (sentence_A, sentence_B) pairs | float similarity score |
    +--------------------------------+------------------------+

    Parameters
    ----------
    model
        The SentenceTransformer.
    scale
        Multiplies the similarities (an inverse temperature), default 20.
    similarity_fct
        PAIRWISE similarity ``fct(a (B, D), b (B, D)) -> (B,)``; default ``util.pairwise_cos_sim``.

    Relations: :class:`AnglELoss` is this loss with ``pairwise_angle_sim``; CoSENT is a drop-in for
    :class:`CosineSimilarityLoss`, usually with a stronger training signal.
    """

    # (min text columns, max text columns or None, needs labels, roles): read by the trainer's checks
    expected_inputs = (2, 2, True, "sentence_A, sentence_B and a float 'score' label column")

    def __init__(self, model, scale: float = 20.0, similarity_fct=pairwise_cos_sim) -> None:
        self.model = model
        self.similarity_fct = similarity_fct
        self.scale = scale

    def check_labels(self, labels, where: str):
        check_numeric(type(self).__name__, labels, where, "one float similarity score per pair")

    def _check(self, sentence_features, labels):
        check_columns(self, sentence_features, 2, 2, "sentence_A, sentence_B")
        per_example(self, labels, rows(sentence_features))  # text / missing / miscounted labels: before the forward

    def __call__(self, sentence_features, labels) -> mx.array:
        sentence_features = list(sentence_features)
        self._check(sentence_features, labels)
        return self.compute_loss_from_embeddings(embed_columns(self.model, sentence_features), labels)

    forward = __call__

    def compute_loss_from_embeddings(self, embeddings: list[mx.array], labels) -> mx.array:
        labels = per_example(self, labels, embeddings[0].shape[0]).astype(mx.float32)  # bool -> 0 / 1, as ST 6
        scores = self.similarity_fct(embeddings[0], embeddings[1])
        if scores.shape != labels.shape:
            raise ValueError(f"Labels and scores must have the same shape, got {labels.shape} and {scores.shape}.")
        scores = scores.astype(mx.float32) * self.scale
        # entry (i, j) is s_i - s_j wherever label_i < label_j; other pairs drop out (exp(-inf) = 0)
        differences = mx.where(labels[:, None] < labels[None, :], scores[:, None] - scores[None, :], -mx.inf)
        # the leading 0 is the "1 +" (e^0)
        return mx.logsumexp(mx.concatenate([mx.zeros((1,), scores.dtype), differences.reshape(-1)]), axis=0)

    def get_config_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "similarity_fct": self.similarity_fct.__name__}

    @property
    def citation(self) -> str:
        return """
@article{10531646,
    author={Huang, Xiang and Peng, Hao and Zou, Dongcheng and Liu, Zhiwei and Li, Jianxin and Liu, Kay and Wu, Jia and Su, Jianlin and Yu, Philip S.},
    journal={IEEE/ACM Transactions on Audio, Speech, and Language Processing},
    title={CoSENT: Consistent Sentence Embedding via Similarity Ranking},
    year={2024},
    doi={10.1109/TASLP.2024.3402087}
}
"""

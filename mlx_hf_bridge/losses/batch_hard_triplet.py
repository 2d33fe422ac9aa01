"""``BatchHardTripletLoss`` and ``BatchHardTripletLossDistanceFunction`` (ST 5.3 / 6.2), and what the
four batch triplet losses (all / hard / semi-hard / soft-margin) share: one labelled text column,
a (B, B) distance matrix, the label masks."""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from ..dense.similarity import cos_sim
from ._pairwise import check_columns, check_numeric, per_example, rows

HERMANS_2017 = """
@misc{hermans2017defense,
    title={In Defense of the Triplet Loss for Person Re-Identification},
    author={Alexander Hermans and Lucas Beyer and Bastian Leibe},
    year={2017},
    eprint={1703.07737},
    archivePrefix={arXiv},
    primaryClass={cs.CV}
}
"""


class BatchHardTripletLossDistanceFunction:
    """The (B, B) distance matrices of the batch triplet losses."""

    @staticmethod
    def cosine_distance(embeddings: mx.array) -> mx.array:
        """``1 - cos_sim(e, e)``."""
        return 1 - cos_sim(embeddings, embeddings)

    @staticmethod
    def euclidean_distance(embeddings: mx.array, squared: bool = False) -> mx.array:
        """ST's Euclidean matrix from the Gram matrix (``|a|² - 2 a·b + |b|²``, negatives set to 0;
        exact zeros stay 0 with a zero gradient), computed in float32."""
        embeddings = embeddings.astype(mx.float32) if embeddings.dtype in (mx.float16, mx.bfloat16) else embeddings
        dot_product = embeddings @ embeddings.T
        square_norm = mx.diagonal(dot_product)
        distances = mx.maximum(square_norm[None, :] - 2.0 * dot_product + square_norm[:, None], 0)
        if not squared:
            zero = (distances == 0).astype(distances.dtype)
            distances = (1.0 - zero) * mx.sqrt(distances + zero * 1e-16)
        return distances

    eucledian_distance = euclidean_distance  # ST 5.3's spelling (ST 6.2 keeps it as an alias)


def anchor_positive_mask(labels: mx.array) -> mx.array:
    """``[a, p]``: a != p with the same label."""
    return (labels[None, :] == labels[:, None]) & ~mx.eye(labels.shape[0], dtype=mx.bool_)


def anchor_negative_mask(labels: mx.array) -> mx.array:
    """``[a, n]``: different labels."""
    return labels[None, :] != labels[:, None]


def triplet_mask(labels: mx.array) -> mx.array:
    """``[a, p, n]``: a, p, n distinct, label(a) == label(p) != label(n)."""
    return anchor_positive_mask(labels)[:, :, None] & anchor_negative_mask(labels)[:, None, :]


def hardest_distances(pairwise_dist: mx.array, labels: mx.array) -> tuple[mx.array, mx.array]:
    """Per anchor (B, 1): the farthest positive and the closest negative, as ST finds them (the
    row maximum is added to non-negatives so they never win the minimum)."""
    hardest_positive = (anchor_positive_mask(labels).astype(pairwise_dist.dtype) * pairwise_dist).max(1, keepdims=True)
    negative = anchor_negative_mask(labels).astype(pairwise_dist.dtype)
    row_max = pairwise_dist.max(1, keepdims=True)
    hardest_negative = (pairwise_dist + row_max * (1.0 - negative)).min(1, keepdims=True)
    return hardest_positive, hardest_negative


class BatchTripletLoss:
    """One text column with class labels -> the loss of :meth:`batch_loss` on its embeddings."""

    expected_inputs = (1, 1, True, "one text column and an integer 'label' column (class)")

    def __init__(self, model, distance_metric=BatchHardTripletLossDistanceFunction.euclidean_distance,
                 margin: float = 5) -> None:
        self.model = model
        self.triplet_margin = margin
        self.distance_metric = distance_metric

    # ST names the model ``sentence_embedder`` in these losses; ``.model`` is the bridge's protocol
    sentence_embedder = property(lambda self: self.model, lambda self, value: setattr(self, "model", value))

    def check_labels(self, labels, where: str):
        labels = check_numeric(type(self).__name__, labels, where, "one class label per text")
        if labels.ndim > 1 and labels.size != labels.shape[0]:
            raise ValueError(
                f"{type(self).__name__} expects one class label per text, but the {where} gives labels of shape "
                f"{tuple(labels.shape)}."
            )

    def __call__(self, sentence_features, labels) -> mx.array:
        sentence_features = list(sentence_features)
        check_columns(self, sentence_features, 1, 1, "one text column")
        per_example(self, labels, rows(sentence_features))  # before the forward pass
        return self.compute_loss_from_embeddings([self.model(sentence_features[0])["sentence_embedding"]], labels)

    forward = __call__

    def compute_loss_from_embeddings(self, embeddings: list[mx.array], labels) -> mx.array:
        labels = per_example(self, labels, embeddings[0].shape[0])
        return self.batch_loss(labels, embeddings[0])

    def batch_loss(self, labels: mx.array, embeddings: mx.array) -> mx.array:
        raise NotImplementedError

    def get_config_dict(self) -> dict[str, Any]:
        return {"distance_metric": getattr(self.distance_metric, "__name__", str(self.distance_metric)),
                "margin": self.triplet_margin}

    @property
    def citation(self) -> str:
        return HERMANS_2017


class BatchHardTripletLoss(BatchTripletLoss):
    """Batch-hard triplet loss (Hermans et al., 2017): per anchor, its farthest positive and closest
    negative in the batch, ``mean(relu(d(a, p_hard) - d(a, n_hard) + margin))``.

    Inputs:

    +--------------------------------+-------------------+
    | Texts (columns, in this order) | Labels            |
    +================================+===================+
    | single sentences               | class (int label) |
    +--------------------------------+-------------------+

    Use a batch sampler that puts several texts of each class in a batch (ST's
    ``BatchSamplers.GROUP_BY_LABEL``).

    Parameters
    ----------
    model
        The SentenceTransformer.
    distance_metric
        ``fct(embeddings (B, D)) -> (B, B)``; default ``BatchHardTripletLossDistanceFunction.euclidean_distance``.
    margin
        Default 5.
    """

    def batch_loss(self, labels: mx.array, embeddings: mx.array) -> mx.array:
        positive, negative = hardest_distances(self.distance_metric(embeddings), labels)
        return mx.maximum(positive - negative + self.triplet_margin, 0).mean()

    batch_hard_triplet_loss = batch_loss  # ST's method name (labels, embeddings)

"""``ContrastiveLoss`` and ``SiameseDistanceMetric`` (ST 5.3 / 6.2)."""

from __future__ import annotations

from enum import Enum
from typing import Any

import mlx.core as mx

from ..dense.similarity import pairwise_cos_sim, pairwise_euclidean_sim, pairwise_manhattan_sim
from ._pairwise import check_columns, check_numeric, embed_columns, per_example, rows, warn_non_binary_once

# torch's F.pairwise_distance(x, y, p) is ||x - y + eps||_p with eps = 1e-6 (kept: it is ST's value)
_PAIRWISE_DISTANCE_EPS = 1e-6


class SiameseDistanceMetric(Enum):
    """The distance metrics for :class:`ContrastiveLoss` / :class:`OnlineContrastiveLoss` (plain
    functions, as in ST)."""

    EUCLIDEAN = lambda x, y: -pairwise_euclidean_sim(x + _PAIRWISE_DISTANCE_EPS, y)  # noqa: E731
    MANHATTAN = lambda x, y: -pairwise_manhattan_sim(x + _PAIRWISE_DISTANCE_EPS, y)  # noqa: E731
    COSINE_DISTANCE = lambda x, y: 1 - pairwise_cos_sim(x, y)  # noqa: E731


def metric_name(distance_metric) -> str:
    name = getattr(distance_metric, "__name__", str(distance_metric))
    for key, value in vars(SiameseDistanceMetric).items():
        if value == distance_metric:
            return f"SiameseDistanceMetric.{key}"
    return name


class LabelledPairLoss:
    """What ContrastiveLoss and OnlineContrastiveLoss share: (anchor, other) columns with 0 / 1 labels,
    checked before the forward pass."""

    expected_inputs = (2, 2, True, "anchor, other and a 'label' column (1 similar, 0 dissimilar)")

    def check_labels(self, labels, where: str):
        check_numeric(type(self).__name__, labels, where, "1 for similar pairs, 0 for dissimilar ones")

    def _checked_embeddings(self, sentence_features, labels) -> list[mx.array]:
        sentence_features = list(sentence_features)
        check_columns(self, sentence_features, 2, 2, "anchor, other")
        per_example(self, labels, rows(sentence_features))  # before the forward pass
        return embed_columns(self.model, sentence_features)


class ContrastiveLoss(LabelledPairLoss):
    """Hadsell et al. (2006): ``0.5 * (y * d² + (1 - y) * relu(margin - d)²)`` per pair, mean (or sum):
    positive pairs (label 1) are pulled together, negative pairs (label 0) pushed beyond ``margin``.

    Inputs:

    +-----------------------------------------------+------------------------------+
    | Texts (columns, in this order)                | Labels                       |
    +===============================================+==============================+
    | (anchor, positive/negative) pairs             | 1 if positive, 0 if negative |
    +-----------------------------------------------+------------------------------+

    Parameters
    ----------
    model
        The SentenceTransformer.
    distance_metric
        Default ``SiameseDistanceMetric.COSINE_DISTANCE``.
    margin
        Negative pairs closer than this are penalised (default 0.5).
    size_average
        Mean over the batch (True) or sum.

    ST 6.2 checks the label count and warns once for labels other than 0 / 1 (used as weights).
    """

    def __init__(self, model, distance_metric=SiameseDistanceMetric.COSINE_DISTANCE, margin: float = 0.5,
                 size_average: bool = True) -> None:
        self.distance_metric = distance_metric
        self.margin = margin
        self.model = model
        self.size_average = size_average
        self._checked_labels = False

    def get_config_dict(self) -> dict[str, Any]:
        return {"distance_metric": metric_name(self.distance_metric), "margin": self.margin,
                "size_average": self.size_average}

    def __call__(self, sentence_features, labels) -> mx.array:
        return self.compute_loss_from_embeddings(self._checked_embeddings(sentence_features, labels), labels)

    forward = __call__

    def compute_loss_from_embeddings(self, embeddings: list[mx.array], labels) -> mx.array:
        labels = per_example(self, labels, embeddings[0].shape[0])
        warn_non_binary_once(self, labels, "Non-binary labels are accepted but are used directly to weight the "
                             "positive term, with 1 - label weighting the negative term.")
        labels = labels.astype(mx.float32)
        distances = self.distance_metric(embeddings[0], embeddings[1])
        losses = 0.5 * (labels * mx.square(distances) + (1 - labels) * mx.square(mx.maximum(self.margin - distances, 0)))
        return losses.mean() if self.size_average else losses.sum()

    @property
    def citation(self) -> str:
        return """
@inproceedings{hadsell2006dimensionality,
    author={Hadsell, R. and Chopra, S. and LeCun, Y.},
    booktitle={2006 IEEE Computer Society Conference on Computer Vision and Pattern Recognition (CVPR'06)},
    title={Dimensionality Reduction by Learning an Invariant Mapping},
    year={2006},
    volume={2},
    number={},
    pages={1735-1742},
    doi={10.1109/CVPR.2006.100}
}
"""

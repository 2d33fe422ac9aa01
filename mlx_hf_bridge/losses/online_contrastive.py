"""``OnlineContrastiveLoss`` (ST 6.2; ST 5.3's thresholds reachable): ContrastiveLoss on the hard pairs."""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from ._pairwise import per_example, warn_non_binary_once
from .contrastive import LabelledPairLoss, SiameseDistanceMetric, metric_name
from .triplet import _check_st_version


class OnlineContrastiveLoss(LabelledPairLoss):
    """Contrastive loss over the hard pairs of the batch only: negatives closer than the farthest
    positive and positives farther than the closest negative, ``sum(d_pos²) + sum(relu(margin - d_neg)²)``
    (a sum, not a mean, as in ST).

    With no positive in the batch the negatives are compared with their own mean (and the positives
    with theirs when there is no negative). ST 5.3 falls back already when a side has a single pair
    (``len(...) > 1``), ST 6.2 only when it is empty; ``st_version="5.3"`` gives ST 5.3's values.
    Labels other than 0 / 1 match neither set (ST 6.2 warns once).

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
    st_version
        Bridge option, keyword only: ``"5.3"``, ``"6.2"`` or None (default: the installed release's), see above.
    """

    def __init__(self, model, distance_metric=SiameseDistanceMetric.COSINE_DISTANCE, margin: float = 0.5, *,
                 st_version: str | None = None) -> None:
        self.model = model
        self.margin = margin
        self.distance_metric = distance_metric
        self.st_version = _check_st_version(st_version)
        self._checked_labels = False

    def __call__(self, sentence_features, labels, size_average=False) -> mx.array:
        return self.compute_loss_from_embeddings(self._checked_embeddings(sentence_features, labels), labels)

    forward = __call__

    def compute_loss_from_embeddings(self, embeddings: list[mx.array], labels) -> mx.array:
        labels = per_example(self, labels, embeddings[0].shape[0])
        warn_non_binary_once(self, labels, "Pairs with any other label are ignored, since they match neither the "
                             "positive nor the negative set.")
        distances = self.distance_metric(embeddings[0], embeddings[1])
        # torch's boolean indexing, as masks (fixed shapes); the thresholds carry no gradient in ST either
        positive, negative = labels == 1, labels == 0
        n_pos, n_neg = positive.sum(), negative.sum()
        plain = mx.stop_gradient(distances)
        max_pos = mx.where(positive, plain, -mx.inf).max()
        min_neg = mx.where(negative, plain, mx.inf).min()
        mean_pos = mx.where(positive, plain, 0).sum() / n_pos  # NaN when empty, as torch's mean: then unused
        mean_neg = mx.where(negative, plain, 0).sum() / n_neg
        fewest = 1 if self.st_version == "5.3" else 0
        negative_threshold = mx.where(n_pos > fewest, max_pos, mean_neg)
        positive_threshold = mx.where(n_neg > fewest, min_neg, mean_pos)
        hard_negatives = negative & (plain < negative_threshold)
        hard_positives = positive & (plain > positive_threshold)
        positive_loss = mx.where(hard_positives, mx.square(distances), 0).sum()
        negative_loss = mx.where(hard_negatives, mx.square(mx.maximum(self.margin - distances, 0)), 0).sum()
        return positive_loss + negative_loss

    def get_config_dict(self) -> dict[str, Any]:
        return {"distance_metric": metric_name(self.distance_metric), "margin": self.margin}

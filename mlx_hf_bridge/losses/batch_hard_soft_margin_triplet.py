"""``BatchHardSoftMarginTripletLoss`` (ST 5.3 / 6.2)."""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from .batch_hard_triplet import BatchHardTripletLossDistanceFunction, BatchTripletLoss, hardest_distances


class BatchHardSoftMarginTripletLoss(BatchTripletLoss):
    """Batch-hard triplets with a soft margin: ``mean(softplus(d(a, p_hard) - d(a, n_hard)))`` (no
    margin parameter; ST 5.3 writes ``log1p(exp(x))``, ST 6.2 ``softplus``: the same value).

    Inputs:

    +--------------------------------+-------------------+
    | Texts (columns, in this order) | Labels            |
    +================================+===================+
    | single sentences               | class (int label) |
    +--------------------------------+-------------------+

    Parameters
    ----------
    model
        The SentenceTransformer.
    distance_metric
        ``fct(embeddings (B, D)) -> (B, B)``; default ``BatchHardTripletLossDistanceFunction.euclidean_distance``.
    """

    def __init__(self, model, distance_metric=BatchHardTripletLossDistanceFunction.euclidean_distance) -> None:
        super().__init__(model, distance_metric)  # ST keeps the parent's margin (5), unused

    def batch_loss(self, labels: mx.array, embeddings: mx.array) -> mx.array:
        positive, negative = hardest_distances(self.distance_metric(embeddings), labels)
        return mx.logaddexp(positive - negative, 0.0).mean()

    batch_hard_triplet_soft_margin_loss = batch_loss  # ST's method name (labels, embeddings)

    def get_config_dict(self) -> dict[str, Any]:
        return {"distance_metric": getattr(self.distance_metric, "__name__", str(self.distance_metric))}

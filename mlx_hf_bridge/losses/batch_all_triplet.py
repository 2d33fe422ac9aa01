"""``BatchAllTripletLoss`` (ST 5.3 / 6.2)."""

from __future__ import annotations

import mlx.core as mx

from .batch_hard_triplet import BatchTripletLoss, triplet_mask


class BatchAllTripletLoss(BatchTripletLoss):
    """Every valid triplet of the batch (a, p same label, n another): ``relu(d(a, p) - d(a, n) +
    margin)`` summed and divided by the number of triplets that are still positive (> 1e-16), as ST.
    ST 5.3 builds the (B, B, B) triplet mask, ST 6.2 indexes the (a, p) pairs first: the same value;
    the bridge uses the mask (fixed shapes), so memory grows as B³.

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
    margin
        Default 5.
    """

    def batch_loss(self, labels: mx.array, embeddings: mx.array) -> mx.array:
        pairwise_dist = self.distance_metric(embeddings)
        losses = pairwise_dist[:, :, None] - pairwise_dist[:, None, :] + self.triplet_margin
        losses = mx.maximum(triplet_mask(labels).astype(losses.dtype) * losses, 0)
        num_positive_triplets = (losses > 1e-16).sum().astype(losses.dtype)
        return losses.sum() / (num_positive_triplets + 1e-16)

    batch_all_triplet_loss = batch_loss  # ST's method name (labels, embeddings)

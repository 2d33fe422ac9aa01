"""``BatchSemiHardTripletLoss`` (ST 5.3 / 6.2)."""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from .batch_hard_triplet import BatchTripletLoss


def _masked_maximum(data: mx.array, mask: mx.array, axis: int = 1) -> mx.array:
    """ST's (TensorFlow's) masked maximum: ``max((data - row_min) * mask) + row_min``."""
    axis_minimums = data.min(axis, keepdims=True)
    return ((data - axis_minimums) * mask).max(axis, keepdims=True) + axis_minimums


class BatchSemiHardTripletLoss(BatchTripletLoss):
    """Semi-hard triplets (Schroff et al., 2015, as TensorFlow Addons): for each (anchor, positive)
    the closest negative farther than the positive, or, when there is none, the farthest negative;
    ``sum(relu(d(a, p) - d(a, n_semi) + margin)) / #positive pairs``.

    ST 5.3 searches a (B², B) tiled matrix, ST 6.2 sorted rows (``searchsorted``): the same negatives;
    the bridge compares a (B, B, B) block. With no positive pair in the batch ST 6.2 gives 0 (ST 5.3 0/0,
    NaN): the bridge gives 0.

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

    @property
    def margin(self) -> float:  # ST's attribute name in this loss
        return self.triplet_margin

    @margin.setter
    def margin(self, value: float):
        self.triplet_margin = value

    def batch_loss(self, labels: mx.array, embeddings: mx.array) -> mx.array:
        pdist = self.distance_metric(embeddings)
        adjacency = labels[:, None] == labels[None, :]
        negative = ~adjacency
        # [a, p, n]: n a negative of a, farther from a than p is
        outside = negative[:, None, :] & (pdist[:, None, :] > pdist[:, :, None])
        negatives_outside = mx.where(outside, pdist[:, None, :], mx.inf).min(axis=2)
        negatives_inside = _masked_maximum(pdist, negative.astype(pdist.dtype))  # (B, 1), broadcast over p
        semi_hard_negatives = mx.where(outside.any(axis=2), negatives_outside, negatives_inside)
        loss_mat = pdist - semi_hard_negatives + self.triplet_margin
        mask_positives = adjacency.astype(pdist.dtype) - mx.eye(labels.shape[0], dtype=pdist.dtype)
        num_positives = mask_positives.sum()
        return mx.maximum(loss_mat * mask_positives, 0.0).sum() / mx.maximum(num_positives, 1e-16)

    batch_semi_hard_triplet_loss = batch_loss  # ST's method name (labels, embeddings)

    def get_config_dict(self) -> dict[str, Any]:
        return {"distance_metric": getattr(self.distance_metric, "__name__", str(self.distance_metric)),
                "margin": self.triplet_margin}

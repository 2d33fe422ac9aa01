"""``TripletLoss`` and ``TripletDistanceMetric`` (ST 6.2; ST 5.3's sign slip reachable)."""

from __future__ import annotations

from enum import Enum
from typing import Any

import mlx.core as mx

from ..dense.similarity import pairwise_cos_sim, pairwise_euclidean_sim, pairwise_manhattan_sim
from ._pairwise import check_columns, embed_columns
from .batch_hard_triplet import HERMANS_2017


class TripletDistanceMetric(Enum):
    """The distance metrics for :class:`TripletLoss` (plain functions, as in ST: lambdas in an Enum
    body are attributes, not members)."""

    COSINE = lambda x, y: 1 - pairwise_cos_sim(x, y)  # noqa: E731
    EUCLIDEAN = lambda x, y: -pairwise_euclidean_sim(x, y)  # noqa: E731
    MANHATTAN = lambda x, y: -pairwise_manhattan_sim(x, y)  # noqa: E731


# ST 5.3 defined EUCLIDEAN / MANHATTAN as the similarities (negative distances), so its loss pushed
# positives away; ST 6.2 fixed the sign. ``st_version="5.3"`` reproduces the old values.
_ST5_METRICS = {
    TripletDistanceMetric.EUCLIDEAN: lambda x, y: pairwise_euclidean_sim(x, y),
    TripletDistanceMetric.MANHATTAN: lambda x, y: pairwise_manhattan_sim(x, y),
}


def _check_st_version(st_version: str | None) -> str:
    """None: the installed sentence-transformers' behaviour (ST 6.2's when none is installed), as the
    dense model's semantics follow it (``modules.pooling.installed_generation``)."""
    if st_version is None:
        from ..modules.pooling import installed_generation

        return "5.3" if installed_generation() == "st5" else "6.2"
    if st_version not in ("5.3", "6.2"):
        raise ValueError(f"st_version must be None (the installed release's), '6.2' or '5.3', got {st_version!r}.")
    return st_version


class TripletLoss:
    """``mean(relu(d(anchor, positive) - d(anchor, negative) + triplet_margin))``: the anchor should be
    closer to the positive than to the negative by at least the margin.

    Inputs:

    +---------------------------------------+--------+
    | Texts (columns, in this order)        | Labels |
    +=======================================+========+
    | (anchor, positive, negative) triplets | none   |
    +---------------------------------------+--------+

    Parameters
    ----------
    model
        The SentenceTransformer.
    distance_metric
        ``fct(a (B, D), b (B, D)) -> (B,)`` distances; default ``TripletDistanceMetric.EUCLIDEAN``.
    triplet_margin
        Default 5 (for the Euclidean distance; about 0.5 suits COSINE).
    st_version
        Bridge option, keyword only: ``"5.3"`` gives ST 5.3's values, whose EUCLIDEAN and MANHATTAN
        metrics were negative distances (a sign slip ST 6.2 fixed), ``"6.2"`` the fixed ones; default None:
        the installed release's (ST 6.2's when none is installed).
    """

    expected_inputs = (3, 3, False, "anchor, positive, negative")

    def __init__(self, model, distance_metric=TripletDistanceMetric.EUCLIDEAN, triplet_margin: float = 5, *,
                 st_version: str | None = None) -> None:
        self.model = model
        self.distance_metric = distance_metric
        self.triplet_margin = triplet_margin
        self.st_version = _check_st_version(st_version)

    def __call__(self, sentence_features, labels=None) -> mx.array:
        sentence_features = list(sentence_features)
        check_columns(self, sentence_features, 3, 3, "anchor, positive, negative")
        return self.compute_loss_from_embeddings(embed_columns(self.model, sentence_features), labels)

    forward = __call__

    def _distance(self):
        return _ST5_METRICS.get(self.distance_metric, self.distance_metric) if self.st_version == "5.3" \
            else self.distance_metric

    def compute_loss_from_embeddings(self, embeddings: list[mx.array], labels=None) -> mx.array:
        rep_anchor, rep_pos, rep_neg = embeddings
        distance = self._distance()
        losses = mx.maximum(distance(rep_anchor, rep_pos) - distance(rep_anchor, rep_neg) + self.triplet_margin, 0)
        return losses.mean()

    def get_config_dict(self) -> dict[str, Any]:
        distance_metric_name = getattr(self.distance_metric, "__name__", str(self.distance_metric))
        for name, value in vars(TripletDistanceMetric).items():
            if value == self.distance_metric:
                distance_metric_name = f"TripletDistanceMetric.{name}"
                break
        return {"distance_metric": distance_metric_name, "triplet_margin": self.triplet_margin}

    @property
    def citation(self) -> str:
        return HERMANS_2017

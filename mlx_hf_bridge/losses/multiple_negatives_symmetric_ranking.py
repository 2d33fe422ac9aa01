"""``MultipleNegativesSymmetricRankingLoss`` (deprecated in ST 5.3 and 6.2), on MLX."""

from __future__ import annotations

import warnings
from typing import Callable

from ..dense.similarity import cos_sim
from .multiple_negatives_ranking import MultipleNegativesRankingLoss

DEPRECATION = (
    "The MultipleNegativesSymmetricRankingLoss is deprecated and will be removed in a future release. "
    "Please use MultipleNegativesRankingLoss with `directions=('query_to_doc', 'doc_to_query')` and "
    "`partition_mode='per_direction'` instead."
)


class MultipleNegativesSymmetricRankingLoss(MultipleNegativesRankingLoss):
    """:class:`MultipleNegativesRankingLoss` with ``directions=("query_to_doc", "doc_to_query")`` and
    ``partition_mode="per_direction"``: the mean of the anchor -> documents and the positive -> anchors
    losses. Deprecated in ST (a ``DeprecationWarning`` on construction, as ST's ``@deprecated``).

    Inputs:

    +-------------------------------------------------+--------+
    | Texts (columns, in this order)                  | Labels |
    +=================================================+========+
    | (anchor, positive) pairs                        | none   |
    +-------------------------------------------------+--------+
    | (anchor, positive, negative) triplets           | none   |
    +-------------------------------------------------+--------+
    | (anchor, positive, negative_1, ..., negative_n) | none   |
    +-------------------------------------------------+--------+
    """

    def __init__(self, model, scale: float = 20.0, similarity_fct: Callable = cos_sim,
                 gather_across_devices: bool = False) -> None:
        warnings.warn(DEPRECATION, DeprecationWarning, stacklevel=2)
        super().__init__(model=model, scale=scale, similarity_fct=similarity_fct,
                         gather_across_devices=gather_across_devices,
                         directions=("query_to_doc", "doc_to_query"), partition_mode="per_direction")

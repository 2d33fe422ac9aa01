"""``CachedMultipleNegativesSymmetricRankingLoss`` (deprecated in ST 5.3 and 6.2), on MLX."""

from __future__ import annotations

import warnings
from typing import Callable

from ..dense.similarity import cos_sim
from .cached_multiple_negatives_ranking import CachedMultipleNegativesRankingLoss

DEPRECATION = (
    "The CachedMultipleNegativesSymmetricRankingLoss is deprecated and will be removed in a future release. "
    "Please use CachedMultipleNegativesRankingLoss with `directions=('query_to_doc', 'doc_to_query')` and "
    "`partition_mode='per_direction'` instead."
)


class CachedMultipleNegativesSymmetricRankingLoss(CachedMultipleNegativesRankingLoss):
    """:class:`CachedMultipleNegativesRankingLoss` with ``directions=("query_to_doc", "doc_to_query")``
    and ``partition_mode="per_direction"`` (GradCache twin of MultipleNegativesSymmetricRankingLoss).
    Deprecated in ST (a ``DeprecationWarning`` on construction). ST 5.3 has no ``mini_batch_num_tokens``.

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

    def __init__(self, model, scale: float = 20.0, similarity_fct: Callable = cos_sim, mini_batch_size: int = 32,
                 mini_batch_num_tokens: int | None = None, gather_across_devices: bool = False,
                 show_progress_bar: bool = False) -> None:
        warnings.warn(DEPRECATION, DeprecationWarning, stacklevel=2)
        super().__init__(model=model, scale=scale, similarity_fct=similarity_fct, mini_batch_size=mini_batch_size,
                         mini_batch_num_tokens=mini_batch_num_tokens, gather_across_devices=gather_across_devices,
                         directions=("query_to_doc", "doc_to_query"), partition_mode="per_direction",
                         show_progress_bar=show_progress_bar)

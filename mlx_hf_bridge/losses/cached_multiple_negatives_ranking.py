"""``CachedMultipleNegativesRankingLoss``: MultipleNegativesRankingLoss with GradCache, ST 5.3 / 6.2 on MLX."""

from __future__ import annotations

import logging
from typing import Any, Callable

import mlx.core as mx

from ..dense.similarity import cos_sim
from ._common import similarity_fct_name
from . import _inbatch
from .gradcache import CachedDenseLoss

logger = logging.getLogger(__name__)


class CachedMultipleNegativesRankingLoss(_inbatch.MNRLOptions, CachedDenseLoss):
    """:class:`MultipleNegativesRankingLoss` computed with GradCache (Gao et al., 2021): the same loss
    and the same (mean-loss) gradients, with peak memory set by ``mini_batch_size`` rather than the
    batch size. Pass 1 embeds each column in mini-batches without a graph, pass 2 scores anchors in
    blocks of ``mini_batch_size`` and caches d loss / d embeddings, pass 3 re-embeds each mini-batch
    under the same random key (same dropout) and back-propagates the cached gradients.

    The trainer calls :meth:`value_and_grad`; calling the loss returns its value only (ST's no-grad
    path), so do not differentiate the call.

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

    Parameters are ST 6.2's (ST 5.3 has no ``mini_batch_num_tokens``: pass the later ones by keyword):
    ``scale``, ``similarity_fct``, ``gather_across_devices``, ``directions``, ``partition_mode``,
    ``hardness_mode``, ``hardness_strength`` as for :class:`MultipleNegativesRankingLoss`;
    ``mini_batch_size`` rows per forward / backward slice and per scoring block;
    ``mini_batch_num_tokens`` (if set) slices of as many rows as fit that many attended tokens;
    ``show_progress_bar`` tqdm bars for the passes.
    """

    expected_inputs = (2, None, False, "anchor, positive[, negative_1, ..., negative_n]")

    def __init__(
        self,
        model,
        scale: float = 20.0,
        similarity_fct: Callable = cos_sim,
        mini_batch_size: int = 32,
        mini_batch_num_tokens: int | None = None,
        gather_across_devices: bool = False,
        directions: tuple[str, ...] = ("query_to_doc",),
        partition_mode: str = "joint",
        show_progress_bar: bool = False,
        hardness_mode: str | None = None,
        hardness_strength: float = 0.0,
    ) -> None:
        self._init_cache(model, mini_batch_size, mini_batch_num_tokens, show_progress_bar)
        self._set_mnrl_options(scale, similarity_fct, gather_across_devices, directions, partition_mode,
                               hardness_mode, hardness_strength, logger.warning)

    def check_inputs(self, sentence_features, labels) -> None:
        _inbatch.check_columns(self, sentence_features, *self.expected_inputs[:2], self.expected_inputs[3])
        self.check_labels(labels)

    def block_loss(self, columns, begin, end, labels=None) -> mx.array:
        return self.mnrl_loss(columns, begin, end)

    def get_config_dict(self) -> dict[str, Any]:
        return self.mnrl_config(similarity_fct_name, mini_batch_size=self.mini_batch_size,
                                mini_batch_num_tokens=self.mini_batch_num_tokens)

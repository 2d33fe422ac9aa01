"""``CachedMultiVectorMultipleNegativesRankingLoss`` (ST 6.2): the bridge's one GradCache
(``colbert.gradcache.CachedContrastive``) with ST 6's conventions, ``scale``, mean-loss gradients
and token-budget mini-batches."""

from __future__ import annotations

from typing import Any, Callable

import mlx.core as mx
import numpy as np

from ....colbert.conventions import MULTI_VECTOR_ENCODER, colbert_scores
from ....losses.gradcache import token_budget_ranges
from ....colbert.gradcache import CachedContrastive
from ._common import check_scale, similarity_fct_name


class CachedMultiVectorMultipleNegativesRankingLoss(CachedContrastive):
    """GradCache version of ``MultiVectorMultipleNegativesRankingLoss`` (ST 6.2's signature and defaults).

    Same loss as the uncached one. Pass 1 embeds every column in mini-batches without a graph, pass 2
    takes d loss / d embeddings from the full-batch loss, pass 3 re-runs each mini-batch with the same
    dropout masks and back-propagates the cached gradients; peak memory follows the mini-batch. As in
    ST 6 the gradients are those of the reported (mean) loss — unlike PyLate's ``CachedContrastive``,
    whose gradients are B times larger.

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

    Parameters
    ----------
    model
        A :class:`~mlx_hf_bridge.sentence_transformers.MultiVectorEncoder`.
    scale
        ``1 / temperature`` (default 1.0).
    similarity_fct
        Query-major scorer, as for the uncached loss. Defaults to ``scoring.colbert_scores``.
    mini_batch_size
        Rows per embedding forward / backward (the memory knob).
    mini_batch_num_tokens
        If set, each mini-batch instead packs as many rows as fit in this many real (attended) tokens
        (a row longer than the budget runs alone).
    score_mini_batch_size
        Queries per scoring chunk. Defaults to ``mini_batch_size``.
    gather_across_devices
        Gather document embeddings across ``mx.distributed`` ranks (each rank's columns zero-padded to the
        widest rank's width first, as ST 6; unlike PyLate, the loss is not scaled by the world size); on one
        process the identity.
    show_progress_bar
        tqdm bars for the embedding / scoring passes.
    """

    expected_inputs = (2, None, False, "anchor, positive[, negative, ...]")
    # ST 6's marker: the backward runs from a hook on the returned loss (here: value_and_grad)
    uses_gradient_cache = True
    columns = MULTI_VECTOR_ENCODER

    def __init__(
        self,
        model,
        *,
        scale: float = 1.0,
        similarity_fct: Callable | None = None,
        mini_batch_size: int = 32,
        mini_batch_num_tokens: int | None = None,
        score_mini_batch_size: int | None = None,
        gather_across_devices: bool = False,
        show_progress_bar: bool = False,
    ) -> None:
        if mini_batch_num_tokens is not None and mini_batch_num_tokens <= 0:
            raise ValueError("mini_batch_num_tokens must be a positive integer or None.")
        check_scale(scale)
        similarity_fct = similarity_fct if similarity_fct is not None else colbert_scores
        super().__init__(model, score_metric=similarity_fct, mini_batch_size=mini_batch_size,
                         score_mini_batch_size=score_mini_batch_size, size_average=True,
                         gather_across_devices=gather_across_devices, show_progress_bar=show_progress_bar,
                         scale_gradients="mean")
        self.scale = scale
        self.similarity_fct = similarity_fct
        self.mini_batch_num_tokens = mini_batch_num_tokens

    def _logits(self, scores: mx.array) -> mx.array:
        return scores * self.scale


    def _ranges(self, sentence_feature: dict) -> list[tuple[int, int]]:
        if self.mini_batch_num_tokens is None:
            return super()._ranges(sentence_feature)
        return token_budget_ranges(sentence_feature["attention_mask"], self.mini_batch_num_tokens)

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "similarity_fct": similarity_fct_name(self.similarity_fct),
            "mini_batch_size": self.mini_batch_size,
            "mini_batch_num_tokens": self.mini_batch_num_tokens,
            "score_mini_batch_size": self.score_mini_batch_size,
            "gather_across_devices": self.gather_across_devices,
        }

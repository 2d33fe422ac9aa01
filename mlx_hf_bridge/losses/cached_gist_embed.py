"""``CachedGISTEmbedLoss``: GISTEmbedLoss with GradCache, ST 5.3 / 6.2 on MLX."""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from . import _inbatch
from .gist_embed import GISTEmbedLoss, check_guide, check_margin_strategy, guide_embed
from .gradcache import CachedDenseLoss


class CachedGISTEmbedLoss(CachedDenseLoss):
    """:class:`GISTEmbedLoss` computed with GradCache: the same loss and (mean-loss) gradients, peak
    memory set by ``mini_batch_size``. The guide embeds each mini-batch in pass 1 (without gradients);
    anchors are scored in blocks of ``mini_batch_size``. Unlike the uncached loss (2 or 3 columns, as
    in ST), any number of negative columns is accepted (as ST's cached loss).

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

    Parameters are ST 6.2's (ST 5.3 has no ``mini_batch_num_tokens``); see :class:`GISTEmbedLoss`
    for the margin (ST 5.3's relative margin differs when the guide's positive score is negative).
    """

    expected_inputs = (2, None, False, "anchor, positive[, negative_1, ..., negative_n]")
    citation = GISTEmbedLoss.citation

    def __init__(self, model, guide, temperature: float = 0.01, mini_batch_size: int = 32,
                 mini_batch_num_tokens: int | None = None, show_progress_bar: bool = False,
                 margin_strategy: str = "absolute", margin: float = 0.0, contrast_anchors: bool = True,
                 contrast_positives: bool = True, gather_across_devices: bool = False) -> None:
        self._init_cache(model, mini_batch_size, mini_batch_num_tokens, show_progress_bar)
        self.guide = guide
        self.temperature = temperature
        self.must_retokenize = check_guide(model, guide)
        if self.must_retokenize:
            self.tokenizer = model.tokenizer
        check_margin_strategy(margin_strategy)
        self.margin_strategy = margin_strategy
        self.margin = margin
        self.contrast_anchors = contrast_anchors
        self.contrast_positives = contrast_positives
        self.gather_across_devices = gather_across_devices
        self.guided = None

    def check_labels(self, labels, where: str = "batch") -> None:
        _inbatch.check_no_labels(self, labels, where)

    def check_inputs(self, sentence_features, labels) -> None:
        _inbatch.check_columns(self, sentence_features, *self.expected_inputs[:2], self.expected_inputs[3])
        self.check_labels(labels)

    def prepare(self, sentence_features) -> None:
        """The guide's embeddings of every column, in mini-batches (no graph is kept)."""
        self.guided = []
        for features in sentence_features:
            parts = []
            for rows in super()._ranges(features):
                part = guide_embed(self, self._minibatch(features, rows)).astype(mx.float32)
                mx.eval(part)
                parts.append(part)
            self.guided.append(mx.concatenate(parts, axis=0))

    def block_loss(self, columns, begin, end, labels=None) -> mx.array:
        batch_size = columns[0].shape[0]
        candidates = [_inbatch.gather(c, self.gather_across_devices) for c in columns[1:]]
        offset = candidates[0][1]
        candidates_guide = [_inbatch.gather(g, self.gather_across_devices)[0] for g in self.guided[1:]]
        return _inbatch.gist_block(self, columns[0], [c for c, _ in candidates], self.guided[0], candidates_guide,
                                   begin, end, offset) / batch_size

    def _clear(self) -> None:
        super()._clear()
        self.guided = None

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "guide": self.guide,
            "temperature": self.temperature,
            "mini_batch_size": self.mini_batch_size,
            "mini_batch_num_tokens": self.mini_batch_num_tokens,
            "margin_strategy": self.margin_strategy,
            "margin": self.margin,
            "contrast_anchors": self.contrast_anchors,
            "contrast_positives": self.contrast_positives,
            "gather_across_devices": self.gather_across_devices,
        }

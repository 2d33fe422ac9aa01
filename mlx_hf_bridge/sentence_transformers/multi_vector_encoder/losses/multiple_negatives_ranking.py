"""``MultiVectorMultipleNegativesRankingLoss`` (ST 6.2): PyLate's ``Contrastive`` math with ST 6's
conventions (``colbert.conventions``), ``scale`` in place of ``temperature``."""

from __future__ import annotations

from typing import Any, Callable

import mlx.core as mx

from ....colbert.conventions import MULTI_VECTOR_ENCODER, RowChunks, colbert_scores
from ....colbert.losses import Contrastive
from ._common import check_scale, similarity_fct_name


class MultiVectorMultipleNegativesRankingLoss(Contrastive):
    """In-batch negatives contrastive loss for a ``MultiVectorEncoder`` (ST 6.2's signature and defaults).

    Every query is scored (MaxSim, ST 6's masking) against every document of every column of the
    batch; query i's positive is column ``i * N``; the loss is ``cross_entropy(scores * scale, targets)``
    averaged over the batch.

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
        ``1 / temperature``: scores are multiplied by it before the cross-entropy (default 1.0).
    similarity_fct
        ``fct(queries (Q, Lq, H), documents (Q, N, Ld, H), queries_mask=, documents_mask=) -> (Q, Q * N)``.
        Defaults to ``multi_vector_encoder.scoring.colbert_scores``.
    mini_batch_size
        Rows per document forward, each chunk cut to its own longest row (less padding; same values).
    score_mini_batch_size
        Score queries in chunks of this size (transient scoring memory only).
    gather_across_devices
        Gather document embeddings across ``mx.distributed`` ranks (each rank's columns zero-padded to the
        widest rank's width first, as ST 6; unlike PyLate, the loss is not scaled by the world size); on one
        process the identity.
    """

    # (min text columns, max text columns or None, needs labels, roles): read by the trainer's checks
    expected_inputs = (2, None, False, "anchor, positive[, negative, ...]")

    def __init__(
        self,
        model,
        *,
        scale: float = 1.0,
        similarity_fct: Callable | None = None,
        mini_batch_size: int | None = None,
        score_mini_batch_size: int | None = None,
        gather_across_devices: bool = False,
    ) -> None:
        check_scale(scale)
        similarity_fct = similarity_fct if similarity_fct is not None else colbert_scores
        super().__init__(model, score_metric=similarity_fct, score_mini_batch_size=score_mini_batch_size,
                         size_average=True, gather_across_devices=gather_across_devices)
        self.scale = scale
        self.similarity_fct = similarity_fct
        self.mini_batch_size = mini_batch_size
        self.columns = RowChunks(MULTI_VECTOR_ENCODER, mini_batch_size)

    def _logits(self, scores: mx.array) -> mx.array:
        return scores * self.scale


    def get_config_dict(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "similarity_fct": similarity_fct_name(self.similarity_fct),
            "mini_batch_size": self.mini_batch_size,
            "score_mini_batch_size": self.score_mini_batch_size,
            "gather_across_devices": self.gather_across_devices,
        }

    @property
    def citation(self) -> str:
        return """
@misc{henderson2017efficient,
    title={Efficient Natural Language Response Suggestion for Smart Reply},
    author={Matthew Henderson and Rami Al-Rfou and Brian Strope and Yun-hsuan Sung and Laszlo Lukacs and Ruiqi Guo and Sanjiv Kumar and Balint Miklos and Ray Kurzweil},
    year={2017},
    eprint={1705.00652},
    archivePrefix={arXiv},
    primaryClass={cs.CL}
}
"""

"""``MultipleNegativesRankingLoss`` (InfoNCE with in-batch negatives), ST 5.3 / 6.2 on MLX."""

from __future__ import annotations

import logging
from typing import Any, Callable

import mlx.core as mx

from ..dense.similarity import cos_sim
from ._common import similarity_fct_name
from . import _inbatch

logger = logging.getLogger(__name__)


class MultipleNegativesRankingLoss(_inbatch.MNRLOptions):
    """For each anchor, its positive must score above every other document in the batch (the other
    anchors' positives and every hard negative), optionally also in the other ``directions``.

    ST 5.3 and 6.2 have the same signature, defaults and math; ST 6.2 embeds the candidate columns in
    one merged forward (same values). The score of anchor ``i`` and document ``j`` is
    ``similarity_fct(a_i, d_j) * scale``; the loss is the mean over anchors of ``-log softmax`` of the
    positive over the selected directions (``partition_mode="joint"``: one softmax over all of them;
    ``"per_direction"``: the mean of one log-partition per direction). ``hardness_mode`` adds
    ``hardness_strength * stop_gradient(similarity)`` to the chosen negatives' logits.

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
        The bridge's ``SentenceTransformer``.
    scale
        Similarities are multiplied by it (``1 / temperature``).
    similarity_fct
        ``(a (N, D), b (M, D)) -> (N, M)`` on ``mx.array``; ST's ``util.cos_sim`` by default.
    gather_across_devices
        Gather every rank's embeddings (with gradients) over ``mx.distributed``; one process: no-op, one warning.
    directions
        Any of ``"query_to_doc"`` (required), ``"query_to_query"``, ``"doc_to_query"``, ``"doc_to_doc"``.
    partition_mode
        ``"joint"`` or ``"per_direction"`` (not with ``query_to_query`` / ``doc_to_doc``).
    hardness_mode, hardness_strength
        ``None`` / ``"in_batch_negatives"`` / ``"hard_negatives"`` / ``"all_negatives"`` and its alpha (>= 0).

    Unlike ST, a label column is refused (ST ignores it silently): it usually means another loss was meant.
    """

    expected_inputs = (2, None, False, "anchor, positive[, negative_1, ..., negative_n]")

    def __init__(
        self,
        model,
        scale: float = 20.0,
        similarity_fct: Callable = cos_sim,
        gather_across_devices: bool = False,
        directions: tuple[str, ...] = ("query_to_doc",),
        partition_mode: str = "joint",
        hardness_mode: str | None = None,
        hardness_strength: float = 0.0,
    ) -> None:
        self.model = model
        self._set_mnrl_options(scale, similarity_fct, gather_across_devices, directions, partition_mode,
                               hardness_mode, hardness_strength, logger.warning)

    def _check(self, sentence_features, labels) -> list[dict]:
        sentence_features = list(sentence_features)
        _inbatch.check_columns(self, sentence_features, *self.expected_inputs[:2], self.expected_inputs[3])
        self.check_labels(labels)
        return sentence_features

    def __call__(self, sentence_features, labels=None) -> mx.array:
        sentence_features = self._check(sentence_features, labels)
        embeddings = [self.model(features)["sentence_embedding"] for features in sentence_features]
        return self.compute_loss_from_embeddings(embeddings, labels)

    forward = __call__

    def compute_loss_from_embeddings(self, embeddings: list[mx.array], labels=None) -> mx.array:
        if len(embeddings) < 2:
            raise ValueError(f"Expected at least 2 embeddings, got {len(embeddings)}")
        return self.mnrl_loss(embeddings, 0, embeddings[0].shape[0])

    def get_config_dict(self) -> dict[str, Any]:
        return self.mnrl_config(similarity_fct_name)

    @property
    def citation(self) -> str:
        # ST's: the paper of the configuration (GTE's four-direction joint loss, Jina's symmetric one)
        if set(self.directions) == set(_inbatch.DIRECTIONS) and self.partition_mode == "joint":
            return GTE_CITATION
        if set(self.directions) == {"query_to_doc", "doc_to_query"} and self.partition_mode == "per_direction":
            return JINA_CITATION
        return INFONCE_CITATION


GTE_CITATION = """
@misc{li2023generaltextembeddingsmultistage,
      title={Towards General Text Embeddings with Multi-stage Contrastive Learning},
      author={Zehan Li and Xin Zhang and Yanzhao Zhang and Dingkun Long and Pengjun Xie and Meishan Zhang},
      year={2023},
      eprint={2308.03281},
      archivePrefix={arXiv},
      primaryClass={cs.CL},
      url={https://arxiv.org/abs/2308.03281},
}
"""
JINA_CITATION = """
@misc{günther2024jinaembeddings28192token,
      title={Jina Embeddings 2: 8192-Token General-Purpose Text Embeddings for Long Documents},
      author={Michael Günther and Jackmin Ong and Isabelle Mohr and Alaeddine Abdessalem and Tanguy Abel and Mohammad Kalim Akram and Susana Guzman and Georgios Mastrapas and Saba Sturua and Bo Wang and Maximilian Werk and Nan Wang and Han Xiao},
      year={2024},
      eprint={2310.19923},
      archivePrefix={arXiv},
      primaryClass={cs.CL},
      url={https://arxiv.org/abs/2310.19923},
}
"""
INFONCE_CITATION = """
@misc{oord2019representationlearningcontrastivepredictive,
      title={Representation Learning with Contrastive Predictive Coding},
      author={Aaron van den Oord and Yazhe Li and Oriol Vinyals},
      year={2019},
      eprint={1807.03748},
      archivePrefix={arXiv},
      primaryClass={cs.LG},
      url={https://arxiv.org/abs/1807.03748},
}
"""

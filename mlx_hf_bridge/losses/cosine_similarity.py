"""``CosineSimilarityLoss`` (ST 5.3 / 6.2): regress the cosine similarity of a pair onto its label."""

from __future__ import annotations

from typing import Any, Callable

import mlx.core as mx

from ..dense.similarity import pairwise_cos_sim
from ._pairwise import (Identity, MSELoss, as_mlx_callable, check_columns, check_numeric, embed_columns, fullname,
                        per_example, rows)


class CosineSimilarityLoss:
    """``loss_fct(cos_score_transformation(cos(u, v)), label)`` with ``u, v`` the two columns'
    embeddings; by default the MSE between the cosine similarity and the label.

    Inputs:

    +--------------------------------+----------------------------------+
    | Texts (columns, in this order) | Labels                           |
    +================================+==================================+
    | (sentence_A, sentence_B) pairs | float similarity score (in [0,1])|
    +--------------------------------+----------------------------------+

    Parameters
    ----------
    model
        The SentenceTransformer.
    loss_fct
        ``fct(predictions (B,), labels (B,)) -> scalar``; default ``MSELoss()`` (torch's ``nn.MSELoss()``;
        a torch ``nn.MSELoss()`` / ``nn.L1Loss()`` passed by a script is translated to MLX).
    cos_score_transformation
        Applied to the cosine similarities first; default the identity.

    ``get_config_dict`` is ST 6.2's (ST 5.3 leaves out ``cos_score_transformation``).
    """

    expected_inputs = (2, 2, True, "sentence_A, sentence_B and a float 'score' label column")

    def __init__(self, model, loss_fct: Callable = MSELoss(), cos_score_transformation: Callable = Identity()) -> None:
        self.model = model
        self.loss_fct = as_mlx_callable(loss_fct, "loss_fct")
        self.cos_score_transformation = as_mlx_callable(cos_score_transformation, "cos_score_transformation")

    def check_labels(self, labels, where: str):
        check_numeric(type(self).__name__, labels, where, "one float similarity score per pair")

    def __call__(self, sentence_features, labels) -> mx.array:
        sentence_features = list(sentence_features)
        check_columns(self, sentence_features, 2, 2, "sentence_A, sentence_B")
        per_example(self, labels, rows(sentence_features))  # before the forward pass
        return self.compute_loss_from_embeddings(embed_columns(self.model, sentence_features), labels)

    forward = __call__

    def compute_loss_from_embeddings(self, embeddings: list[mx.array], labels) -> mx.array:
        labels = per_example(self, labels, embeddings[0].shape[0]).astype(mx.float32)
        output = self.cos_score_transformation(pairwise_cos_sim(embeddings[0], embeddings[1]))
        return self.loss_fct(output, labels)

    def get_config_dict(self) -> dict[str, Any]:
        return {"loss_fct": fullname(self.loss_fct), "cos_score_transformation": fullname(self.cos_score_transformation)}


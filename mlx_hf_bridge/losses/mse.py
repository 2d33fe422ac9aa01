"""``MSELoss`` (ST 5.3 / 6.2): regress the student's sentence embeddings onto teacher embeddings."""

from __future__ import annotations

import os
from typing import Any

import mlx.core as mx
import mlx.nn as nn

from ..io_utils import atomic_file, write_safetensors
from ._pairwise import check_columns, check_numeric, embed_columns, label_values


def embedding_dimension(model) -> int:
    """ST 6's ``get_embedding_dimension()`` (ST 5's ``get_sentence_embedding_dimension()``)."""
    for name in ("get_embedding_dimension", "get_sentence_embedding_dimension"):
        if hasattr(model, name):
            return int(getattr(model, name)())
    raise ValueError(f"{type(model).__name__} tells no embedding dimension (get_embedding_dimension()).")


class MSELoss(nn.Module):
    """``mean over columns of MSE(student(column) [projected], teacher embeddings)``: the multilingual
    distillation of Reimers & Gurevych (2020). Every text column is embedded; 2-D labels (B, teacher_dim)
    are the target of every column, 3-D labels (B, N, teacher_dim) give column i its own target
    (ST 6.2; ST 5.3 takes 2-D labels only, with the same value).

    Inputs:

    +-----------------------------------------+-----------------------------------------------------+
    | Texts (columns, in this order)          | Labels                                              |
    +=========================================+=====================================================+
    | input                                   | teacher embeddings ``(batch_size, teacher_dim)``    |
    +-----------------------------------------+-----------------------------------------------------+
    | input_1, input_2, ..., input_N          | teacher embeddings ``(batch_size, N, teacher_dim)`` |
    +-----------------------------------------+-----------------------------------------------------+
    | input_1, input_2, ..., input_N          | teacher embeddings ``(batch_size, teacher_dim)``    |
    +-----------------------------------------+-----------------------------------------------------+

    Parameters
    ----------
    model
        The student SentenceTransformer.
    projection_dim
        ST 6.2: a trainable ``Linear(student_dim, projection_dim)`` (with bias) maps the student's
        embeddings to the teacher's width first; its weights are this loss's own parameters
        (``loss.trainable_parameters()["projection"]``), saved by :meth:`save_projection`.
    """

    expected_inputs = (1, None, True, "one or more text columns and a 'label' column of teacher embeddings")

    def __init__(self, model, projection_dim: int | None = None) -> None:
        super().__init__()
        self.model = model
        self.distance_metric = "mse"
        self.projection_dim = projection_dim
        self.projection = None
        if projection_dim is not None:
            self.projection = nn.Linear(embedding_dimension(model), projection_dim)

    def check_labels(self, labels, where: str):
        labels = check_numeric(type(self).__name__, labels, where, "teacher embeddings")
        if labels.ndim not in (2, 3):
            raise ValueError(
                f"{type(self).__name__} expects teacher embeddings as labels, (batch_size, teacher_dim) or "
                f"(batch_size, num_columns, teacher_dim); the {where} gives labels of shape {tuple(labels.shape)}. "
                "Compute them with the teacher: dataset.map(lambda b: {'label': teacher.encode(b['text'])}, batched=True)."
            )
        self._check_width(labels.shape[-1], self._student_width())

    def _check_width(self, teacher_width: int, student_width: int | None):
        if student_width is not None and teacher_width != student_width:
            raise ValueError(
                f"{type(self).__name__}: the teacher embeddings (labels) have {teacher_width} dimensions, the "
                f"student's {'projected ' if self.projection_dim else ''}embeddings {student_width}. Use a teacher of "
                f"the same width, or MSELoss(model, projection_dim={teacher_width}) to learn a projection."
            )

    def __call__(self, sentence_features, labels) -> mx.array:
        sentence_features = list(sentence_features)
        check_columns(self, sentence_features, 1, None, "one or more text columns")
        if labels is None:
            raise ValueError(
                f"{type(self).__name__} requires pre-computed teacher embeddings as labels. Compute them once with "
                "the teacher and add them via `dataset.map(...)`."
            )
        labels = mx.stop_gradient(label_values(type(self).__name__, labels, "teacher embeddings"))
        n = len(sentence_features)
        if labels.ndim == 2:
            targets = [labels] * n
        elif labels.ndim == 3:
            if labels.shape[1] != n:
                raise ValueError(
                    f"Number of label columns ({labels.shape[1]}) does not match number of input text columns ({n}). "
                    f"Either pass 3D labels with shape (batch_size, {n}, teacher_dim), or pass 2D labels of shape "
                    "(batch_size, teacher_dim) to broadcast a single label across all columns."
                )
            targets = [labels[:, i] for i in range(n)]
        else:
            raise ValueError(
                f"Expected labels to be 2D (batch_size, teacher_dim) or 3D (batch_size, num_columns, teacher_dim); "
                f"got {labels.ndim}D."
            )
        return self.compute_loss_from_embeddings(embed_columns(self.model, sentence_features), targets)

    forward = __call__

    def _student_width(self) -> int | None:
        if self.projection_dim is not None:
            return self.projection_dim
        try:
            return embedding_dimension(self.model)
        except (ValueError, TypeError):  # a model that does not tell: the shapes are checked by the math
            return None

    def compute_loss_from_embeddings(self, embeddings: list[mx.array], teacher_embeddings: list[mx.array]) -> mx.array:
        losses = []
        for student, teacher in zip(embeddings, teacher_embeddings):
            if self.projection is not None:
                student = self.projection(student)
            self._check_width(teacher.shape[-1], student.shape[-1])  # (MatryoshkaLoss shrinks both sides)
            losses.append(mx.square(student - teacher.astype(student.dtype)).mean())
        return mx.stack(losses).mean()

    def save_projection(self, path: str | os.PathLike) -> None:
        """The projection as a safetensors file with torch's ``Linear`` keys (``weight``, ``bias``)."""
        if self.projection is None:
            raise ValueError(
                "No projection layer to save. Construct the loss with projection_dim=<int> if you want a learnable "
                "projection."
            )
        with atomic_file(path) as tmp:  # a failed save leaves an earlier file as it was
            write_safetensors(tmp, dict(self.projection.parameters()))

    def load_projection(self, path: str | os.PathLike) -> None:
        state = mx.load(str(path))
        out_features, in_features = state["weight"].shape
        if self.projection is None:
            student_dim = embedding_dimension(self.model)
            if in_features != student_dim:
                raise ValueError(
                    f"Saved projection expects student embeddings of dim {in_features}, but the current student model "
                    f"outputs {student_dim}-dim embeddings."
                )
            self.projection = nn.Linear(in_features, out_features)
            self.projection_dim = out_features
        elif tuple(self.projection.weight.shape) != (out_features, in_features):
            o, i = self.projection.weight.shape
            raise ValueError(
                f"Saved projection shape ({in_features} -> {out_features}) does not match the configured projection "
                f"shape ({i} -> {o})."
            )
        self.projection.load_weights(list(state.items()))

    def get_config_dict(self) -> dict[str, Any]:
        return {"projection_dim": self.projection_dim}

    @property
    def citation(self) -> str:
        return """
@inproceedings{reimers-2020-multilingual-sentence-bert,
    title = "Making Monolingual Sentence Embeddings Multilingual using Knowledge Distillation",
    author = "Reimers, Nils and Gurevych, Iryna",
    booktitle = "Proceedings of the 2020 Conference on Empirical Methods in Natural Language Processing",
    month = "11",
    year = "2020",
    publisher = "Association for Computational Linguistics",
    url = "https://arxiv.org/abs/2004.09813",
}
"""

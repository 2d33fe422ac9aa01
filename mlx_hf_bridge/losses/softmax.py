"""``SoftmaxLoss`` (ST 5.3 / 6.2): a trainable linear classifier over the pair's combined embeddings."""

from __future__ import annotations

import logging
from typing import Any, Callable

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from ._pairwise import CrossEntropyLoss, as_mlx_callable, check_columns, check_numeric, embed_columns, label_values

logger = logging.getLogger(__name__)


class SoftmaxLoss(nn.Module):
    """SBERT's NLI objective: ``loss_fct(classifier(concat(u, v, |u - v|[, u * v])), label)``.

    The classifier, ``Linear(n_vectors * embedding_dimension, num_labels)`` with bias, is this loss's
    own trainable parameters, as in ST (whose trainer gives the optimizer the loss's parameters, model
    included): ``loss.trainable_parameters()`` = ``{"model": ..., "classifier": ...}``. Its torch-style
    init is MLX's ``nn.Linear`` one (U(-1/sqrt(in), 1/sqrt(in)), a different random draw than torch).

    Inputs:

    +---------------------------------------+--------------------------------------+
    | Texts (columns, in this order)        | Labels                               |
    +=======================================+======================================+
    | (sentence_A, sentence_B) pairs        | class index (int, 0 .. num_labels-1) |
    +---------------------------------------+--------------------------------------+
    | (sentence_A, sentence_B) pairs        | class probabilities (B, num_labels)  |
    +---------------------------------------+--------------------------------------+

    Parameters
    ----------
    model
        The SentenceTransformer.
    embedding_dimension
        The model's embedding width (ST 6.2's name; ST 5.3's ``sentence_embedding_dimension`` is accepted,
        with ST 6.2's deprecation warning).
    num_labels
        Number of classes.
    concatenation_sent_rep, concatenation_sent_difference, concatenation_sent_multiplication
        Which of ``u, v``, ``|u - v|`` and ``u * v`` the classifier sees (defaults True, True, False).
    loss_fct
        Default ``CrossEntropyLoss()`` (torch's ``nn.CrossEntropyLoss()``, translated when a script passes it).
    """

    expected_inputs = (2, 2, True, "sentence_A, sentence_B and an integer 'label' column (class index)")

    def __init__(self, model, embedding_dimension: int | None = None, num_labels: int | None = None,
                 concatenation_sent_rep: bool = True, concatenation_sent_difference: bool = True,
                 concatenation_sent_multiplication: bool = False, loss_fct: Callable = CrossEntropyLoss(),
                 **kwargs) -> None:
        super().__init__()
        if "sentence_embedding_dimension" in kwargs:  # ST 6.2's deprecated_kwargs rename
            old = kwargs.pop("sentence_embedding_dimension")
            logger.warning("The `sentence_embedding_dimension` argument was renamed and is now deprecated. "
                           "Please use `embedding_dimension` instead.")
            embedding_dimension = old if embedding_dimension is None else embedding_dimension
        if kwargs:
            raise TypeError(f"SoftmaxLoss got unexpected keyword arguments: {', '.join(kwargs)}")
        if embedding_dimension is None or num_labels is None:
            raise TypeError("SoftmaxLoss needs embedding_dimension (model.get_embedding_dimension()) and num_labels.")
        self.model = model
        self.num_labels = num_labels
        self.concatenation_sent_rep = concatenation_sent_rep
        self.concatenation_sent_difference = concatenation_sent_difference
        self.concatenation_sent_multiplication = concatenation_sent_multiplication
        num_vectors_concatenated = 2 * concatenation_sent_rep + concatenation_sent_difference \
            + concatenation_sent_multiplication
        if num_vectors_concatenated == 0:
            raise ValueError(
                "At least one of concatenation_sent_rep, concatenation_sent_difference, or "
                "concatenation_sent_multiplication must be True."
            )
        logger.info(f"Softmax loss: {num_vectors_concatenated} vectors concatenated")
        self.classifier = nn.Linear(num_vectors_concatenated * embedding_dimension, num_labels)
        self.loss_fct = as_mlx_callable(loss_fct, "loss_fct")

    def check_labels(self, labels, where: str):
        labels = np.asarray(check_numeric(type(self).__name__, labels, where, "class indices"))
        if labels.ndim == 2 and labels.shape[1] == self.num_labels and labels.dtype.kind == "f":
            return  # class probabilities (ST 6.2)
        if labels.dtype.kind == "f" and not np.array_equal(labels, np.round(labels)):
            raise ValueError(
                f"{type(self).__name__} needs integer class labels (0 .. {self.num_labels - 1}), but the {where} "
                f"gives float labels (e.g. {labels.reshape(-1)[:3].tolist()}). For scores use CoSENTLoss or "
                "CosineSimilarityLoss; for classes map them to indices (ClassLabel or a dict)."
            )
        if labels.size and (labels.min() < 0 or labels.max() >= self.num_labels):
            raise ValueError(
                f"{type(self).__name__}(num_labels={self.num_labels}): the {where} has labels from {labels.min()} to "
                f"{labels.max()}; class indices must lie in 0 .. {self.num_labels - 1}. Set num_labels to the "
                "number of classes."
            )

    def __call__(self, sentence_features, labels):
        sentence_features = list(sentence_features)
        check_columns(self, sentence_features, 2, 2, "sentence_A, sentence_B")
        reps = embed_columns(self.model, sentence_features)
        rep_a, rep_b = reps
        vectors_concat = []
        if self.concatenation_sent_rep:
            vectors_concat += [rep_a, rep_b]
        if self.concatenation_sent_difference:
            vectors_concat.append(mx.abs(rep_a - rep_b))
        if self.concatenation_sent_multiplication:
            vectors_concat.append(rep_a * rep_b)
        features = mx.concatenate(vectors_concat, axis=1).astype(self.classifier.weight.dtype)
        output = self.classifier(features)
        if labels is None:
            return reps, output
        labels = label_values(type(self).__name__, labels, "class indices")
        if self.num_labels == 1 or labels.shape != output.shape:
            labels = labels.reshape(-1)
        return self.loss_fct(output, labels)

    forward = __call__

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "num_labels": self.num_labels,
            "concatenation_sent_rep": self.concatenation_sent_rep,
            "concatenation_sent_difference": self.concatenation_sent_difference,
            "concatenation_sent_multiplication": self.concatenation_sent_multiplication,
        }

    @property
    def citation(self) -> str:
        return """
@inproceedings{reimers-2019-sentence-bert,
    title = "Sentence-BERT: Sentence Embeddings using Siamese BERT-Networks",
    author = "Reimers, Nils and Gurevych, Iryna",
    booktitle = "Proceedings of the 2019 Conference on Empirical Methods in Natural Language Processing",
    month = "11",
    year = "2019",
    publisher = "Association for Computational Linguistics",
    url = "https://arxiv.org/abs/1908.10084",
}
"""

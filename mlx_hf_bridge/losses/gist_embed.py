"""``GISTEmbedLoss`` (guided in-batch negative selection), ST 5.3 / 6.2 on MLX."""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import numpy as np

from . import _inbatch


def check_guide(model, guide) -> bool:
    """ST's tokenizer checks; returns ``must_retokenize`` (different vocabulary, or a guide with a
    shorter ``max_seq_length``: the texts are decoded and tokenized again for the guide)."""
    from transformers import PreTrainedTokenizerBase

    if not hasattr(model, "tokenizer") or not hasattr(guide, "tokenizer"):
        raise ValueError("Both the training model and the guiding model must have a tokenizer attribute.")
    if not isinstance(model.tokenizer, PreTrainedTokenizerBase) or not isinstance(guide.tokenizer, PreTrainedTokenizerBase):
        raise ValueError("Both the training model and the guiding model must use a PreTrainedTokenizer from transformers.")
    return model.tokenizer.get_vocab() != guide.tokenizer.get_vocab() or guide.max_seq_length < model.max_seq_length


def check_margin_strategy(margin_strategy) -> None:
    if margin_strategy not in ("absolute", "relative"):
        raise ValueError("margin_strategy must be 'absolute' or 'relative'.")


def guide_features(loss, features: dict) -> dict:
    """The features the guide embeds: the same, or (``must_retokenize``) the decoded texts tokenized
    by the guide (ST 6.2 ``guide.preprocess``, ST 5.3 ``guide.tokenize``: the same call here)."""
    if not loss.must_retokenize:
        return features
    ids = np.asarray(features["input_ids"]).tolist()
    decoded = loss.tokenizer.batch_decode(ids, skip_special_tokens=True)
    return loss.guide.tokenize(decoded)


def guide_embed(loss, features: dict) -> mx.array:
    return mx.stop_gradient(loss.guide(guide_features(loss, features))["sentence_embedding"])


class GISTEmbedLoss:
    """MultipleNegativesRankingLoss-style cross-entropy in which a frozen **guide** model picks the
    in-batch negatives: any candidate the guide scores above the anchor's own positive (``margin``:
    ``"absolute"`` ``s > s_pos - margin``, ``"relative"`` ``s > s_pos - |s_pos| * margin``) is a
    presumed false negative and left out. Scores are cosine similarities / ``temperature``, over the
    anchor-positive, anchor-anchor (``contrast_anchors``), positive-positive (``contrast_positives``)
    and anchor-negative matrices.

    The guide is another ``SentenceTransformer`` of the bridge; it is run without gradients.
    ST 5.3 wrote the relative margin as ``s > s_pos * (1 - margin)``: the same unless the guide's
    positive score is negative; the bridge follows ST 6.2.

    Inputs:

    +---------------------------------------+--------+
    | Texts (columns, in this order)        | Labels |
    +=======================================+========+
    | (anchor, positive) pairs              | none   |
    +---------------------------------------+--------+
    | (anchor, positive, negative) triplets | none   |
    +---------------------------------------+--------+
    """

    expected_inputs = (2, 3, False, "anchor, positive[, negative]")

    def __init__(self, model, guide, temperature: float = 0.01, margin_strategy: str = "absolute",
                 margin: float = 0.0, contrast_anchors: bool = True, contrast_positives: bool = True,
                 gather_across_devices: bool = False) -> None:
        self.model = model
        self.guide = guide
        self.temperature = temperature
        self.must_retokenize = check_guide(model, guide)
        if self.must_retokenize:
            self.tokenizer = model.tokenizer
            if type(model[0]).__name__ == "StaticEmbedding":
                raise ValueError(
                    "If we must retokenize because the guide model has a different tokenizer, "
                    "then the Sentence Transformer model must not be based on a StaticEmbedding."
                )
        check_margin_strategy(margin_strategy)
        self.margin_strategy = margin_strategy
        self.margin = margin
        self.contrast_anchors = contrast_anchors
        self.contrast_positives = contrast_positives
        self.gather_across_devices = gather_across_devices

    def check_labels(self, labels, where: str = "batch") -> None:
        _inbatch.check_no_labels(self, labels, where)

    def __call__(self, sentence_features, labels=None) -> mx.array:
        sentence_features = list(sentence_features)
        _inbatch.check_columns(self, sentence_features, *self.expected_inputs[:2], self.expected_inputs[3])
        self.check_labels(labels)
        embeddings = [self.model(features)["sentence_embedding"] for features in sentence_features]
        guided = [guide_embed(self, features) for features in sentence_features]
        anchors, anchors_guide = embeddings[0], guided[0]
        candidates = [_inbatch.gather(c, self.gather_across_devices) for c in embeddings[1:]]
        offset = candidates[0][1]
        candidates = [c for c, _ in candidates]
        candidates_guide = [mx.stop_gradient(_inbatch.gather(c, self.gather_across_devices)[0]) for c in guided[1:]]
        batch_size = anchors.shape[0]
        return _inbatch.gist_block(self, anchors, candidates, anchors_guide, candidates_guide,
                                   0, batch_size, offset) / batch_size

    forward = __call__

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "guide": self.guide,
            "temperature": self.temperature,
            "margin_strategy": self.margin_strategy,
            "margin": self.margin,
            "contrast_anchors": self.contrast_anchors,
            "contrast_positives": self.contrast_positives,
            "gather_across_devices": self.gather_across_devices,
        }

    @property
    def citation(self) -> str:
        return """
@misc{solatorio2024gistembed,
    title={GISTEmbed: Guided In-sample Selection of Training Negatives for Text Embedding Fine-tuning},
    author={Aivin V. Solatorio},
    year={2024},
    eprint={2402.16829},
    archivePrefix={arXiv},
    primaryClass={cs.LG}
}
"""

"""RoBERTa heads with HF's names: ``RobertaForSequenceClassification`` (``classifier``: dropout on
the ``<s>`` token, ``dense``, tanh, dropout, ``out_proj``), ``RobertaForMaskedLM`` (``lm_head``:
``dense``, exact GELU, ``layer_norm``, decoder tied to the word embeddings + ``lm_head.bias``),
``RobertaForTokenClassification`` (dropout + ``classifier``). No pooler in any of them
(``add_pooling_layer=False``, as HF). XLM-RoBERTa (``tasks/xlm_roberta.py``) reuses these classes."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from ..models import roberta as arch
from ..models.base import LayerNorm, gelu_exact
from . import losses, register_head
from .base import OutputProjection, TaskModel


def _classifier_dropout(config) -> float:
    p = getattr(config, "classifier_dropout", None)
    return float(config.hidden_dropout_prob if p is None else p)


class _RobertaTask(TaskModel):
    base_model_prefix = "roberta"
    arch = arch  # the backbone module (xlm_roberta for XLM-R)
    family = "Roberta"

    def __init__(self, config):
        backbone = self.arch.Model(self.arch.ModelArgs.from_dict(config.to_dict()), add_pooling_layer=False)
        super().__init__(config, backbone)

    def init_parameter(self, name: str, shape: tuple) -> mx.array:
        """``RobertaPreTrainedModel._init_weights``: Linear / Embedding ~ N(0, initializer_range), the
        pad row of the word *and* position tables 0 (both are ``padding_idx=pad_token_id``), biases and
        ``lm_head.bias`` 0, LayerNorm weight 1."""
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "bias":
            return mx.zeros(shape)
        if "LayerNorm" in name or "layer_norm" in name:
            return mx.ones(shape)
        weight = mx.random.normal(shape) * float(self.config.initializer_range)
        if name in ("roberta.embeddings.word_embeddings.weight", "roberta.embeddings.position_embeddings.weight"):
            weight[int(self.config.pad_token_id)] = 0.0
        return weight


class RobertaClassificationHead(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(_classifier_dropout(config))
        self.out_proj = nn.Linear(config.hidden_size, config.num_labels)

    def __call__(self, hidden):
        x = self.dropout(hidden[:, 0])  # the <s> token
        return self.out_proj(self.dropout(mx.tanh(self.dense(x))))


class RobertaForSequenceClassification(_RobertaTask):
    task = "sequence-classification"
    hf_architecture = "RobertaForSequenceClassification"
    reads_first_token = True  # RobertaClassificationHead reads hidden[:, 0]

    def __init__(self, config):
        super().__init__(config)
        self.classifier = RobertaClassificationHead(config)

    def head_logits(self, hidden, attention_mask, labels=None):
        return self["classifier"](hidden)

    def loss(self, logits, labels):
        return losses.sequence_classification_loss(self.config, logits, labels)


class RobertaForTokenClassification(_RobertaTask):
    task = "token-classification"
    hf_architecture = "RobertaForTokenClassification"
    per_token = True

    def __init__(self, config):
        super().__init__(config)
        self.dropout = nn.Dropout(_classifier_dropout(config))
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)

    def head_logits(self, hidden, attention_mask, labels=None):
        return self["classifier"](self["dropout"](hidden))

    def loss(self, logits, labels):
        return losses.token_loss(logits, labels, self.num_labels, "token-classification")


class RobertaLMHead(nn.Module):
    """``lm_head``. HF's activation here is the exact GELU whatever ``hidden_act`` says. Tied: the
    decoder reads the word-embedding table and ``lm_head.bias`` (one array each, as HF's ties);
    with ``tie_word_embeddings=False`` HF unties both: ``decoder.weight`` and ``decoder.bias`` are
    the decoder's own and ``lm_head.bias`` stays, unused (as BERT's ``cls.predictions.bias``)."""

    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.layer_norm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.bias = mx.zeros((config.vocab_size,))
        if not config.tie_word_embeddings:
            self.decoder = OutputProjection(config.vocab_size, config.hidden_size, own_weight=True, bias=True)

    def __call__(self, x, word_embeddings: nn.Embedding):
        h = self.layer_norm(gelu_exact(self.dense(x)))
        if "decoder" in self:
            return self["decoder"](h)
        return h @ word_embeddings.weight.T + self.bias


class RobertaForMaskedLM(_RobertaTask):
    task = "masked-lm"
    hf_architecture = "RobertaForMaskedLM"
    tied_keys = {"lm_head.decoder.weight": "roberta.embeddings.word_embeddings.weight",
                 "lm_head.decoder.bias": "lm_head.bias"}
    per_token = True

    def __init__(self, config):
        super().__init__(config)
        self.lm_head = RobertaLMHead(config)

    def head_logits(self, hidden, attention_mask, labels=None):
        return self["lm_head"](hidden, self["roberta"].get_input_embeddings())

    def loss(self, logits, labels):
        return losses.token_loss(logits, labels, int(self.config.vocab_size), "masked-lm")


register_head("roberta", "sequence-classification", RobertaForSequenceClassification)
register_head("roberta", "token-classification", RobertaForTokenClassification)
register_head("roberta", "masked-lm", RobertaForMaskedLM)

"""BERT heads with HF's names: ``BertForSequenceClassification`` (pooler + dropout + classifier),
``BertForMaskedLM`` (``cls.predictions``: transform + decoder tied to the word embeddings + bias),
``BertForTokenClassification`` (dropout + classifier)."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from ..models import bert as arch
from ..models.base import LayerNorm, activation
from . import losses, register_head
from .base import OutputProjection, TaskModel


def _backbone(config, add_pooling_layer: bool):
    return arch.Model(arch.ModelArgs.from_dict(config.to_dict()), add_pooling_layer=add_pooling_layer)


def _classifier_dropout(config) -> float:
    p = getattr(config, "classifier_dropout", None)
    return float(config.hidden_dropout_prob if p is None else p)


class _BertTask(TaskModel):
    base_model_prefix = "bert"

    def init_parameter(self, name: str, shape: tuple) -> mx.array:
        """``BertPreTrainedModel._init_weights``: Linear / Embedding ~ N(0, initializer_range) with the
        word embeddings' padding row 0, biases (and the MLM bias) 0, LayerNorm weight 1."""
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "bias":
            return mx.zeros(shape)
        if "LayerNorm" in name:
            return mx.ones(shape)
        weight = mx.random.normal(shape) * float(self.config.initializer_range)
        pad = getattr(self.config, "pad_token_id", None)
        if name == "bert.embeddings.word_embeddings.weight" and pad is not None:
            weight[int(pad)] = 0.0  # nn.Embedding(padding_idx=pad_token_id)
        return weight


class BertForSequenceClassification(_BertTask):
    task, hf_architecture = "sequence-classification", "BertForSequenceClassification"
    reads_first_token = True  # the pooler reads hidden[:, 0]

    def __init__(self, config):
        super().__init__(config, _backbone(config, add_pooling_layer=True))
        self.dropout = nn.Dropout(_classifier_dropout(config))
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)

    def head_logits(self, hidden, attention_mask, labels=None):
        return self.classifier(self.dropout(self["bert"]["pooler"](hidden)))

    def loss(self, logits, labels):
        return losses.sequence_classification_loss(self.config, logits, labels)


class BertForTokenClassification(_BertTask):
    task, hf_architecture = "token-classification", "BertForTokenClassification"
    per_token = True

    def __init__(self, config):
        super().__init__(config, _backbone(config, add_pooling_layer=False))
        self.dropout = nn.Dropout(_classifier_dropout(config))
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)

    def head_logits(self, hidden, attention_mask, labels=None):
        return self.classifier(self.dropout(hidden))

    def loss(self, logits, labels):
        return losses.token_loss(logits, labels, self.num_labels, "token-classification")


class BertPredictionHeadTransform(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.transform_act_fn = activation(config.hidden_act)
        self.LayerNorm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def __call__(self, x):
        return self.LayerNorm(self.transform_act_fn(self.dense(x)))


class BertLMPredictionHead(nn.Module):
    """``cls.predictions``. The decoder's weight *is* the word-embedding table (tied: one array, so
    it stays tied through training and saving) and its bias is ``cls.predictions.bias``, as in HF.
    With ``tie_word_embeddings=False`` HF unties both: the decoder holds its own ``decoder.weight``
    and ``decoder.bias`` (the one used), and ``cls.predictions.bias`` stays, unused (HF's quirk)."""

    def __init__(self, config):
        super().__init__()
        self.transform = BertPredictionHeadTransform(config)
        self.bias = mx.zeros((config.vocab_size,))
        if not config.tie_word_embeddings:
            self.decoder = OutputProjection(config.vocab_size, config.hidden_size, own_weight=True, bias=True)

    def __call__(self, x, word_embeddings: nn.Embedding):
        h = self.transform(x)
        if "decoder" in self:
            return self["decoder"](h)
        return h @ word_embeddings.weight.T + self.bias


class BertOnlyMLMHead(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.predictions = BertLMPredictionHead(config)


class BertForMaskedLM(_BertTask):
    task, hf_architecture = "masked-lm", "BertForMaskedLM"
    # HF's _tied_weights_keys: checkpoint keys that are copies of others (dropped on load, not saved)
    tied_keys = {"cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
                 "cls.predictions.decoder.bias": "cls.predictions.bias"}
    per_token = True

    def __init__(self, config):
        super().__init__(config, _backbone(config, add_pooling_layer=False))
        self.cls = BertOnlyMLMHead(config)

    def head_logits(self, hidden, attention_mask, labels=None):
        return self["cls"]["predictions"](hidden, self["bert"].get_input_embeddings())

    def loss(self, logits, labels):
        return losses.token_loss(logits, labels, int(self.config.vocab_size), "masked-lm")


register_head("bert", "sequence-classification", BertForSequenceClassification)
register_head("bert", "token-classification", BertForTokenClassification)
register_head("bert", "masked-lm", BertForMaskedLM)

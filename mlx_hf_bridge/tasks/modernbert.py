"""ModernBERT heads with HF's names: ``head`` (dense, act, norm) then ``classifier`` for sequence
classification (``classifier_pooling`` "cls" or "mean") and token classification; ``head`` then
``decoder`` (weight tied to ``model.embeddings.tok_embeddings``, bias ``decoder.bias``) for MLM."""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from ..models import modernbert as arch
from ..models.base import LayerNorm, activation
from . import losses, register_head
from .base import OutputProjection, TaskModel


def _backbone(config):
    return arch.Model(arch.ModelArgs.from_dict(config.to_dict()))


class ModernBertPredictionHead(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size, bias=config.classifier_bias)
        self.act = activation(config.classifier_activation)
        self.norm = LayerNorm(config.hidden_size, eps=config.norm_eps, bias=config.norm_bias)

    def __call__(self, x):
        return self.norm(self.act(self.dense(x)))


class _ModernBertTask(TaskModel):
    base_model_prefix = "model"

    def init_parameter(self, name: str, shape: tuple) -> mx.array:
        """``ModernBertPreTrainedModel._init_weights``: truncated normals (cut at
        ``initializer_cutoff_factor`` std) with std initializer_range / sqrt(2 n_layers) for
        ``head.dense``, the decoder and the layers' ``Wo``, hidden_size**-0.5 for ``classifier``; biases 0, norms 1."""
        cfg = self.config
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "bias":
            return mx.zeros(shape)
        if name.rsplit(".", 2)[-2].endswith("norm"):  # norm, attn_norm, mlp_norm, final_norm
            return mx.ones(shape)
        if name.startswith("classifier."):
            std = cfg.hidden_size ** -0.5
        elif name.startswith(("head.", "decoder.")) or name.endswith(("attn.Wo.weight", "mlp.Wo.weight")):
            std = cfg.initializer_range / math.sqrt(2.0 * cfg.num_hidden_layers)
        else:
            std = cfg.initializer_range
        cutoff = cfg.initializer_cutoff_factor if cfg.initializer_cutoff_factor is not None else 3
        return mx.random.truncated_normal(-cutoff, cutoff, shape) * std


class ModernBertForSequenceClassification(_ModernBertTask):
    task, hf_architecture = "sequence-classification", "ModernBertForSequenceClassification"

    def __init__(self, config):
        if config.classifier_pooling not in ("cls", "mean"):
            raise ValueError(f"classifier_pooling={config.classifier_pooling!r}: ModernBERT pools with 'cls' or 'mean'.")
        super().__init__(config, _backbone(config))
        self.head = ModernBertPredictionHead(config)
        self.drop = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)

    def head_logits(self, hidden, attention_mask, labels=None):
        if self.config.classifier_pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = mx.ones(hidden.shape[:2]) if attention_mask is None else attention_mask.astype(hidden.dtype)
            pooled = (hidden * mask[..., None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
        return self["classifier"](self["drop"](self["head"](pooled)))

    def loss(self, logits, labels):
        return losses.sequence_classification_loss(self.config, logits, labels)


class ModernBertForTokenClassification(_ModernBertTask):
    task, hf_architecture = "token-classification", "ModernBertForTokenClassification"
    per_token = True

    def __init__(self, config):
        super().__init__(config, _backbone(config))
        self.head = ModernBertPredictionHead(config)
        self.drop = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)

    def head_logits(self, hidden, attention_mask, labels=None):
        return self["classifier"](self["drop"](self["head"](hidden)))

    def loss(self, logits, labels):
        return losses.token_loss(logits, labels, self.num_labels, "token-classification")


class ModernBertForMaskedLM(_ModernBertTask):
    """With ``config.sparse_prediction`` and labels, logits (and the loss) cover only the positions
    whose label is not ``sparse_pred_ignore_index``, as HF (logits then have shape (n, vocab))."""

    task, hf_architecture = "masked-lm", "ModernBertForMaskedLM"
    uses_num_items_in_batch = True  # HF: self.loss_function(logits, labels, vocab_size, **kwargs)
    tied_keys = {"decoder.weight": "model.embeddings.tok_embeddings.weight"}

    def __init__(self, config):
        super().__init__(config, _backbone(config))
        self.per_token = not config.sparse_prediction  # sparse: HF's own real-token selection instead
        self.padding_free = False  # without labels the logits cover every position, padded ones too
        self.head = ModernBertPredictionHead(config)
        self.decoder = OutputProjection(config.vocab_size, config.hidden_size,
                                        own_weight=not config.tie_word_embeddings, bias=config.decoder_bias)

    def head_logits(self, hidden, attention_mask, labels=None):
        if self.config.sparse_prediction and labels is not None:
            flat = mx.array(labels).reshape(-1)
            hidden = hidden.reshape(flat.shape[0], -1)[_positions(flat != self.config.sparse_pred_ignore_index)]
        return self["decoder"](self["head"](hidden), tied_weight=self["model"].get_input_embeddings().weight)

    def _labels_for_loss(self, labels):
        if self.config.sparse_prediction:
            flat = labels.reshape(-1)
            return flat[_positions(flat != self.config.sparse_pred_ignore_index)]
        return labels

    def loss(self, logits, labels, num_items_in_batch=None):
        return losses.token_loss(logits, labels, int(self.config.vocab_size), "masked-lm", num_items_in_batch)


def _positions(keep: mx.array) -> mx.array:
    return mx.array(np.nonzero(np.asarray(keep))[0].astype(np.int32))


register_head("modernbert", "sequence-classification", ModernBertForSequenceClassification)
register_head("modernbert", "token-classification", ModernBertForTokenClassification)
register_head("modernbert", "masked-lm", ModernBertForMaskedLM)

"""transformers' generic decoder heads (``GenericForSequenceClassification`` /
``GenericForTokenClassification``, which ``Qwen3For*`` and ``Gemma3TextForSequenceClassification``
are) on the bridge's decoder backbones: ``model.`` + backbone, then ``score``.

Sequence classification runs ``score`` (no bias) at the *last token that is not the pad token* of
each row, found from ``input_ids`` as HF does: ``argmax(arange(L) * (input_ids != pad_token_id))``,
so left and right padding both work, and, HF's quirk kept, a pad token used as a real last token
(Qwen pads with ``<|endoftext|>``) is skipped too, and an all-pad row reads position 0. Without a
``pad_token_id`` only a batch of one is accepted (its last token), as HF. Token classification is
dropout (``classifier_dropout``, else ``hidden_dropout``, else 0.1) then ``score`` with a bias
(``config.token_classification_bias``, read by transformers 5.24, may drop it). Neither loss reads
``num_items_in_batch`` (HF's generic heads do not pass it on)."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from . import losses
from .base import TaskModel


class _DecoderTask(TaskModel):
    base_model_prefix = "model"
    arch = None  # the backbone module (models/qwen3.py, models/gemma3_text.py)
    norm_init = 1.0  # RMSNorm weights at init: 1 (Qwen3), 0 for Gemma's (1 + weight) norms

    def __init__(self, config):
        super().__init__(config, self.arch.Model(self.arch.ModelArgs.from_dict(config.to_dict())))

    def init_parameter(self, name: str, shape: tuple) -> mx.array:
        """``PreTrainedModel._init_weights``: Linear / Embedding ~ N(0, initializer_range), the embedding's
        pad row 0, biases 0, RMSNorm weights ``norm_init``."""
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "bias":
            return mx.zeros(shape)
        if name.rsplit(".", 2)[-2].endswith("norm"):  # q_norm, input_layernorm, ..., norm
            return mx.full(shape, self.norm_init)
        weight = mx.random.normal(shape) * float(self.config.initializer_range or 0.02)
        pad = getattr(self.config, "pad_token_id", None)
        if name.endswith("embed_tokens.weight") and pad is not None:  # model. / model.encoder. (T5Gemma)
            weight[int(pad)] = 0.0
        return weight

    def freeze_embeddings(self, freeze: bool = True):
        """The token embedding table (``model.embed_tokens``; T5Gemma's ``model.encoder.embed_tokens``): these
        backbones have no ``embeddings`` module, so HF's idiom reads ``get_input_embeddings().requires_grad_``."""
        embedding = self.get_input_embeddings()
        (embedding.freeze if freeze else embedding.unfreeze)()
        return self


def last_non_pad_positions(input_ids: mx.array, pad_token_id) -> mx.array:
    """HF's ``(arange(L) * (input_ids != pad)).argmax(-1)``: the rightmost non-pad token, 0 for an all-pad row."""
    L = input_ids.shape[-1]
    weighted = mx.arange(L, dtype=mx.int32) * (input_ids != pad_token_id).astype(mx.int32)
    # torch's argmax returns the first maximum; MLX's argmax does too
    return mx.argmax(weighted, axis=-1)


class DecoderForSequenceClassification(_DecoderTask):
    task = "sequence-classification"

    def __init__(self, config):
        super().__init__(config)
        self.score = nn.Linear(config.hidden_size, config.num_labels, bias=False)

    def _backbone_hidden(self, input_ids, attention_mask, token_type_ids):
        hidden = super()._backbone_hidden(input_ids, attention_mask, token_type_ids)
        pad = self.config.pad_token_id
        B = input_ids.shape[0]
        if pad is None and B != 1:
            raise ValueError(
                f"{self.hf_architecture} pools the last non-pad token, and the config has pad_token_id=None: "
                f"transformers refuses batches of more than one row then ('Cannot handle batch sizes > 1 if no "
                f"padding token is defined.'), got {B}. Set config.pad_token_id (the tokenizer's pad token id).")
        # score is linear without bias: pooling before it gives HF's pooled logits
        last = mx.full((B,), -1 % input_ids.shape[1], dtype=mx.int32) if pad is None else \
            last_non_pad_positions(input_ids, int(pad))
        return hidden[mx.arange(B), last]

    def head_logits(self, hidden, attention_mask, labels=None):
        return self["score"](hidden)

    def loss(self, logits, labels):
        return losses.sequence_classification_loss(self.config, logits, labels)


def _token_dropout(config) -> float:
    for field in ("classifier_dropout", "hidden_dropout"):
        value = getattr(config, field, None)
        if value is not None:
            return float(value)
    return 0.1


class DecoderForTokenClassification(_DecoderTask):
    task = "token-classification"
    per_token = True

    def __init__(self, config):
        super().__init__(config)
        self.dropout = nn.Dropout(_token_dropout(config))
        self.score = nn.Linear(config.hidden_size, config.num_labels,
                               bias=bool(getattr(config, "token_classification_bias", True)))

    def head_logits(self, hidden, attention_mask, labels=None):
        return self["score"](self["dropout"](hidden))

    def loss(self, logits, labels):
        return losses.token_loss(logits, labels, self.num_labels, "token-classification")


def heads_for(arch_module, family: str, norm_init: float = 1.0, tasks=("sequence-classification", "token-classification")):
    """The generic head classes for one architecture, named as transformers names them."""
    bases = {"sequence-classification": DecoderForSequenceClassification,
             "token-classification": DecoderForTokenClassification}
    suffix = {"sequence-classification": "ForSequenceClassification", "token-classification": "ForTokenClassification"}
    return {task: type(family + suffix[task], (bases[task],),
                       {"arch": arch_module, "norm_init": norm_init, "hf_architecture": family + suffix[task]})
            for task in tasks}

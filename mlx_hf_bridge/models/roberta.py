"""RoBERTa encoder (HF ``model_type: roberta``) with HF parameter names, so saving is exporting.

BERT's layers (imported from ``bert.py``); what differs is the embeddings: position ids count the
non-pad tokens of each row and start at ``pad_token_id + 1`` (transformers'
``create_position_ids_from_input_ids``; a pad token gets position ``pad_token_id``), and, as
torch's ``nn.Embedding(padding_idx=...)``, the pad rows of the word and position tables get no
gradient. XLM-RoBERTa (``xlm_roberta.py``) is this model under another name.

With ``pack_sequences`` set (the padding-free losses and ``encode`` set it) and the fused CPU
attention available, a right-padded batch runs packed (``models/packing.py``): the embeddings are
computed on the padded batch, so the position ids are exactly the padded ones; the layers run on
real tokens only.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import numpy as np

from .. import kernels
from . import bert
from .base import padding_bias
from .packing import SequencePacking


@dataclass
class ModelArgs(bert.ModelArgs):
    model_type: str = "roberta"
    vocab_size: int = 50265
    pad_token_id: int | None = 1
    is_decoder: bool = False
    add_cross_attention: bool = False
    auto_map: dict | None = None

    def __post_init__(self):
        name = self.model_type
        if self.position_embedding_type not in (None, "absolute"):
            code = (self.auto_map or {}).get("AutoModel", self.auto_map)
            custom = f"; the config's auto_map names custom (torch) code for it ({code}), which cannot run on MLX" \
                if self.auto_map else ""
            raise ValueError(
                f"{name} position_embedding_type={self.position_embedding_type!r} is not supported: the built-in "
                f"{name} computes absolute position embeddings only{custom}. Run this model with the torch library."
            )
        if self.pad_token_id is None:
            raise ValueError(
                f"{name} config has pad_token_id=None: its position ids are counted from the pad token "
                "(create_position_ids_from_input_ids), so transformers cannot run it either. Set pad_token_id in "
                "config.json (1 for RoBERTa / XLM-RoBERTa checkpoints)."
            )
        if self.is_decoder or self.add_cross_attention:
            raise ValueError(
                f"{name} config has is_decoder={self.is_decoder}, add_cross_attention={self.add_cross_attention}: "
                "mlx_hf_bridge runs the bidirectional encoder only. Set both to false in config.json to use it as "
                "an encoder."
            )


class RobertaEmbeddings(bert.BertEmbeddings):
    def __init__(self, args: ModelArgs):
        super().__init__(args)
        self.padding_idx = int(args.pad_token_id)

    def __call__(self, input_ids, token_type_ids=None):
        is_token = input_ids != self.padding_idx
        positions = mx.cumsum(is_token.astype(mx.int32), axis=1) * is_token + self.padding_idx
        if token_type_ids is None:
            token_type_ids = mx.zeros_like(input_ids)
        looked_up = self.word_embeddings(input_ids) + self.position_embeddings(positions)
        # torch's padding_idx: the pad rows of both tables (word pad_token_id, position pad_token_id) get no gradient
        looked_up = mx.where(is_token[..., None], looked_up, mx.stop_gradient(looked_up))
        x = looked_up + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(x))


class PackedAttention:
    """The attention core of a packed batch as the fused CPU kernel (no RoPE): each token attends
    only inside its own segment (one original row)."""

    def __init__(self, key_mask, segments):
        self.key_mask, self.segments = key_mask, segments

    def __call__(self, qkv, heads: int):
        return kernels.attention(qkv, self.key_mask, heads, -1, None, self.segments)


class RobertaSelfAttention(bert.BertSelfAttention):
    def __call__(self, x, bias):
        if not isinstance(bias, PackedAttention):
            return super().__call__(x, bias)
        # one GEMM for the kernel's [q | k | v] layout; the three HF projections keep their names
        weight = mx.concatenate([self.query.weight, self.key.weight, self.value.weight], axis=0)
        bias_qkv = mx.concatenate([self.query.bias, self.key.bias, self.value.bias])
        return bias(mx.addmm(bias_qkv, x, weight.T), self.num_heads)


class RobertaLayer(bert.BertLayer):
    def __init__(self, args: ModelArgs):
        super().__init__(args)
        self.attention.self = RobertaSelfAttention(args)


class Model(bert.Model):
    """``RobertaModel``: ``model(input_ids, attention_mask)`` -> last hidden state (B, L, H); with
    ``output_hidden_states=True`` -> ``(last, hidden_states)`` as transformers (``num_hidden_layers + 1``
    entries). Padded rows are computed as transformers computes them (positions ``pad_token_id``)."""

    pack_sequences = False
    NAME = "RoBERTa"

    def __init__(self, args: ModelArgs, add_pooling_layer: bool = True):
        super().__init__(args, add_pooling_layer)
        self.embeddings = RobertaEmbeddings(args)
        self.encoder.layer = [RobertaLayer(args) for _ in range(args.num_hidden_layers)]

    @property
    def max_positions(self) -> int:
        """The most real (non-pad) tokens a row may hold: positions run from ``pad_token_id + 1``."""
        return int(self.args.max_position_embeddings) - int(self.args.pad_token_id) - 1

    def _check_length(self, input_ids):
        if input_ids.shape[1] <= self.max_positions:
            return
        # torch counts only non-pad tokens: a wide batch is fine while every row's count fits
        longest = int(np.asarray(mx.sum(input_ids != self.args.pad_token_id, axis=1).max()))
        if longest > self.max_positions:
            raise ValueError(
                f"Input of {longest} tokens is longer than {self.NAME}'s position table allows "
                f"(max_position_embeddings={self.args.max_position_embeddings}, positions start at pad_token_id + 1 = "
                f"{self.args.pad_token_id + 1}: at most {self.max_positions} tokens); truncate it, e.g. "
                f"tokenizer(..., truncation=True, max_length={self.max_positions})."
            )

    def __call__(self, input_ids, attention_mask=None, token_type_ids=None, output_hidden_states: bool = False):
        return self._forward(input_ids, attention_mask, token_type_ids, output_hidden_states)

    def _forward(self, input_ids, attention_mask, token_type_ids, output_hidden_states, layer_args=(), can_pack=True):
        """The encoder pass; ``layer_args`` go to every layer after ``(x, bias)`` (X-MOD's languages)."""
        self._check_length(input_ids)
        x = self.embeddings(input_ids, token_type_ids)
        packing = None
        if can_pack and self.pack_sequences and attention_mask is not None and self._fuses_attention(x):
            packing = SequencePacking.plan(attention_mask)
        if packing is not None:
            x, bias = packing.pack(x), PackedAttention(packing.key_mask, packing.segments)
        else:
            bias = None if attention_mask is None else padding_bias(attention_mask, x.dtype)
        hidden_states = [x] if output_hidden_states else None
        for layer in self.encoder.layer:
            x = layer(x, bias, *layer_args)
            if hidden_states is not None:
                hidden_states.append(x)
        x = self._final_norm(x)
        if packing is not None:
            x = packing.unpack(x)
            hidden_states = hidden_states and [packing.unpack(h) for h in hidden_states]
        if not output_hidden_states:
            return x
        # as transformers: each layer's output, the last entry replaced by the last hidden state
        return x, (*hidden_states[:-1], x)

    def _final_norm(self, x):
        return x  # RoBERTa has none (X-MOD's pre-norm variant does)

    def _fuses_attention(self, x) -> bool:
        # the kernel has no attention-probability dropout
        no_dropout = not self.training or self.args.attention_probs_dropout_prob == 0
        return no_dropout and kernels.attention_applies(x, self.args.hidden_size // self.args.num_attention_heads)

    @staticmethod
    def sanitize(weights: dict) -> dict:
        """HF checkpoint keys (``RobertaModel``, or ``roberta.``-prefixed task / MLM models) -> ours."""
        out = {}
        for key, value in weights.items():
            if key.startswith("roberta."):
                key = key[len("roberta.") :]
            elif key.startswith(("lm_head.", "classifier.", "qa_outputs.", "linear.")):
                continue  # MLM / task / ColBERT heads are not part of the encoder
            if key.endswith(("position_ids", "token_type_ids")) and "embeddings." in key:
                continue  # buffers in old checkpoints
            # legacy names, which transformers 5.3 also writes back when it saves a model it loaded
            key = key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
            out[key] = value
        return out


HF_ARCHITECTURE = "RobertaModel"

"""BERT encoder (HF ``model_type: bert``) with HF parameter names, so saving is exporting.

With ``pack_sequences`` set (the padding-free losses, task heads and ``encode`` set it) and the fused
CPU attention available (it applies attention-probability dropout itself when training),
a right-padded batch runs packed (``models/packing.py``): the embeddings are computed on the padded
batch, so the position ids are exactly the padded ones; the layers run on real tokens only, and each
token attends only inside its own row. RoBERTa / XLM-R / X-MOD share this forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn

from .. import kernels
from .base import BaseModelArgs, LayerNorm, activation, attention, padding_bias
from .packing import SequencePacking


@dataclass
class ModelArgs(BaseModelArgs):
    model_type: str = "bert"
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    position_embedding_type: str = "absolute"
    pad_token_id: int = 0

    def __post_init__(self):
        if self.position_embedding_type != "absolute":
            raise ValueError(
                f"BERT position_embedding_type={self.position_embedding_type!r} is not supported; "
                "only 'absolute' is."
            )


class BertEmbeddings(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.word_embeddings = nn.Embedding(args.vocab_size, args.hidden_size)
        self.position_embeddings = nn.Embedding(args.max_position_embeddings, args.hidden_size)
        self.token_type_embeddings = nn.Embedding(args.type_vocab_size, args.hidden_size)
        self.LayerNorm = LayerNorm(args.hidden_size, eps=args.layer_norm_eps)
        self.dropout = nn.Dropout(args.hidden_dropout_prob)

    def __call__(self, input_ids, token_type_ids=None):
        length = input_ids.shape[1]
        if token_type_ids is None:
            token_type_ids = mx.zeros_like(input_ids)
        x = (
            self.word_embeddings(input_ids)
            + self.position_embeddings(mx.arange(length))[None]
            + self.token_type_embeddings(token_type_ids)
        )
        return self.dropout(self.LayerNorm(x))


class PackedAttention:
    """The attention core of a packed batch as the fused CPU kernel (no RoPE): each token attends
    only inside its own segment (one original row)."""

    def __init__(self, key_mask, segments):
        self.key_mask, self.segments = key_mask, segments

    def __call__(self, qkv, heads: int, dropout: float = 0.0):
        return kernels.attention(qkv, self.key_mask, heads, -1, None, self.segments, dropout)


class FirstTokens:
    """The last layer when the head reads only each sequence's first token ([CLS] / <s> pooling):
    keys and values from every token, the query and everything after attention (output projection,
    MLP, norms) for the first tokens only. The first tokens' outputs are the ones the full layer
    gives; the other rows are never computed. Padded (B, L, H) -> (B, 1, H); packed (1, T, H) ->
    (1, B, H), ``first`` holding each sequence's first packed index."""

    def __init__(self, bias, first=None, segments=None):
        self.bias, self.first, self.segments = bias, first, segments

    def select(self, x):
        return x[:, :1] if self.first is None else x[:, self.first]

    def attend(self, module, x):
        heads, D = module.num_heads, module.head_dim

        def split(t):
            return t.reshape(t.shape[0], t.shape[1], heads, D).transpose(0, 2, 1, 3)

        q, k, v = split(module.query(self.select(x))), split(module.key(x)), split(module.value(x))
        bias = self.bias
        if self.first is not None:  # packed: query b sees the keys of segment b (its own sequence) only
            own = self.segments[0][None, :] == mx.arange(self.first.size, dtype=self.segments.dtype)[:, None]
            bias = mx.where(own, 0.0, -1e9).astype(x.dtype)[None, None]
        out = attention(q, k, v, D**-0.5, bias, module.dropout, module.training)
        return out.transpose(0, 2, 1, 3).reshape(q.shape[0], q.shape[2], -1)


class BertSelfAttention(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.num_heads = args.num_attention_heads
        self.head_dim = args.hidden_size // args.num_attention_heads
        self.query = nn.Linear(args.hidden_size, args.hidden_size)
        self.key = nn.Linear(args.hidden_size, args.hidden_size)
        self.value = nn.Linear(args.hidden_size, args.hidden_size)
        self.dropout = nn.Dropout(args.attention_probs_dropout_prob)
        self.dropout_p = float(args.attention_probs_dropout_prob)  # the fused kernel's p

    def __call__(self, x, bias):
        if isinstance(bias, FirstTokens):
            return bias.attend(self, x)
        if isinstance(bias, PackedAttention):
            # one GEMM for the kernel's [q | k | v] layout; the three HF projections keep their names
            weight = mx.concatenate([self.query.weight, self.key.weight, self.value.weight], axis=0)
            bias_qkv = mx.concatenate([self.query.bias, self.key.bias, self.value.bias])
            return bias(mx.addmm(bias_qkv, x, weight.T), self.num_heads, self.dropout_p if self.training else 0.0)
        B, L, _ = x.shape

        def heads(t):
            return t.reshape(B, L, self.num_heads, self.head_dim).transpose(0, 2, 1, 3)

        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        out = attention(q, k, v, self.head_dim**-0.5, bias, self.dropout, self.training)
        return out.transpose(0, 2, 1, 3).reshape(B, L, -1)


class BertSelfOutput(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.dense = nn.Linear(args.hidden_size, args.hidden_size)
        self.LayerNorm = LayerNorm(args.hidden_size, eps=args.layer_norm_eps)
        self.dropout = nn.Dropout(args.hidden_dropout_prob)

    def __call__(self, h, residual):
        return self.LayerNorm(self.dropout(self.dense(h)) + residual)


class BertAttention(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.self = BertSelfAttention(args)
        self.output = BertSelfOutput(args)

    def __call__(self, x, bias):
        return self.output(self.self(x, bias), bias.select(x) if isinstance(bias, FirstTokens) else x)


class BertIntermediate(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.dense = nn.Linear(args.hidden_size, args.intermediate_size)
        self.act = activation(args.hidden_act)

    def __call__(self, x):
        return self.act(self.dense(x))


class BertOutput(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.dense = nn.Linear(args.intermediate_size, args.hidden_size)
        self.LayerNorm = LayerNorm(args.hidden_size, eps=args.layer_norm_eps)
        self.dropout = nn.Dropout(args.hidden_dropout_prob)

    def __call__(self, h, residual):
        return self.LayerNorm(self.dropout(self.dense(h)) + residual)


class BertLayer(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.attention = BertAttention(args)
        self.intermediate = BertIntermediate(args)
        self.output = BertOutput(args)

    def __call__(self, x, bias):
        x = self.attention(x, bias)
        return self.output(self.intermediate(x), x)


class BertEncoder(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.layer = [BertLayer(args) for _ in range(args.num_hidden_layers)]


class BertPooler(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.dense = nn.Linear(args.hidden_size, args.hidden_size)

    def __call__(self, hidden):
        return mx.tanh(self.dense(hidden[:, 0]))


class Model(nn.Module):
    """``BertModel``: ``model(input_ids, attention_mask)`` -> last hidden state (B, L, H); with
    ``output_hidden_states=True`` -> ``(last, hidden_states)``, transformers' tuple: the embeddings'
    output, then each layer's (``num_hidden_layers + 1`` entries, the last one the last hidden state)."""

    pack_sequences = False
    # set (by a [CLS]-pooled task head) to compute the last layer for each row's first token only:
    # the output is then (B, 1, H), those rows' last hidden states
    first_token_only = False
    NAME = "BERT"

    def __init__(self, args: ModelArgs, add_pooling_layer: bool = True):
        super().__init__()
        self.args = args
        self.embeddings = BertEmbeddings(args)
        self.encoder = BertEncoder(args)
        if add_pooling_layer:
            self.pooler = BertPooler(args)

    @property
    def layers(self):
        return self.encoder.layer

    @property
    def max_positions(self) -> int:
        """The longest sequence the position table holds (MLX would read past it, torch raises)."""
        return int(self.args.max_position_embeddings)

    def _check_length(self, input_ids):
        if input_ids.shape[1] > self.max_positions:  # MLX's gather would read past the table; torch raises
            raise ValueError(
                f"Input of {input_ids.shape[1]} tokens is longer than {self.NAME}'s position table "
                f"(max_position_embeddings={self.max_positions}); truncate it, e.g. "
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
        first = self._first_tokens(bias, packing, output_hidden_states)
        for i, layer in enumerate(self.encoder.layer):
            last = i == len(self.encoder.layer) - 1
            x = layer(x, first if last and first is not None else bias, *layer_args)
            if hidden_states is not None:
                hidden_states.append(x)
        x = self._final_norm(x)
        if first is not None:
            return x if packing is None else x.transpose(1, 0, 2)  # (B, 1, H)
        if packing is not None:
            x = packing.unpack(x)
            hidden_states = hidden_states and [packing.unpack(h) for h in hidden_states]
        if not output_hidden_states:
            return x
        # as transformers: each layer's output, the last entry replaced by the last hidden state
        return x, (*hidden_states[:-1], x)

    def _first_tokens(self, bias, packing, output_hidden_states):
        if not self.first_token_only or output_hidden_states or not self.encoder.layer:
            return None
        if packing is None:
            return FirstTokens(bias)
        return None if packing.first is None else FirstTokens(bias, packing.first, packing.segments)

    def _final_norm(self, x):
        return x  # BERT / RoBERTa have none (X-MOD's pre-norm variant does)

    def _fuses_attention(self, x) -> bool:
        return kernels.attention_applies(x, self.args.hidden_size // self.args.num_attention_heads)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, embedding: nn.Embedding):
        self.embeddings.word_embeddings = embedding

    @staticmethod
    def sanitize(weights: dict) -> dict:
        """HF / Stanford checkpoint keys -> our (HF ``BertModel``) keys."""
        out = {}
        for key, value in weights.items():
            if key.startswith("bert."):
                key = key[len("bert.") :]
            elif key.startswith(("cls.", "linear.", "classifier.")):
                continue  # MLM / ColBERT / classification heads are not part of the encoder
            if key.endswith("position_ids"):
                continue  # a buffer in old checkpoints
            key = key.replace("LayerNorm.gamma", "LayerNorm.weight")
            key = key.replace("LayerNorm.beta", "LayerNorm.bias")
            out[key] = value
        return out

    @staticmethod
    def has_pooler(weights: dict) -> bool:
        return any("pooler." in k for k in weights)
HF_ARCHITECTURE = "BertModel"

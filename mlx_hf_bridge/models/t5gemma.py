"""The T5Gemma encoder as a backbone (HF ``model_type: t5gemma``, ``T5GemmaEncoderModel``: the encoder
of the encoder-decoder, as sentence-transformers loads it), HF parameter names (``encoder.*``), so
saving is exporting: transformers' ``T5GemmaEncoderModel.from_pretrained`` (what ST runs) reads it.

The config is the ``T5GemmaConfig`` whole; the encoder's sizes come from its ``encoder`` sub-config,
its dropout from the top-level ``dropout_rate`` / ``attention_dropout`` (what transformers copies
into the sub-config). A full T5Gemma checkpoint (``T5GemmaModel`` / ``...ForConditionalGeneration``)
loads too: ``sanitize`` keeps ``encoder.*`` and drops the decoder and the heads, as ST does.

As transformers' ``T5GemmaEncoder``: token embeddings (``padding_idx = pad_token_id``) times
``sqrt(hidden_size)``; blocks of grouped-query attention (no query / key norms, RoPE on every layer
with the one ``rope_theta``, scores scaled by ``query_pre_attn_scalar ** -0.5``) and a gated MLP, each
branch Gemma-RMSNorm'ed (``x * (1 + w)``) before and after, dropout on the embeddings, each branch and
the MLP's hidden; a final norm. Attention is bidirectional; the ``sliding_attention`` layers (every
other layer by default) see keys within the window. Without an attention mask the mask is
``input_ids != pad_token_id``, as transformers builds it.

Version quirks kept as the installed transformers has them (``_installed_behaviour``):
- transformers 5.3 runs T5Gemma with SDPA by default, which silently drops ``attn_logit_softcapping``
  (50 in the released configs); 5.24 runs it eager, where the soft cap ``c * tanh(s / c)`` is applied.
  ``ModelArgs(attn_implementation="eager")`` applies it whatever is installed (the fix for 5.3 and
  what ``attn_implementation="eager"`` gives in transformers 5.3), ``"sdpa"`` drops it.
- the local window: 5.3 sees ``|i - j| < sliding_window``, 5.24 ``|i - j| <= sliding_window``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from .base import BaseModelArgs, attention
from .decoder import (
    DecoderModel, apply_rope, check_layer_types, grouped_attention_inputs, layer_mask, resolve_attention_heads,
    rope_tables,
)
from .gemma3_text import Gemma3RMSNorm
from .qwen3 import LAYER_TYPES, ROPE_TYPES, Qwen3MLP

ATTENTION_IMPLEMENTATIONS = ("eager", "sdpa")


@functools.lru_cache(maxsize=1)
def _installed_behaviour() -> dict:
    """What the installed transformers' ``modeling_t5gemma`` does, read from its source (importing it
    would import torch): ``eager`` (its default attention is eager, which applies the soft cap) and
    ``inclusive_window``."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("transformers.models.t5gemma.modeling_t5gemma")
        source = open(spec.origin, encoding="utf-8").read() if spec and spec.origin else None
    except (ImportError, OSError, ValueError):
        source = None
    if source is None:  # no transformers: the newest behaviour
        return {"eager": True, "inclusive_window": True}
    return {"eager": "_supports_sdpa = False" in source,
            "inclusive_window": "create_bidirectional_sliding_window_mask" in source}


@dataclass
class ModelArgs(BaseModelArgs):
    """The encoder sub-config's fields (``from_dict`` merges them out of a ``T5GemmaConfig`` dict)."""

    model_type: str = "t5gemma"
    vocab_size: int = 256000
    hidden_size: int = 2304
    intermediate_size: int = 9216
    num_hidden_layers: int = 26
    num_attention_heads: int = 8
    num_key_value_heads: int | None = 4
    head_dim: int | None = 256
    hidden_activation: str = "gelu_pytorch_tanh"
    max_position_embeddings: int = 8192
    rms_norm_eps: float = 1e-6
    pad_token_id: int | None = 0
    attention_bias: bool = False
    attention_dropout: float = 0.0
    dropout_rate: float = 0.0
    query_pre_attn_scalar: float = 256
    sliding_window: int | None = 4096
    layer_types: list | None = None
    attn_logit_softcapping: float | None = 50.0
    rope_parameters: dict | None = None
    rope_theta: float = 10000.0  # config.json files written before transformers 5 keep these flat
    rope_scaling: dict | None = None
    attn_implementation: str | None = None  # None: the installed transformers' default

    @classmethod
    def from_dict(cls, params: dict):
        """A ``T5GemmaConfig`` dict: its ``encoder`` sub-config, with the top-level dropout settings
        (transformers overwrites the sub-config's with them)."""
        encoder = params.get("encoder")
        if not isinstance(encoder, dict):
            raise ValueError(
                "T5Gemma config has no 'encoder' sub-config; the bridge builds the encoder of a T5GemmaConfig "
                "(config.json with model_type 't5gemma' and an 'encoder' object). Restore the model's config.json."
            )
        merged = {**encoder, "model_type": "t5gemma"}
        for key in ("dropout_rate", "attention_dropout", "attn_implementation"):
            if params.get(key) is not None:
                merged[key] = params[key]
        return super().from_dict(merged)

    def __post_init__(self):
        resolve_attention_heads(self, "T5Gemma")
        if self.layer_types is None:  # transformers' default: local, global, local, ...
            self.layer_types = ["sliding_attention" if (i + 1) % 2 else "full_attention"
                                for i in range(self.num_hidden_layers)]
        check_layer_types(self, "T5Gemma", LAYER_TYPES)
        if "sliding_attention" in self.layer_types and self.sliding_window is None:
            raise ValueError(
                "T5Gemma layer_types lists 'sliding_attention' layers but the config sets sliding_window: null; "
                "transformers fails on it too. Set sliding_window, or list only 'full_attention' layers."
            )
        if self.attn_implementation not in (None, *ATTENTION_IMPLEMENTATIONS):
            raise ValueError(
                f"T5Gemma attn_implementation={self.attn_implementation!r}: the bridge reproduces "
                f"{list(ATTENTION_IMPLEMENTATIONS)} (eager applies attn_logit_softcapping, sdpa drops it)."
            )
        installed = _installed_behaviour()
        self.eager = installed["eager"] if self.attn_implementation is None else self.attn_implementation == "eager"
        self.softcap = self.attn_logit_softcapping if self.eager else None
        # decoder.layer_mask's bidirectional window: |i - j| <= w
        window = None if self.sliding_window is None else self.sliding_window - (0 if installed["inclusive_window"] else 1)
        self.windows = {"full_attention": None, "sliding_attention": window}
        rope = dict(self.rope_parameters or self.rope_scaling or {})
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type not in ROPE_TYPES:
            raise ValueError(
                f"T5Gemma rope_type={rope_type!r} is not supported on MLX (the bridge implements {list(ROPE_TYPES)}); "
                "run this model with transformers on torch, or use a config without that RoPE scaling."
            )
        self.theta = float(rope.get("rope_theta", self.rope_theta))
        self.position_scale = 1.0 / float(rope["factor"]) if rope_type == "linear" else 1.0

    @property
    def hidden_act(self) -> str:  # the name Qwen3MLP reads
        return self.hidden_activation


def eager_attention(q, k, v, scale: float, softcap: float | None, mask, dropout: nn.Dropout, training: bool):
    """transformers' eager attention: ``c * tanh((q k^T * scale) / c)`` (with a soft cap) before the mask.
    A query that sees no key (a padded position outside every real token's window) gets uniform
    weights over all keys there (its scores all round to the dtype's minimum), so the mean of ``v``."""
    bias, visible = mask
    scores = (q @ k.transpose(0, 1, 3, 2)) * scale
    if softcap is not None:
        scores = mx.tanh(scores / softcap) * softcap
    probs = mx.softmax((scores + bias).astype(mx.float32), axis=-1).astype(q.dtype)
    out = (dropout(probs) if training else probs) @ v
    return mx.where(visible > 0, out, mx.mean(v, axis=-2, keepdims=True))


class T5GemmaSelfAttention(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = args.num_attention_heads, args.num_key_value_heads, args.head_dim
        bias = args.attention_bias
        self.q_proj = nn.Linear(args.hidden_size, self.num_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(args.hidden_size, self.num_kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(args.hidden_size, self.num_kv_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, args.hidden_size, bias=bias)
        self.scale = float(args.query_pre_attn_scalar) ** -0.5
        self.eager, self.softcap = args.eager, args.softcap
        self.drop = nn.Dropout(args.attention_dropout)

    def __call__(self, x, mask, cos, sin):
        B, L, _ = x.shape
        bias, visible = mask

        def heads(t, n):
            return t.reshape(B, L, n, self.head_dim).transpose(0, 2, 1, 3)

        q = apply_rope(heads(self.q_proj(x), self.num_heads), cos, sin)
        k = apply_rope(heads(self.k_proj(x), self.num_kv_heads), cos, sin)
        v = heads(self.v_proj(x), self.num_kv_heads)
        q, k, v = grouped_attention_inputs(q, k, v, self.num_heads, self.num_kv_heads)
        if self.eager:
            out = eager_attention(q, k, v, self.scale, self.softcap, mask, self.drop, self.training)
        else:  # SDPA: a query that sees no key gets 0
            out = attention(q, k, v, self.scale, bias, self.drop, self.training) * visible
        return self.o_proj(out.transpose(0, 2, 1, 3).reshape(B, L, -1))


class T5GemmaMLP(Qwen3MLP):
    """The gated MLP with dropout on its hidden activations."""

    def __init__(self, args: ModelArgs):
        super().__init__(args)
        self.dropout = nn.Dropout(args.dropout_rate)

    def __call__(self, x):
        return self.down_proj(self.dropout(self.act(self.gate_proj(x)) * self.up_proj(x)))


class T5GemmaEncoderLayer(nn.Module):
    def __init__(self, args: ModelArgs, layer_id: int):
        super().__init__()
        self.layer_type = args.layer_types[layer_id]
        self.self_attn = T5GemmaSelfAttention(args)
        self.mlp = T5GemmaMLP(args)
        dims, eps = args.hidden_size, args.rms_norm_eps
        self.pre_self_attn_layernorm = Gemma3RMSNorm(dims, eps)
        self.post_self_attn_layernorm = Gemma3RMSNorm(dims, eps)
        self.pre_feedforward_layernorm = Gemma3RMSNorm(dims, eps)
        self.post_feedforward_layernorm = Gemma3RMSNorm(dims, eps)
        self.dropout = nn.Dropout(args.dropout_rate)

    def __call__(self, x, mask, cos, sin):
        h = self.post_self_attn_layernorm(self.self_attn(self.pre_self_attn_layernorm(x), mask, cos, sin))
        x = x + self.dropout(h)
        return x + self.dropout(self.post_feedforward_layernorm(self.mlp(self.pre_feedforward_layernorm(x))))


class T5GemmaEncoder(nn.Module):
    """The parameters of transformers' ``T5GemmaEncoder`` (``Model`` runs them)."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.embed_tokens = nn.Embedding(args.vocab_size, args.hidden_size)
        self.layers = [T5GemmaEncoderLayer(args, i) for i in range(args.num_hidden_layers)]
        self.norm = Gemma3RMSNorm(args.hidden_size, args.rms_norm_eps)


class Model(DecoderModel):
    """``T5GemmaEncoderModel``: ``decoder.DecoderModel``'s forward (packed rows included) over the
    ``encoder`` submodule, so the parameters carry transformers' ``encoder.`` prefix."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        self.encoder = T5GemmaEncoder(args)
        self.dropout = nn.Dropout(args.dropout_rate)

    # DecoderModel's forward reads these; the modules live under ``encoder``
    embed_tokens = property(lambda self: self.encoder.embed_tokens)
    layers = property(lambda self: self.encoder.layers)
    norm = property(lambda self: self.encoder.norm)

    def embed(self, input_ids):
        x = super().embed(input_ids)
        # transformers: torch.tensor(sqrt(hidden_size), dtype=activations' dtype), then dropout
        return self.dropout(x * mx.array(self.args.hidden_size**0.5, dtype=x.dtype))

    def __call__(self, input_ids, attention_mask=None, token_type_ids=None, output_hidden_states: bool = False):
        if attention_mask is None:  # transformers' default mask: the pad token is padding
            pad = self.args.pad_token_id
            if pad is None:
                raise ValueError("T5Gemma without an attention_mask needs pad_token_id (transformers raises too); "
                                 "pass attention_mask.")
            attention_mask = (input_ids != pad).astype(mx.float32)
        out = super().__call__(input_ids, attention_mask, token_type_ids, output_hidden_states)
        if output_hidden_states:  # transformers applies the final dropout to the last hidden state only
            return self.dropout(out[0]), out[1]
        return self.dropout(out)

    def set_input_embeddings(self, embedding: nn.Embedding):
        self.encoder.embed_tokens = embedding

    def layer_inputs(self, key_mask, positions, segments, dtype) -> dict:
        a = self.args
        cos, sin = rope_tables(positions, a.head_dim, a.theta, a.position_scale)
        cos, sin = cos[:, None].astype(dtype), sin[:, None].astype(dtype)  # (1, 1, L, head_dim)
        pos = mx.array(positions.astype(np.int32))
        return {kind: (layer_mask(key_mask, pos, segments, False, a.windows[kind], dtype), cos, sin)
                for kind in set(a.layer_types)}

    @staticmethod
    def sanitize(weights: dict) -> dict:
        """``T5GemmaEncoderModel`` keys as they are; a full model's (``model.`` prefix of the heads'
        classes, ``decoder.*``, ``lm_head.*``, classifier heads) reduced to the encoder's."""
        out = {}
        for key, value in weights.items():
            if key.startswith("model."):
                key = key[len("model."):]
            if key.startswith("encoder.") and "rotary_emb." not in key:
                out[key] = value
        return out


HF_ARCHITECTURE = "T5GemmaEncoderModel"


def encoder_config(config):
    """The config as sentence-transformers loads the encoder (``is_encoder_decoder = False``, so
    ``T5GemmaEncoderModel`` accepts it), hence as it saves it."""
    config.is_encoder_decoder = False
    return config

"""Gemma 3 text decoder as an encoder backbone (HF ``model_type: gemma3_text``, ``Gemma3TextModel``: no
LM head; EmbeddingGemma's backbone), HF parameter names, so saving is exporting.

As transformers' ``modeling_gemma3`` (5.3 and 5.24 compute the same): token embeddings times
``sqrt(hidden_size)`` (the scale cast to the activations' dtype first); blocks of grouped-query
attention with a Gemma RMSNorm (``x * (1 + w)``, in float32) on each query / key head before RoPE,
scores scaled by ``query_pre_attn_scalar ** -0.5``, and a gelu-tanh gated MLP, each branch normed
before and after; a final norm. Layers are local (``sliding_attention``: a sliding window, RoPE base
``rope_local_base_freq``) or global (``full_attention``: RoPE base ``rope_theta``, linear scaling if
configured), as ``layer_types`` lists them (older configs: every ``sliding_window_pattern``-th layer
global).

Causal by default. ``use_bidirectional_attention: true`` (EmbeddingGemma) attends both ways, the
local layers within ``|i - j| < sliding_window // 2 + 1`` (transformers halves the configured window
when it reads the config). transformers' generic ``is_causal: false`` switch attends both ways too,
its local layers within ``|i - j| <= sliding_window``.

Quirks kept as transformers has them: ``attn_logit_softcapping`` is stored in the config but never
applied by ``Gemma3Attention`` (no attention implementation receives it), so it is ignored here too;
transformers 5.3 saves a bidirectional config with the already-halved window, which is halved again
when that save is read (5.24 saves the configured value); the bridge saves through the installed
transformers' config, so its saves read back as that library's do.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from .base import BaseModelArgs, attention
from .decoder import (
    DecoderModel, apply_rope, check_layer_types, grouped_attention_inputs, layer_mask, resolve_attention_heads,
    rope_tables,
)
from .qwen3 import LAYER_TYPES, ROPE_TYPES, Qwen3MLP


def _config_dict_holds_halved_window() -> bool:
    """Whether the installed transformers' ``Gemma3TextConfig.to_dict()`` (what ``build_model`` passes)
    writes a bidirectional config's window as halved at load (5.3) or as configured (5.24's ``to_dict``
    converts it back)."""
    try:
        from transformers import Gemma3TextConfig
    except ImportError:  # no transformers: a config.json dict, as configured
        return False
    return "to_dict" not in vars(Gemma3TextConfig)


@dataclass
class ModelArgs(BaseModelArgs):
    """From ``config.to_dict()`` of the installed transformers (``loading.build_model``) or a raw
    ``config.json`` (the loader's early checks); both spell the RoPE settings either way."""

    model_type: str = "gemma3_text"
    vocab_size: int = 262208
    hidden_size: int = 2304
    intermediate_size: int = 9216
    num_hidden_layers: int = 26
    num_attention_heads: int = 8
    num_key_value_heads: int | None = 4
    head_dim: int | None = 256
    hidden_activation: str = "gelu_pytorch_tanh"
    max_position_embeddings: int = 131072
    rms_norm_eps: float = 1e-6
    pad_token_id: int | None = 0
    attention_bias: bool = False
    attention_dropout: float = 0.0
    query_pre_attn_scalar: float = 256
    sliding_window: int | None = 4096
    layer_types: list | None = None
    sliding_window_pattern: int = 6  # configs without layer_types: every 6th layer global
    attn_logit_softcapping: float | None = None
    rope_parameters: dict | None = None  # transformers 5: {"full_attention": {...}, "sliding_attention": {...}}
    rope_theta: float | None = None  # config.json files written before transformers 5 keep these flat
    rope_local_base_freq: float | None = None
    rope_scaling: dict | None = None
    use_bidirectional_attention: bool | None = False
    is_causal: bool = True

    def __post_init__(self):
        resolve_attention_heads(self, "Gemma 3")
        if self.layer_types is None:  # transformers' rule for configs that predate layer_types
            self.layer_types = ["sliding_attention" if (i + 1) % self.sliding_window_pattern else "full_attention"
                                for i in range(self.num_hidden_layers)]
        check_layer_types(self, "Gemma 3", LAYER_TYPES)
        self.bidirectional = bool(self.use_bidirectional_attention) or not self.is_causal
        self.windows = {"full_attention": None, "sliding_attention": self._local_window()}
        self.rope = {kind: self._rope(kind) for kind in LAYER_TYPES}

    def _local_window(self) -> int | None:
        """The window argument of ``decoder.layer_mask`` for the local layers: causal ``j > i - w``,
        bidirectional ``|i - j| <= w``, as transformers' masks for this config."""
        window = self.sliding_window
        if window is None:
            if "sliding_attention" in self.layer_types:
                raise ValueError(
                    "Gemma 3 layer_types lists 'sliding_attention' layers but the config sets sliding_window: null; "
                    "transformers fails on it too. Set sliding_window, or list only 'full_attention' layers."
                )
            return None
        if not self.use_bidirectional_attention:
            return window  # causal j > i - w; is_causal: false -> transformers' |i - j| <= w
        if not _config_dict_holds_halved_window():
            window = window // 2 + 1  # what transformers' config holds after reading it
        # EmbeddingGemma's overlay |i - j| < w; with is_causal: false also transformers' |i - j| <= w (their union)
        return window if not self.is_causal else window - 1

    def _rope(self, kind: str) -> tuple[float, float]:
        """(theta, position scale) of one layer kind's RoPE."""
        nested = (self.rope_parameters or {}).get(kind)
        if kind == "full_attention":  # the flat spelling: the scaling applies to the global layers
            rope = {**(self.rope_scaling or {}), "rope_theta": self.rope_theta or 1_000_000.0}
        else:
            rope = {"rope_type": "default", "rope_theta": self.rope_local_base_freq or 10_000.0}
        if nested is not None:
            rope = {"rope_theta": rope["rope_theta"], **nested}
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type not in ROPE_TYPES:
            raise ValueError(
                f"Gemma 3 {kind} rope_type={rope_type!r} is not supported on MLX (the bridge implements "
                f"{list(ROPE_TYPES)}); run this model with transformers on torch, or use a config without that RoPE scaling."
            )
        return float(rope["rope_theta"]), 1.0 / float(rope["factor"]) if rope_type == "linear" else 1.0

    @property
    def hidden_act(self) -> str:  # the name Qwen3MLP reads
        return self.hidden_activation


class Gemma3RMSNorm(nn.Module):
    """Gemma's RMSNorm: weights stored as offsets from 1 (initialised 0), applied in float32 and cast
    back after the multiply, as transformers (``(x * (1 + w)).to(dtype)``, not Llama's order)."""

    def __init__(self, dims: int, eps: float):
        super().__init__()
        self.weight = mx.zeros((dims,))
        self.eps = eps

    def __call__(self, x):
        scale = 1.0 + self.weight.astype(mx.float32)
        return mx.fast.rms_norm(x.astype(mx.float32), scale, self.eps).astype(x.dtype)


class Gemma3Attention(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = args.num_attention_heads, args.num_key_value_heads, args.head_dim
        bias = args.attention_bias
        self.q_proj = nn.Linear(args.hidden_size, self.num_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(args.hidden_size, self.num_kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(args.hidden_size, self.num_kv_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, args.hidden_size, bias=bias)
        self.q_norm = Gemma3RMSNorm(self.head_dim, args.rms_norm_eps)
        self.k_norm = Gemma3RMSNorm(self.head_dim, args.rms_norm_eps)
        self.scale = float(args.query_pre_attn_scalar) ** -0.5
        self.drop = nn.Dropout(args.attention_dropout)

    def __call__(self, x, mask, cos, sin):
        B, L, _ = x.shape
        bias, visible = mask

        def heads(t, n):
            return t.reshape(B, L, n, self.head_dim).transpose(0, 2, 1, 3)

        q = apply_rope(self.q_norm(heads(self.q_proj(x), self.num_heads)), cos, sin)
        k = apply_rope(self.k_norm(heads(self.k_proj(x), self.num_kv_heads)), cos, sin)
        v = heads(self.v_proj(x), self.num_kv_heads)
        q, k, v = grouped_attention_inputs(q, k, v, self.num_heads, self.num_kv_heads)
        out = attention(q, k, v, self.scale, bias, self.drop, self.training) * visible
        return self.o_proj(out.transpose(0, 2, 1, 3).reshape(B, L, -1))


class Gemma3DecoderLayer(nn.Module):
    def __init__(self, args: ModelArgs, layer_id: int):
        super().__init__()
        self.layer_type = args.layer_types[layer_id]
        self.self_attn = Gemma3Attention(args)
        self.mlp = Qwen3MLP(args)  # the same gated MLP, with Gemma's activation
        dims, eps = args.hidden_size, args.rms_norm_eps
        self.input_layernorm = Gemma3RMSNorm(dims, eps)
        self.post_attention_layernorm = Gemma3RMSNorm(dims, eps)
        self.pre_feedforward_layernorm = Gemma3RMSNorm(dims, eps)
        self.post_feedforward_layernorm = Gemma3RMSNorm(dims, eps)

    def __call__(self, x, mask, cos, sin):
        x = x + self.post_attention_layernorm(self.self_attn(self.input_layernorm(x), mask, cos, sin))
        return x + self.post_feedforward_layernorm(self.mlp(self.pre_feedforward_layernorm(x)))


class Model(DecoderModel):
    """``Gemma3TextModel`` (``decoder.DecoderModel``'s forward, packed rows included)."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        self.embed_tokens = nn.Embedding(args.vocab_size, args.hidden_size)
        self.layers = [Gemma3DecoderLayer(args, i) for i in range(args.num_hidden_layers)]
        self.norm = Gemma3RMSNorm(args.hidden_size, args.rms_norm_eps)

    def embed(self, input_ids):
        x = super().embed(input_ids)
        # transformers' embed_scale buffer: float32 sqrt(hidden_size), cast to the weights' dtype
        return x * mx.array(self.args.hidden_size**0.5, dtype=mx.float32).astype(x.dtype)

    def layer_inputs(self, key_mask, positions, segments, dtype) -> dict:
        a = self.args
        pos = mx.array(positions.astype(np.int32))
        inputs = {}
        for kind in set(a.layer_types):
            theta, position_scale = a.rope[kind]
            cos, sin = rope_tables(positions, a.head_dim, theta, position_scale)
            # (1, 1, L, head_dim): broadcast over batch and heads; in the activations' dtype, as transformers
            inputs[kind] = (layer_mask(key_mask, pos, segments, not a.bidirectional, a.windows[kind], dtype),
                            cos[:, None].astype(dtype), sin[:, None].astype(dtype))
        return inputs


HF_ARCHITECTURE = "Gemma3TextModel"

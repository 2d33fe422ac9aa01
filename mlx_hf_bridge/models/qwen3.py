"""Qwen3 decoder as an encoder backbone (HF ``model_type: qwen3``, ``Qwen3Model``: no LM head), HF
parameter names, so saving is exporting.

Grouped-query attention with RMSNorm on each query / key head before RoPE, a SwiGLU MLP, pre-norm
RMSNorm blocks and a final norm. Causal attention, as transformers' ``Qwen3Model``; a config with
``is_causal: false`` (transformers' own switch, read by its mask builders in 5.3 and 5.24) attends
both ways. Positions are ``arange(L)`` whatever the padding, as transformers: with left padding
(Qwen3-Embedding) the first real token is not at position 0. Padded positions are computed as
transformers' default (SDPA) attention computes them: PyLate's non-attended query-expansion pads
are scored, so their values count.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from .base import BaseModelArgs, activation, attention
from .decoder import (
    DecoderModel, apply_rope, check_layer_types, grouped_attention_inputs, layer_mask, resolve_attention_heads,
    rope_tables,
)

LAYER_TYPES = ("full_attention", "sliding_attention")
ROPE_TYPES = ("default", "linear")


@dataclass
class ModelArgs(BaseModelArgs):
    model_type: str = "qwen3"
    vocab_size: int = 151936
    hidden_size: int = 4096
    intermediate_size: int = 22016
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int | None = None
    head_dim: int | None = None
    hidden_act: str = "silu"
    max_position_embeddings: int = 32768
    rms_norm_eps: float = 1e-6
    rope_parameters: dict | None = None
    rope_theta: float = 10000.0  # configs written before transformers 5 keep it flat ...
    rope_scaling: dict | None = None  # ... with the scaling here
    attention_bias: bool = False
    attention_dropout: float = 0.0
    use_sliding_window: bool = False
    sliding_window: int | None = None
    max_window_layers: int = 28
    layer_types: list | None = None
    is_causal: bool = True
    pad_token_id: int | None = None

    def __post_init__(self):
        resolve_attention_heads(self, "Qwen3")
        window = self.sliding_window if self.use_sliding_window else None  # as transformers' config
        if self.layer_types is None:
            self.layer_types = [
                "sliding_attention" if window is not None and i >= self.max_window_layers else "full_attention"
                for i in range(self.num_hidden_layers)
            ]
        check_layer_types(self, "Qwen3", LAYER_TYPES)
        if "sliding_attention" in self.layer_types and window is None:
            raise ValueError(
                "Qwen3 layer_types lists 'sliding_attention' layers but the config sets no sliding window "
                f"(use_sliding_window={self.use_sliding_window}, sliding_window={self.sliding_window}); "
                "transformers fails on it too. Set use_sliding_window and sliding_window, or list only "
                "'full_attention' layers."
            )
        self.window = window
        rope = dict(self.rope_parameters or self.rope_scaling or {})
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type not in ROPE_TYPES:
            raise ValueError(
                f"Qwen3 rope_type={rope_type!r} is not supported on MLX (the bridge implements {list(ROPE_TYPES)}); "
                "run this model with transformers on torch, or use a config without that RoPE scaling."
            )
        self.theta = float(rope.get("rope_theta", self.rope_theta))
        self.position_scale = 1.0 / float(rope["factor"]) if rope_type == "linear" else 1.0


class Qwen3MLP(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.gate_proj = nn.Linear(args.hidden_size, args.intermediate_size, bias=False)
        self.up_proj = nn.Linear(args.hidden_size, args.intermediate_size, bias=False)
        self.down_proj = nn.Linear(args.intermediate_size, args.hidden_size, bias=False)
        self.act = activation(args.hidden_act)

    def __call__(self, x):
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))


class Qwen3Attention(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = args.num_attention_heads, args.num_key_value_heads, args.head_dim
        bias = args.attention_bias
        self.q_proj = nn.Linear(args.hidden_size, self.num_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(args.hidden_size, self.num_kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(args.hidden_size, self.num_kv_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, args.hidden_size, bias=bias)
        # per head, before RoPE (unlike OLMo's norm over the whole projection)
        self.q_norm = nn.RMSNorm(self.head_dim, eps=args.rms_norm_eps)
        self.k_norm = nn.RMSNorm(self.head_dim, eps=args.rms_norm_eps)
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
        out = attention(q, k, v, self.head_dim**-0.5, bias, self.drop, self.training) * visible
        return self.o_proj(out.transpose(0, 2, 1, 3).reshape(B, L, -1))


class Qwen3DecoderLayer(nn.Module):
    def __init__(self, args: ModelArgs, layer_id: int):
        super().__init__()
        self.layer_type = args.layer_types[layer_id]
        self.self_attn = Qwen3Attention(args)
        self.mlp = Qwen3MLP(args)
        self.input_layernorm = nn.RMSNorm(args.hidden_size, eps=args.rms_norm_eps)
        self.post_attention_layernorm = nn.RMSNorm(args.hidden_size, eps=args.rms_norm_eps)

    def __call__(self, x, mask, cos, sin):
        x = x + self.self_attn(self.input_layernorm(x), mask, cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class Model(DecoderModel):
    """``Qwen3Model`` (``decoder.DecoderModel``'s forward, packed rows included)."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        self.embed_tokens = nn.Embedding(args.vocab_size, args.hidden_size)
        self.layers = [Qwen3DecoderLayer(args, i) for i in range(args.num_hidden_layers)]
        self.norm = nn.RMSNorm(args.hidden_size, eps=args.rms_norm_eps)

    def layer_inputs(self, key_mask, positions, segments, dtype) -> dict:
        a = self.args
        cos, sin = rope_tables(positions, a.head_dim, a.theta, a.position_scale)
        # (1, 1, L, head_dim): broadcast over batch and heads; in the activations' dtype, as transformers
        cos, sin = cos[:, None].astype(dtype), sin[:, None].astype(dtype)
        pos = mx.array(positions.astype(np.int32))
        return {kind: (layer_mask(key_mask, pos, segments, a.is_causal, a.window if kind == "sliding_attention" else None,
                                  dtype), cos, sin)
                for kind in set(a.layer_types)}


HF_ARCHITECTURE = "Qwen3Model"

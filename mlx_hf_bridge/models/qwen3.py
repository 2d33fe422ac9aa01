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
from .modernbert import _with_hidden_states
from .packing import SequencePacking

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
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"Qwen3 num_attention_heads={self.num_attention_heads} is not a multiple of "
                f"num_key_value_heads={self.num_key_value_heads}; restore the model's config.json."
            )
        window = self.sliding_window if self.use_sliding_window else None  # as transformers' config
        if self.layer_types is None:
            self.layer_types = [
                "sliding_attention" if window is not None and i >= self.max_window_layers else "full_attention"
                for i in range(self.num_hidden_layers)
            ]
        unknown = sorted(set(self.layer_types) - set(LAYER_TYPES))
        if unknown or len(self.layer_types) != self.num_hidden_layers:
            raise ValueError(
                f"Qwen3 layer_types {self.layer_types!r} cannot be built: "
                + (f"unknown layer type(s) {unknown} (the bridge builds {list(LAYER_TYPES)})" if unknown else
                   f"{len(self.layer_types)} entries for num_hidden_layers={self.num_hidden_layers}")
                + "; restore the model's config.json."
            )
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


def rope_tables(positions, head_dim: int, theta: float, position_scale: float = 1.0):
    """cos, sin (..., L, head_dim) for integer ``positions``, computed in float32 as transformers does
    (``inv_freq = 1 / theta ** (arange(0, d, 2) / d)``; linear scaling divides the positions)."""
    inv_freq = 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.int64).astype(np.float32) / head_dim))
    freqs = np.asarray(positions, np.float32)[..., None] * (inv_freq * np.float32(position_scale)).astype(np.float32)
    emb = np.concatenate([freqs, freqs], axis=-1)
    return mx.array(np.cos(emb)), mx.array(np.sin(emb))


def apply_rope(x, cos, sin):
    """transformers' rotate-half RoPE: ``x * cos + rotate_half(x) * sin``."""
    half = x.shape[-1] // 2
    rotated = mx.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rotated * sin


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
        groups = self.num_heads // self.num_kv_heads
        if groups > 1:  # query head h reads key / value head h // groups, as transformers' repeat_kv
            k, v = mx.repeat(k, groups, axis=1), mx.repeat(v, groups, axis=1)
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


def layer_mask(key_mask, positions, segments, causal: bool, window: int | None, dtype):
    """``(bias, visible)`` for one layer kind: the additive (B, 1, L, L) bias, and (B, 1, L, 1) 0 where a
    query row sees no key at all. Key j is visible from query i where it is a real token of the same
    segment and, causal, ``j <= i`` (window: ``j > i - window``) or, bidirectional, any ``j`` (window:
    ``|i - j| <= window``): transformers' mask functions. ``positions``: indices within each row or
    packed segment. A row seeing no key (the pads first in a causal left-padded row) gets attention
    output 0, as torch's SDPA (transformers' default) gives it; transformers' eager path would give
    it uniform weights, so such positions differ between transformers' own implementations."""
    allowed = key_mask.astype(mx.bool_)[:, None, :]
    if segments is not None:
        allowed = allowed & (segments[:, :, None] == segments[:, None, :])
    i, j = positions[:, :, None], positions[:, None, :]
    if causal:
        allowed = allowed & (j <= i)
        if window is not None:
            allowed = allowed & (j > i - window)
    elif window is not None:
        allowed = allowed & (mx.abs(i - j) <= window)
    bias = mx.where(allowed, 0.0, -1e9).astype(dtype)[:, None]
    return bias, allowed.any(axis=-1).astype(dtype)[:, None, :, None]


class Model(nn.Module):
    """``Qwen3Model``: ``model(input_ids, attention_mask)`` -> last hidden state (B, L, H); with
    ``output_hidden_states=True`` -> ``(last, hidden_states)`` as transformers: the embeddings, then
    each layer's output, the last entry replaced by the final-normed last hidden state.

    With ``pack_sequences`` set (the padding-free ColBERT losses set it while they encode), a
    right-padded batch runs packed (``models/packing.py``) where that costs fewer operations: one row,
    positions restarting per sequence, attention kept inside each sequence. The same outputs at real
    tokens, 0 at padded positions.
    """

    pack_sequences = False
    max_positions = None  # RoPE has no table; transformers runs past max_position_embeddings

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        self.embed_tokens = nn.Embedding(args.vocab_size, args.hidden_size)
        self.layers = [Qwen3DecoderLayer(args, i) for i in range(args.num_hidden_layers)]
        self.norm = nn.RMSNorm(args.hidden_size, eps=args.rms_norm_eps)

    def __call__(self, input_ids, attention_mask=None, token_type_ids=None, output_hidden_states: bool = False):
        x = self.embed_tokens(input_ids)
        if self.args.pad_token_id is not None:
            # torch's nn.Embedding(padding_idx=pad_token_id): that row gets no gradient, also where the
            # pad token is a real one (Qwen pads with <|endoftext|>, which Qwen3-Embedding appends)
            x = mx.where((input_ids == self.args.pad_token_id)[..., None], mx.stop_gradient(x), x)
        B, L = input_ids.shape
        packing = self._packing(attention_mask)
        if packing is not None:
            x = packing.pack(x)
            key_mask, segments = packing.key_mask, packing.segments
            positions = np.asarray(packing.gather) % L  # each token's column: positions restart per sequence
        else:
            key_mask = mx.ones((B, L)) if attention_mask is None else attention_mask
            segments, positions = None, np.broadcast_to(np.arange(L), (1, L))
        cos, sin = rope_tables(positions.reshape(1, -1), self.args.head_dim, self.args.theta, self.args.position_scale)
        # (1, 1, L, head_dim): broadcast over batch and heads; in the activations' dtype, as transformers
        cos, sin = cos[:, None].astype(x.dtype), sin[:, None].astype(x.dtype)
        pos = mx.array(positions.reshape(1, -1).astype(np.int32))
        masks = {
            kind: layer_mask(key_mask, pos, segments, self.args.is_causal,
                             self.args.window if kind == "sliding_attention" else None, x.dtype)
            for kind in set(self.args.layer_types)
        }
        hidden_states = [x] if output_hidden_states else None
        for layer in self.layers:
            x = layer(x, masks[layer.layer_type], cos, sin)
            if hidden_states is not None:
                hidden_states.append(x)
        x = self.norm(x)
        if packing is not None:
            x = packing.unpack(x)
            hidden_states = hidden_states and [packing.unpack(h) for h in hidden_states]
        return _with_hidden_states(x, hidden_states)

    def _packing(self, attention_mask) -> SequencePacking | None:
        """The packing of this batch when ``pack_sequences`` is set and it saves operations: the
        attention here is a masked (T, T) product, so packing trades the rows' padding for
        cross-sequence scores; it pays when the MLP and projections dominate."""
        if not self.pack_sequences or attention_mask is None:
            return None
        packing = SequencePacking.plan(attention_mask)
        if packing is None:
            return None
        B, L = packing.shape
        T = int(packing.gather.shape[0])
        a = self.args
        per_token = a.hidden_size * ((2 * a.num_attention_heads + 2 * a.num_key_value_heads) * a.head_dim
                                     + 3 * a.intermediate_size)
        per_pair = 2 * a.num_attention_heads * a.head_dim
        return packing if T * per_token + T * T * per_pair < B * L * per_token + B * L * L * per_pair else None

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, embedding: nn.Embedding):
        self.embed_tokens = embedding

    @staticmethod
    def sanitize(weights: dict) -> dict:
        """``Qwen3ForCausalLM`` & co. keys (``model.`` prefix, ``lm_head`` / ``score`` heads) -> ``Qwen3Model``'s."""
        out = {}
        for key, value in weights.items():
            if key.startswith("model."):
                key = key[len("model.") :]
            elif key.startswith(("lm_head.", "score.", "classifier.", "qa_outputs.", "linear.")):
                continue
            if "rotary_emb." in key:
                continue  # a buffer in some checkpoints
            out[key] = value
        return out

    @staticmethod
    def has_pooler(weights: dict) -> bool:
        return False


HF_ARCHITECTURE = "Qwen3Model"

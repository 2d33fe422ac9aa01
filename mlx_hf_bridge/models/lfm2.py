"""LFM2 hybrid decoder as an encoder backbone (HF ``model_type: lfm2``, ``Lfm2Model``: no LM head), HF
parameter names, so saving is exporting.

As transformers' ``modeling_lfm2`` (5.3 and 5.24): pre-norm blocks, each a token mixer chosen by
``layer_types`` (``conv``: a gated short causal convolution; ``full_attention``: grouped-query attention
with an RMSNorm on each query / key head before RoPE) and a SwiGLU feed-forward (``w2(silu(w1 x) * w3 x)``,
its width from ``block_auto_adjust_ff_dim`` / ``block_ffn_dim_multiplier`` / ``block_multiple_of``);
the final norm is named ``embedding_norm``. Attention is causal; transformers' ``is_causal: false``
switch makes the attention layers bidirectional (the convolutions stay causal, as in transformers).

The conv mixer: ``B, C, x = in_proj(h)``, ``y = C * conv(B * x)`` with a depthwise causal kernel of
``conv_L_cache`` taps, then ``out_proj``. transformers zeroes padded positions of ``h`` first, so with
left padding the pads feed ``in_proj(0)`` (its bias, with ``conv_bias``) into the first real tokens'
convolution; kept. Quirk of transformers 5.3 (fixed later): that zeroing is skipped for a batch of one
row, so a single padded row's pads feed their hidden states in. ``ModelArgs.mask_single_row_padding``
decides: ``None`` (default) does what the installed transformers does, ``True`` always zeroes. In packed
rows each convolution reads only its own sequence's tokens (what the padded batch gives).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from .base import BaseModelArgs, attention
from .decoder import (
    DecoderModel, apply_rope, check_layer_types, grouped_attention_inputs, layer_mask, resolve_attention_heads,
    rope_tables,
)
from .packing import SequencePacking

LAYER_TYPES = ("conv", "full_attention")


def _installed_transformers_skips_single_row_mask() -> bool:
    """Whether the installed transformers' LFM2 skips the conv padding mask for a batch of one row (5.3's
    ``attention_mask.shape[0] > 1`` guard). Read from its source file, so torch is not imported."""
    try:
        spec = importlib.util.find_spec("transformers.models.lfm2.modeling_lfm2")
    except (ImportError, ValueError):
        return False
    if spec is None or not spec.origin:
        return False
    return "attention_mask.shape[0] > 1" in Path(spec.origin).read_text(encoding="utf-8")


@dataclass
class ModelArgs(BaseModelArgs):
    model_type: str = "lfm2"
    vocab_size: int = 65536
    hidden_size: int = 2560
    intermediate_size: int = 12288
    block_ff_dim: int | None = None  # LiquidAI's config.json spelling of intermediate_size
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int | None = 8
    head_dim: int | None = None
    max_position_embeddings: int = 128000
    norm_eps: float = 1e-5
    pad_token_id: int | None = 0
    rope_parameters: dict | None = None
    rope_theta: float = 1_000_000.0  # configs written before transformers 5 keep it flat
    conv_bias: bool = False
    conv_L_cache: int = 3
    block_multiple_of: int = 256
    block_ffn_dim_multiplier: float | None = 1.0
    block_auto_adjust_ff_dim: bool = True
    full_attn_idxs: list | None = None
    layer_types: list | None = None
    is_causal: bool = True
    mask_single_row_padding: bool | None = None  # None: as the installed transformers (module docstring)

    def __post_init__(self):
        if self.block_ff_dim is not None:
            self.intermediate_size = self.block_ff_dim
        resolve_attention_heads(self, "LFM2")
        if self.layer_types is None:  # transformers' rule: attention at full_attn_idxs (default: every layer)
            idxs = self.full_attn_idxs if self.full_attn_idxs is not None else range(self.num_hidden_layers)
            self.layer_types = ["full_attention" if i in idxs else "conv" for i in range(self.num_hidden_layers)]
        check_layer_types(self, "LFM2", LAYER_TYPES)
        if self.conv_L_cache < 1:
            raise ValueError(f"LFM2 conv_L_cache={self.conv_L_cache} must be >= 1; restore the model's config.json.")
        rope = dict(self.rope_parameters or {})
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type != "default":
            raise ValueError(
                f"LFM2 rope_type={rope_type!r} is not supported on MLX (the bridge implements ['default']); "
                "run this model with transformers on torch, or use a config without that RoPE scaling."
            )
        self.theta = float(rope.get("rope_theta", self.rope_theta))
        self.feed_forward_size = self._feed_forward_size()
        if self.mask_single_row_padding is None:
            self.mask_single_row_padding = not _installed_transformers_skips_single_row_mask()

    def _feed_forward_size(self) -> int:
        """``Lfm2MLP``'s width: 2/3 of intermediate_size, times the multiplier, rounded up to a multiple
        of block_multiple_of (no rounding without a multiplier), each step truncated as transformers."""
        size = self.intermediate_size
        if self.block_auto_adjust_ff_dim:
            size = int(2 * size / 3)
            if self.block_ffn_dim_multiplier is not None:
                size = int(self.block_ffn_dim_multiplier * size)
                size = self.block_multiple_of * ((size + self.block_multiple_of - 1) // self.block_multiple_of)
        return size


class Lfm2MLP(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.w1 = nn.Linear(args.hidden_size, args.feed_forward_size, bias=False)
        self.w3 = nn.Linear(args.hidden_size, args.feed_forward_size, bias=False)
        self.w2 = nn.Linear(args.feed_forward_size, args.hidden_size, bias=False)

    def __call__(self, x):
        return self.w2(nn.silu(self.w1(x)) * self.w3(x))


class Lfm2Attention(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = args.num_attention_heads, args.num_key_value_heads, args.head_dim
        self.q_proj = nn.Linear(args.hidden_size, self.num_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(args.hidden_size, self.num_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(args.hidden_size, self.num_kv_heads * self.head_dim, bias=False)
        self.out_proj = nn.Linear(self.num_heads * self.head_dim, args.hidden_size, bias=False)
        self.q_layernorm = nn.RMSNorm(self.head_dim, eps=args.norm_eps)
        self.k_layernorm = nn.RMSNorm(self.head_dim, eps=args.norm_eps)

    def __call__(self, x, mask, cos, sin):
        B, L, _ = x.shape
        bias, visible = mask

        def heads(t, n):
            return t.reshape(B, L, n, self.head_dim).transpose(0, 2, 1, 3)

        q = apply_rope(self.q_layernorm(heads(self.q_proj(x), self.num_heads)), cos, sin)
        k = apply_rope(self.k_layernorm(heads(self.k_proj(x), self.num_kv_heads)), cos, sin)
        v = heads(self.v_proj(x), self.num_kv_heads)
        q, k, v = grouped_attention_inputs(q, k, v, self.num_heads, self.num_kv_heads)
        out = attention(q, k, v, self.head_dim**-0.5, bias, None, self.training) * visible
        return self.out_proj(out.transpose(0, 2, 1, 3).reshape(B, L, -1))


class DepthwiseCausalConv(nn.Module):
    """torch's ``Conv1d(H, H, K, groups=H, padding=K - 1)`` cut to the first L outputs, weight (H, 1, K)
    as HF stores it: ``out[t] = bias + sum_k w[:, k] * x[t + k - (K - 1)]`` (zeros before the row)."""

    def __init__(self, dims: int, kernel_size: int, bias: bool):
        super().__init__()
        bound = kernel_size**-0.5  # torch's Conv1d init (fan-in = kernel_size); loaded weights replace it
        self.weight = mx.random.uniform(-bound, bound, (dims, 1, kernel_size))
        if bias:
            self.bias = mx.random.uniform(-bound, bound, (dims,))

    def __call__(self, x, same_segment):
        """x: (B, L, H); ``same_segment[s]``: (1, L, 1) 1 where token t - s is in t's packed sequence, or None."""
        K, L = self.weight.shape[-1], x.shape[1]
        padded = mx.pad(x, [(0, 0), (K - 1, 0), (0, 0)])
        out = None
        for k in range(K):
            shift = K - 1 - k
            term = padded[:, k : k + L] * self.weight[:, 0, k]
            if same_segment is not None and shift:
                term = term * same_segment[shift]
            out = term if out is None else out + term
        return out + self.bias if "bias" in self else out


class Lfm2ShortConv(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.conv = DepthwiseCausalConv(args.hidden_size, args.conv_L_cache, args.conv_bias)
        self.in_proj = nn.Linear(args.hidden_size, 3 * args.hidden_size, bias=args.conv_bias)
        self.out_proj = nn.Linear(args.hidden_size, args.hidden_size, bias=args.conv_bias)

    def __call__(self, x, padding_mask, same_segment):
        if padding_mask is not None:
            x = x * padding_mask
        b, c, h = mx.split(self.in_proj(x), 3, axis=-1)
        return self.out_proj(c * self.conv(b * h, same_segment))


class Lfm2DecoderLayer(nn.Module):
    def __init__(self, args: ModelArgs, layer_id: int):
        super().__init__()
        self.layer_type = args.layer_types[layer_id]
        if self.layer_type == "conv":
            self.conv = Lfm2ShortConv(args)
        else:
            self.self_attn = Lfm2Attention(args)
        self.feed_forward = Lfm2MLP(args)
        self.operator_norm = nn.RMSNorm(args.hidden_size, eps=args.norm_eps)
        self.ffn_norm = nn.RMSNorm(args.hidden_size, eps=args.norm_eps)

    def __call__(self, x, *inputs):
        mixer = self.conv if self.layer_type == "conv" else self.self_attn
        x = x + mixer(self.operator_norm(x), *inputs)
        return x + self.feed_forward(self.ffn_norm(x))


class Model(DecoderModel):
    """``Lfm2Model`` (``decoder.DecoderModel``'s forward, packed rows included)."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        self.embed_tokens = nn.Embedding(args.vocab_size, args.hidden_size)
        self.layers = [Lfm2DecoderLayer(args, i) for i in range(args.num_hidden_layers)]
        self.embedding_norm = nn.RMSNorm(args.hidden_size, eps=args.norm_eps)

    @property
    def norm(self):  # the final norm DecoderModel applies, under transformers' name
        return self.embedding_norm

    def layer_inputs(self, key_mask, positions, segments, dtype) -> dict:
        a = self.args
        inputs = {}
        if "full_attention" in a.layer_types:
            cos, sin = rope_tables(positions, a.head_dim, a.theta)
            pos = mx.array(positions.astype(np.int32))
            inputs["full_attention"] = (layer_mask(key_mask, pos, segments, a.is_causal, None, dtype),
                                        cos[:, None].astype(dtype), sin[:, None].astype(dtype))
        if "conv" in a.layer_types:
            inputs["conv"] = (self._conv_padding_mask(key_mask, segments, dtype), self._same_segment(segments, dtype))
        return inputs

    def _conv_padding_mask(self, key_mask, segments, dtype):
        """(B, L, 1) multiplier zeroing padded positions before ``in_proj``, or None where transformers
        skips it: one position (its decode-step guard), or one unpacked row under 5.3's quirk."""
        B, L = key_mask.shape
        if L == 1 or (segments is None and B == 1 and not self.args.mask_single_row_padding):
            return None
        return key_mask.astype(dtype)[..., None]

    def _same_segment(self, segments, dtype):
        """For packed rows, ``{shift s: (1, T, 1) 1 where token t - s belongs to t's sequence}``."""
        if segments is None:
            return None
        K = self.args.conv_L_cache
        padded = mx.pad(segments, [(0, 0), (K - 1, 0)], constant_values=-1.0)
        T = segments.shape[1]
        return {s: (padded[:, K - 1 - s : K - 1 - s + T] == segments).astype(dtype)[..., None] for s in range(1, K)}

    def _packing(self, attention_mask) -> SequencePacking | None:
        """Packed where that saves operations: the token-wise work (projections, convolutions, MLPs) falls
        with the padding, the attention layers' (T, T) scores grow with the packed length."""
        if not self.pack_sequences or attention_mask is None:
            return None
        packing = SequencePacking.plan(attention_mask)
        if packing is None:
            return None
        (B, L), T = packing.shape, int(packing.gather.shape[0])
        a = self.args
        n_attn = a.layer_types.count("full_attention")
        n_conv = len(a.layer_types) - n_attn
        H = a.hidden_size
        per_token = (n_attn * H * (2 * a.num_attention_heads + 2 * a.num_key_value_heads) * a.head_dim
                     + n_conv * H * (4 * H + a.conv_L_cache) + len(a.layer_types) * 3 * H * a.feed_forward_size)
        per_pair = n_attn * 2 * a.num_attention_heads * a.head_dim
        return packing if T * per_token + T * T * per_pair < B * L * per_token + B * L * L * per_pair else None


HF_ARCHITECTURE = "Lfm2Model"

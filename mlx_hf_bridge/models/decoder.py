"""Pieces shared by the decoder-style backbones (Qwen3, Gemma 3): transformers' rotate-half RoPE, the
per-layer-kind attention masks, and the forward of a ``*Model`` (no LM head) with packed rows.

An architecture subclasses :class:`DecoderModel`, builds ``embed_tokens`` / ``layers`` / ``norm``, and
says what its layers take (:meth:`DecoderModel.layer_inputs`) and how it embeds (:meth:`DecoderModel.embed`).
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from .modernbert import _with_hidden_states
from .packing import SequencePacking


def resolve_attention_heads(args, family: str) -> None:
    """transformers' defaults (key/value heads = query heads, head_dim = hidden / heads) and the GQA
    divisibility check, for a decoder-style ``ModelArgs``."""
    if args.num_key_value_heads is None:
        args.num_key_value_heads = args.num_attention_heads
    if args.head_dim is None:
        args.head_dim = args.hidden_size // args.num_attention_heads
    if args.num_attention_heads % args.num_key_value_heads:
        raise ValueError(
            f"{family} num_attention_heads={args.num_attention_heads} is not a multiple of "
            f"num_key_value_heads={args.num_key_value_heads}; restore the model's config.json."
        )


def check_layer_types(args, family: str, built: tuple) -> None:
    """``args.layer_types`` holds one of the ``built`` kinds per layer."""
    unknown = sorted(set(args.layer_types) - set(built))
    if unknown or len(args.layer_types) != args.num_hidden_layers:
        raise ValueError(
            f"{family} layer_types {args.layer_types!r} cannot be built: "
            + (f"unknown layer type(s) {unknown} (the bridge builds {list(built)})" if unknown else
               f"{len(args.layer_types)} entries for num_hidden_layers={args.num_hidden_layers}")
            + "; restore the model's config.json."
        )


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


def grouped_attention_inputs(q, k, v, num_heads: int, num_kv_heads: int):
    """Query head h reads key / value head ``h // groups``, as transformers' ``repeat_kv``."""
    groups = num_heads // num_kv_heads
    if groups > 1:
        k, v = mx.repeat(k, groups, axis=1), mx.repeat(v, groups, axis=1)
    return q, k, v


class DecoderModel(nn.Module):
    """``model(input_ids, attention_mask)`` -> last hidden state (B, L, H); with
    ``output_hidden_states=True`` -> ``(last, hidden_states)`` as transformers: the embeddings, then
    each layer's output, the last entry replaced by the final-normed last hidden state.

    Positions are ``arange(L)`` whatever the padding, as transformers: with left padding the first
    real token is not at position 0. With ``pack_sequences`` set (the padding-free ColBERT losses set
    it while they encode), a right-padded batch runs packed (``models/packing.py``) where that costs
    fewer operations: one row, positions restarting per sequence, attention kept inside each sequence.
    The same outputs at real tokens, 0 at padded positions.
    """

    pack_sequences = False
    max_positions = None  # RoPE has no table; transformers runs past max_position_embeddings

    def embed(self, input_ids):
        x = self.embed_tokens(input_ids)
        if self.args.pad_token_id is not None:
            # torch's nn.Embedding(padding_idx=pad_token_id): that row gets no gradient, also where the
            # pad token is a real one (Qwen pads with <|endoftext|>, which Qwen3-Embedding appends)
            x = mx.where((input_ids == self.args.pad_token_id)[..., None], mx.stop_gradient(x), x)
        return x

    def layer_inputs(self, key_mask, positions, segments, dtype) -> dict:
        """``{layer kind: the arguments its layers take after x}``; ``positions``: numpy (1, T) indices
        within each row or packed sequence."""
        raise NotImplementedError

    def __call__(self, input_ids, attention_mask=None, token_type_ids=None, output_hidden_states: bool = False):
        x = self.embed(input_ids)
        B, L = input_ids.shape
        packing = self._packing(attention_mask)
        if packing is not None:
            x = packing.pack(x)
            key_mask, segments = packing.key_mask, packing.segments
            positions = (np.asarray(packing.gather) % L).reshape(1, -1)  # each token's column: restarts per sequence
        else:
            key_mask = mx.ones((B, L)) if attention_mask is None else attention_mask
            segments, positions = None, np.arange(L).reshape(1, L)
        inputs = self.layer_inputs(key_mask, positions, segments, x.dtype)
        hidden_states = [x] if output_hidden_states else None
        for layer in self.layers:
            x = layer(x, *inputs[layer.layer_type])
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
        """``*ForCausalLM`` & co. keys (``model.`` prefix, ``lm_head`` / ``score`` heads) -> ``*Model``'s."""
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

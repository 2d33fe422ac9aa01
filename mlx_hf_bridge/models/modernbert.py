"""ModernBERT encoder (HF ``model_type: modernbert``) with HF parameter names.

Alternating global / sliding-window attention with separate RoPE thetas, GeGLU with exact (erf)
GELU, no biases by default, and no ``attn_norm`` on layer 0 — all read from the config.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn

from .. import kernels
from .packing import SequencePacking
from .base import (
    BaseModelArgs,
    LayerNorm,
    activation,
    attention,
    gelu_exact,
    geglu_exact,
    padding_bias,
    sliding_window_bias,
)


@dataclass
class ModelArgs(BaseModelArgs):
    model_type: str = "modernbert"
    vocab_size: int = 50368
    hidden_size: int = 768
    intermediate_size: int = 1152
    num_hidden_layers: int = 22
    num_attention_heads: int = 12
    hidden_activation: str = "gelu"
    max_position_embeddings: int = 8192
    norm_eps: float = 1e-5
    norm_bias: bool = False
    attention_bias: bool = False
    attention_dropout: float = 0.0
    embedding_dropout: float = 0.0
    mlp_bias: bool = False
    mlp_dropout: float = 0.0
    local_attention: int = 128
    global_attn_every_n_layers: int = 3
    layer_types: list | None = None
    rope_parameters: dict | None = None
    global_rope_theta: float = 160000.0
    local_rope_theta: float = 10000.0
    pad_token_id: int = 50283

    def __post_init__(self):
        if self.layer_types is None:
            self.layer_types = [
                "sliding_attention" if i % self.global_attn_every_n_layers else "full_attention"
                for i in range(self.num_hidden_layers)
            ]
        # transformers >= 5 stores the thetas in rope_parameters; older configs use the flat keys.
        rope = self.rope_parameters or {}
        for layer_type in ("full_attention", "sliding_attention"):
            params = rope.get(layer_type) or {}
            if params.get("rope_type", "default") != "default":
                raise ValueError(
                    f"ModernBERT rope_type={params['rope_type']!r} is not supported; only 'default' is."
                )
        self.global_theta = float((rope.get("full_attention") or {}).get("rope_theta", self.global_rope_theta))
        self.local_theta = float(
            (rope.get("sliding_attention") or {}).get("rope_theta", self.local_rope_theta)
        )


BLOCKED_MIN_BLOCKS = 4  # below ~4 window blocks the full masked (L, L) product is as cheap


class BlockedLocalAttention:
    """Exact sliding-window attention (|i - j| <= w) without the (L, L) score matrix.

    Queries are cut into blocks of ``w`` tokens; block ``i`` attends to key blocks ``i-1, i, i+1``
    (``3w`` keys) under a static band mask, so scores are (L, 3w) instead of (L, L): the same
    softmax over the same unmasked keys (masked ones add exactly 0). Built once per forward and
    shared by every local layer.
    """

    def __init__(self, attention_mask, length: int, w: int, dtype):
        self.L, self.w = length, w
        self.nb = -(-length // w)
        padded = self.nb * w
        a = mx.arange(w)[:, None]
        c = mx.arange(3 * w)[None, :]
        band = mx.abs((c - w) - a) <= w  # (w, 3w): key c of the window vs query a of the block
        if attention_mask is None:
            attention_mask = mx.ones((1, length), dtype=mx.int32)
        keys = mx.pad(attention_mask.astype(mx.bool_), [(0, 0), (w, padded - length + w)])
        windows = self._windows(keys[:, None, :, None])[:, 0, :, :, 0]  # (B, nb, 3w)
        allowed = band[None, None] & windows[:, :, None, :]  # (B, nb, w, 3w)
        self.bias = mx.where(allowed, 0.0, -1e9).astype(dtype)[:, None]  # (B, 1, nb, w, 3w)
        seen = allowed.any(axis=-1).reshape(allowed.shape[0], padded)[:, :length]
        self.visible = seen.astype(dtype)[:, None, :, None]

    def _windows(self, t):
        """(B, H, nb*w + 2w, D) padded -> (B, H, nb, 3w, D): each block's three neighbour blocks."""
        B, H, _, D = t.shape
        n, w = self.nb, self.w
        parts = [t[:, :, i * w : i * w + n * w].reshape(B, H, n, w, D) for i in range(3)]
        return mx.concatenate(parts, axis=3)

    def __call__(self, q, k, v, scale, dropout=None):
        B, H, L, D = q.shape
        n, w = self.nb, self.w
        extra = n * w - L
        qb = mx.pad(q, [(0, 0), (0, 0), (0, extra), (0, 0)]).reshape(B, H, n, w, D)
        kw = self._windows(mx.pad(k, [(0, 0), (0, 0), (w, extra + w), (0, 0)]))
        vw = self._windows(mx.pad(v, [(0, 0), (0, 0), (w, extra + w), (0, 0)]))
        scores = (qb * scale) @ kw.swapaxes(-1, -2) + self.bias
        probs = kernels.softmax(scores)
        if dropout is not None:
            probs = dropout(probs)
        out = probs @ vw
        return out.reshape(B, H, n * w, D)[:, :, :L]


class FusedAttention:
    """The whole attention core of a layer as one CPU kernel (``kernels.attention``), from the
    fused QKV projection: RoPE, key mask, sliding window, softmax and ``P V``. Rows that see no
    key output 0, as in the composed path. Used for float32 on the CPU when the kernels are built
    (attention dropout inside the kernel when training)."""

    def __init__(self, key_mask, window: int, segments=None):
        self.key_mask, self.window, self.segments = key_mask, window, segments

    def __call__(self, qkv, heads: int, rope_theta: float, dropout: float = 0.0):
        return kernels.attention(qkv, self.key_mask, heads, self.window, rope_theta, self.segments, dropout)


class ModernBertEmbeddings(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.tok_embeddings = nn.Embedding(args.vocab_size, args.hidden_size)
        self.norm = LayerNorm(args.hidden_size, eps=args.norm_eps, bias=args.norm_bias)
        self.drop = nn.Dropout(args.embedding_dropout)

    def __call__(self, input_ids):
        return self.drop(self.norm(self.tok_embeddings(input_ids)))


class ModernBertAttention(nn.Module):
    def __init__(self, args: ModelArgs, layer_type: str):
        super().__init__()
        self.num_heads = args.num_attention_heads
        self.head_dim = args.hidden_size // args.num_attention_heads
        self.Wqkv = nn.Linear(args.hidden_size, 3 * args.hidden_size, bias=args.attention_bias)
        self.Wo = nn.Linear(args.hidden_size, args.hidden_size, bias=args.attention_bias)
        self.is_local = layer_type == "sliding_attention"
        self.rope_theta = args.local_theta if self.is_local else args.global_theta
        self.drop = nn.Dropout(args.attention_dropout)
        self.dropout_p = float(args.attention_dropout)  # the fused kernel's p

    def __call__(self, x, bias, visible=None, local=None):
        B, L, _ = x.shape
        qkv = self.Wqkv(x)
        if isinstance(local, FusedAttention):
            return self.Wo(local(qkv, self.num_heads, self.rope_theta, self.dropout_p if self.training else 0.0))
        qkv = qkv.reshape(B, L, 3, self.num_heads, self.head_dim).transpose(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        # HF applies rotate_half RoPE (non-interleaved), i.e. traditional=False.
        q = mx.fast.rope(q, self.head_dim, traditional=False, base=self.rope_theta, scale=1.0, offset=0)
        k = mx.fast.rope(k, self.head_dim, traditional=False, base=self.rope_theta, scale=1.0, offset=0)
        if local is not None:
            out = local(q, k, v, self.head_dim**-0.5, self.drop if self.training else None)
        else:
            out = attention(q, k, v, self.head_dim**-0.5, bias, self.drop, self.training)
        if visible is not None:
            out = out * visible  # rows that see no key output 0, as torch SDPA (>= 2.5) does
        return self.Wo(out.transpose(0, 2, 1, 3).reshape(B, L, -1))


class ModernBertMLP(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.Wi = nn.Linear(args.hidden_size, 2 * args.intermediate_size, bias=args.mlp_bias)
        self.Wo = nn.Linear(args.intermediate_size, args.hidden_size, bias=args.mlp_bias)
        self.act = activation(args.hidden_activation)
        self.drop = nn.Dropout(args.mlp_dropout)

    def __call__(self, x):
        hg = self.Wi(x)
        if self.act is gelu_exact:
            glu = geglu_exact(hg)
        else:
            h, gate = mx.split(hg, 2, axis=-1)
            glu = self.act(h) * gate
        return self.Wo(self.drop(glu))


class ModernBertEncoderLayer(nn.Module):
    def __init__(self, args: ModelArgs, layer_id: int):
        super().__init__()
        self.layer_type = args.layer_types[layer_id]
        # Layer 0 has no attn_norm: the embedding norm already normalised its input.
        if layer_id != 0:
            self.attn_norm = LayerNorm(args.hidden_size, eps=args.norm_eps, bias=args.norm_bias)
        self.attn = ModernBertAttention(args, self.layer_type)
        self.mlp_norm = LayerNorm(args.hidden_size, eps=args.norm_eps, bias=args.norm_bias)
        self.mlp = ModernBertMLP(args)

    def __call__(self, x, bias, visible=None, local=None):
        h = self.attn_norm(x) if "attn_norm" in self else x
        x = x + self.attn(h, bias, visible, local)
        return x + self.mlp(self.mlp_norm(x))


class Model(nn.Module):
    """``ModernBertModel``: ``model(input_ids, attention_mask)`` -> last hidden state (B, L, H); with
    ``output_hidden_states=True`` -> ``(last, hidden_states)`` as transformers: the embeddings' output,
    then each layer's, where only the last entry has ``final_norm`` applied (it is the last hidden state).

    With ``pack_sequences`` set (the padding-free ColBERT losses set it while they encode) and the
    fused CPU attention available, a right-padded batch runs packed (``models/packing.py``):
    the same outputs at real tokens, 0 at padded positions, no compute spent on padding.
    """

    pack_sequences = False
    # RoPE has no table: transformers' ModernBERT (and so PyLate) runs past max_position_embeddings
    max_positions = None

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        self.embeddings = ModernBertEmbeddings(args)
        self.layers = [ModernBertEncoderLayer(args, i) for i in range(args.num_hidden_layers)]
        self.final_norm = LayerNorm(args.hidden_size, eps=args.norm_eps, bias=args.norm_bias)

    def __call__(self, input_ids, attention_mask=None, token_type_ids=None, output_hidden_states: bool = False):
        x = self.embeddings(input_ids)
        if self._fuses_attention(x):
            return self._fused_forward(x, attention_mask, output_hidden_states)
        L = input_ids.shape[1]
        global_bias = None if attention_mask is None else padding_bias(attention_mask, x.dtype)
        local_bias, visible, local = global_bias, None, None
        half_window = self.args.local_attention // 2
        if L > half_window + 1 and any(layer.layer_type == "sliding_attention" for layer in self.layers):
            if L > BLOCKED_MIN_BLOCKS * half_window:
                local = BlockedLocalAttention(attention_mask, L, half_window, x.dtype)
                visible = local.visible
            else:
                band = sliding_window_bias(L, half_window, x.dtype)
                local_bias = band if global_bias is None else global_bias + band
                if attention_mask is not None:
                    # (B, 1, L, 1): does query i have any unpadded key within its window?
                    in_band = (band[0, 0] == 0).astype(mx.float32)
                    counts = attention_mask.astype(mx.float32) @ in_band
                    visible = (counts > 0).astype(x.dtype)[:, None, :, None]
        hidden_states = [x] if output_hidden_states else None
        for layer in self.layers:
            if layer.layer_type == "sliding_attention":
                x = layer(x, local_bias, visible, local)
            else:
                x = layer(x, global_bias)
            if hidden_states is not None:
                hidden_states.append(x)
        return _with_hidden_states(self.final_norm(x), hidden_states)

    def _fused_forward(self, x, attention_mask, output_hidden_states: bool = False):
        packing = None
        if self.pack_sequences and attention_mask is not None:
            packing = SequencePacking.plan(attention_mask)
        if packing is not None:
            x, key_mask, segments = packing.pack(x), packing.key_mask, packing.segments
        else:
            key_mask = mx.ones(x.shape[:2]) if attention_mask is None else attention_mask
            segments = None
        full = FusedAttention(key_mask, -1, segments)
        sliding = FusedAttention(key_mask, self.args.local_attention // 2, segments)
        hidden_states = [x] if output_hidden_states else None
        for layer in self.layers:
            x = layer(x, None, None, sliding if layer.layer_type == "sliding_attention" else full)
            if hidden_states is not None:
                hidden_states.append(x)
        x = self.final_norm(x)
        if packing is not None:
            x = packing.unpack(x)
            hidden_states = hidden_states and [packing.unpack(h) for h in hidden_states]
        return _with_hidden_states(x, hidden_states)

    def _fuses_attention(self, x) -> bool:
        return kernels.attention_applies(x, self.args.hidden_size // self.args.num_attention_heads)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.tok_embeddings

    def set_input_embeddings(self, embedding: nn.Embedding):
        self.embeddings.tok_embeddings = embedding

    @staticmethod
    def sanitize(weights: dict) -> dict:
        out = {}
        for key, value in weights.items():
            if key.startswith("model."):
                key = key[len("model.") :]  # ModernBertForMaskedLM & co. wrap the encoder
            elif key.startswith(("head.", "decoder.", "classifier.", "linear.")):
                continue
            out[key] = value
        return out

    @staticmethod
    def has_pooler(weights: dict) -> bool:
        return False
def _with_hidden_states(last, hidden_states):
    """``last``, or ``(last, hidden_states)`` with the last entry replaced by ``last``: transformers
    records each layer's output and then swaps in the final-normed last hidden state."""
    if hidden_states is None:
        return last
    return last, (*hidden_states[:-1], last)


HF_ARCHITECTURE = "ModernBertModel"

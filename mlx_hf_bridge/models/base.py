"""Pieces shared by the encoder architectures."""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn

from .. import kernels


@dataclass
class BaseModelArgs:
    @classmethod
    def from_dict(cls, params: dict):
        """Build from an HF ``config.json`` dict, ignoring keys this architecture does not use."""
        names = inspect.signature(cls).parameters
        return cls(**{k: v for k, v in params.items() if k in names})


def gelu_exact(x: mx.array) -> mx.array:
    # HF's "gelu" is the erf form; the tanh approximation differs by ~1e-2 on real weights.
    return kernels.gelu_exact(x)


def gelu_tanh(x: mx.array) -> mx.array:
    return 0.5 * x * (1.0 + mx.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


_SQRT1_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@mx.compile
def _geglu_forward(h, gate):
    return 0.5 * h * (1.0 + mx.erf(h * _SQRT1_2)) * gate


@mx.compile
def _geglu_backward(h, gate, grad):
    cdf = 0.5 * (1.0 + mx.erf(h * _SQRT1_2))
    dgelu = cdf + h * mx.exp(-0.5 * h * h) * _INV_SQRT_2PI
    return grad * gate * dgelu, grad * h * cdf


@mx.custom_function
def _geglu_mlx(h, gate):
    # Without the compiled kernels: autodiff of the composed expression makes ~10 passes over the
    # (tokens x intermediate) activations, this hand-written VJP two.
    return _geglu_forward(h, gate)


@_geglu_mlx.vjp
def _geglu_vjp(primals, cotangent, output):
    h, gate = primals
    return _geglu_backward(h, gate, cotangent)


def geglu_exact(hg: mx.array) -> mx.array:
    """``gelu_exact(h) * gate`` for ``h, gate = split(hg, 2, axis=-1)`` (ModernBERT's GeGLU), one
    fused pass each way (max |diff| to the composed expression ~1e-7)."""
    return kernels.geglu_exact(hg, _geglu_mlx)


class LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` (same parameters and names) running the vectorised CPU kernel when built."""

    def __call__(self, x):
        if "weight" not in self:
            return super().__call__(x)
        return kernels.layer_norm(x, self.weight, self.get("bias"), self.eps)


ACTIVATIONS = {
    "gelu": gelu_exact,
    "gelu_python": gelu_exact,
    "gelu_new": gelu_tanh,
    "gelu_pytorch_tanh": gelu_tanh,
    "gelu_fast": gelu_tanh,
    "relu": nn.relu,
    "silu": nn.silu,
    "swish": nn.silu,
    "tanh": mx.tanh,
}


def activation(name: str):
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"Unsupported activation {name!r}; supported: {sorted(ACTIVATIONS)}"
        ) from None


def padding_bias(attention_mask: mx.array, dtype=mx.float32) -> mx.array:
    """(B, L) 0/1 key mask -> additive (B, 1, 1, L) bias: 0 where attended, a large negative where not."""
    mask = attention_mask.astype(mx.bool_)
    return mx.where(mask, 0.0, -1e9).astype(dtype)[:, None, None, :]


def sliding_window_bias(length: int, half_window: int, dtype=mx.float32) -> mx.array:
    """(1, 1, L, L) additive band mask: a query sees keys with |i - j| <= half_window.

    Built once per forward (shared by every local layer), never per layer.
    """
    idx = mx.arange(length)
    band = mx.abs(idx[:, None] - idx[None, :]) <= half_window
    return mx.where(band, 0.0, -1e9).astype(dtype)[None, None]


def attention(q, k, v, scale: float, bias, dropout: nn.Dropout | None = None, training=False):
    """q, k, v: (B, heads, L, head_dim); bias broadcastable to (B, heads, L, L).

    ``mx.fast.scaled_dot_product_attention`` where it is the fast path (GPU; CPU without the
    compiled kernels). On the CPU it composes matmul, MLX's scalar softmax and matmul, so with the
    kernels the same product runs with the kernel softmax. MLX's fused SDPA has no dropout, so
    attention-probability dropout (BERT's default 0.1 when training) takes the explicit path too.
    """
    with_dropout = training and dropout is not None and dropout._p_1 < 1  # _p_1 = keep probability
    if not with_dropout and not kernels.applies(q):
        return mx.fast.scaled_dot_product_attention(q, k, v, scale=scale, mask=bias)
    scores = (q * scale) @ k.transpose(0, 1, 3, 2)
    if bias is not None:
        scores = scores + bias
    probs = kernels.softmax(scores)
    return (dropout(probs) if with_dropout else probs) @ v

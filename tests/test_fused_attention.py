"""The fused CPU attention kernel (kernels/attention.h) against torch, forward and VJP.

Ground truth: transformers' own ModernBERT rotary embedding (``ModernBertRotaryEmbedding`` and
``apply_rotary_pos_emb``), then scaled dot-product attention in float64 with the key-padding and
sliding-window masks of HF ModernBERT (a query sees keys with ``|i - j| <= window``), rows with no
visible key output 0 (torch SDPA). The kernel computes in float32.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
import torch
from transformers import ModernBertConfig
from transformers.models.modernbert.modeling_modernbert import ModernBertRotaryEmbedding, apply_rotary_pos_emb

from mlx_hf_bridge import kernels

pytestmark = pytest.mark.skipif(not kernels.available(), reason="needs the compiled CPU kernels")


def torch_attention(qkv, key_mask, heads, window, theta):
    """(B, L, 3·H·D) float64 -> (B, L, H·D), HF ModernBERT's attention core."""
    B, L, width = qkv.shape
    D = width // (3 * heads)
    q, k, v = qkv.view(B, L, 3, heads, D).unbind(2)
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, H, L, D)
    if theta is not None:
        config = ModernBertConfig(hidden_size=heads * D, num_attention_heads=heads, global_rope_theta=theta,
                                  num_hidden_layers=1, layer_types=["full_attention"])
        rotary = ModernBertRotaryEmbedding(config)
        cos, sin = rotary(q.float(), torch.arange(L)[None], layer_type="full_attention")
        q, k = apply_rotary_pos_emb(q, k, cos.double(), sin.double())
    scores = q @ k.transpose(-1, -2) / D**0.5
    allowed = key_mask.bool()[:, None, None, :]
    if window >= 0:
        i = torch.arange(L)
        allowed = allowed & ((i[:, None] - i[None, :]).abs() <= window)
    probs = scores.masked_fill(~allowed, float("-inf")).softmax(-1).nan_to_num(0.0)  # no key: 0
    return (probs @ v).transpose(1, 2).reshape(B, L, heads * D)


def _case(B, L, heads, D, lengths, seed):
    rng = np.random.default_rng(seed)
    qkv = (rng.normal(size=(B, L, 3 * heads * D)) * 1.5).astype(np.float32)
    mask = (np.arange(L)[None, :] < np.array(lengths)[:, None]).astype(np.float32)
    cotangent = rng.normal(size=(B, L, heads * D)).astype(np.float32)
    return qkv, mask, cotangent


@pytest.mark.parametrize(
    "B, L, heads, D, lengths, window, theta",
    [
        (2, 150, 3, 64, [150, 97], -1, 160000.0),  # global layer, padded row, L not a multiple of 64
        (2, 150, 3, 64, [150, 97], 16, 10000.0),  # sliding window inside a block of 64
        (1, 300, 2, 64, [300], 64, 10000.0),  # ModernBERT's window (128 // 2) over several blocks
        (3, 70, 4, 32, [70, 40, 5], 8, 10000.0),  # rows far past the real keys see none: 0
        (2, 33, 2, 16, [33, 20], -1, None),  # no RoPE (BERT-style), head_dim 16
    ],
)
def test_attention_matches_torch(B, L, heads, D, lengths, window, theta):
    qkv, mask, cotangent = _case(B, L, heads, D, lengths, seed=L + heads)

    def fn(x):
        return kernels.attention(x, mx.array(mask), heads, window, theta)

    (out,), (d_qkv,) = mx.vjp(fn, [mx.array(qkv)], [mx.array(cotangent)])
    t_qkv = torch.tensor(qkv, dtype=torch.float64, requires_grad=True)
    ref = torch_attention(t_qkv, torch.tensor(mask), heads, window, theta)
    ref.backward(torch.tensor(cotangent, dtype=torch.float64))
    np.testing.assert_allclose(np.array(out), ref.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.array(d_qkv), t_qkv.grad.numpy(), rtol=1e-5, atol=1e-5)
    if window >= 0 and min(lengths) + window < L:
        # a query more than `window` past the last real key sees no key at all: exactly 0, no gradient
        row = min(lengths) + window
        b = int(np.argmin(lengths))
        assert np.all(np.array(out)[b, row] == 0.0)


def test_attention_is_deterministic_and_traces_under_compile():
    qkv, mask, cotangent = _case(2, 200, 4, 64, [200, 120], seed=1)
    x, m, g = mx.array(qkv), mx.array(mask), mx.array(cotangent)

    def loss(x):
        return (kernels.attention(x, m, 4, 64, 10000.0) * g).sum()

    grads = [np.array(mx.grad(loss)(x)) for _ in range(2)]
    assert np.array_equal(grads[0], grads[1])  # (batch, head) tasks own disjoint outputs
    compiled = np.array(mx.compile(mx.grad(loss))(x))
    np.testing.assert_allclose(compiled, grads[0], rtol=1e-6, atol=1e-6)


def test_bad_shapes_are_refused_with_the_reason():
    module = kernels._load()
    with pytest.raises(ValueError, match="head_dim a multiple of"):
        module.attention(mx.zeros((1, 4, 3 * 2 * 12)), mx.ones((1, 4)), mx.zeros((1, 4)), mx.zeros((2,)), 2, -1, 0.0, 0.0)
    with pytest.raises(ValueError, match="key mask and segment ids must be"):
        module.attention(mx.zeros((1, 4, 3 * 2 * 16)), mx.ones((1, 5)), mx.zeros((1, 5)), mx.zeros((2,)), 2, -1, 0.0, 0.0)
    with pytest.raises(ValueError, match="dropout must be in"):
        kernels.attention(mx.zeros((1, 4, 3 * 2 * 16)), mx.ones((1, 4)), 2, -1, None, dropout=1.0)
    assert not kernels.attention_applies(mx.zeros((1, 4, 8)), head_dim=24)  # the model falls back


@pytest.mark.parametrize("window, theta", [(-1, 160000.0), (8, 10000.0), (64, 10000.0)])
def test_packed_segments_equal_separate_sequences(window, theta):
    """Sequences packed end to end in one row (segment ids) give each sequence's own attention:
    RoPE restarts per segment and no token sees another segment; checked against torch run on
    every sequence separately, forward and gradient. A padded tail nobody attends to outputs 0."""
    heads, D, lengths, tail = 2, 64, [70, 5, 131, 1], 14
    rng = np.random.default_rng(window + 7)
    T = sum(lengths) + tail
    qkv = (rng.normal(size=(1, T, 3 * heads * D)) * 1.5).astype(np.float32)
    cotangent = rng.normal(size=(1, T, heads * D)).astype(np.float32)
    segments = np.concatenate([np.full(n, i) for i, n in enumerate(lengths + [tail])]).astype(np.float32)[None]
    key_mask = (np.arange(T) < sum(lengths)).astype(np.float32)[None]

    def fn(x):
        return kernels.attention(x, mx.array(key_mask), heads, window, theta, mx.array(segments))

    (out,), (d_qkv,) = mx.vjp(fn, [mx.array(qkv)], [mx.array(cotangent)])
    start = 0
    for n in lengths:
        t_qkv = torch.tensor(qkv[:, start : start + n], dtype=torch.float64, requires_grad=True)
        ref = torch_attention(t_qkv, torch.ones(1, n), heads, window, theta)
        ref.backward(torch.tensor(cotangent[:, start : start + n], dtype=torch.float64))
        np.testing.assert_allclose(np.array(out)[:, start : start + n], ref.detach().numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(np.array(d_qkv)[:, start : start + n], t_qkv.grad.numpy(), rtol=1e-5, atol=1e-5)
        start += n
    assert np.all(np.array(out)[:, start:] == 0.0) and np.all(np.array(d_qkv)[:, start:] == 0.0)

"""Attention-probability dropout inside the fused CPU attention kernel.

The mask is read back exactly: with V = one-hot of the key position (head_dim >= length) the output
row of query i *is* its dropped probability row. Then: every kept probability is scaled by 1 / (1 - p)
and the rest are 0; the dropped share matches p; the same MLX seed repeats the mask, another seed
changes it; and forward and gradient equal torch (float64) applying that mask to softmax(Q K^T)
before P V -- what ``nn.Dropout`` on the attention probabilities does -- padded and packed.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
import torch

from mlx_hf_bridge import kernels

pytestmark = pytest.mark.skipif(not kernels.available(), reason="needs the compiled CPU kernels")

HEADS, D, P = 2, 32, 0.25


def layouts():
    """(name, key_mask (B, L), segments (B, L) or None, allowed (B, L, L) numpy bool)."""
    L = 24
    lengths = np.array([24, 15])
    mask = (np.arange(L)[None] < lengths[:, None]).astype(np.float32)
    padded = mask[:, None, :].astype(bool) & np.ones((2, L, 1), bool)
    seg = np.concatenate([np.zeros(9), np.ones(13), np.full(2, 2)]).astype(np.float32)[None]
    packed_mask = (np.arange(L) < 22).astype(np.float32)[None]
    packed = (seg[0][:, None] == seg[0][None, :]) & packed_mask[0][None, :].astype(bool)
    return [("padded", mask, None, padded), ("packed", packed_mask, seg, packed[None])]


def run(qkv, key_mask, segments, seed, dropout=P, cotangent=None):
    mx.random.seed(seed)

    def fn(x):
        return kernels.attention(x, mx.array(key_mask), HEADS, -1, None,
                                 None if segments is None else mx.array(segments), dropout)

    if cotangent is None:
        return np.array(fn(mx.array(qkv))), None
    (out,), (grad,) = mx.vjp(fn, [mx.array(qkv)], [mx.array(cotangent)])
    return np.array(out), np.array(grad)


def one_hot_values(qkv):
    """V of key j = e_j in every head: output (b, i, h, :L) = query i's probability row."""
    B, L, _ = qkv.shape
    qkv = qkv.copy().reshape(B, L, 3, HEADS, D)
    qkv[:, :, 2] = np.eye(D, dtype=np.float32)[:L][None, :, None, :]
    return qkv.reshape(B, L, -1)


def probabilities(qkv, key_mask, segments, seed, dropout):
    out, _ = run(one_hot_values(qkv), key_mask, segments, seed, dropout)
    B, L = key_mask.shape
    return out.reshape(B, L, HEADS, D)[..., :L].transpose(0, 2, 1, 3)  # (B, H, L_query, L_key)


@pytest.mark.parametrize("name, key_mask, segments, allowed", layouts(), ids=[c[0] for c in layouts()])
def test_dropout_mask_scaling_rate_and_seeding(name, key_mask, segments, allowed):
    B, L = key_mask.shape
    qkv = np.random.default_rng(0).normal(size=(B, L, 3 * HEADS * D)).astype(np.float32)
    full = probabilities(qkv, key_mask, segments, 5, 0.0)
    visible = np.broadcast_to(allowed[:, None], full.shape) & (full > 0)
    kept_share = []
    for seed in range(6):
        dropped = probabilities(qkv, key_mask, segments, seed, P)
        ratio = dropped[visible] / full[visible]
        kept = np.isclose(ratio, 1.0 / (1.0 - P), rtol=1e-5)
        assert np.all(kept | (dropped[visible] == 0.0)), "kept probabilities are scaled by 1 / (1 - p)"
        assert np.all(dropped[~visible] == 0.0)
        kept_share.append(kept.mean())
        again = probabilities(qkv, key_mask, segments, seed, P)
        assert np.array_equal(again, dropped), "the same seed repeats the mask"
    n = visible.sum() * len(kept_share)
    assert abs(np.mean(kept_share) - (1 - P)) < 5 * np.sqrt(P * (1 - P) / n)  # 5 sigma
    assert not np.array_equal(probabilities(qkv, key_mask, segments, 0, P), probabilities(qkv, key_mask, segments, 1, P))


@pytest.mark.parametrize("name, key_mask, segments, allowed", layouts(), ids=[c[0] for c in layouts()])
def test_dropout_forward_and_gradient_equal_torch_with_the_same_mask(name, key_mask, segments, allowed):
    B, L = key_mask.shape
    rng = np.random.default_rng(1)
    qkv = (rng.normal(size=(B, L, 3 * HEADS * D)) * 1.5).astype(np.float32)
    cotangent = rng.normal(size=(B, L, HEADS * D)).astype(np.float32)
    seed = 11
    full, dropped = probabilities(qkv, key_mask, segments, seed, 0.0), probabilities(qkv, key_mask, segments, seed, P)
    keep = np.where(full > 0, dropped / np.where(full > 0, full, 1.0), 0.0) * (1.0 - P)  # the mask, 0 / 1
    out, grad = run(qkv, key_mask, segments, seed, P, cotangent)

    t_qkv = torch.tensor(qkv, dtype=torch.float64, requires_grad=True)
    q, k, v = (t.transpose(1, 2) for t in t_qkv.view(B, L, 3, HEADS, D).unbind(2))
    scores = (q @ k.transpose(-1, -2) / D**0.5).masked_fill(~torch.tensor(allowed)[:, None], float("-inf"))
    probs = scores.softmax(-1).nan_to_num(0.0) * torch.tensor(np.round(keep)) / (1.0 - P)
    ref = (probs @ v).transpose(1, 2).reshape(B, L, HEADS * D)
    ref.backward(torch.tensor(cotangent, dtype=torch.float64))
    assert 0 < keep[np.broadcast_to(allowed[:, None], keep.shape)].mean() < 1  # some dropped, some kept
    np.testing.assert_allclose(out, ref.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grad, t_qkv.grad.numpy(), rtol=1e-5, atol=1e-5)


def test_bert_training_with_its_default_attention_dropout_runs_packed(monkeypatch):
    """BERT's attention_probs_dropout_prob (0.1) no longer sends training to the padded path: the packed
    kernel gets p = 0.1 in training and 0 in eval, and one MLX seed repeats the step's loss."""
    from transformers import BertConfig

    from mlx_hf_bridge.models import bert
    from mlx_hf_bridge.tasks.bert import BertForSequenceClassification

    seen = []
    original = bert.PackedAttention.__call__
    monkeypatch.setattr(bert.PackedAttention, "__call__", lambda self, qkv, heads, dropout=0.0: (
        seen.append(dropout), original(self, qkv, heads, dropout))[1])
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, num_labels=2)  # dropouts: HF's defaults (0.1)
    mx.random.seed(0)
    model = BertForSequenceClassification(config)
    ids = mx.array(np.random.default_rng(0).integers(1, 100, (3, 12)))
    mask = mx.array((np.arange(12)[None] < np.array([[12], [7], [3]])).astype(np.int32))
    labels = mx.array([0, 1, 1])
    model.train()
    losses = []
    for _ in range(2):
        mx.random.seed(4)
        losses.append(float(model(ids, mask, labels=labels).loss))
    # layer 0 packed (the last layer runs for the [CLS] rows only: the pooled head reads no other)
    assert seen == [0.1, 0.1] and losses[0] == losses[1]
    mx.random.seed(5)
    assert float(model(ids, mask, labels=labels).loss) != losses[0]  # another draw
    model.eval()
    seen.clear()
    model(ids, mask)
    assert seen == [0.0]

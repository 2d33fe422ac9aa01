"""Padding-free batching gives PyLate's fixed-padding losses and gradients (issue #5)."""

import zlib

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten

from mlx_hf_bridge.colbert import padding
from mlx_hf_bridge.pylate import losses, models

WORDS = "the of and a to in is was for on that with as by at from his an were are which this be or has".split()


def texts(rng, n, lo, hi):
    out = []
    for _ in range(n):
        words = list(rng.choice(WORDS, size=int(rng.integers(lo, hi))))
        # punctuation: skiplist tokens inside documents
        out.append(" ".join(words[: len(words) // 2]) + ", " + " ".join(words[len(words) // 2 :]) + ".")
    return out


def features(model, rng, batch, n_docs, doc_words):
    cols = [model.tokenize(texts(rng, batch, 2, 9), is_query=True, pad=True)]
    cols += [model.tokenize(texts(rng, batch, *doc_words), is_query=False, pad=True) for _ in range(n_docs)]
    return cols


@pytest.fixture(scope="module", params=["bert", "modernbert"])
def model(request, tiny_bert_dir, tiny_modernbert_dir):
    folder = tiny_bert_dir if request.param == "bert" else tiny_modernbert_dir
    m = models.ColBERT(str(folder), query_length=16, document_length=80)
    m.train()  # dropout is 0 in the tiny configs: train mode exercises the training path
    return m


def value_and_grads(model, loss, feats, labels=None):
    if hasattr(loss, "value_and_grad"):
        value, grads = loss.value_and_grad(feats, labels)
    else:
        value, grads = nn.value_and_grad(model, lambda f, lab: loss(f, lab))(feats, labels)
    return float(value), dict(tree_flatten(grads))


def assert_close(fixed, free):
    (v1, g1), (v2, g2) = fixed, free
    assert abs(v1 - v2) <= 1e-5 * max(1.0, abs(v1))
    scale = max(float(mx.abs(g).max()) for g in g1.values())
    for name in g1:
        diff = float(mx.abs(g1[name] - g2[name]).max())
        assert diff <= 1e-5 * scale, (name, diff, scale)


CASES = [
    ("Contrastive", {}),
    ("CachedContrastive", {"mini_batch_size": 3}),
    ("CachedContrastive", {"mini_batch_size": 8}),
]


@pytest.mark.parametrize("expansion", [True, False])
@pytest.mark.parametrize("name,kwargs", CASES)
@pytest.mark.parametrize("doc_words", [(3, 12), (3, 60), (40, 90)])
def test_contrastive_losses_equal_fixed_padding(model, expansion, name, kwargs, doc_words):
    """Mixed lengths: short docs (one bucket), a long tail, and docs truncated at document_length."""
    model.do_query_expansion = expansion
    rng = np.random.default_rng(zlib.crc32(repr((name, expansion, doc_words)).encode()))  # same data every run
    feats = features(model, rng, batch=7, n_docs=2, doc_words=doc_words)
    cls = getattr(losses, name)
    fixed = value_and_grads(model, cls(model, padding_free=False, **kwargs), feats)
    free = value_and_grads(model, cls(model, padding_free=True, **kwargs), feats)
    assert_close(fixed, free)
    model.do_query_expansion = True


@pytest.mark.parametrize("seed", [0, 32])  # 32: the largest float32 disagreement in 120 batches
def test_padding_free_is_as_exact_as_fixed_padding(tiny_modernbert_dir, seed):
    """Both layouts compute the same gradient in float32 with different rounding (packing changes
    every GEMM's shape); on rare batches they then differ by ~1.6e-5 of the largest gradient. Against
    the gradient in float64 (fixed padding, MLX ops), padding-free is as close as PyLate's layout."""
    model = models.ColBERT(str(tiny_modernbert_dir), query_length=16, document_length=80)
    model.train()
    feats = features(model, np.random.default_rng(seed), batch=7, n_docs=2, doc_words=(40, 90))
    fixed = value_and_grads(model, losses.CachedContrastive(model, padding_free=False, mini_batch_size=8), feats)
    free = value_and_grads(model, losses.CachedContrastive(model, padding_free=True, mini_batch_size=8), feats)
    model.set_dtype(mx.float64)
    exact = value_and_grads(model, losses.CachedContrastive(model, padding_free=False, mini_batch_size=8), feats)
    scale = max(float(mx.abs(g).max()) for g in exact[1].values())

    def error(grads):
        return max(float(mx.abs(exact[1][n] - grads[n].astype(mx.float64)).max()) for n in exact[1]) / scale

    assert error(free[1]) <= 1.5 * error(fixed[1]), (error(free[1]), error(fixed[1]))
    assert error(free[1]) < 1e-4  # float32 rounding, not a different gradient


def test_exact_bucket_width_gets_pylates_zero_floor(model):
    """A document exactly filling a bucket (32) has no masked position after trimming; PyLate's
    padded layout still floors its MaxSim at 0 — the extra masked column must reproduce that."""
    model.do_query_expansion = True
    q = model.tokenize(["what is it"], is_query=True, pad=True)
    ids = np.full((1, 80), model.tokenizer.pad_token_id, dtype=np.int32)
    ids[0, :32] = np.random.default_rng(0).integers(1000, 2000, size=32)
    mask = np.zeros((1, 80), dtype=np.int32)
    mask[0, :32] = 1
    doc = {"input_ids": mx.array(ids), "attention_mask": mx.array(mask)}
    if "token_type_ids" in q:
        doc["token_type_ids"] = mx.zeros_like(doc["input_ids"])
    assert padding.trimmed_width(doc) == 32 and padding.scoring_width([32], 80) == 33
    fixed = value_and_grads(model, losses.Contrastive(model, padding_free=False), [q, doc])
    free = value_and_grads(model, losses.Contrastive(model, padding_free=True), [q, doc])
    assert_close(fixed, free)


@pytest.mark.parametrize("expansion", [True, False])
def test_distillation_equal_fixed_padding(model, expansion):
    model.do_query_expansion = expansion
    rng = np.random.default_rng(3)
    q = model.tokenize(texts(rng, 3, 2, 9), is_query=True, pad=True)
    # 3 queries x 3 ways: with 2 ways the min-max normalised scores are always {0, 1}, so the
    # gradient is 0 whatever the model and the comparison would check rounding noise only
    d = model.tokenize(texts(rng, 9, 3, 50), is_query=False, pad=True)
    labels = mx.array(rng.random((3, 3)).astype(np.float32))
    fixed = value_and_grads(model, losses.Distillation(model, padding_free=False), [q, d], labels)
    free = value_and_grads(model, losses.Distillation(model, padding_free=True), [q, d], labels)
    assert max(float(mx.abs(g).max()) for g in fixed[1].values()) > 1e-3  # a gradient worth comparing
    assert_close(fixed, free)
    model.do_query_expansion = True


def test_encode_identical_with_fixed_padding(model):
    rng = np.random.default_rng(5)
    docs = texts(rng, 9, 2, 70)
    model.padding_free = True
    free = model.encode(docs, is_query=False, batch_size=4)
    model.padding_free = False
    fixed = model.encode(docs, is_query=False, batch_size=4)
    model.padding_free = True
    for a, b in zip(free, fixed):
        assert a.shape == b.shape and np.abs(a - b).max() <= 1e-5


def test_encoder_shapes_bounded_over_an_epoch(model):
    """Every encoder input width is a bucket (multiple of 32, or document_length): few shapes."""
    seen = set()
    original = type(model.transformer).__call__

    def recording(self, feats):
        seen.add(tuple(feats["input_ids"].shape))
        return original(self, feats)

    type(model.transformer).__call__ = recording
    try:
        rng = np.random.default_rng(11)
        loss = losses.CachedContrastive(model, mini_batch_size=4)
        for _ in range(6):  # an "epoch" of batches with random length mixes
            loss.value_and_grad(features(model, rng, batch=8, n_docs=1, doc_words=(2, 90)))
    finally:
        type(model.transformer).__call__ = original
    widths = {w for _, w in seen}
    assert widths <= {32, 64, 80, model.query_length}
    assert len(seen) <= 4  # rows are always the mini-batch size (8 rows / 4)


def test_packed_shapes_bounded_over_an_epoch(tiny_modernbert_dir, monkeypatch):
    """Where the backbone packs rows (ModernBERT on the fused CPU attention), the packed row is a
    multiple of 32 tokens and never longer than the mini-batch it replaces."""
    from mlx_hf_bridge import kernels
    from mlx_hf_bridge.models import packing

    if not kernels.available():  # built wherever setup builds them: test_cpu_kernels asserts that
        pytest.skip(f"packing needs the fused CPU attention: {kernels.status()}")
    model = models.ColBERT(str(tiny_modernbert_dir), query_length=16, document_length=80)
    seen = []
    original = packing.SequencePacking.plan.__func__

    def recording(cls, attention_mask):
        plan = original(cls, attention_mask)
        if plan is not None:
            seen.append((plan.key_mask.shape, attention_mask.shape))
        return plan

    monkeypatch.setattr(packing.SequencePacking, "plan", classmethod(recording))
    rng = np.random.default_rng(12)
    loss = losses.CachedContrastive(model, mini_batch_size=4)
    for _ in range(4):
        loss.value_and_grad(features(model, rng, batch=8, n_docs=1, doc_words=(2, 90)))
    assert seen  # documents were packed
    for (rows, T), (B, L) in seen:
        assert rows == 1 and T % packing.MULTIPLE == 0 and T < B * L

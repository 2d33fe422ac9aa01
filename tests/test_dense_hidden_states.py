"""Every layer's output (``output_hidden_states``) of the MLX BERT and ModernBERT = transformers'
``hidden_states`` (the embeddings' output, then each layer's; ModernBERT's final norm on the last
entry only) on tiny random configs with 3+ layers, a larger init, padded rows, ModernBERT beyond its
local window on the fused-kernel and the MLX-ops path, and both packed (padding-free, real tokens;
BERT's packed gradients = padded = transformers').
Through the dense model: ``all_layer_embeddings`` in the Transformer module's features exactly when
the backbone config's ``output_hidden_states`` is set, as the installed sentence-transformers does.
Runs in .venv (transformers 5.3, ST 5.3) and .venv-st6 (transformers 5.24, ST 6.2).
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import _save_tiny, tiny_bert_config, tiny_modernbert_config  # noqa: E402
from mlx_hf_bridge.transformers import AutoModel  # noqa: E402

TOL = 1e-5


def torch_hidden_states(folder, ids, mask):
    from transformers import AutoModel as TorchAutoModel

    model = TorchAutoModel.from_pretrained(str(folder)).eval()
    with torch.no_grad():
        out = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), output_hidden_states=True)
    return out.last_hidden_state.numpy(), [h.numpy() for h in out.hidden_states]


def random_batch(rng, vocab, lengths, total):
    ids = rng.integers(5, vocab - 5, size=(len(lengths), total))
    mask = (np.arange(total)[None, :] < np.array(lengths)[:, None]).astype(np.int64)
    return ids, mask


def compare(model, folder, ids, mask, real_only=False):
    ref_last, ref = torch_hidden_states(folder, ids, mask)
    last, hidden = model(mx.array(ids), mx.array(mask), output_hidden_states=True)
    default = model(mx.array(ids), mx.array(mask))
    assert len(hidden) == len(ref) == model.args.num_hidden_layers + 1
    rows = mask.astype(bool) if real_only else np.ones(mask.shape, bool)
    worst = 0.0
    for i, (got, want) in enumerate(zip(hidden, ref)):
        diff = float(np.abs(np.array(got)[rows] - want[rows]).max())
        assert diff <= TOL, (i, diff)
        worst = max(worst, diff)
    assert np.array_equal(np.array(last), np.array(hidden[-1]))
    assert np.array_equal(np.array(default), np.array(last))  # the default path: the same last state
    assert float(np.abs(np.array(last)[rows] - ref_last[rows]).max()) <= TOL
    return worst


@pytest.mark.parametrize("path", ["padded", "packed"])
@pytest.mark.parametrize("init_scale", [None, 0.2])
def test_bert_every_layer(tmp_path, minilm_dir, path, init_scale):
    from mlx_hf_bridge import kernels

    # 2 heads of 16: the fused kernel's head_dim (a multiple of 16), so "packed" packs
    config = tiny_bert_config(num_hidden_layers=3, num_attention_heads=2)
    folder = _save_tiny(tmp_path / "bert", config, minilm_dir, 1, init_scale)
    model = AutoModel.from_pretrained(str(folder))
    ids, mask = random_batch(np.random.default_rng(0), 30522, [30, 11, 3], 30)
    if path == "packed":
        if not model._fuses_attention(mx.zeros((1, 1, model.args.hidden_size))):
            pytest.skip(f"needs the fused CPU attention: {kernels.status()}")
        model.pack_sequences = True
    worst = compare(model, folder, ids, mask, real_only=path == "packed")
    if path == "packed":
        _, hidden = model(mx.array(ids), mx.array(mask), output_hidden_states=True)
        assert all(np.all(np.array(h)[~mask.astype(bool)] == 0.0) for h in hidden)
    print(f"bert {path} max|d| over layers:", worst)


@pytest.mark.parametrize("init_scale", [None, 0.2])
def test_bert_packed_gradients_match_padded_and_transformers(tmp_path, minilm_dir, init_scale):
    """Packing changes no gradient: packed = padded = transformers' for every BERT parameter."""
    import mlx.nn as nn
    from mlx.utils import tree_flatten
    from transformers import AutoModel as TorchAutoModel

    from mlx_hf_bridge import kernels

    folder = _save_tiny(tmp_path / "bert", tiny_bert_config(num_attention_heads=2), minilm_dir, 3, init_scale)
    ids, mask = random_batch(np.random.default_rng(3), 30522, [40, 17, 5, 40], 40)
    weights = np.random.default_rng(1).normal(size=(32,)).astype(np.float32)
    hf = TorchAutoModel.from_pretrained(str(folder)).eval()
    m = torch.tensor(mask)
    out = hf(input_ids=torch.tensor(ids), attention_mask=m).last_hidden_state
    (((out * m[..., None]) @ torch.tensor(weights)) ** 2).sum().backward()
    ref = {n: p.grad.numpy() for n, p in hf.named_parameters() if p.grad is not None}
    scale = max(float(np.abs(g).max()) for g in ref.values())

    def grads(packed):
        model = AutoModel.from_pretrained(str(folder))
        model.pack_sequences = packed
        x, mm, w = mx.array(ids), mx.array(mask), mx.array(weights)
        _, g = nn.value_and_grad(model, lambda: (((model(x, mm) * mm[..., None]) @ w) ** 2).sum())()
        return {k: np.array(v) for k, v in tree_flatten(g)}

    padded = grads(False)
    assert {k for k in padded if not k.startswith("pooler.")} <= set(ref)
    if not kernels.available():
        pytest.skip(f"packing needs the fused CPU attention: {kernels.status()}")
    packed = grads(True)
    for name, g in padded.items():
        if name in ref:
            assert float(np.abs(g - ref[name]).max()) <= 1e-5 * scale, name
        assert float(np.abs(packed[name] - g).max()) <= 1e-5 * scale, name


@pytest.mark.parametrize("path", ["fused", "mlx-ops", "packed"])
@pytest.mark.parametrize("init_scale", [None, 0.2])
def test_modernbert_every_layer(tmp_path, modernbert_tokenizer_dir, path, init_scale):
    from mlx_hf_bridge import kernels

    folder = _save_tiny(tmp_path / "mb", tiny_modernbert_config(), modernbert_tokenizer_dir, 2, init_scale)
    model = AutoModel.from_pretrained(str(folder))
    ids, mask = random_batch(np.random.default_rng(1), 50368, [50, 21, 6, 50], 50)  # half window 8
    fused = model._fuses_attention(mx.zeros((1, 1, model.args.hidden_size)))
    if path in ("fused", "packed") and not fused:
        pytest.skip(f"needs the fused CPU attention: {kernels.status()}")
    if path == "mlx-ops":
        model._fuses_attention = lambda x: False
    model.pack_sequences = path == "packed"
    worst = compare(model, folder, ids, mask, real_only=path == "packed")
    if path == "packed":  # padded positions of every layer are 0, as the packed last hidden state's
        _, hidden = model(mx.array(ids), mx.array(mask), output_hidden_states=True)
        assert all(np.all(np.array(h)[~mask.astype(bool)] == 0.0) for h in hidden)
    print(f"modernbert {path} max|d| over layers:", worst)


@pytest.mark.parametrize("kind", ["bert", "modernbert"])
def test_all_layer_embeddings_in_features(tmp_path, minilm_dir, modernbert_tokenizer_dir, kind):
    from sentence_transformers import SentenceTransformer as TorchST

    from mlx_hf_bridge.dense import SentenceTransformer

    if kind == "bert":
        folder = _save_tiny(tmp_path / kind, tiny_bert_config(num_hidden_layers=3), minilm_dir, 3, 0.2)
    else:
        folder = _save_tiny(tmp_path / kind, tiny_modernbert_config(), modernbert_tokenizer_dir, 3, 0.2)
    texts = ["a short one", "a much longer sentence with quite a few more words in it than the first", "mid size text"]
    ours, theirs = SentenceTransformer(str(folder)), TorchST(str(folder), device="cpu").eval()
    t_features = theirs.tokenize(texts)
    m_features = ours.tokenize(texts)
    assert "all_layer_embeddings" not in ours[0](dict(m_features))
    for model in (ours[0].auto_model, theirs[0].auto_model):
        model.config.output_hidden_states = True
    got = ours[0](dict(m_features))
    with torch.no_grad():
        want = theirs[0]({k: v for k, v in t_features.items() if isinstance(v, torch.Tensor)})
    n_states = ours[0].auto_model.args.num_hidden_layers + 1
    assert len(got["all_layer_embeddings"]) == len(want["all_layer_embeddings"]) == n_states
    real = np.array(m_features["attention_mask"]).astype(bool)
    for g, w in zip(got["all_layer_embeddings"], want["all_layer_embeddings"]):
        assert float(np.abs(np.array(g)[real] - w.numpy()[real]).max()) <= TOL
    assert float(np.abs(np.array(got["token_embeddings"])[real] - want["token_embeddings"].numpy()[real]).max()) <= TOL
    ours[0].auto_model.config.output_hidden_states = False
    assert "all_layer_embeddings" not in ours[0](dict(m_features))

"""Hidden-state parity of the MLX encoders with transformers (torch, fp32, eval mode)."""

import mlx.core as mx
import numpy as np
import pytest

from slow_cases import split_product  # noqa: E402

from conftest import _save_tiny, tiny_bert_config, tiny_modernbert_config
from mlx_hf_bridge.transformers import AutoModel

TOL = 1e-4


def torch_hidden(folder, ids, mask):
    import torch
    from transformers import AutoModel as TorchAutoModel

    # the default (sdpa) attention, which PyLate / sentence-transformers use
    model = TorchAutoModel.from_pretrained(str(folder)).eval()
    with torch.no_grad():
        return model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).last_hidden_state.numpy()


def mlx_hidden(folder, ids, mask):
    model = AutoModel.from_pretrained(str(folder))
    return np.array(model(mx.array(ids), mx.array(mask)))


def random_batch(rng, vocab, lengths, total):
    ids = rng.integers(5, vocab - 5, size=(len(lengths), total))
    mask = np.zeros_like(ids)
    for row, n in enumerate(lengths):
        mask[row, :n] = 1
    return ids, mask


def assert_parity(folder, ids, mask):
    ref, got = torch_hidden(folder, ids, mask), mlx_hidden(folder, ids, mask)
    real = mask.astype(bool)
    # real tokens must match; padded rows are computed too, and must match as well
    assert np.abs(ref[real] - got[real]).max() <= TOL
    assert np.abs(ref - got).max() <= TOL
    return np.abs(ref - got).max()


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("init_scale", [None, 0.2])
def test_bert_hidden_states(tmp_path, minilm_dir, seed, init_scale):
    folder = _save_tiny(tmp_path / "bert", tiny_bert_config(), minilm_dir, seed, init_scale)
    ids, mask = random_batch(np.random.default_rng(seed), 30522, [40, 17, 3], 40)
    assert_parity(folder, ids, mask)


# heads 2 -> head_dim 16: the fused CPU attention; 4 -> 8: MLX ops. CI: each path, each init
@pytest.mark.parametrize("heads,init_scale,seed", split_product([2, 4], [None, 0.2], [0, 1, 2], fast=[
    (2, None, 0), (2, 0.2, 1), (4, None, 2), (4, 0.2, 0)]))
def test_modernbert_hidden_states_beyond_local_window(tmp_path, modernbert_tokenizer_dir, seed, init_scale, heads):
    # local_attention=16 -> half window 8; sequences of 70 cross it many times
    config = tiny_modernbert_config(num_attention_heads=heads)
    folder = _save_tiny(tmp_path / "mb", config, modernbert_tokenizer_dir, seed, init_scale)
    ids, mask = random_batch(np.random.default_rng(seed), 50368, [70, 33, 9, 70], 70)
    assert_parity(folder, ids, mask)


@pytest.mark.parametrize("init_scale", [None, 0.2])
def test_modernbert_packed_sequences_match_transformers(tmp_path, modernbert_tokenizer_dir, init_scale):
    """``pack_sequences`` (what the padding-free losses turn on): rows packed end to end give
    transformers' hidden states at every real token, 0 at padding; the parameter gradients equal
    the padded batch's."""
    import mlx.nn as nn
    from mlx.utils import tree_flatten

    from mlx_hf_bridge import kernels

    if not kernels.available():  # built wherever setup builds them: test_cpu_kernels asserts that
        pytest.skip(f"packing needs the fused CPU attention: {kernels.status()}")
    folder = _save_tiny(tmp_path / "mb", tiny_modernbert_config(), modernbert_tokenizer_dir, 4, init_scale)
    ids, mask = random_batch(np.random.default_rng(4), 50368, [70, 33, 9, 1], 70)
    model = AutoModel.from_pretrained(str(folder))
    x, m = mx.array(ids), mx.array(mask)
    run = nn.value_and_grad(model, lambda: (model(x, m) * m[..., None]).square().sum())
    padded_out, padded_grads = model(x, m), run()[1]
    model.pack_sequences = True
    packed_out, packed_grads = np.array(model(x, m)), run()[1]
    real = mask.astype(bool)
    assert np.abs(torch_hidden(folder, ids, mask)[real] - packed_out[real]).max() <= TOL
    assert np.abs(np.array(padded_out)[real] - packed_out[real]).max() <= 1e-5
    assert np.all(packed_out[~real] == 0.0)
    scale = max(float(mx.abs(g).max()) for _, g in tree_flatten(padded_grads))
    for (name, g), (_, h) in zip(tree_flatten(padded_grads), tree_flatten(packed_grads)):
        assert float(mx.abs(g - h).max()) <= 1e-5 * scale, name


def test_modernbert_odd_config(tmp_path, modernbert_tokenizer_dir):
    """Config is honoured: biases on, global every 2 layers, other thetas, tanh GELU."""
    config = tiny_modernbert_config(
        attention_bias=True, mlp_bias=True, norm_bias=True, global_attn_every_n_layers=2,
        global_rope_theta=5000.0, local_rope_theta=777.0, hidden_activation="gelu_pytorch_tanh",
        num_hidden_layers=3,
    )
    folder = _save_tiny(tmp_path / "mb", config, modernbert_tokenizer_dir, 3, 0.2)
    ids, mask = random_batch(np.random.default_rng(3), 50368, [50, 20], 50)
    assert_parity(folder, ids, mask)


def test_real_minilm_hidden_states(minilm_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(minilm_dir))
    texts = ["A man is eating food.", "MLX runs on Apple silicon and, through its CPU backend, on Linux too."]
    enc = tok(texts, padding=True, return_tensors="np")
    assert_parity(minilm_dir, enc["input_ids"], enc["attention_mask"])


@pytest.mark.parametrize("kind", ["bert", "modernbert"])
def test_save_pretrained_loads_in_transformers(tmp_path, kind, tiny_bert_dir, tiny_modernbert_dir):
    import torch
    from transformers import AutoModel as TorchAutoModel

    src = tiny_bert_dir if kind == "bert" else tiny_modernbert_dir
    model = AutoModel.from_pretrained(str(src))
    model.save_pretrained(tmp_path / "out")
    reloaded = TorchAutoModel.from_pretrained(str(tmp_path / "out")).eval()
    original = TorchAutoModel.from_pretrained(str(src)).eval()
    ref = original.state_dict()
    for name, tensor in reloaded.state_dict().items():
        assert torch.equal(tensor, ref[name]), name
    ids, mask = random_batch(np.random.default_rng(0), 30000, [12, 5], 12)
    with torch.no_grad():
        a = reloaded(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).last_hidden_state
        b = original(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).last_hidden_state
    assert torch.equal(a, b)


@pytest.mark.parametrize("length", [33, 64, 100, 257])
def test_blocked_local_attention_equals_masked_full(length):
    """The blocked sliding window equals full attention under the |i-j| <= w band + padding mask."""
    from mlx_hf_bridge.models.base import padding_bias, sliding_window_bias
    from mlx_hf_bridge.models.modernbert import BlockedLocalAttention

    w, B, H, D = 8, 3, 2, 4
    rng = np.random.default_rng(length)
    q, k, v = (mx.array(rng.standard_normal((B, H, length, D)).astype(np.float32)) for _ in range(3))
    mask = np.ones((B, length), dtype=np.int32)
    mask[1, length // 3 :] = 0  # padded row: far positions see no key at all
    mask[2, 5:9] = 0  # a hole in the middle
    mask = mx.array(mask)
    bias = padding_bias(mask) + sliding_window_bias(length, w)
    ref = mx.fast.scaled_dot_product_attention(q, k, v, scale=0.5, mask=bias)
    local = BlockedLocalAttention(mask, length, w, mx.float32)
    got = local(q, k, v, 0.5) * local.visible
    visible = np.array(local.visible)[:, 0, :, 0].astype(bool)
    # rows with a visible key agree; rows without one are zeroed (torch SDPA semantics)
    np.testing.assert_allclose(np.array(got)[visible[:, None, :].repeat(H, 1)], np.array(ref)[visible[:, None, :].repeat(H, 1)], atol=1e-5)
    assert not visible[1, length // 3 + w + 1 :].any()
    assert np.all(np.array(got)[~visible[:, None, :].repeat(H, 1)] == 0)

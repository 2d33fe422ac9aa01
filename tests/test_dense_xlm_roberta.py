"""RoBERTa / XLM-RoBERTa backbones (``models/roberta.py``, ``models/xlm_roberta.py``) against
transformers on torch (5.3 in .venv, 5.24 in .venv-st6): every layer's hidden states, right and left
padding, pad ids inside a row, packed batches, gradients (incl. torch's ``padding_idx`` rule), export,
MLM checkpoints, the position-table limit and the configs the bridge refuses (Jina's rotary XLM-R
with custom code). X-MOD is in test_dense_xmod.py; the dense SentenceTransformer side is in test_dense_xlm_roberta_st.py."""

from __future__ import annotations

import json

import mlx.core as mx
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from xlm_roberta_helpers import PAD, save_tiny, token_batch, write_xlmr_tokenizer  # noqa: E402

from mlx_hf_bridge import kernels  # noqa: E402
from mlx_hf_bridge.transformers import AutoModel  # noqa: E402

TOL = 1e-5


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    return write_xlmr_tokenizer(tmp_path_factory.mktemp("xlmr-tokenizer"))[0]


def torch_forward(folder, ids, mask):
    from transformers import AutoModel as TorchAutoModel

    model = TorchAutoModel.from_pretrained(str(folder)).eval()  # sdpa, as ST / PyLate run it
    with torch.no_grad():
        out = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), output_hidden_states=True)
    return [h.numpy() for h in out.hidden_states]


def with_attended_pad(ids, mask):
    """A pad id inside a real row (attended): its position is pad_token_id, the rows after it shift."""
    ids = ids.copy()
    ids[0, 3] = PAD
    return ids, mask


@pytest.mark.parametrize("model_type", ["xlm-roberta", "roberta"])
@pytest.mark.parametrize("init_scale", [None, 0.2])
@pytest.mark.parametrize("left", [False, True])
def test_every_layer_matches_transformers(tmp_path, tokenizer_dir, model_type, init_scale, left):
    folder = save_tiny(tmp_path / "m", tokenizer_dir, seed=3, init_scale=init_scale, model_type=model_type)
    ids, mask = with_attended_pad(*token_batch(np.random.default_rng(3), [40, 17, 3, 40], 40, left=left))
    ref = torch_forward(folder, ids, mask)
    model = AutoModel.from_pretrained(str(folder))
    assert type(model).__module__.endswith(model_type.replace("-", "_"))
    last, hidden = model(mx.array(ids), mx.array(mask), output_hidden_states=True)
    assert len(hidden) == len(ref) == 3
    diffs = [float(np.abs(np.array(h) - r).max()) for h, r in zip(hidden, ref)]  # padded positions too
    print(model_type, init_scale, "left" if left else "right", "per-layer max|d|", [f"{d:.1e}" for d in diffs])
    assert max(diffs) <= TOL
    assert np.array_equal(np.array(last), np.array(hidden[-1]))


def test_position_ids_are_transformers(tokenizer_dir):
    """The bridge's position rule equals transformers' create_position_ids_from_input_ids."""
    from transformers.models.roberta.modeling_roberta import RobertaEmbeddings as TorchEmbeddings

    from mlx_hf_bridge.models.roberta import ModelArgs, RobertaEmbeddings

    ids, mask = with_attended_pad(*token_batch(np.random.default_rng(0), [9, 4, 1], 9))
    ids[1, :3] = PAD  # left padding inside a right-padded batch: any layout
    ref = TorchEmbeddings.create_position_ids_from_input_ids(torch.tensor(ids), PAD).numpy()
    emb = RobertaEmbeddings(ModelArgs(vocab_size=151, hidden_size=8, max_position_embeddings=20))
    captured = {}
    original = emb.position_embeddings

    class Capture:
        def __call__(self, positions):
            captured["positions"] = np.array(positions)
            return original(positions)

    emb.position_embeddings = Capture()
    emb(mx.array(ids))
    np.testing.assert_array_equal(captured["positions"], ref)


def grads_of(folder, ids, mask, packed=False):
    """(output, {HF name: gradient}) of a fixed projection of the real tokens' last hidden states."""
    import mlx.nn as nn
    from mlx.utils import tree_flatten

    model = AutoModel.from_pretrained(str(folder))
    model.pack_sequences = packed
    x, m = mx.array(ids), mx.array(mask)
    weights = mx.array(np.random.default_rng(1).normal(size=(32,)).astype(np.float32))
    value_and_grad = nn.value_and_grad(model, lambda: (((model(x, m) * m[..., None]) @ weights) ** 2).sum())
    _, grads = value_and_grad()
    return np.array(model(x, m)), {k: np.array(v) for k, v in tree_flatten(grads)}


def torch_grads(folder, ids, mask):
    from transformers import AutoModel as TorchAutoModel

    model = TorchAutoModel.from_pretrained(str(folder)).eval()
    m = torch.tensor(mask)
    weights = torch.tensor(np.random.default_rng(1).normal(size=(32,)).astype(np.float32))
    out = model(input_ids=torch.tensor(ids), attention_mask=m).last_hidden_state
    (((out * m[..., None]) @ weights) ** 2).sum().backward()
    return {n: (p.grad if p.grad is not None else torch.zeros_like(p)).numpy() for n, p in model.named_parameters()}


@pytest.mark.parametrize("init_scale", [None, 0.2])
def test_gradients_and_packed_batches(tmp_path, tokenizer_dir, init_scale):
    """Gradients = torch's (the pad rows of the word and position tables get none, as torch's
    padding_idx); with ``pack_sequences`` the rows run end to end: same outputs at real tokens, 0 at
    padding, same gradients."""
    folder = save_tiny(tmp_path / "m", tokenizer_dir, seed=5, init_scale=init_scale)
    ids, mask = with_attended_pad(*token_batch(np.random.default_rng(5), [50, 21, 7, 2], 50))
    ref_grads = torch_grads(folder, ids, mask)
    ref_last = torch_forward(folder, ids, mask)[-1]
    padded_out, padded = grads_of(folder, ids, mask)
    scale = max(float(np.abs(g).max()) for g in ref_grads.values())
    assert set(padded) <= set(ref_grads)
    worst = max(float(np.abs(padded[n] - ref_grads[n]).max()) for n in padded) / scale
    for table in ("embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight"):
        assert np.all(ref_grads[table][PAD] == 0) and np.all(padded[table][PAD] == 0), table
    assert float(np.abs(ref_grads["embeddings.word_embeddings.weight"]).max()) > 0
    print(f"init {init_scale}: gradients vs torch max|d| {worst:.1e} of the largest entry")
    assert worst <= 1e-5
    if not kernels.available():  # built wherever setup builds them: test_cpu_kernels asserts that
        pytest.skip(f"packing needs the fused CPU attention: {kernels.status()}")
    packed_out, packed = grads_of(folder, ids, mask, packed=True)
    real = mask.astype(bool)
    packed_vs_torch = float(np.abs(packed_out[real] - ref_last[real]).max())
    packed_vs_padded = float(np.abs(packed_out[real] - padded_out[real]).max())
    print(f"packed: vs transformers {packed_vs_torch:.1e}, vs padded {packed_vs_padded:.1e}")
    assert packed_vs_torch <= TOL and packed_vs_padded <= TOL
    assert np.all(packed_out[~real] == 0.0)
    for name, g in padded.items():
        assert float(np.abs(packed[name] - g).max()) <= 1e-5 * scale, name


def test_save_reloads_in_transformers_bit_identically(tmp_path, tokenizer_dir):
    from transformers import AutoModel as TorchAutoModel

    folder = save_tiny(tmp_path / "m", tokenizer_dir, seed=2, init_scale=0.2)
    model = AutoModel.from_pretrained(str(folder))
    model.save_pretrained(str(tmp_path / "out"))
    original = TorchAutoModel.from_pretrained(str(folder)).state_dict()
    saved = TorchAutoModel.from_pretrained(str(tmp_path / "out"))
    assert type(saved).__name__ == "XLMRobertaModel"
    state = saved.state_dict()
    assert set(state) == set(original)
    for name, tensor in original.items():
        assert torch.equal(tensor, state[name]), name


def test_masked_lm_checkpoint_loads_the_encoder(tmp_path, tokenizer_dir):
    """An ``XLMRobertaForMaskedLM`` save (``roberta.`` prefix, ``lm_head``, no pooler) gives the encoder
    transformers' AutoModel builds from it."""
    from transformers import AutoTokenizer, XLMRobertaForMaskedLM

    from xlm_roberta_helpers import tiny_config

    torch.manual_seed(0)
    XLMRobertaForMaskedLM(tiny_config()).eval().save_pretrained(str(tmp_path / "mlm"))
    AutoTokenizer.from_pretrained(str(tokenizer_dir)).save_pretrained(str(tmp_path / "mlm"))
    ids, mask = token_batch(np.random.default_rng(0), [12, 5], 12)
    ref = torch_forward(tmp_path / "mlm", ids, mask)[-1]
    model = AutoModel.from_pretrained(str(tmp_path / "mlm"))
    assert "pooler" not in model
    assert float(np.abs(np.array(model(mx.array(ids), mx.array(mask))) - ref).max()) <= TOL


def test_position_table_limit(tmp_path, tokenizer_dir):
    """Positions start at pad_token_id + 1: a 130-row table holds 128 real tokens. A wider batch whose
    rows are within that runs (torch counts only non-pad tokens); one more token is refused (torch:
    an out-of-bounds index error)."""
    folder = save_tiny(tmp_path / "m", tokenizer_dir, seed=0)
    model = AutoModel.from_pretrained(str(folder))
    assert model.max_positions == 128
    ids, mask = token_batch(np.random.default_rng(0), [128, 9], 140)
    ref = torch_forward(folder, ids, mask)[-1]
    assert float(np.abs(np.array(model(mx.array(ids), mx.array(mask))) - ref).max()) <= TOL
    ids, mask = token_batch(np.random.default_rng(0), [129, 9], 140)
    with pytest.raises((IndexError, RuntimeError), match="out of"):  # torch: 'index 130 is out of bounds'
        torch_forward(folder, ids, mask)
    with pytest.raises(ValueError, match=r"129 tokens .*max_position_embeddings=130.*at most 128 tokens.*max_length=128"):
        model(mx.array(ids), mx.array(mask))


def jina_like_folder(tmp_path, tokenizer_dir):
    """A tiny folder shaped like jinaai/jina-colbert-v2's backbone: model_type xlm-roberta, rotary
    positions, auto_map to Jina's flash implementation (custom torch code)."""
    folder = save_tiny(tmp_path / "jina", tokenizer_dir, seed=0)
    config = json.loads((folder / "config.json").read_text())
    config.update(position_embedding_type="rotary", rotary_emb_base=20000.0, use_flash_attn=True, auto_map={
        "AutoConfig": "jinaai/xlm-roberta-flash-implementation--configuration_xlm_roberta.XLMRobertaFlashConfig",
        "AutoModel": "jinaai/xlm-roberta-flash-implementation--modeling_xlm_roberta.XLMRobertaModel",
    })
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_jina_rotary_xlm_roberta_refused(tmp_path, tokenizer_dir, monkeypatch):
    """PyLate loads jina-colbert-v2 with trust_remote_code=True: its XLM-R runs rotary flash attention
    from custom code. The bridge refuses both spellings, naming the custom code and why the built-in
    class cannot stand in, before the weights are read."""
    import mlx_hf_bridge.loading as loading
    import mlx_hf_bridge.modules.transformer as st_transformer
    from mlx_hf_bridge.pylate import models as mlx_models

    folder = jina_like_folder(tmp_path, tokenizer_dir)
    # both names: modules.transformer holds its own reference (imported first here, it would keep the stub)
    for module in (loading, st_transformer):
        monkeypatch.setattr(module, "load_weights", lambda *a: pytest.fail("weights read before the refusal"))
    with pytest.raises(ValueError) as remote:
        AutoModel.from_pretrained(str(folder), trust_remote_code=True)
    message = str(remote.value)
    assert "XLMRobertaFlashConfig" in message and "trust_remote_code=True" in message and "cannot run on MLX" in message
    assert "position_embedding_type='rotary'" in message and "Pass trust_remote_code=False" not in message
    with pytest.raises(ValueError, match=r"position_embedding_type='rotary' is not supported.*auto_map.*"
                                         r"xlm-roberta-flash-implementation.*cannot run on MLX"):
        AutoModel.from_pretrained(str(folder))

    # PyLate's own loading test: ColBERT("jinaai/jina-colbert-v2", trust_remote_code=True, ...)
    with pytest.raises(ValueError, match=r"XLMRobertaFlashConfig.*trust_remote_code=True.*cannot run on MLX"):
        mlx_models.ColBERT(str(folder), trust_remote_code=True, query_prefix="[QueryMarker]",
                           document_prefix="[DocumentMarker]", attend_to_expansion_tokens=True)


@pytest.mark.parametrize("edit, match", [
    ({"pad_token_id": None}, r"pad_token_id=None.*Set pad_token_id"),
    ({"is_decoder": True}, r"is_decoder=True.*encoder only"),
    ({"position_embedding_type": "relative_key"}, r"position_embedding_type='relative_key' is not supported"),
])
def test_configs_the_encoder_cannot_build(tmp_path, tokenizer_dir, edit, match):
    folder = save_tiny(tmp_path / "m", tokenizer_dir, seed=0)
    config = json.loads((folder / "config.json").read_text())
    config.update(edit)
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=match):
        AutoModel.from_pretrained(str(folder))


def test_gradient_checkpointing_packed_and_padded(tmp_path, tokenizer_dir):
    """Checkpointed layers (the engine's remat patches the BertLayer class RoBERTa uses) give the same
    gradients, packed and padded."""
    from mlx_hf_bridge.engine.remat import gradient_checkpointing
    from mlx_hf_bridge.models.bert import BertLayer

    folder = save_tiny(tmp_path / "m", tokenizer_dir, seed=6, init_scale=0.2)
    ids, mask = token_batch(np.random.default_rng(6), [50, 21, 7, 2], 50)
    for packed in (False, True) if kernels.available() else (False,):
        _, plain = grads_of(folder, ids, mask, packed)
        with gradient_checkpointing(AutoModel.from_pretrained(str(folder))) as cls:
            assert cls is BertLayer
            _, checkpointed = grads_of(folder, ids, mask, packed)
        for name, g in plain.items():
            assert float(np.abs(checkpointed[name] - g).max()) <= 1e-6 * max(1.0, float(np.abs(g).max())), name


def test_colbert_length_past_the_table_names_both_numbers(tmp_path, tokenizer_dir):
    """RoBERTa's table (130 rows) holds 128 tokens: a document_length of 129 is refused saying both."""
    from mlx_hf_bridge.pylate import models as mlx_models

    folder = save_tiny(tmp_path / "m", tokenizer_dir, seed=0)
    with pytest.raises(ValueError, match=r"document_length=129 .*max_position_embeddings=130 .*at most 128 tokens"):
        mlx_models.ColBERT(str(folder), document_length=129)
    assert mlx_models.ColBERT(str(folder), document_length=128).document_length == 128

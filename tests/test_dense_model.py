"""Dense SentenceTransformer: loading and encode against the real sentence-transformers of this venv
(ST 5.3 in .venv, ST 6.2 in .venv-st6) on the same texts: the real all-MiniLM-L6-v2, ST folders the
real library wrote (Transformer + Pooling [+ Dense] [+ Normalize]), plain HF folders (tiny BERT and
ModernBERT: mean pooling, as ST), the module surface, and bad folders refused before weights are read."""

from __future__ import annotations

import json
import logging

import mlx.core as mx
import numpy as np
import pytest
from conftest import _save_tiny, tiny_bert_config
from test_dense_model_helpers import ST6, max_diff, reference, texts, write_st_folder

from mlx_hf_bridge.modules.layout import LayoutError
from mlx_hf_bridge.sentence_transformers import SentenceTransformer

TOL = 1e-5


@pytest.fixture(scope="module")
def big_bert_dir(tmp_path_factory, minilm_dir):
    # larger weights make the layers (not the embeddings) dominate the pooled vector
    return _save_tiny(tmp_path_factory.mktemp("bert-scaled"), tiny_bert_config(), minilm_dir, seed=1, init_scale=0.1)


@pytest.fixture(scope="module")
def dense_folder(tmp_path_factory, big_bert_dir):
    return write_st_folder(tmp_path_factory.mktemp("st") / "m", big_bert_dir, "mean", dense=16, normalize=True)


def test_minilm_matches_st(minilm_dir):
    batch = texts(40, seed=3, n_max=60)
    ours = SentenceTransformer(str(minilm_dir))
    ref = reference(minilm_dir)
    # an ST 5 folder runs as the installed library runs it (ST 6.2 reads ST 5 folders with its own semantics)
    assert ours.generation == ("st6" if ST6 else "st5") and len(ours) == len(ref) == 3
    assert ours.max_seq_length == ref.max_seq_length == 256
    assert ours.get_sentence_embedding_dimension() == 384
    got = ours.encode(batch, batch_size=8)
    assert isinstance(got, np.ndarray) and got.dtype == np.float32 and got.shape == (40, 384)
    assert max_diff(got, ref.encode(batch, batch_size=8)) <= TOL
    assert ours.similarity_fn_name == ref.similarity_fn_name == "cosine"


def test_minilm_tokenize_matches_st(minilm_dir):
    ours, ref = SentenceTransformer(str(minilm_dir)), reference(minilm_dir)
    batch = ["  leading and trailing spaces  ", "short", "A Longer sentence, with punctuation!"]
    got, want = ours.tokenize(batch), ref.tokenize(batch)
    assert set(got) >= {"input_ids", "attention_mask", "token_type_ids"}
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert isinstance(got[key], mx.array)
        np.testing.assert_array_equal(np.array(got[key]), want[key].numpy())


def test_st_folder_with_dense_and_normalize(dense_folder):
    batch = texts(13, seed=1)
    ours, ref = SentenceTransformer(str(dense_folder)), reference(dense_folder)
    assert ours.generation == ("st6" if ST6 else "st5")
    assert [type(m).__name__ for m in ours] == ["Transformer", "Pooling", "Dense", "Normalize"]
    assert ours.get_sentence_embedding_dimension() == 16
    got = ours.encode(batch, batch_size=4)
    assert max_diff(got, ref.encode(batch, batch_size=4)) <= TOL
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)


def test_forward_contract_and_gradient(dense_folder):
    """``model(features)``: token_embeddings (B, L, H), attention_mask, sentence_embedding (B, D),
    differentiable through the sentence embedding (what the losses call)."""
    model = SentenceTransformer(str(dense_folder))
    features = model.tokenize(["one two three", "four"])
    out = model(features)
    B, L = features["input_ids"].shape
    assert out["token_embeddings"].shape == (B, L, 32) and out["sentence_embedding"].shape == (B, 16)
    assert "attention_mask" in out

    def loss(params):
        model.update(params)
        return model(features)["sentence_embedding"].sum()

    grads = mx.grad(loss)(model.trainable_parameters())
    from mlx.utils import tree_flatten

    flat = dict(tree_flatten(grads))
    assert any(float(mx.abs(v).sum()) > 0 for k, v in flat.items() if k.startswith("transformer."))
    assert float(mx.abs(flat["heads.1.linear.weight"]).sum()) > 0


@pytest.mark.parametrize("backbone", ["tiny_bert_dir", "tiny_modernbert_dir"])
def test_plain_hf_folder_mean_pooling(backbone, request, caplog):
    folder = request.getfixturevalue(backbone)
    batch = texts(17, seed=2, n_max=50)
    with caplog.at_level(logging.WARNING):
        ours = SentenceTransformer(str(folder))
    assert "Creating a new one with mean pooling" in caplog.text
    assert [type(m).__name__ for m in ours] == ["Transformer", "Pooling"] and ours[1].pooling_mode == "mean"
    ref = reference(folder)
    assert max_diff(ours.encode(batch, batch_size=5), ref.encode(batch, batch_size=5)) <= TOL


def test_modernbert_packed_equals_padded(tiny_modernbert_dir):
    """Padding-free (packed rows) and padded batches give the same sentence embeddings."""
    model = SentenceTransformer(str(tiny_modernbert_dir))
    batch = texts(9, seed=5, n_max=40)
    packed = model.encode(batch, batch_size=9)
    model.padding_free = False
    padded = model.encode(batch, batch_size=9)
    assert np.abs(packed - padded).max() <= TOL


def test_return_types(dense_folder):
    model = SentenceTransformer(str(dense_folder))
    batch = texts(3, seed=4)
    one = model.encode(batch[0])
    assert isinstance(one, np.ndarray) and one.shape == (16,)
    tensor = model.encode(batch, convert_to_tensor=True)
    assert isinstance(tensor, mx.array) and tensor.shape == (3, 16)
    as_list = model.encode(batch, convert_to_numpy=False)
    assert isinstance(as_list, list) and all(isinstance(v, mx.array) and v.shape == (16,) for v in as_list)
    assert np.abs(np.stack([np.array(v) for v in as_list]) - np.array(tensor)).max() == 0
    empty = model.encode([])
    assert isinstance(empty, np.ndarray) and empty.size == 0


def test_module_surface(dense_folder):
    model = SentenceTransformer(str(dense_folder))
    assert model[0] is model.transformer and model.tokenizer is model[0].tokenizer
    assert len(model) == 4 and [type(m).__name__ for m in model][-1] == "Normalize"
    assert model.prompts == {"query": "", "document": ""} and model.default_prompt_name is None
    model.max_seq_length = 12
    ids = model.tokenize([" ".join(["word"] * 40)])["input_ids"]
    assert ids.shape[1] == 12


def test_ST_folder_layout_errors(dense_folder, copy_dir):
    folder = copy_dir(dense_folder)
    modules = json.loads((folder / "modules.json").read_text())
    modules[1]["type"] = "sentence_transformers.models.WeightedLayerPooling"
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(LayoutError, match="WeightedLayerPooling"):
        SentenceTransformer(str(folder))


def test_unknown_pooling_mode_is_refused(dense_folder, copy_dir):
    folder = copy_dir(dense_folder)
    config_path = folder / "1_Pooling" / "config.json"
    config = json.loads(config_path.read_text())
    if ST6:
        config["pooling_mode"] = "median"
    else:
        config = {**config, "pooling_mode": "median"}
    config_path.write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes(b"not read")  # refused before the weights are read
    with pytest.raises(ValueError, match="median.*Valid pooling modes"):
        SentenceTransformer(str(folder))


def test_multi_vector_folder_is_refused(tiny_bert_dir, tmp_path):
    from mlx_hf_bridge.sentence_transformers import MultiVectorEncoder

    folder = tmp_path / "mve"
    MultiVectorEncoder(str(tiny_bert_dir)).save(str(folder))
    with pytest.raises(LayoutError, match="MultiVectorEncoder"):
        SentenceTransformer(str(folder))


@pytest.mark.parametrize("kind", ["sentence_transformers.models.WordEmbeddings", "sentence_transformers.models.CNN",
                                  "sentence_transformers.sparse_encoder.modules.SpladePooling"])
def test_unsupported_module_kinds_are_refused_by_name(dense_folder, copy_dir, kind):
    """Not implemented on MLX: refused naming the module type and what is supported, before weights
    (Router and StaticEmbedding run: tests/test_dense_router.py, tests/test_dense_static_embedding.py)."""
    folder = copy_dir(dense_folder)
    modules = json.loads((folder / "modules.json").read_text())
    modules[0]["type"] = kind
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "model.safetensors").write_bytes(b"not read")
    with pytest.raises(LayoutError, match=kind.rsplit(".", 1)[1] + ".*Supported module types"):
        SentenceTransformer(str(folder))

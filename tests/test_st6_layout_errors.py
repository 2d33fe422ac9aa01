"""Layouts the bridge cannot read exactly are refused by name, before any weights are read: unknown
module types, mixed sentence-transformers 5 / 6 layouts, listed-but-missing and present-but-unlisted
module folders (issue 19), ST 6 options with no MLX equivalent. The ST 6 folders here are written by
the bridge's ``MultiVectorEncoder`` (their files equal ST 6.2's own: tests/test_st6_layout.py), so
these run in every environment.
"""

from __future__ import annotations

import shutil

import pytest
from st6_reference import edit_json

from mlx_hf_bridge.modules import Dense, MultiVectorMask, Normalize, Transformer
from mlx_hf_bridge.modules.layout import LayoutError
from mlx_hf_bridge.modules.transformer import UnsupportedOption
from mlx_hf_bridge.pylate import models as pylate_models
from mlx_hf_bridge.sentence_transformers import MultiVectorEncoder


@pytest.fixture(scope="module")
def st6_folder(tmp_path_factory, tiny_bert_dir):
    """An ST 6 MultiVectorEncoder folder: Transformer (fixed expansion), Dense, MultiVectorMask, Normalize."""
    folder = tmp_path_factory.mktemp("st6") / "model"
    MultiVectorEncoder(
        modules=[
            Transformer(str(tiny_bert_dir), query_expansion={"strategy": "fixed", "attend": True, "length": 8}),
            Dense(32, 16, bias=False, activation_function=None, module_input_name="token_embeddings"),
            MultiVectorMask(skiplist_words=[".", ","]),
            Normalize(module_input_name="token_embeddings"),
        ],
        prompts={"query": "query: "},
    ).save_pretrained(str(folder))
    return folder


def _st6_copy(st6_folder, tmp_path, break_weights=True):
    folder = tmp_path / "model"
    shutil.copytree(st6_folder, folder)
    if break_weights:  # proves each refusal comes before any weights are read
        (folder / "model.safetensors").write_bytes(b"not read")
    return folder


def test_unknown_module_type_is_named(st6_folder, tmp_path):
    folder = _st6_copy(st6_folder, tmp_path)
    pooling = "sentence_transformers.sparse_encoder.modules.splade_pooling.SpladePooling"  # a sparse-encoder module
    edit_json(folder / "modules.json", lambda m: m[2].update(type=pooling))
    for load in (MultiVectorEncoder, pylate_models.ColBERT):
        with pytest.raises(LayoutError, match="SpladePooling") as err:
            load(str(folder))
        assert "Supported module types" in str(err.value) and "MultiVectorMask" in str(err.value)


def test_mixed_layout_is_refused(st6_folder, tmp_path):
    folder = _st6_copy(st6_folder, tmp_path)
    edit_json(folder / "modules.json", lambda m: m[1].update(type="sentence_transformers.models.Dense"))
    for load in (MultiVectorEncoder, pylate_models.ColBERT):
        with pytest.raises(LayoutError, match="mixes sentence-transformers 6 module types"):
            load(str(folder))


def test_listed_module_folder_missing(st6_folder, tmp_path):
    folder = _st6_copy(st6_folder, tmp_path)
    shutil.rmtree(folder / "1_Dense")
    with pytest.raises(LayoutError, match="1_Dense.*does not exist"):
        MultiVectorEncoder(str(folder))


def test_unlisted_module_folder_present_st6(st6_folder, tmp_path):
    folder = _st6_copy(st6_folder, tmp_path)
    edit_json(folder / "modules.json", lambda m: [e for e in m if e["path"] != "1_Dense"])
    with pytest.raises(LayoutError, match="1_Dense.*does not list it"):
        MultiVectorEncoder(str(folder))


def test_pylate_folder_without_its_dense_entry(tmp_path, tiny_bert_dir):
    """Issue 19: the 1_Dense entry gone from modules.json loaded a fresh random projection."""
    folder = tmp_path / "pylate"
    pylate_models.ColBERT(str(tiny_bert_dir)).save(str(folder))
    pylate_models.ColBERT(str(folder))  # intact: loads
    edit_json(folder / "modules.json", lambda m: [e for e in m if e["path"] != "1_Dense"])
    (folder / "model.safetensors").write_bytes(b"not read")
    with pytest.raises(LayoutError, match="1_Dense.*does not list it"):
        pylate_models.ColBERT(str(folder))


def test_suffixed_alternative_module_folders_are_not_unlisted_modules(tmp_path, tiny_bert_dir):
    """Repos such as stella ship 2_Dense_1024/, 2_Dense_2048/ beside the listed 2_Dense/: alternatives."""
    folder = tmp_path / "pylate"
    pylate_models.ColBERT(str(tiny_bert_dir)).save(str(folder))
    shutil.copytree(folder / "1_Dense", folder / "1_Dense_64")
    pylate_models.ColBERT(str(folder))


def test_pylate_listed_dense_missing(tmp_path, tiny_bert_dir):
    folder = tmp_path / "pylate"
    pylate_models.ColBERT(str(tiny_bert_dir)).save(str(folder))
    shutil.rmtree(folder / "1_Dense")
    with pytest.raises(LayoutError, match="1_Dense.*does not exist"):
        pylate_models.ColBERT(str(folder))


@pytest.mark.parametrize(
    "file, edit, match",
    [
        ("sentence_bert_config.json", lambda c: c.update(processing_kwargs={"text": {"max_length": 5}}), "processing_kwargs"),
        ("sentence_bert_config.json", lambda c: c.update(transformer_task="text-generation"), "transformer_task"),
        ("sentence_bert_config.json", lambda c: c.update(unknown_knob=1), "unknown_knob"),
        ("sentence_bert_config.json", lambda c: c.update(query_expansion={"strategy": "max", "length": 8}), "strategy"),
        ("1_Dense/config.json", lambda c: c.update(module_input_name="sentence_embedding"), "sentence_embedding"),
        ("1_Dense/config.json", lambda c: c.update(activation_function="my.custom.Act"), "my.custom.Act"),
        ("2_MultiVectorMask/config.json", lambda c: c.update(pool_factor=2), "pool_factor"),
        ("config_sentence_transformers.json", lambda c: c.update(model_type="SentenceTransformer"), "SentenceTransformer"),
    ],
)
def test_st6_options_the_bridge_cannot_reproduce(st6_folder, tmp_path, file, edit, match):
    folder = _st6_copy(st6_folder, tmp_path, break_weights=False)
    edit_json(folder / file, edit)
    with pytest.raises(ValueError, match=match):
        MultiVectorEncoder(str(folder))


def test_constructor_checks_like_st6(tiny_bert_dir):
    from mlx_hf_bridge.modules import Transformer

    with pytest.raises(ValueError, match="query_length=4 is smaller"):
        Transformer(str(tiny_bert_dir), query_length=4, query_expansion={"strategy": "fixed", "length": 8})
    with pytest.raises(ValueError, match="document_length=600 is longer than the model's position table"):
        Transformer(str(tiny_bert_dir), document_length=600)
    with pytest.raises(UnsupportedOption, match="transformer_task"):
        Transformer(str(tiny_bert_dir), transformer_task="sequence-classification")
    with pytest.raises(UnsupportedOption, match="attn_implementation"):
        Transformer(str(tiny_bert_dir), model_kwargs={"attn_implementation": "flash_attention_2"})
    Transformer(str(tiny_bert_dir), model_kwargs={"torch_dtype": "float32"})  # ST 6's training examples pass it
    model = MultiVectorEncoder(str(tiny_bert_dir))
    with pytest.raises(ValueError, match="convert_to_tensor"):
        model.encode_query(["a"], convert_to_tensor=True)
    with pytest.raises(ValueError, match="only supports"):
        model.similarity_fn_name = "cosine"
    with pytest.raises(TypeError, match="is not a module kind"):
        MultiVectorEncoder(modules=[model[0], pylate_models.Dense(32, 16)])
    with pytest.raises(TypeError, match="expected a string"):
        model.encode_document(["ok", 3])

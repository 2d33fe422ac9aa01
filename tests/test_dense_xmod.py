"""X-MOD (``models/xmod.py``; antoinelouis/colbert-xm's architecture) against transformers' ``XmodModel``
on torch (5.3 in .venv, 5.24 in .venv-st6): every layer's hidden states for the layouts the config can
ask for (post-norm with the shared LayerNorm before the adapters; pre-norm with an adapter LayerNorm and
the residual taken before it), the default language and per-row ``lang_ids``, packed batches,
gradients (checkpointed too), export; PyLate ``ColBERT`` (in .venv) and ST 6 ``MultiVectorEncoder`` (in
.venv-st6) on a tiny X-MOD encode as the real libraries do."""

from __future__ import annotations

import json

import mlx.core as mx
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from test_dense_xlm_roberta import grads_of, torch_forward, torch_grads, with_attended_pad  # noqa: E402
from xlm_roberta_helpers import save_tiny, token_batch, write_xlmr_tokenizer  # noqa: E402

from conftest import _save_tiny  # noqa: E402
from mlx_hf_bridge import kernels  # noqa: E402
from mlx_hf_bridge.transformers import AutoModel  # noqa: E402

TOL = 1e-5
LANGUAGES = ["en_XX", "de_DE", "fr_XX"]
LAYOUTS = {
    "post-norm": {},
    "pre-norm-adapter-norm": {"pre_norm": True, "adapter_layer_norm": True, "ln_before_adapter": False},
    "no-adapter-norm": {"adapter_reuse_layer_norm": False, "adapter_reduction_factor": 4},
}


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    return write_xlmr_tokenizer(tmp_path_factory.mktemp("xlmr-tokenizer"))[0]


def xmod_config(**overrides):
    from transformers import XmodConfig

    from xlm_roberta_helpers import tiny_config

    base = tiny_config().to_dict()
    base = {k: base[k] for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                                 "intermediate_size", "max_position_embeddings", "type_vocab_size", "layer_norm_eps",
                                 "hidden_dropout_prob", "attention_probs_dropout_prob", "pad_token_id",
                                 "bos_token_id", "eos_token_id")}
    return XmodConfig(**{**base, "languages": LANGUAGES, "default_language": "de_DE", **overrides})


def save_xmod(path, tokenizer_dir, seed, init_scale=None, **overrides):
    return _save_tiny(path, xmod_config(**overrides), tokenizer_dir, seed, init_scale)


def torch_hidden(folder, ids, mask, lang_ids=None):
    from transformers import AutoModel as TorchAutoModel

    model = TorchAutoModel.from_pretrained(str(folder)).eval()
    kwargs = {} if lang_ids is None else {"lang_ids": torch.tensor(lang_ids)}
    with torch.no_grad():
        out = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), output_hidden_states=True, **kwargs)
    return [h.numpy() for h in out.hidden_states]


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("init_scale", [None, 0.2])
@pytest.mark.parametrize("languages", ["default", "per-row"])
def test_every_layer_matches_transformers(tmp_path, tokenizer_dir, layout, init_scale, languages):
    folder = save_xmod(tmp_path / "m", tokenizer_dir, 4, init_scale, **LAYOUTS[layout])
    ids, mask = with_attended_pad(*token_batch(np.random.default_rng(4), [40, 17, 3, 40], 40))
    lang_ids = None if languages == "default" else np.array([2, 0, 1, 0])
    ref = torch_hidden(folder, ids, mask, lang_ids)
    model = AutoModel.from_pretrained(str(folder))
    assert type(model).__module__.endswith("xmod")
    kwargs = {} if lang_ids is None else {"lang_ids": mx.array(lang_ids)}
    last, hidden = model(mx.array(ids), mx.array(mask), output_hidden_states=True, **kwargs)
    diffs = [float(np.abs(np.array(h) - r).max()) for h, r in zip(hidden, ref)]
    print(layout, init_scale, languages, "per-layer max|d|", [f"{d:.1e}" for d in diffs])
    assert len(hidden) == len(ref) and max(diffs) <= TOL
    assert np.array_equal(np.array(last), np.array(hidden[-1]))


def test_languages_matter_and_unknown_language_is_refused(tmp_path, tokenizer_dir):
    folder = save_xmod(tmp_path / "m", tokenizer_dir, 1, 0.2, default_language=None)
    ids, mask = token_batch(np.random.default_rng(1), [9, 5], 9)
    model = AutoModel.from_pretrained(str(folder))
    with pytest.raises(ValueError, match="Input language unknown"):
        torch_hidden(folder, ids, mask)
    with pytest.raises(ValueError, match=r"X-MOD input language unknown.*lang_ids.*default_language.*en_XX"):
        model(mx.array(ids), mx.array(mask))
    outputs = [np.array(model(mx.array(ids), mx.array(mask), lang_ids=mx.array([i, i]))) for i in range(3)]
    assert min(float(np.abs(a - b).max()) for a in outputs for b in outputs if a is not b) > 1e-3
    config = json.loads((folder / "config.json").read_text())
    config["default_language"] = "it_IT"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"default_language='it_IT' has no adapter.*en_XX"):
        AutoModel.from_pretrained(str(folder))


@pytest.mark.parametrize("layout", ["post-norm", "pre-norm-adapter-norm"])
def test_gradients_packed_and_saved(tmp_path, tokenizer_dir, layout):
    from transformers import AutoModel as TorchAutoModel

    folder = save_xmod(tmp_path / "m", tokenizer_dir, 5, 0.2, **LAYOUTS[layout])
    ids, mask = with_attended_pad(*token_batch(np.random.default_rng(5), [50, 21, 7, 2], 50))
    ref = torch_grads(folder, ids, mask)
    padded_out, padded = grads_of(folder, ids, mask)
    scale = max(float(np.abs(g).max()) for g in ref.values())
    assert set(padded) <= set(ref)
    assert any("adapter_modules.de_DE" in n for n in padded)
    worst = max(float(np.abs(padded[n] - ref[n]).max()) for n in padded) / scale
    print(f"{layout}: gradients vs torch max|d| {worst:.1e} of the largest entry")
    assert worst <= 1e-5
    unused = [n for n in padded if "adapter_modules.en_XX" in n or "adapter_modules.fr_XX" in n]
    assert unused and all(np.all(padded[n] == 0) and np.all(ref[n] == 0) for n in unused)
    if kernels.available():
        packed_out, packed = grads_of(folder, ids, mask, packed=True)
        real = mask.astype(bool)
        assert float(np.abs(packed_out[real] - padded_out[real]).max()) <= TOL
        assert np.all(packed_out[~real] == 0.0)
        for name, g in padded.items():
            assert float(np.abs(packed[name] - g).max()) <= 1e-5 * scale, name
    model = AutoModel.from_pretrained(str(folder))
    model.save_pretrained(str(tmp_path / "out"))
    original = TorchAutoModel.from_pretrained(str(folder)).state_dict()
    saved = TorchAutoModel.from_pretrained(str(tmp_path / "out"))
    assert type(saved).__name__ == "XmodModel" and saved.config.default_language == "de_DE"
    for name, tensor in original.items():
        assert torch.equal(tensor, saved.state_dict()[name]), name


@pytest.mark.parametrize("init_scale", [None, 0.2])
def test_pylate_colbert_on_xmod(tmp_path, tokenizer_dir, init_scale):
    """colbert-xm-shaped: a PyLate ColBERT over X-MOD, default language; tokenize / encode = PyLate's."""
    pytest.importorskip("pylate")
    from pylate import models as pylate_models

    from mlx_hf_bridge.pylate import models as mlx_models
    from test_dense_xlm_roberta_multivector import DOCUMENTS, QUERIES, max_diff

    folder = save_xmod(tmp_path / "m", tokenizer_dir, 2, init_scale)
    torch.manual_seed(0)
    pylate_models.ColBERT(str(folder), device="cpu", document_length=40, query_length=12).save(str(tmp_path / "c"))
    torch_model = pylate_models.ColBERT(str(tmp_path / "c"), device="cpu")
    mlx_model = mlx_models.ColBERT(str(tmp_path / "c"))
    for is_query, texts in ((True, QUERIES), (False, DOCUMENTS)):
        ref, got = torch_model.tokenize(texts, is_query=is_query), mlx_model.tokenize(texts, is_query=is_query)
        for key in ref:
            np.testing.assert_array_equal(ref[key].numpy(), np.array(got[key]), err_msg=key)
        diff = max_diff(torch_model.encode(texts, is_query=is_query), mlx_model.encode(texts, is_query=is_query))
        print(f"X-MOD ColBERT init {init_scale} {'queries' if is_query else 'documents'}: {diff:.1e}")
        assert diff <= TOL


def test_gradient_checkpointing(tmp_path, tokenizer_dir):
    """The engine's remat finds XmodLayer (its third argument, the languages, passes through)."""
    from mlx_hf_bridge.engine.remat import gradient_checkpointing
    from mlx_hf_bridge.models.xmod import XmodLayer

    folder = save_xmod(tmp_path / "m", tokenizer_dir, 6, 0.2, **LAYOUTS["pre-norm-adapter-norm"])
    ids, mask = token_batch(np.random.default_rng(6), [30, 11, 4], 30)
    _, plain = grads_of(folder, ids, mask)
    with gradient_checkpointing(AutoModel.from_pretrained(str(folder))) as cls:
        assert cls is XmodLayer
        _, checkpointed = grads_of(folder, ids, mask)
    for name, g in plain.items():
        assert float(np.abs(checkpointed[name] - g).max()) <= 1e-6 * max(1.0, float(np.abs(g).max())), name


def test_st6_multi_vector_encoder_on_xmod(tmp_path, tokenizer_dir):
    st = pytest.importorskip("sentence_transformers", minversion="6")
    from sentence_transformers.base.modules import Dense, Normalize, Transformer

    from mlx_hf_bridge.sentence_transformers import MultiVectorEncoder
    from test_dense_xlm_roberta_multivector import DOCUMENTS, QUERIES, max_diff

    folder = save_xmod(tmp_path / "m", tokenizer_dir, 3, 0.2)
    torch.manual_seed(0)
    modules = [Transformer(str(folder), query_expansion={"strategy": "fixed", "attend": True, "length": 8}),
               Dense(32, 16, module_input_name="token_embeddings", bias=False, activation_function=None),
               Normalize(module_input_name="token_embeddings")]
    st.MultiVectorEncoder(modules=modules, device="cpu").save_pretrained(str(tmp_path / "mv"))
    ref = st.MultiVectorEncoder(str(tmp_path / "mv"), device="cpu")
    model = MultiVectorEncoder(str(tmp_path / "mv"))
    q = max_diff(ref.encode_query(QUERIES, convert_to_numpy=True), model.encode_query(QUERIES, convert_to_numpy=True))
    d = max_diff(ref.encode_document(DOCUMENTS, convert_to_numpy=True),
                 model.encode_document(DOCUMENTS, convert_to_numpy=True))
    print(f"X-MOD MultiVectorEncoder: queries {q:.1e}, documents {d:.1e}")
    assert q <= TOL and d <= TOL

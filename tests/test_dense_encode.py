"""encode's options against the real sentence-transformers of this venv on the same texts: prompts
(saved, default_prompt_name, prompt_name=, prompt=), encode_query / encode_document, truncate_dim (argument,
constructor, saved), normalize_embeddings, output_value ("token_embeddings", None), quantised precisions
(int8 / uint8 / binary / ubinary equal to ST's, incl. quantize_embeddings with ranges / calibration),
similarity / similarity_pairwise, and ST's errors for bad arguments."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import _save_tiny, tiny_bert_config
from test_dense_model_helpers import ST6, max_diff, reference, texts, write_st_folder

import mlx.core as mx
from mlx_hf_bridge.sentence_transformers import SentenceTransformer, quantize_embeddings

TOL = 1e-5
PROMPTS = {"query": "query: ", "document": "passage: ", "classification": "Classify this text "}


@pytest.fixture(scope="module")
def folder(tmp_path_factory, minilm_dir):
    bert = _save_tiny(tmp_path_factory.mktemp("bert-enc"), tiny_bert_config(), minilm_dir, seed=3, init_scale=0.1)
    return write_st_folder(tmp_path_factory.mktemp("st-enc") / "m", bert, "mean", dense=24, prompts=PROMPTS)


@pytest.fixture(scope="module")
def pair(folder):
    return SentenceTransformer(str(folder)), reference(folder)


BATCH = texts(12, seed=11, n_max=30)


@pytest.mark.parametrize("kwargs", [{}, {"prompt_name": "query"}, {"prompt_name": "classification"},
                                    {"prompt": "Represent: "}, {"prompt": "x ", "prompt_name": "query"}],
                         ids=["none", "query", "classification", "prompt", "both"])
def test_prompts_like_st(pair, kwargs):
    ours, ref = pair
    assert ours.prompts == ref.prompts
    assert max_diff(ours.encode(BATCH, **kwargs), ref.encode(BATCH, **kwargs)) <= TOL


def test_encode_query_and_document_like_st(pair):
    ours, ref = pair
    assert max_diff(ours.encode_query(BATCH), ref.encode_query(BATCH)) <= TOL
    assert max_diff(ours.encode_document(BATCH), ref.encode_document(BATCH)) <= TOL
    # the prompts really apply
    assert np.abs(ours.encode_query(BATCH) - ours.encode(BATCH)).max() > 1e-3


def test_default_prompt_name_like_st(folder):
    ours = SentenceTransformer(str(folder), default_prompt_name="classification")
    ref = reference(folder, default_prompt_name="classification")
    assert max_diff(ours.encode(BATCH), ref.encode(BATCH)) <= TOL
    assert max_diff(ours.encode(BATCH, prompt=""), ref.encode(BATCH, prompt="")) <= TOL
    with pytest.raises(ValueError, match="Default prompt name 'nope' not found"):
        SentenceTransformer(str(folder), default_prompt_name="nope")


def test_caller_prompts_override_saved(folder):
    ours = SentenceTransformer(str(folder), prompts={"query": "question: "})
    ref = reference(folder, prompts={"query": "question: "})
    assert ours.prompts == ref.prompts and ours.prompts["query"] == "question: "
    assert max_diff(ours.encode_query(BATCH), ref.encode_query(BATCH)) <= TOL


@pytest.mark.parametrize("normalize", [False, True])
def test_truncate_dim_and_normalize_like_st(pair, folder, normalize):
    ours, ref = pair
    got = ours.encode(BATCH, truncate_dim=8, normalize_embeddings=normalize)
    assert got.shape == (12, 8)
    assert max_diff(got, ref.encode(BATCH, truncate_dim=8, normalize_embeddings=normalize)) <= TOL
    ours_c, ref_c = SentenceTransformer(str(folder), truncate_dim=10), reference(folder, truncate_dim=10)
    assert ours_c.get_sentence_embedding_dimension() == 10
    assert max_diff(ours_c.encode(BATCH, normalize_embeddings=normalize), ref_c.encode(BATCH, normalize_embeddings=normalize)) <= TOL


def test_output_value_token_embeddings_and_none(pair):
    ours, ref = pair
    got = ours.encode(BATCH, output_value="token_embeddings")
    want = ref.encode(BATCH, output_value="token_embeddings")
    assert isinstance(got, list) and all(isinstance(g, mx.array) for g in got)
    for g, w in zip(got, want):
        assert max_diff(g, w) <= TOL
    got_all = ours.encode(BATCH[:3], output_value=None)
    want_all = ref.encode(BATCH[:3], output_value=None)
    for g, w in zip(got_all, want_all):
        assert {"input_ids", "attention_mask", "token_embeddings", "sentence_embedding"} <= set(g)
        assert max_diff(g["sentence_embedding"], w["sentence_embedding"]) <= TOL
        np.testing.assert_array_equal(np.array(g["input_ids"]), w["input_ids"].numpy())
        assert max_diff(g["token_embeddings"], w["token_embeddings"]) <= TOL


@pytest.mark.parametrize("precision", ["int8", "uint8", "binary", "ubinary"])
def test_precisions_equal_st(pair, precision):
    ours, ref = pair
    batch = texts(40, seed=12, n_max=30)
    got, want = ours.encode(batch, precision=precision), ref.encode(batch, precision=precision)
    assert got.dtype == want.dtype and got.shape == want.shape
    # the quantisation itself is exact: ST's quantize_embeddings of our float embeddings gives ours
    import sentence_transformers as st

    floats, ref_floats = ours.encode(batch), ref.encode(batch)
    assert np.array_equal(got, st.quantize_embeddings(floats, precision=precision))
    # end to end, a value 1e-7 from a bucket edge may land one bucket away: allowed only there
    mismatched = np.argwhere(got != want)
    if precision.endswith("int8") and len(mismatched):
        starts, ends = ref_floats.min(0), ref_floats.max(0)
        position = (ref_floats - starts) / ((ends - starts) / 255)
        for i, j in mismatched:
            assert abs(int(got[i, j]) - int(want[i, j])) == 1
            assert abs(position[i, j] - round(position[i, j])) < 1e-3, (i, j, position[i, j])
    else:
        assert len(mismatched) == 0, mismatched
    tensor = ours.encode(batch, precision=precision, convert_to_tensor=True)
    assert isinstance(tensor, mx.array) and np.array_equal(np.array(tensor), got)


@pytest.mark.parametrize("precision", ["int8", "uint8", "binary", "ubinary"])
def test_quantize_embeddings_equal_st(precision):
    import sentence_transformers as st

    rng = np.random.default_rng(0)
    emb = rng.standard_normal((50, 16)).astype(np.float32)  # cut to 13 too: not a multiple of 8 (binary packing)
    calibration = rng.standard_normal((200, 16)).astype(np.float32)
    ranges = np.vstack([calibration.min(0), calibration.max(0)])
    if ST6:
        from mlx_hf_bridge.sentence_transformers.util import quantize_embeddings as ours
    else:
        from mlx_hf_bridge.sentence_transformers.quantization import quantize_embeddings as ours
    for kwargs in ({}, {"calibration_embeddings": calibration}, {"ranges": ranges}):
        for width in (16, 13):
            if width == 13 and precision.endswith("binary") and not ST6:
                # ST 5.3 packs the flattened matrix: a width that is not a multiple of 8 cannot be reshaped
                with pytest.raises(ValueError, match="cannot reshape"):
                    st.quantize_embeddings(emb[:, :width], precision=precision, **kwargs)
                with pytest.raises(ValueError, match="cannot reshape"):
                    ours(emb[:, :width], precision=precision, **kwargs)
                continue
            part = {k: v[:, :width] for k, v in kwargs.items()}
            want = st.quantize_embeddings(emb[:, :width], precision=precision, **part)
            got = ours(emb[:, :width], precision=precision, **part)
            assert got.dtype == want.dtype and np.array_equal(got, want), (kwargs, width)
    # the top-level name is ST 6.2's (the current library)
    assert quantize_embeddings.__module__ == "mlx_hf_bridge.dense.quantization"


def test_similarity_like_st(pair, folder):
    ours, ref = pair
    a, b = ours.encode(BATCH[:5]), ours.encode(BATCH[5:9])
    ra, rb = ref.encode(BATCH[:5]), ref.encode(BATCH[5:9])
    for name in ("cosine", "dot", "euclidean", "manhattan"):
        ours.similarity_fn_name = ref.similarity_fn_name = name
        assert max_diff(ours.similarity(a, b), ref.similarity(ra, rb)) <= 1e-4
        assert max_diff(ours.similarity_pairwise(a, b[:1].repeat(5, 0)), ref.similarity_pairwise(ra, rb[:1].repeat(5, 0))) <= 1e-4
    ours.similarity_fn_name = ref.similarity_fn_name = "cosine"
    with pytest.raises(ValueError, match="similarity_fn_name='maxsim'"):
        SentenceTransformer(str(folder), similarity_fn_name="maxsim")


def test_bad_arguments_like_st(pair):
    ours, _ = pair
    with pytest.raises(ValueError, match="Prompt name 'nope' not found"):
        ours.encode(BATCH, prompt_name="nope")
    with pytest.raises(ValueError, match="Precision 'int4' is not supported"):
        ours.encode(BATCH, precision="int4")
    with pytest.raises(ValueError, match="additional keyword arguments.*'foo'"):
        ours.encode(BATCH, foo=1)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        ours.encode(BATCH, batch_size=0)
    with pytest.raises(TypeError, match="text 1: expected a string"):
        ours.encode(["fine", None])

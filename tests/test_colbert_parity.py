"""ColBERT parity with real PyLate 1.6 on the same folders: tokenize, encode, scores, layout."""

import json

import mlx.core as mx
import numpy as np
import pytest

from mlx_hf_bridge.pylate import models as mlx_models
from mlx_hf_bridge.pylate import scores as mlx_scores

QUERIES = ["hello world", "what is the capital of france?", "a much longer query, with punctuation; and more words!"]
DOCUMENTS = [
    "Paris is the capital of France.",
    "hello",
    "MLX is an array framework for machine learning on Apple silicon, by Apple's research team. It runs on CPUs too!",
]
TOL = 1e-5


def pylate_folder(tmp_path_factory, source, **kwargs):
    """Build a ColBERT with real PyLate from ``source`` and save it: the shared starting point."""
    import torch
    from pylate import models

    torch.manual_seed(0)
    model = models.ColBERT(str(source), device="cpu", **kwargs)
    out = tmp_path_factory.mktemp("pylate-colbert")
    model.save(str(out))
    return out


def st_tanh_folder(tmp_path_factory, minilm_dir):
    """A sentence-transformers folder: Transformer, Pooling, Dense(Tanh, bias), Normalize."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers import models as st_models

    torch.manual_seed(1)
    transformer = st_models.Transformer(str(minilm_dir))
    pooling = st_models.Pooling(transformer.get_word_embedding_dimension())
    dense = st_models.Dense(384, 48, bias=True, activation_function=torch.nn.Tanh())
    model = SentenceTransformer(modules=[transformer, pooling, dense, st_models.Normalize()], device="cpu")
    out = tmp_path_factory.mktemp("st-tanh")
    model.save(str(out))
    return out


@pytest.fixture(scope="module")
def folders(tmp_path_factory, minilm_dir, tiny_modernbert_dir):
    return {
        "minilm-colbert": pylate_folder(tmp_path_factory, minilm_dir),
        "tiny-modernbert-colbert": pylate_folder(tmp_path_factory, tiny_modernbert_dir, document_length=40, query_length=12),
        "st-tanh": st_tanh_folder(tmp_path_factory, minilm_dir),
        "pylate-saved-no-expansion": pylate_folder(tmp_path_factory, minilm_dir, do_query_expansion=False, query_length=16),
    }


def load_both(folder, **kwargs):
    from pylate import models

    torch_model = models.ColBERT(str(folder), device="cpu", **kwargs)
    mlx_model = mlx_models.ColBERT(str(folder), **kwargs)
    if json.loads((folder / "config_sentence_transformers.json").read_text()).get("model_type") != "ColBERT":
        # an ST folder has no [Q]/[D]: both libraries add them with *random* mean-resizing;
        # give ours torch's two new rows so the comparison starts from identical weights
        share_new_token_rows(torch_model, mlx_model)
    return torch_model, mlx_model


def share_new_token_rows(torch_model, mlx_model):
    backbone = mlx_model.transformer.auto_model
    weight = np.array(backbone.get_input_embeddings().weight)
    weight[-2:] = torch_model[0].auto_model.get_input_embeddings().weight[-2:].detach().numpy()
    backbone.get_input_embeddings().weight = mx.array(weight)


def max_diff(a_list, b_list):
    assert len(a_list) == len(b_list)
    worst = 0.0
    for a, b in zip(a_list, b_list):
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        assert a.shape == b.shape
        worst = max(worst, float(np.abs(a - b).max()))
    return worst


KINDS = ["minilm-colbert", "tiny-modernbert-colbert", "st-tanh", "pylate-saved-no-expansion"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("expansion", [True, False])
def test_tokenize_encode_scores(folders, kind, expansion):
    torch_model, mlx_model = load_both(folders[kind], do_query_expansion=expansion)
    assert mlx_model.query_prefix_id == torch_model.query_prefix_id
    assert mlx_model.document_prefix_id == torch_model.document_prefix_id
    assert mlx_model.skiplist == torch_model.skiplist
    assert len(mlx_model) == len(torch_model)
    for is_query in (True, False):
        for pad in (False, True):
            ref = torch_model.tokenize(QUERIES if is_query else DOCUMENTS, is_query=is_query, pad=pad)
            got = mlx_model.tokenize(QUERIES if is_query else DOCUMENTS, is_query=is_query, pad=pad)
            assert sorted(ref) == sorted(got)
            for key in ref:
                np.testing.assert_array_equal(ref[key].numpy(), np.array(got[key]), err_msg=key)
    q_ref = torch_model.encode(QUERIES, is_query=True)
    q_got = mlx_model.encode(QUERIES, is_query=True)
    d_ref = torch_model.encode(DOCUMENTS, is_query=False)
    d_got = mlx_model.encode(DOCUMENTS, is_query=False)
    assert max_diff(q_ref, q_got) <= TOL
    assert max_diff(d_ref, d_got) <= TOL
    from pylate import scores as torch_scores

    import torch

    pad = torch.nn.utils.rnn.pad_sequence
    s_ref = torch_scores.colbert_scores(
        pad([torch.tensor(x) for x in q_ref], batch_first=True), pad([torch.tensor(x) for x in d_ref], batch_first=True)
    ).numpy()
    s_got = np.array(
        mlx_scores.colbert_scores(
            pad([torch.tensor(x) for x in q_got], batch_first=True).numpy(),
            pad([torch.tensor(x) for x in d_got], batch_first=True).numpy(),
        )
    )
    np.testing.assert_allclose(s_got, s_ref, rtol=0, atol=TOL * max(1.0, np.abs(s_ref).max()))


def test_encode_return_shapes(folders):
    torch_model, mlx_model = load_both(folders["minilm-colbert"])
    single_ref, single_got = torch_model.encode("hello", is_query=False), mlx_model.encode("hello", is_query=False)
    assert single_got.shape == single_ref.shape and isinstance(single_got, np.ndarray)
    padded_ref = torch_model.encode(DOCUMENTS, is_query=False, padding=True)
    padded_got = mlx_model.encode(DOCUMENTS, is_query=False, padding=True)
    assert [p.shape for p in padded_got] == [tuple(p.shape) for p in padded_ref]
    assert max_diff(padded_ref, padded_got) <= TOL
    tensors = mlx_model.encode(DOCUMENTS, is_query=False, convert_to_tensor=True)
    assert all(isinstance(t, mx.array) for t in tensors)
    nested = mlx_model.encode([QUERIES[:2], QUERIES[1:]], is_query=True)
    assert len(nested) == 2 and len(nested[0]) == 2
    raw_ref = torch_model.encode(DOCUMENTS, is_query=False, output_value=None)
    raw_got = mlx_model.encode(DOCUMENTS, is_query=False, output_value=None)
    assert sorted(raw_ref) == sorted(raw_got)
    assert max_diff(raw_ref["masks"], raw_got["masks"]) == 0
    assert max_diff(raw_ref["token_embeddings"], raw_got["token_embeddings"]) <= TOL


def test_plain_hf_construction_matches_pylate(minilm_dir):
    """Wrapping a plain HF model: same added tokens, ids, Dense shape, pad token, defaults."""
    from pylate import models

    ref = models.ColBERT(str(minilm_dir), device="cpu")
    got = mlx_models.ColBERT(str(minilm_dir))
    assert len(got.tokenizer) == len(ref.tokenizer)
    assert got.tokenizer.pad_token == ref.tokenizer.pad_token == "[MASK]"
    assert (got.query_prefix, got.document_prefix) == (ref.query_prefix, ref.document_prefix)
    assert (got.query_length, got.document_length) == (ref.query_length, ref.document_length)
    assert got.dense[0].get_config_dict() == ref[1].get_config_dict()
    emb = got.transformer.auto_model.get_input_embeddings().weight
    assert emb.shape == tuple(ref[0].auto_model.get_input_embeddings().weight.shape)
    # mean resizing: new rows start at the mean of the old rows (as transformers' mean_resizing)
    old_mean = np.array(emb[:-2]).mean(axis=0)
    assert np.abs(np.array(emb[-2:]) - old_mean).max() < 1e-3


def test_st_tanh_dense_kept(folders):
    torch_model, mlx_model = load_both(folders["st-tanh"])
    assert mlx_model.dense[0].get_config_dict() == torch_model[1].get_config_dict()
    assert mlx_model.dense[0].activation_function == "torch.nn.modules.activation.Tanh"


def test_embedding_size_appends_projection(folders):
    torch_model, mlx_model = load_both(folders["minilm-colbert"], embedding_size=64)
    assert len(mlx_model) == len(torch_model) == 3
    assert mlx_model.dense[-1].get_config_dict() == torch_model[2].get_config_dict()


def test_bridge_save_loads_in_pylate(tmp_path, folders):
    """Round trip: the bridge's save is loaded by real PyLate with equal embeddings and tensors."""
    import torch
    from pylate import models

    for kind in ("minilm-colbert", "tiny-modernbert-colbert", "st-tanh"):
        torch_src, mlx_model = load_both(folders[kind])
        out = tmp_path / kind
        mlx_model.save(str(out))
        reloaded = models.ColBERT(str(out), device="cpu")
        state = reloaded.state_dict()
        ours = mlx_model.state_dict()
        assert len(state) == len(ours)
        for name, value in ours.items():
            if name.startswith("dense."):
                idx, rest = name.split(".", 2)[1:]
                torch_name = f"{int(idx) + 1}.{rest}"
            else:
                torch_name = "0." + name[len("transformer.") :]
            assert torch.equal(state[torch_name], torch.tensor(np.array(value))), torch_name
        assert max_diff(reloaded.encode(DOCUMENTS, is_query=False), mlx_model.encode(DOCUMENTS, is_query=False)) <= TOL
        assert max_diff(reloaded.encode(QUERIES), mlx_model.encode(QUERIES)) <= TOL


def test_saved_layout_matches_pylate(tmp_path, folders):
    from pylate import models

    ref_dir, got_dir = tmp_path / "ref", tmp_path / "got"
    models.ColBERT(str(folders["minilm-colbert"]), device="cpu").save(str(ref_dir))
    mlx_models.ColBERT(str(folders["minilm-colbert"])).save(str(got_dir))
    files = lambda d: sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file() and p.name != "README.md")  # noqa: E731
    assert set(files(ref_dir)) <= set(files(got_dir))
    assert json.loads((got_dir / "modules.json").read_text()) == json.loads((ref_dir / "modules.json").read_text())
    ref_cfg = json.loads((ref_dir / "config_sentence_transformers.json").read_text())
    got_cfg = json.loads((got_dir / "config_sentence_transformers.json").read_text())
    assert set(ref_cfg) == set(got_cfg)
    for key in ref_cfg:
        if key != "__version__":
            assert got_cfg[key] == ref_cfg[key], key
    assert json.loads((got_dir / "1_Dense/config.json").read_text()) == json.loads(
        (ref_dir / "1_Dense/config.json").read_text()
    )
    from safetensors.numpy import load_file

    assert sorted(load_file(got_dir / "1_Dense/model.safetensors")) == ["linear.weight"]


def test_rerank_matches_pylate(folders):
    from pylate import rank as torch_rank

    from mlx_hf_bridge.pylate import rank

    _, mlx_model = load_both(folders["minilm-colbert"])
    q = mlx_model.encode(QUERIES[:2])
    d = [mlx_model.encode(DOCUMENTS, is_query=False), mlx_model.encode(DOCUMENTS[:2], is_query=False)]
    ids = [["a", "b", "c"], ["x", "y"]]
    ref = torch_rank.rerank(ids, q, d)
    got = rank.rerank(ids, q, d)
    assert [[r["id"] for r in row] for row in got] == [[r["id"] for r in row] for row in ref]
    for row_ref, row_got in zip(ref, got):
        for a, b in zip(row_ref, row_got):
            assert abs(a["score"] - b["score"]) <= 1e-4

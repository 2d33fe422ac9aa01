"""The sentence-transformers / PyLate backbone checks shared by tests/test_dense_t5gemma_st.py and
tests/test_dense_lfm2_st.py (the pattern of tests/test_dense_qwen3.py / test_dense_gemma3_st.py):
dense encode vs ST, MNRL training steps vs ST, PyLate ColBERT encode and a Contrastive loss run vs
PyLate (.venv), ST 6 MultiVectorEncoder encode (.venv-st6)."""

from __future__ import annotations

import json
import shutil

import mlx.core as mx
import numpy as np

from conftest import ST_MAJOR
from test_dense_qwen3 import ragged_max_diff


def dense_outputs(model, queries, documents):
    return {"encode": model.encode(documents), "query": model.encode_query(queries),
            "document": model.encode_document(documents), "query-batched": model.encode_query(queries, batch_size=2)}


def check_dense_encode(folder, tmp_path, queries, documents, label):
    """Every entry point within 1e-5 of ST; the bridge's save reads back in ST with the same outputs."""
    from test_dense_model_helpers import max_diff, reference

    from mlx_hf_bridge.dense import SentenceTransformer

    torch_model, model = reference(folder), SentenceTransformer(str(folder))
    ref, ours = dense_outputs(torch_model, queries, documents), dense_outputs(model, queries, documents)
    worst = 0.0
    for name, got in ours.items():
        diff = max_diff(got, ref[name])
        print(f"ST {ST_MAJOR} {label} {name}: max|d| {diff:.1e}")
        assert diff <= 1e-5, (name, diff)
        worst = max(worst, diff)
    model.save(str(tmp_path / "saved"))
    again = dense_outputs(reference(tmp_path / "saved"), queries, documents)
    for name, got in ours.items():
        assert max_diff(got, again[name]) <= 1e-5, name
    return worst


def check_mnrl_training(folder, monkeypatch, label):
    """MultipleNegativesRankingLoss, 10 full-batch AdamW steps at lr 5e-5 from the same weights:
    per-step losses within 1e-4 relative of ST's, first-step gradients within 1e-4 (the pairwise harness)."""
    import torch
    import test_dense_losses_pairwise_training as harness

    monkeypatch.setattr(harness, "LR", 5e-5)
    from sentence_transformers import SentenceTransformer as TorchST
    from test_dense_losses_pairwise_training import assert_parity, features, run_mlx, run_torch, texts

    from mlx_hf_bridge import losses as mlx_losses
    from mlx_hf_bridge.dense import SentenceTransformer

    if ST_MAJOR >= 6:
        from sentence_transformers.sentence_transformer import losses as st_losses
    else:
        from sentence_transformers import losses as st_losses
    torch.set_num_threads(1)
    torch_model, model = TorchST(str(folder), device="cpu"), SentenceTransformer(str(folder))
    torch_model.train()
    model.train()
    t_feats, m_feats = features(torch_model, model, texts(2, 5))
    assert_parity(f"{label} MNRL (ST {ST_MAJOR})", run_torch(st_losses.MultipleNegativesRankingLoss(torch_model), (t_feats, None)),
                  run_mlx(mlx_losses.MultipleNegativesRankingLoss(model), (m_feats, None)))


def check_pylate_encode(backbone, tmp_path, padding_side, queries, documents, label):
    import torch
    from pylate import models
    from test_colbert_parity import share_new_token_rows

    from mlx_hf_bridge.pylate import models as mlx_models

    folder = tmp_path / "backbone"
    shutil.copytree(backbone, folder)
    tokenizer_config = folder / "tokenizer_config.json"
    tokenizer_config.write_text(json.dumps({**json.loads(tokenizer_config.read_text()), "padding_side": padding_side}))
    kwargs = {"query_length": 12, "document_length": 16}
    torch.manual_seed(0)
    torch_model = models.ColBERT(str(folder), device="cpu", **kwargs)
    model = mlx_models.ColBERT(str(folder), **kwargs)
    share_new_token_rows(torch_model, model)  # [Q] / [D] rows are random on both sides
    model.dense[0].linear.weight = mx.array(torch_model[1].linear.weight.detach().numpy())  # PyLate's random projection
    worst = 0.0
    for is_query, batch_texts in ((True, queries), (False, documents)):
        t = torch_model.tokenize(batch_texts, is_query=is_query)
        m = model.tokenize(batch_texts, is_query=is_query)
        for key in t:
            np.testing.assert_array_equal(t[key].numpy(), np.array(m[key]), err_msg=key)
        diff = ragged_max_diff(model.encode(batch_texts, is_query=is_query),
                               torch_model.encode(batch_texts, is_query=is_query))
        print(f"PyLate ColBERT on {label} ({padding_side} padding) {'queries' if is_query else 'documents'}: max|d| {diff:.1e}")
        assert diff <= 1e-5
        worst = max(worst, diff)
    return worst


def colbert_pair_from_backbone(backbone, query_length=10, document_length=18):
    """PyLate's and the bridge's ColBERT built on the same backbone folder, sharing what PyLate draws at
    random (the [Q] / [D] embedding rows, the projection), in training mode."""
    import torch
    from pylate import models
    from test_colbert_parity import share_new_token_rows

    from mlx_hf_bridge.pylate import models as mlx_models

    kwargs = {"query_length": query_length, "document_length": document_length}
    torch.manual_seed(0)
    torch_model = models.ColBERT(str(backbone), device="cpu", **kwargs)
    model = mlx_models.ColBERT(str(backbone), **kwargs)
    share_new_token_rows(torch_model, model)
    model.dense[0].linear.weight = mx.array(torch_model[1].linear.weight.detach().numpy())
    torch_model.train()
    model.train()
    return torch_model, model


def check_pylate_loss(backbone, tmp_path_factory, loss_name, optimizer, lr, kwargs, label, via_saved_folder=True):
    """10 steps through the bridge's padding-free path: per-step losses within 1e-4 relative of PyLate's,
    first-step gradients within 1e-4 (tests/test_losses_parity.py's harness). ``via_saved_folder``: both
    load the folder PyLate saves (the usual route); else both are built on the backbone itself."""
    from pylate import losses
    from test_losses_parity import assert_parity, contrastive_batches, load_pair, pylate_folder, run_mlx, run_torch

    from mlx_hf_bridge.pylate import losses as mlx_losses

    if via_saved_folder:
        torch_model, model = load_pair(pylate_folder(tmp_path_factory, backbone))
    else:
        torch_model, model = colbert_pair_from_backbone(backbone)
    batches = contrastive_batches(torch_model, model, n_negatives=1)
    assert_parity(run_torch(torch_model, getattr(losses, loss_name)(torch_model, **kwargs), batches, optimizer, lr),
                  run_mlx(model, getattr(mlx_losses, loss_name)(model, **kwargs), batches, optimizer, lr),
                  f"{loss_name} on a {label} ColBERT")


def check_st6_multi_vector(backbone, tmp_path, width, queries, documents, label):
    import torch
    from sentence_transformers import MultiVectorEncoder as TorchEncoder
    from sentence_transformers.base.modules import Dense, Normalize, Transformer
    from sentence_transformers.multi_vector_encoder.modules import MultiVectorMask

    from mlx_hf_bridge.sentence_transformers import MultiVectorEncoder

    torch.manual_seed(0)
    modules = [Transformer(str(backbone), query_expansion={"strategy": "min", "attend": True, "length": 8},
                           document_length=16),
               Dense(width, 32, bias=False, activation_function=None, module_input_name="token_embeddings"),
               MultiVectorMask(skiplist_words=[".", ","]), Normalize(module_input_name="token_embeddings")]
    TorchEncoder(modules=modules, prompts={"query": "query: ", "document": "passage: "}, device="cpu").save_pretrained(
        str(tmp_path / "mv"))
    torch_model, model = TorchEncoder(str(tmp_path / "mv"), device="cpu"), MultiVectorEncoder(str(tmp_path / "mv"))
    for name in ("encode_query", "encode_document"):
        texts = queries if name == "encode_query" else documents
        diff = ragged_max_diff(getattr(model, name)(texts, convert_to_numpy=True),
                               getattr(torch_model, name)(texts, convert_to_numpy=True))
        print(f"ST 6 MultiVectorEncoder on {label} {name}: max|d| {diff:.1e}")
        assert diff <= 1e-5

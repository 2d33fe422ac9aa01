"""Gemma 3 as a sentence-transformers / PyLate backbone (the encoder itself: ``tests/test_dense_gemma3.py``).

EmbeddingGemma's layout, built and saved by the real ST of the running venv on a tiny bidirectional
Gemma 3 (``use_bidirectional_attention``, a sliding window shorter than the texts): Transformer, mean
Pooling, Dense 64->256 and 256->64 (no bias, identity activation; 768->3072->768 in the real model),
Normalize, its task prompts. ``encode`` / ``encode_query`` / ``encode_document`` vs ST 5.3 / 6.2, the
bridge's save read by ST, MNRL training; PyLate ``ColBERT`` encode and losses (.venv), ST 6
``MultiVectorEncoder`` encode (.venv-st6).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import mlx.core as mx  # noqa: E402

from conftest import ST_MAJOR  # noqa: E402
from test_dense_gemma3 import DOCUMENTS, EOS_ID, MODES, PROMPTS, QUERIES, gemma3_config, write_backbone  # noqa: E402
from test_dense_gemma3 import gemma_tokenizer_dir  # noqa: E402,F401  (the module fixture)
from test_dense_qwen3 import ragged_max_diff  # noqa: E402


@pytest.fixture(scope="module")
def embedding_folder(tmp_path_factory, gemma_tokenizer_dir):  # noqa: F811
    from test_dense_model_helpers import st_module_classes, st_pooling
    from sentence_transformers import SentenceTransformer as TorchST

    backbone = write_backbone(tmp_path_factory.mktemp("gemma3-backbone"), gemma_tokenizer_dir,
                              gemma3_config(**MODES["bidirectional"]), init_scale=0.2)
    Transformer, _, Dense, Normalize = st_module_classes()
    torch.manual_seed(0)
    transformer = Transformer(str(backbone))
    modules = [transformer, st_pooling(64, "mean"),
               Dense(64, 256, bias=False, activation_function=torch.nn.Identity()),
               Dense(256, 64, bias=False, activation_function=torch.nn.Identity()), Normalize()]
    folder = tmp_path_factory.mktemp("embeddinggemma")
    TorchST(modules=modules, prompts=PROMPTS, device="cpu").save(str(folder))
    return folder


def dense_outputs(model):
    return {"encode": model.encode(DOCUMENTS), "query": model.encode_query(QUERIES),
            "document": model.encode_document(DOCUMENTS), "query-batched": model.encode_query(QUERIES, batch_size=2),
            "clustering": model.encode(QUERIES, prompt_name="Clustering")}


def test_embeddinggemma_encodes_as_sentence_transformers(embedding_folder, tmp_path):
    """Every entry point within 1e-5 of ST; the prompts reach the tokens (``<bos>`` + prompt + text +
    ``<eos>``); the bridge's save reads back in ST with the same outputs as the bridge's reread of it.
    transformers 5.3 writes a bidirectional window already halved (8 -> 5 -> 3 ...): each save shortens
    it, in ST and in the bridge alike; with 5.24 the save gives the saved model's own outputs."""
    import transformers
    from test_dense_model_helpers import max_diff, reference

    from mlx_hf_bridge.dense import SentenceTransformer

    torch_model, model = reference(embedding_folder), SentenceTransformer(str(embedding_folder))
    assert model.prompts["query"] == PROMPTS["query"]
    tokens = model.tokenize([PROMPTS["query"] + QUERIES[0]])
    ids = np.array(tokens["input_ids"])[0].tolist()
    assert ids[-1] == EOS_ID and ids == torch_model.tokenize([PROMPTS["query"] + QUERIES[0]])["input_ids"][0].tolist()
    assert len(ids) > 8  # longer than the local window, which changes these outputs
    ref = dense_outputs(torch_model)
    ours = dense_outputs(model)
    for name, got in ours.items():
        diff = max_diff(got, ref[name])
        print(f"ST {ST_MAJOR} {name}: max|d| {diff:.1e}")
        assert diff <= 1e-5, (name, diff)
    model.save(str(tmp_path / "saved"))
    reloaded, reread = reference(tmp_path / "saved"), SentenceTransformer(str(tmp_path / "saved"))
    assert reloaded.prompts == model.prompts
    theirs, again = dense_outputs(reloaded), dense_outputs(reread)
    for name, got in again.items():
        assert max_diff(got, theirs[name]) <= 1e-5, name
        if not transformers.__version__.startswith("5.3."):
            assert max_diff(ours[name], theirs[name]) <= 1e-5, name
    backbone_config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert backbone_config["use_bidirectional_attention"] is True and backbone_config["model_type"] == "gemma3_text"


def test_embeddinggemma_mnrl_training_matches(embedding_folder, monkeypatch):
    """MultipleNegativesRankingLoss, 10 full-batch AdamW steps from the same weights: per-step losses
    within 1e-4 relative of ST's, first-step gradients within 1e-4 (the pairwise-loss harness), at
    lr 5e-5 as the Qwen3 test (the tiny model learns the 8 pairs in a few steps at the harness's 5e-4)."""
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
    torch_model, model = TorchST(str(embedding_folder), device="cpu"), SentenceTransformer(str(embedding_folder))
    torch_model.train()
    model.train()
    t_feats, m_feats = features(torch_model, model, texts(2, 5))
    losses, grads = run_mlx(mlx_losses.MultipleNegativesRankingLoss(model), (m_feats, None))
    # the harness names the backbone's tensors alike; the Dense layers: ST's module index k + 1 = heads.k
    renamed = {(f"{int(n.split('.')[1]) + 1}.{n.split('.', 2)[2]}" if n.startswith("heads.") else n): g for n, g in grads.items()}
    assert_parity(f"embeddinggemma MNRL (ST {ST_MAJOR})",
                  run_torch(st_losses.MultipleNegativesRankingLoss(torch_model), (t_feats, None)), (losses, renamed))


# --- as a multi-vector backbone -----------------------------------------------------------------
@pytest.fixture(scope="module")
def colbert_backbone(tmp_path_factory, gemma_tokenizer_dir):  # noqa: F811
    return write_backbone(tmp_path_factory.mktemp("gemma3-colbert"), gemma_tokenizer_dir,
                          gemma3_config(**MODES["bidirectional"]), seed=1, init_scale=0.2)


@pytest.mark.st5
@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_pylate_colbert_on_gemma3_encodes_as_pylate(colbert_backbone, padding_side, tmp_path):
    from pylate import models
    from test_colbert_parity import share_new_token_rows

    from mlx_hf_bridge.pylate import models as mlx_models

    folder = tmp_path / "backbone"
    shutil.copytree(colbert_backbone, folder)
    tokenizer_config = folder / "tokenizer_config.json"
    tokenizer_config.write_text(json.dumps({**json.loads(tokenizer_config.read_text()), "padding_side": padding_side}))
    kwargs = {"query_length": 12, "document_length": 16}
    torch.manual_seed(0)
    torch_model = models.ColBERT(str(folder), device="cpu", **kwargs)
    model = mlx_models.ColBERT(str(folder), **kwargs)
    share_new_token_rows(torch_model, model)  # [Q] / [D] rows are random on both sides
    model.dense[0].linear.weight = mx.array(torch_model[1].linear.weight.detach().numpy())  # PyLate's random projection
    for is_query, batch_texts in ((True, QUERIES), (False, DOCUMENTS)):
        t = torch_model.tokenize(batch_texts, is_query=is_query)
        m = model.tokenize(batch_texts, is_query=is_query)
        for key in t:
            np.testing.assert_array_equal(t[key].numpy(), np.array(m[key]), err_msg=key)
        diff = ragged_max_diff(model.encode(batch_texts, is_query=is_query),
                               torch_model.encode(batch_texts, is_query=is_query))
        print(f"PyLate ColBERT on Gemma 3 ({padding_side} padding) {'queries' if is_query else 'documents'}: max|d| {diff:.1e}")
        assert diff <= 1e-5


@pytest.mark.st5
@pytest.mark.parametrize("loss_name,optimizer,lr,kwargs", [
    ("Contrastive", "adamw", 1e-3, {}),
    pytest.param("CachedContrastive", "sgd", 0.02, {"mini_batch_size": 4}, marks=pytest.mark.slow),  # ~10 s
])
def test_pylate_losses_on_a_gemma3_colbert_train_as_pylate(colbert_backbone, tmp_path_factory, monkeypatch,
                                                            loss_name, optimizer, lr, kwargs):
    """10 steps through the bridge's padding-free path (batches cut to their longest row; rows packed
    where that saves operations): per-step losses within 1e-4 relative of PyLate's, first-step
    gradients within 1e-4 (tests/test_losses_parity.py's harness)."""
    from pylate import losses
    from test_losses_parity import assert_parity, contrastive_batches, load_pair, pylate_folder, run_mlx, run_torch

    from mlx_hf_bridge.models import gemma3_text
    from mlx_hf_bridge.pylate import losses as mlx_losses

    packed = []
    plan = gemma3_text.Model._packing
    monkeypatch.setattr(gemma3_text.Model, "_packing", lambda self, mask: packed.append(plan(self, mask)) or packed[-1])
    torch_model, model = load_pair(pylate_folder(tmp_path_factory, colbert_backbone))
    batches = contrastive_batches(torch_model, model, n_negatives=1)
    assert_parity(run_torch(torch_model, getattr(losses, loss_name)(torch_model, **kwargs), batches, optimizer, lr),
                  run_mlx(model, getattr(mlx_losses, loss_name)(model, **kwargs), batches, optimizer, lr),
                  f"{loss_name} on a Gemma 3 ColBERT")
    # CachedContrastive's last mini-batch of each document column (2 rows, one short) packs;
    # Contrastive's 6 nearly full rows do not
    assert any(p is not None for p in packed) == (loss_name == "CachedContrastive")


@pytest.mark.st6
def test_st6_multi_vector_encoder_on_gemma3_encodes_as_st6(colbert_backbone, tmp_path):
    from sentence_transformers import MultiVectorEncoder as TorchEncoder
    from sentence_transformers.base.modules import Dense, Normalize, Transformer
    from sentence_transformers.multi_vector_encoder.modules import MultiVectorMask

    from mlx_hf_bridge.sentence_transformers import MultiVectorEncoder

    torch.manual_seed(0)
    modules = [Transformer(str(colbert_backbone), query_expansion={"strategy": "min", "attend": True, "length": 8},
                           document_length=16),
               Dense(64, 32, bias=False, activation_function=None, module_input_name="token_embeddings"),
               MultiVectorMask(skiplist_words=[".", ","]), Normalize(module_input_name="token_embeddings")]
    TorchEncoder(modules=modules, prompts={"query": PROMPTS["query"], "document": PROMPTS["document"]},
                 device="cpu").save_pretrained(str(tmp_path / "mv"))
    torch_model, model = TorchEncoder(str(tmp_path / "mv"), device="cpu"), MultiVectorEncoder(str(tmp_path / "mv"))
    for name in ("encode_query", "encode_document"):
        texts = QUERIES if name == "encode_query" else DOCUMENTS
        diff = ragged_max_diff(getattr(model, name)(texts, convert_to_numpy=True),
                               getattr(torch_model, name)(texts, convert_to_numpy=True))
        print(f"ST 6 MultiVectorEncoder on Gemma 3 {name}: max|d| {diff:.1e}")
        assert diff <= 1e-5

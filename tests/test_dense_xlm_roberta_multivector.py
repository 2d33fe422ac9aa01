"""XLM-RoBERTa as a ColBERT / multi-vector backbone: PyLate 1.6 ``ColBERT`` (in .venv) and
sentence-transformers 6.2 ``MultiVectorEncoder`` (in .venv-st6) on a tiny XLM-R with an XLM-R-shaped
tokenizer (``<s> ... </s>``, ``<pad>`` = 1, ``<mask>``): the [Q] / [D] markers go after ``<s>``, query
expansion pads with ``<mask>`` (positions keep counting: only ``<pad>`` ids stop them), and the
bridge's tokenize / encode / scores equal the real libraries' (<= 1e-5)."""

from __future__ import annotations

import string

import mlx.core as mx
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from xlm_roberta_helpers import save_tiny, write_xlmr_tokenizer  # noqa: E402

TOL = 1e-5
QUERIES = ["apple river", "what is the green house, by the ocean?", "x", "music " * 20]
DOCUMENTS = ["stone cloud. paper light!", "a train", "garden orange silver market bridge winter summer " * 3]


@pytest.fixture(scope="module")
def backbones(tmp_path_factory):
    tokenizer = write_xlmr_tokenizer(tmp_path_factory.mktemp("xlmr-tokenizer"))[0]
    return {
        "default-init": save_tiny(tmp_path_factory.mktemp("xlmr"), tokenizer, seed=0),
        "init-0.2": save_tiny(tmp_path_factory.mktemp("xlmr-big"), tokenizer, seed=1, init_scale=0.2),
    }


def max_diff(a_list, b_list) -> float:
    assert len(a_list) == len(b_list)
    worst = 0.0
    for a, b in zip(a_list, b_list):
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        assert a.shape == b.shape
        worst = max(worst, float(np.abs(a - b).max()))
    return worst


# --- PyLate ColBERT ------------------------------------------------------------------------------
@pytest.mark.parametrize("init", ["default-init", "init-0.2"])
@pytest.mark.parametrize("source", ["pylate-saved", "plain-hf"])
@pytest.mark.parametrize("expansion", [True, False])
def test_pylate_colbert_on_xlm_roberta(tmp_path, backbones, init, source, expansion):
    pytest.importorskip("pylate")
    from pylate import models as pylate_models
    from pylate import scores as pylate_scores

    from mlx_hf_bridge.pylate import models as mlx_models
    from mlx_hf_bridge.pylate import scores as mlx_scores

    kwargs = dict(document_length=40, query_length=12, do_query_expansion=expansion)
    folder = backbones[init]
    if source == "pylate-saved":
        torch.manual_seed(0)
        pylate_models.ColBERT(str(folder), device="cpu", **kwargs).save(str(tmp_path / "colbert"))
        folder = tmp_path / "colbert"
    torch.manual_seed(0)
    torch_model = pylate_models.ColBERT(str(folder), device="cpu", **kwargs)
    mlx_model = mlx_models.ColBERT(str(folder), **kwargs)
    assert type(mlx_model.transformer.auto_model).__module__.endswith("xlm_roberta")
    if source == "plain-hf":
        # both add [Q] / [D] with random mean-resizing: start ours from torch's two new rows (and Dense)
        table = mlx_model.transformer.auto_model.get_input_embeddings()
        rows = np.array(table.weight)
        rows[-2:] = torch_model[0].auto_model.get_input_embeddings().weight[-2:].detach().numpy()
        table.weight = mx.array(rows)
        mlx_model.dense[0].linear.weight = mx.array(torch_model[1].linear.weight.detach().numpy())
    assert mlx_model.query_prefix_id == torch_model.query_prefix_id
    assert mlx_model.document_prefix_id == torch_model.document_prefix_id
    for is_query, texts in ((True, QUERIES), (False, DOCUMENTS)):
        ref = torch_model.tokenize(texts, is_query=is_query)
        got = mlx_model.tokenize(texts, is_query=is_query)
        assert sorted(ref) == sorted(got)
        for key in ref:
            np.testing.assert_array_equal(ref[key].numpy(), np.array(got[key]), err_msg=key)
        ids = ref["input_ids"].numpy()
        marker = torch_model.query_prefix_id if is_query else torch_model.document_prefix_id
        assert np.all(ids[:, 0] == 0) and np.all(ids[:, 1] == marker)  # <s> [Q]/[D] ...
    q_ref, d_ref = torch_model.encode(QUERIES, is_query=True), torch_model.encode(DOCUMENTS, is_query=False)
    q_got, d_got = mlx_model.encode(QUERIES, is_query=True), mlx_model.encode(DOCUMENTS, is_query=False)
    print(f"PyLate {init} {source} expansion={expansion}: queries {max_diff(q_ref, q_got):.1e}, "
          f"documents {max_diff(d_ref, d_got):.1e}")
    assert max_diff(q_ref, q_got) <= TOL and max_diff(d_ref, d_got) <= TOL
    pad = torch.nn.utils.rnn.pad_sequence
    s_ref = pylate_scores.colbert_scores(pad([torch.tensor(x) for x in q_ref], batch_first=True),
                                         pad([torch.tensor(x) for x in d_ref], batch_first=True)).numpy()
    s_got = np.array(mlx_scores.colbert_scores(pad([torch.tensor(x) for x in q_got], batch_first=True).numpy(),
                                               pad([torch.tensor(x) for x in d_got], batch_first=True).numpy()))
    np.testing.assert_allclose(s_got, s_ref, rtol=0, atol=TOL * max(1.0, np.abs(s_ref).max()))


# --- sentence-transformers 6 MultiVectorEncoder ----------------------------------------------------
@pytest.mark.parametrize("init", ["default-init", "init-0.2"])
@pytest.mark.parametrize("expansion", [{"strategy": "fixed", "attend": True, "length": 8}, {"strategy": "min", "length": 6}])
def test_st6_multi_vector_encoder_on_xlm_roberta(tmp_path, backbones, init, expansion):
    st = pytest.importorskip("sentence_transformers", minversion="6")
    from sentence_transformers.base.modules import Dense, Normalize, Transformer
    from sentence_transformers.multi_vector_encoder.modules import MultiVectorMask

    from mlx_hf_bridge.sentence_transformers import MultiVectorEncoder

    torch.manual_seed(0)
    modules = [
        Transformer(str(backbones[init]), query_expansion=expansion, document_length=30),
        Dense(32, 16, module_input_name="token_embeddings", bias=False, activation_function=None),
        MultiVectorMask(skiplist_words=list(string.punctuation)),
        Normalize(module_input_name="token_embeddings"),
    ]
    st.MultiVectorEncoder(modules=modules, prompts={"query": "query: ", "document": "passage: "}, device="cpu") \
        .save_pretrained(str(tmp_path / "mv"))
    ref = st.MultiVectorEncoder(str(tmp_path / "mv"), device="cpu")
    model = MultiVectorEncoder(str(tmp_path / "mv"))
    q_ref, d_ref = ref.encode_query(QUERIES, convert_to_numpy=True), ref.encode_document(DOCUMENTS, convert_to_numpy=True)
    q_got, d_got = model.encode_query(QUERIES, convert_to_numpy=True), model.encode_document(DOCUMENTS, convert_to_numpy=True)
    print(f"ST 6 {init} {expansion['strategy']}: queries {max_diff(q_ref, q_got):.1e}, documents {max_diff(d_ref, d_got):.1e}")
    assert max_diff(q_ref, q_got) <= TOL and max_diff(d_ref, d_got) <= TOL
    scores_ref = ref.similarity(q_ref, d_ref).numpy()
    np.testing.assert_allclose(np.array(model.similarity(q_got, d_got)), scores_ref, rtol=0,
                               atol=TOL * max(1.0, np.abs(scores_ref).max()))
    model.save_pretrained(str(tmp_path / "saved"))
    reloaded = st.MultiVectorEncoder(str(tmp_path / "saved"), device="cpu")
    assert max_diff(d_got, reloaded.encode_document(DOCUMENTS, convert_to_numpy=True)) <= TOL


@pytest.mark.parametrize("loss_name, expansion, kwargs, optimizer, lr", [
    ("Contrastive", True, {}, "adamw", 1e-3),
    ("CachedContrastive", False, {"mini_batch_size": 4}, "adamw", 1e-3),
    ("CachedContrastive", True, {"mini_batch_size": 6, "score_mini_batch_size": 4}, "sgd", 0.02),
])
def test_pylate_training_on_xlm_roberta(tmp_path, monkeypatch, backbones, loss_name, expansion, kwargs, optimizer, lr):
    """10 steps from one PyLate-saved XLM-R ColBERT: per-step losses within 1e-4 relative, first-step
    gradients within 1e-4 (the padding-free losses run documents packed where the kernel runs)."""
    pytest.importorskip("pylate")
    from pylate import losses as pylate_losses
    from test_losses_parity import assert_parity, contrastive_batches, load_pair, pylate_folder, run_mlx, run_torch

    from mlx_hf_bridge import kernels
    from mlx_hf_bridge.models import packing
    from mlx_hf_bridge.pylate import losses as mlx_losses

    class Factory:  # pylate_folder takes a tmp_path_factory
        @staticmethod
        def mktemp(name):
            (tmp_path / name).mkdir()
            return tmp_path / name

    folder = pylate_folder(Factory, backbones["init-0.2"], do_query_expansion=expansion)
    torch_model, mlx_model = load_pair(folder)
    batches = contrastive_batches(torch_model, mlx_model, 1)
    plans, plan = [], packing.SequencePacking.plan
    monkeypatch.setattr(packing.SequencePacking, "plan", lambda mask: plans.append(plan(mask)) or plans[-1])
    assert_parity(
        run_torch(torch_model, getattr(pylate_losses, loss_name)(torch_model, **kwargs), batches, optimizer, lr),
        run_mlx(mlx_model, getattr(mlx_losses, loss_name)(mlx_model, **kwargs), batches, optimizer, lr),
        f"xlm-r {loss_name} qe={expansion} {kwargs}",
    )
    # documents ran packed (where packing saves work: 18-token documents, some mini-batches pack)
    assert any(p is not None for p in plans) == kernels.available()

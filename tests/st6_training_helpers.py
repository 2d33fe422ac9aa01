"""Shared by the ST 6 training tests: tiny data, the ST 6-saved model variants, both sides' step
loops and parity assertions (see tests/test_st6_training.py for the tolerances)."""

from __future__ import annotations

import random
import string

import numpy as np
import pytest

pytest.importorskip("sentence_transformers", minversion="6")

import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402
import mlx.optimizers as optim  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402

from conftest import WORDS, random_sentence  # noqa: E402
from mlx_hf_bridge.engine.data import collect_features  # noqa: E402
from mlx_hf_bridge.sentence_transformers import MultiVectorEncoder  # noqa: E402
from mlx_hf_bridge.sentence_transformers.multi_vector_encoder import losses as mlx_losses  # noqa: E402
from mlx_hf_bridge.sentence_transformers.multi_vector_encoder.data_collator import (  # noqa: E402
    MultiVectorEncoderDataCollator,
)



LOSS_RTOL = 1e-4
GRAD_RTOL = 1e-4
ENCODE_TOL = 1e-5
STEPS = 10
PUNCT = [",", ".", ";", "!", "?", ":", "-"]


def sentence(rng: random.Random, n_min: int, n_max: int, distinct: bool = False) -> str:
    if not distinct:
        return random_sentence(rng, n_min, n_max, PUNCT)
    # no word or punctuation mark twice: in a tiny random ModernBERT (embedding-dominated) a repeated
    # token gets a near-identical vector, i.e. a MaxSim near-tie (see maxsim_min_gap)
    words = rng.sample(WORDS, min(rng.randint(n_min, n_max), len(WORDS)))
    marks = iter(rng.sample(PUNCT, len(PUNCT)))
    return " ".join(w + next(marks, "") if rng.random() < 0.3 else w for w in words)


def contrastive_rows(n: int, n_negatives: int, seed: int = 0, distinct: bool = False) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        row = {"query": sentence(rng, 2, 9, distinct), "positive": sentence(rng, 3, 22, distinct)}
        for j in range(n_negatives):
            row[f"neg{j + 1}"] = sentence(rng, 3, 22, distinct)
        rows.append(row)
    return rows


def scored_rows(n: int, n_docs: int, seed: int = 1, distinct: bool = False) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        row = {"query": sentence(rng, 2, 9, distinct)}
        row.update({f"doc{j + 1}": sentence(rng, 3, 22, distinct) for j in range(n_docs)})
        row["label"] = [rng.uniform(-2, 12) for _ in range(n_docs)]
        rows.append(row)
    return rows


# --- ST 6-saved folders --------------------------------------------------------------------------
def _variants(bert, modernbert):
    import torch
    from sentence_transformers.base.modules import Dense, Normalize, Transformer
    from sentence_transformers.multi_vector_encoder.modules import MultiVectorMask

    def dense(n_in, n_out, **kw):
        return Dense(n_in, n_out, module_input_name="token_embeddings", **{"bias": False, "activation_function": None, **kw})

    return {
        # classic ColBERT: fixed 8-token expansion, attended; prompts; punctuation skiplist
        "bert-fixed": ([
            Transformer(str(bert), query_expansion={"strategy": "fixed", "attend": True, "length": 8}, document_length=24),
            dense(32, 16), MultiVectorMask(skiplist_words=list(string.punctuation)),
            Normalize(module_input_name="token_embeddings")], {"query": "query: ", "document": "passage: "}),
        # 'min' expansion, not attended; a Tanh Dense with bias; a small skiplist
        "bert-min": ([
            Transformer(str(bert), query_expansion={"strategy": "min", "length": 6}, query_length=12),
            dense(32, 16, bias=True, activation_function=torch.nn.Tanh()), MultiVectorMask(skiplist_words=[",", "."]),
            Normalize(module_input_name="token_embeddings")], None),
        # no Normalize and no MultiVectorMask: ST 6 scores the raw projections under the attention mask
        "bert-raw": ([Transformer(str(bert), document_length=20), dense(32, 16, bias=True)], None),
        # no expansion (queries are cut too), ModernBERT, no skiplist
        "modernbert": ([
            Transformer(str(modernbert), document_length=28), dense(32, 16), MultiVectorMask(),
            Normalize(module_input_name="token_embeddings")], None),
    }


@pytest.fixture(scope="module")
def st6_folders(tmp_path_factory, tiny_bert_dir, tiny_modernbert_dir):
    import torch
    from sentence_transformers import MultiVectorEncoder as TorchEncoder

    folders = {}
    for name, (modules, prompts) in _variants(tiny_bert_dir, tiny_modernbert_dir).items():
        torch.manual_seed(0)
        for module in modules:  # ST 6's own Dense init, reseeded so every run starts alike
            if hasattr(module, "linear"):
                module.linear.reset_parameters()
        model = TorchEncoder(modules=modules, prompts=prompts, device="cpu")
        folders[name] = tmp_path_factory.mktemp(f"st6-{name}")
        model.save_pretrained(str(folders[name]))
    return folders


def load_pair(folder):
    from sentence_transformers import MultiVectorEncoder as TorchEncoder

    torch_model = TorchEncoder(str(folder), device="cpu")
    mlx_model = MultiVectorEncoder(str(folder))
    torch_model.train()
    mlx_model.train()
    return torch_model, mlx_model


def collate_both(torch_model, mlx_model, rows):
    """(torch features, torch labels, mlx features, mlx labels); the features asserted identical."""
    import torch
    from sentence_transformers.multi_vector_encoder import MultiVectorEncoderDataCollator as TorchCollator

    torch_batch = TorchCollator(preprocess_fn=torch_model.preprocess)(rows)
    mlx_batch = MultiVectorEncoderDataCollator(preprocess_fn=mlx_model.preprocess)(rows)
    # ST 6's preprocess also returns ``modality="text"``, which no loss reads (the bridge is text-only)
    torch_batch = {k: v for k, v in torch_batch.items() if not k.endswith("_modality")}
    assert list(torch_batch) == list(mlx_batch)
    for key, value in torch_batch.items():
        if isinstance(value, torch.Tensor):
            np.testing.assert_array_equal(value.numpy(), np.array(mlx_batch[key]).astype(value.numpy().dtype), err_msg=key)
        else:
            assert value == mlx_batch[key], key
    t_features, t_labels = collect_features(torch_batch)
    m_features, m_labels = collect_features(mlx_batch)
    return t_features, t_labels, m_features, m_labels


def maxsim_min_gap(torch_model, t_features) -> float:
    """The smallest gap between a query token's best and second-best document token over every query x
    document pair of the batch (float64 forward of a copy, attention masks only: a superset of what
    any of the losses scores). MaxSim's gradient jumps where that gap is ~0: a 1e-8 gap flips with the
    summation order (OpenBLAS's vs torch's), sending a token's gradient elsewhere."""
    import copy

    import torch

    model = copy.deepcopy(torch_model).double()
    with torch.no_grad():
        outputs = [model(dict(f)) for f in t_features]
    queries, query_mask = outputs[0]["token_embeddings"], outputs[0]["attention_mask"].bool()
    gap = float("inf")
    for out in outputs[1:]:
        scores = torch.einsum("bqh,cdh->bcqd", queries, out["token_embeddings"])
        scores = scores.masked_fill(~out["attention_mask"].bool()[None, :, None, :], -float("inf"))
        top = scores.topk(2, dim=-1).values
        gaps = (top[..., 0] - top[..., 1]).permute(0, 2, 1)[query_mask]
        gap = min(gap, float(gaps.min()))
    return gap


def well_conditioned_rows(make_rows, torch_model, mlx_model, min_gap: float = 1e-6, tries: int = 8):
    """Rows from ``make_rows(attempt)`` (attempt 0: the usual rows; later ones: rows without repeated
    tokens) whose batch has no MaxSim near-tie at the start, so the first-step gradients compared are
    defined; returns (rows, collated features)."""
    for seed in range(tries):
        rows = make_rows(seed)
        collated = collate_both(torch_model, mlx_model, rows)
        if maxsim_min_gap(torch_model, collated[0]) > min_gap:
            return rows, collated
    raise AssertionError(f"no batch without a MaxSim near-tie (gap <= {min_gap}) in {tries} seeds")


# --- training loops ------------------------------------------------------------------------------
def common_name(name: str) -> str:
    """torch ``0.model.X`` / ``2.linear.weight`` and MLX ``transformer.auto_model.X`` /
    ``heads.1.linear.weight`` -> one spelling."""
    for prefix in ("0.model.", "0.auto_model.", "transformer.auto_model."):
        if name.startswith(prefix):
            return name[len(prefix):]
    if name.startswith("heads."):
        index, rest = name[len("heads."):].split(".", 1)
        return f"module{int(index) + 1}.{rest}"
    index, rest = name.split(".", 1)
    return f"module{index}.{rest}"


def run_torch(model, loss, batch, optimizer, lr, steps=STEPS):
    import torch

    opt = torch.optim.SGD(model.parameters(), lr=lr) if optimizer == "sgd" else torch.optim.AdamW(
        model.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    features, labels = batch
    values, grads = [], None
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        value = loss([dict(f) for f in features], labels)
        value.backward()
        if step == 0:
            grads = {common_name(n): (p.grad if p.grad is not None else torch.zeros_like(p)).detach().numpy().copy()
                     for n, p in model.named_parameters()}
        opt.step()
        values.append(value.item())
    return values, grads


def run_mlx(model, loss, batch, optimizer, lr, steps=STEPS):
    opt = optim.SGD(learning_rate=lr) if optimizer == "sgd" else optim.AdamW(
        learning_rate=lr, betas=[0.9, 0.999], eps=1e-8, weight_decay=0.01, bias_correction=True)
    value_and_grad = getattr(loss, "value_and_grad", None) or nn.value_and_grad(model, loss)
    features, labels = batch
    values, grads = [], None
    for step in range(steps):
        value, step_grads = value_and_grad(features, labels)
        if step == 0:
            grads = {common_name(n): np.array(g) for n, g in tree_flatten(step_grads)}
        opt.update(model, step_grads)
        mx.eval(model.parameters(), opt.state)
        values.append(value.item())
    return values, grads


def assert_parity(torch_run, mlx_run, label):
    (t_losses, t_grads), (m_losses, m_grads) = torch_run, mlx_run
    assert len(t_losses) == len(m_losses) == STEPS
    loss_rel = [abs(a - b) / abs(a) for a, b in zip(t_losses, m_losses)]
    assert m_grads.keys() == t_grads.keys()
    assert all(np.isfinite(g).all() for g in m_grads.values()) and np.isfinite(m_losses).all()
    scale = max(float(np.abs(g).max()) for g in t_grads.values())
    grad_rel = {n: float(np.abs(m_grads[n] - ref).max()) / max(float(np.abs(ref).max()), 1e-3 * scale)
                for n, ref in t_grads.items()}
    worst = max(grad_rel, key=grad_rel.get)
    print(f"{label}: max loss rel {max(loss_rel):.2e}, max grad rel {grad_rel[worst]:.2e} ({worst})")
    assert max(loss_rel) < LOSS_RTOL, (t_losses, m_losses)
    assert grad_rel[worst] < GRAD_RTOL, (worst, grad_rel[worst])
    assert max(t_losses) - min(t_losses) > 1e-3  # training actually moved


def assert_saved_model_loads_in_st6(mlx_model, folder):
    from sentence_transformers import MultiVectorEncoder as TorchEncoder

    mlx_model.eval()
    mlx_model.save_pretrained(str(folder))
    reloaded = TorchEncoder(str(folder), device="cpu")
    rng = random.Random(7)
    queries, documents = [sentence(rng, 1, 14) for _ in range(5)], [sentence(rng, 2, 30) for _ in range(5)]
    for ours, theirs in ((mlx_model.encode_query(queries, convert_to_numpy=True),
                          reloaded.encode_query(queries, convert_to_numpy=True)),
                         (mlx_model.encode_document(documents, convert_to_numpy=True),
                          reloaded.encode_document(documents, convert_to_numpy=True))):
        assert [a.shape for a in ours] == [b.shape for b in theirs]
        assert max(float(np.abs(a - b).max()) for a, b in zip(ours, theirs)) <= ENCODE_TOL


# --- the four losses -----------------------------------------------------------------------------


def torch_loss(name, model, kwargs):
    from sentence_transformers.multi_vector_encoder import losses

    return getattr(losses, name)(model, **kwargs)

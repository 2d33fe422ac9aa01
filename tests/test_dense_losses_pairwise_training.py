"""Training parity of the pairwise / regression / distillation / triplet losses with the real model:
the installed ST's ``SentenceTransformer`` on torch (ST 5.3 in .venv, ST 6.2 in .venv-st6) and the
bridge's, loaded from the same tiny BERT folder (dropout 0), 10 full-batch AdamW steps (HF's decay
groups, clipping at 1.0) from the same weights: the bridge's steps run through the engine's
``StepRunner`` / ``AdamW``. Per-step losses within 1e-4 relative, first-step gradients within 1e-4.

SoftmaxLoss (and MSELoss with ``projection_dim``) carry their own trainable layer: like ST's trainer,
which hands the optimizer ``loss.named_parameters()``, the bridge's steps here train the loss module
(``{"model": ..., "classifier": ...}``), so the classifier's updates are compared too."""

from __future__ import annotations

import random

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sentence_transformers")

import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402

from conftest import ST_MAJOR, random_sentence  # noqa: E402
from mlx_hf_bridge import losses as mlx_losses  # noqa: E402
from mlx_hf_bridge.engine.optim import AdamW  # noqa: E402
from mlx_hf_bridge.engine.step import StepRunner  # noqa: E402

if ST_MAJOR >= 6:
    from sentence_transformers.sentence_transformer import losses as st_losses
else:
    from sentence_transformers import losses as st_losses

ST = "6.2" if ST_MAJOR >= 6 else "5.3"
STEPS, BATCH, LR, WD, MAX_GRAD_NORM = 10, 8, 5e-4, 0.01, 1.0
LOSS_RTOL = GRAD_RTOL = 1e-4
ZERO_GRAD = 1e-6  # relative to the largest gradient entry
PUNCT = [",", ".", "!"]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny matrices: torch's thread pool on a busy 2-core machine makes a step ~100x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def models(tiny_bert_dir):
    from sentence_transformers import SentenceTransformer as TorchST

    from mlx_hf_bridge.dense import SentenceTransformer

    def make():
        torch_model = TorchST(str(tiny_bert_dir), device="cpu")
        torch_model.train()
        mlx_model = SentenceTransformer(str(tiny_bert_dir))
        mlx_model.train()
        return torch_model, mlx_model

    return make


def texts(n_columns, seed):
    rng = random.Random(seed)
    return [[random_sentence(rng, 2, 12, PUNCT) for _ in range(BATCH)] for _ in range(n_columns)]


def features(torch_model, mlx_model, columns):
    tokenize = getattr(torch_model, "preprocess", None) or torch_model.tokenize
    t_features, m_features = [], []
    for column in columns:
        t, m = tokenize(column), mlx_model.tokenize(column)
        t = {k: v for k, v in t.items() if isinstance(v, torch.Tensor)}  # ST 6.2 adds modality="text"
        assert set(t) == set(m)
        for key, value in t.items():
            np.testing.assert_array_equal(value.numpy(), np.array(m[key]), err_msg=key)
        t_features.append(t)
        m_features.append(m)
    return t_features, m_features


def common_name(name: str) -> str:
    """torch ``[model.]0.model.X`` / ``0.auto_model.X`` and MLX ``[model.]transformer.auto_model.X`` -> ``X``."""
    for owner in ("model.", "sentence_embedder."):  # the batch triplet losses name it sentence_embedder in ST
        name = name[len(owner):] if name.startswith(owner) else name
    for prefix in ("0.model.", "0.auto_model.", "transformer.auto_model."):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def run_torch(loss, batch):
    from transformers import Trainer

    module = loss if list(loss.parameters()) else loss.model  # ST's trainer optimises loss.named_parameters()
    decay = set(Trainer.get_decay_parameter_names(None, module))
    named = list(module.named_parameters())
    opt = torch.optim.AdamW([{"params": [p for n, p in named if n in decay], "weight_decay": WD},
                             {"params": [p for n, p in named if n not in decay], "weight_decay": 0.0}],
                            lr=LR, betas=(0.9, 0.999), eps=1e-8)
    feats, labels = batch
    values, grads = [], None
    for step in range(STEPS):
        opt.zero_grad(set_to_none=True)
        value = loss([dict(f) for f in feats], labels)
        value.backward()
        if step == 0:
            grads = {common_name(n): (p.grad if p.grad is not None else torch.zeros_like(p)).numpy().copy()
                     for n, p in named}
        torch.nn.utils.clip_grad_norm_([p for _, p in named], MAX_GRAD_NORM)
        opt.step()
        values.append(value.item())
    return values, grads


def run_mlx(loss, batch):
    trained = loss if isinstance(loss, nn.Module) else loss.model  # a loss with its own layer: the loss module
    runner = StepRunner(trained, AdamW.for_model(trained, LR, WD, (0.9, 0.999), 1e-8), MAX_GRAD_NORM)
    feats, labels = batch
    values, grads = [], None
    for step in range(STEPS):
        if step == 0:
            _, first = runner.micro_grads(loss, feats, labels)
            grads = {common_name(n): np.array(g) for n, g in first.items()}
        value, _ = runner.step([(loss, feats, labels)], 1.0)
        values.append(value)
    return values, grads


def assert_parity(label, torch_run, mlx_run):
    (t_losses, t_grads), (m_losses, m_grads) = torch_run, mlx_run
    assert m_grads.keys() == t_grads.keys(), sorted(set(m_grads) ^ set(t_grads))[:5]
    loss_rel = max(abs(a - b) / max(abs(a), 1e-6) for a, b in zip(t_losses, m_losses))
    scale = max(float(np.abs(g).max()) for g in t_grads.values())
    # A gradient that is 0 in exact arithmetic (e.g. the last LayerNorm bias under a Euclidean loss on
    # mean-pooled embeddings: a shift of every embedding changes no distance) is float32 rounding on
    # both sides (torch's own differs from its float64 value by ~2e-7): it must stay at that level.
    zero = {n for n, ref in t_grads.items() if float(np.abs(ref).max()) < ZERO_GRAD * scale}
    for n in zero:
        assert float(np.abs(m_grads[n]).max()) < ZERO_GRAD * scale, (n, float(np.abs(m_grads[n]).max()), scale)
    grad_rel = {n: float(np.abs(m_grads[n] - ref).max()) / max(float(np.abs(ref).max()), 1e-3 * scale)
                for n, ref in t_grads.items() if n not in zero}
    worst = max(grad_rel, key=grad_rel.get)
    print(f"{label}: losses {t_losses[0]:.5g} -> {t_losses[-1]:.5g}, max loss rel {loss_rel:.1e}, "
          f"max grad rel {grad_rel[worst]:.1e} ({worst}), {len(zero)} zero-gradient tensors")
    assert np.isfinite(m_losses).all()
    assert loss_rel < LOSS_RTOL, (t_losses, m_losses)
    assert grad_rel[worst] < GRAD_RTOL, (worst, grad_rel[worst])
    assert abs(t_losses[0] - t_losses[-1]) > 1e-3 * max(abs(t_losses[0]), 1e-3)  # training moved


def _labels(kind, rng, n_columns):
    if kind == "score":
        return rng.uniform(0, 1, size=BATCH).astype(np.float32)
    if kind == "binary":
        return np.array([1, 0] * (BATCH // 2), dtype=np.int64)
    if kind == "groups":
        return np.array([0, 1, 2, 0, 1, 2, 0, 1])
    if kind == "class":
        return rng.integers(0, 3, size=BATCH)
    if kind == "teacher_emb":
        return rng.normal(scale=0.3, size=(BATCH, 32)).astype(np.float32)
    if kind == "teacher_emb16":
        return rng.normal(scale=0.3, size=(BATCH, 16)).astype(np.float32)
    if kind == "margin":
        return rng.normal(size=BATCH).astype(np.float32)
    if kind == "scores":
        return (rng.normal(size=(BATCH, n_columns - 1)) * 3).astype(np.float32)
    return None


def _metric(enum_name, member, side):
    return getattr(getattr(st_losses if side == "torch" else mlx_losses, enum_name), member)


CASES = {
    # name: (loss class, text columns, labels, kwargs for both, own layer)
    "cosent": ("CoSENTLoss", 2, "score", {}, None),
    "angle-triplets": ("AnglELoss", 3, None, {}, None),
    "cosine-similarity": ("CosineSimilarityLoss", 2, "score", {}, None),
    "mse": ("MSELoss", 2, "teacher_emb", {}, None),
    "margin-mse": ("MarginMSELoss", 3, "margin", {}, None),
    "distill-kl-div": ("DistillKLDivLoss", 4, "scores", {"temperature": 2.0}, None),
    "triplet": ("TripletLoss", 3, None, {"distance_metric": ("TripletDistanceMetric", "EUCLIDEAN")}, None),
    "contrastive": ("ContrastiveLoss", 2, "binary", {}, None),
    "online-contrastive": ("OnlineContrastiveLoss", 2, "binary", {"margin": 1.0}, None),
    "softmax": ("SoftmaxLoss", 2, "class", {"num_labels": 3, "concatenation_sent_multiplication": True}, "classifier"),
    "mse-projection": ("MSELoss", 1, "teacher_emb16", {"projection_dim": 16}, "projection"),
    "batch-hard-triplet": ("BatchHardTripletLoss", 1, "groups", {"margin": 1.0}, None),
    "batch-all-triplet": ("BatchAllTripletLoss", 1, "groups", {"margin": 1.0}, None),
    "batch-semi-hard-triplet": ("BatchSemiHardTripletLoss", 1, "groups", {"margin": 1.0}, None),
    "batch-hard-soft-margin-triplet": ("BatchHardSoftMarginTripletLoss", 1, "groups", {}, None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_training_parity(case, models):
    name, n_columns, label_kind, kwargs, own_layer = CASES[case]
    if case == "mse-projection" and ST_MAJOR < 6:
        pytest.skip("projection_dim is ST 6.2's")
    torch_model, mlx_model = models()
    seed = sorted(CASES).index(case)
    labels = _labels(label_kind, np.random.default_rng(seed), n_columns)
    t_kwargs = {k: _metric(*v, "torch") if isinstance(v, tuple) else v for k, v in kwargs.items()}
    m_kwargs = {k: _metric(*v, "mlx") if isinstance(v, tuple) else v for k, v in kwargs.items()}
    if name == "SoftmaxLoss":
        key = "embedding_dimension" if ST_MAJOR >= 6 else "sentence_embedding_dimension"
        t_kwargs[key] = 32
        m_kwargs["embedding_dimension"] = 32
    if name in ("TripletLoss", "OnlineContrastiveLoss"):
        m_kwargs["st_version"] = ST
    torch.manual_seed(seed)
    t_loss = getattr(st_losses, name)(torch_model, **t_kwargs)
    m_loss = getattr(mlx_losses, name)(mlx_model, **m_kwargs)
    if own_layer:  # the same initial classifier / projection on both sides
        layer = getattr(t_loss, own_layer)
        getattr(m_loss, own_layer).update({"weight": mx.array(layer.weight.detach().numpy()),
                                           "bias": mx.array(layer.bias.detach().numpy())})
    t_features, m_features = features(torch_model, mlx_model, texts(n_columns, seed))
    t_labels = None if labels is None else torch.tensor(labels)
    m_labels = None if labels is None else mx.array(labels)
    torch_run = run_torch(t_loss, (t_features, t_labels))
    mlx_run = run_mlx(m_loss, (m_features, m_labels))
    if own_layer:
        assert {f"{own_layer}.weight", f"{own_layer}.bias"} <= set(mlx_run[1])
        trained = np.array(getattr(m_loss, own_layer).weight)
        np.testing.assert_allclose(trained, getattr(t_loss, own_layer).weight.detach().numpy(), atol=1e-4)
    assert_parity(case, torch_run, mlx_run)
    assert len(tree_flatten(mlx_model.trainable_parameters())) > 0

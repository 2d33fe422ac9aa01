"""AdaptiveLayerLoss and Matryoshka2dLoss against the installed sentence-transformers (ST 5.3 in .venv,
ST 6.2 in .venv-st6) with the real model: ST's ``SentenceTransformer`` on torch and the bridge's, from
the same tiny BERT (3 layers) / ModernBERT (4 layers) folder, dropout 0. ST samples the prior layers
(and Matryoshka2dLoss its dimensions) with Python's ``random``: both sides are seeded alike before
each loss call, so they train the same layers. Loss values and dL/dW within 1e-5 (relative to the
largest gradient entry), 10 full-batch AdamW steps within 1e-4 relative per step; a cached wrapped loss
is refused (ST warns it is not compatible); configs and citations as ST's.
"""

from __future__ import annotations

import math
import random
import warnings

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mlx.utils import tree_flatten  # noqa: E402

from conftest import ST_MAJOR, _save_tiny, random_sentence, tiny_bert_config, tiny_modernbert_config  # noqa: E402
from test_dense_losses_pairwise_training import common_name, features, one_torch_thread  # noqa: E402,F401
from mlx_hf_bridge import losses as mlx_losses  # noqa: E402
from mlx_hf_bridge.engine.optim import AdamW  # noqa: E402
from mlx_hf_bridge.engine.step import StepRunner  # noqa: E402

if ST_MAJOR >= 6:
    from sentence_transformers.sentence_transformer import losses as st_losses
else:
    from sentence_transformers import losses as st_losses

BATCH, TOL = 6, 1e-5
STEPS, LR, WD, MAX_GRAD_NORM, LOSS_RTOL = 10, 5e-4, 0.01, 1.0, 1e-4


def log_weight(i):  # a callable layer weighting (ST 6.2)
    return 1.0 / (2.0 + i)


@pytest.fixture(scope="module")
def folders(tmp_path_factory, minilm_dir, modernbert_tokenizer_dir):
    root = tmp_path_factory.mktemp("adaptive")
    return {
        "bert": _save_tiny(root / "bert", tiny_bert_config(num_hidden_layers=3), minilm_dir, 0),
        "bert-large-init": _save_tiny(root / "bert02", tiny_bert_config(num_hidden_layers=3), minilm_dir, 1, 0.2),
        "modernbert": _save_tiny(root / "mb", tiny_modernbert_config(), modernbert_tokenizer_dir, 0),
    }


def load(folder):
    from sentence_transformers import SentenceTransformer as TorchST

    from mlx_hf_bridge.dense import SentenceTransformer

    torch_model = TorchST(str(folder), device="cpu")
    torch_model.train()
    mlx_model = SentenceTransformer(str(folder))
    mlx_model.train()
    return torch_model, mlx_model


def texts(n_columns, seed):
    rng = random.Random(seed)
    return [[random_sentence(rng, 2, 14, [",", "."]) for _ in range(BATCH)] for _ in range(n_columns)]


# name: (outer loss, outer kwargs, inner loss, inner kwargs, text columns, labels?)
CASES = {
    "mnrl-one-layer": ("AdaptiveLayerLoss", {}, "MultipleNegativesRankingLoss", {}, 2, False),
    "mnrl-all-layers": ("AdaptiveLayerLoss", {"n_layers_per_step": -1, "last_layer_weight": 1.5,
                                              "prior_layers_weight": 0.7, "kl_div_weight": 2.0},
                        "MultipleNegativesRankingLoss", {}, 3, False),
    "mnrl-two-layers-no-kl": ("AdaptiveLayerLoss", {"n_layers_per_step": 2, "kl_temperature": 0.0},
                              "MultipleNegativesRankingLoss", {}, 2, False),
    "cosent-all-layers": ("AdaptiveLayerLoss", {"n_layers_per_step": -1, "kl_temperature": 1.0},
                          "CoSENTLoss", {}, 2, True),
    "log-weighting": ("AdaptiveLayerLoss", {"n_layers_per_step": -1, "layer_weighting": "log"},
                      "MultipleNegativesRankingLoss", {}, 2, False),
    "callable-weighting": ("AdaptiveLayerLoss", {"n_layers_per_step": 2, "layer_weighting": log_weight},
                           "MultipleNegativesRankingLoss", {}, 2, False),
    "2d": ("Matryoshka2dLoss", {"matryoshka_dims": [32, 16, 8]}, "MultipleNegativesRankingLoss", {}, 2, False),
    "2d-all": ("Matryoshka2dLoss", {"matryoshka_dims": [32, 8], "matryoshka_weights": [1, 2], "n_layers_per_step": -1,
                                    "n_dims_per_step": -1}, "CoSENTLoss", {}, 2, True),
}
ST6_ONLY = {"log-weighting", "callable-weighting"}  # ST 5.3 has no layer_weighting


def build(side_losses, model, case):
    outer, outer_kwargs, inner, inner_kwargs, _, _ = CASES[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return getattr(side_losses, outer)(model, getattr(side_losses, inner)(model, **inner_kwargs), **outer_kwargs)


def batch(case, torch_model, mlx_model, seed=0):
    n_columns, with_labels = CASES[case][4], CASES[case][5]
    t_feats, m_feats = features(torch_model, mlx_model, texts(n_columns, seed))
    labels = np.random.default_rng(seed).uniform(0, 1, size=BATCH).astype(np.float32) if with_labels else None
    t_labels = None if labels is None else torch.tensor(labels)
    m_labels = None if labels is None else mx.array(labels)
    return (t_feats, t_labels), (m_feats, m_labels)


def torch_value_and_grads(loss, model, feats, labels, seed):
    model.zero_grad(set_to_none=True)
    random.seed(seed)
    value = loss([dict(f) for f in feats], labels)
    value.backward()
    grads = {common_name(n): (p.grad if p.grad is not None else torch.zeros_like(p)).numpy().copy()
             for n, p in model.named_parameters()}
    return value.item(), grads


def mlx_value_and_grads(loss, model, feats, labels, seed):
    random.seed(seed)
    value, grads = nn.value_and_grad(model, lambda: loss(feats, labels))()
    return value.item(), {common_name(n): np.array(g) for n, g in tree_flatten(grads)}


def skip_unsupported(case):
    if case in ST6_ONLY and ST_MAJOR < 6:
        pytest.skip("ST 5.3's AdaptiveLayerLoss has no layer_weighting")


@pytest.mark.parametrize("kind", ["bert", "bert-large-init", "modernbert"])
@pytest.mark.parametrize("case", list(CASES))
def test_value_and_gradients(case, kind, folders):
    skip_unsupported(case)
    if kind != "bert" and case not in ("mnrl-all-layers", "2d", "cosent-all-layers"):
        pytest.skip("the other cases run on the 3-layer BERT only (time)")
    torch_model, mlx_model = load(folders[kind])
    (t_feats, t_labels), (m_feats, m_labels) = batch(case, torch_model, mlx_model)
    torch_loss, mlx_loss = build(st_losses, torch_model, case), build(mlx_losses, mlx_model, case)
    assert mlx_loss.get_config_dict() == torch_loss.get_config_dict()
    assert mlx_loss.citation == torch_loss.citation
    for seed in (0, 1):
        ref_value, ref = torch_value_and_grads(torch_loss, torch_model, t_feats, t_labels, seed)
        value, got = mlx_value_and_grads(mlx_loss, mlx_model, m_feats, m_labels, seed)
        assert got.keys() == ref.keys()
        scale = max(float(np.abs(g).max()) for g in ref.values())
        worst = max(float(np.abs(got[n] - ref[n]).max()) for n in ref)
        print(f"{case} {kind} seed {seed}: loss {ref_value:.6g} |d| {abs(value - ref_value):.1e}, "
              f"grad max|d| {worst:.1e} (scale {scale:.2g})")
        assert abs(value - ref_value) <= TOL * max(1.0, abs(ref_value)), (value, ref_value)
        assert worst <= TOL * max(1.0, scale), (worst, scale)


def test_the_kl_term_is_there_and_follows_the_release(folders):
    """Turning the KL term off changes the loss (it is computed), and the teacher's gradient: ST 6.2
    detaches the final layer, ST 5.3 lets the KL gradient flow into it; both reachable by st_version."""
    _, mlx_model = load(folders["bert-large-init"])
    feats = [mlx_model.tokenize(c) for c in texts(2, 3)]
    inner = mlx_losses.MultipleNegativesRankingLoss(mlx_model)
    runs = {}
    for version in ("5.3", "6.2"):
        for kl in (0.0, 0.5):
            loss = mlx_losses.AdaptiveLayerLoss(mlx_model, inner, n_layers_per_step=-1, kl_temperature=kl,
                                                layer_weighting="linear", st_version=version)
            runs[version, kl] = mlx_value_and_grads(loss, mlx_model, feats, None, 0)
    assert abs(runs["6.2", 0.5][0] - runs["6.2", 0.0][0]) > 1e-4
    assert runs["6.2", 0.5][0] == pytest.approx(runs["5.3", 0.5][0], abs=1e-6)  # same value ...
    last = "encoder.layer.2.output.dense.weight"  # ... a different gradient into the final layer
    assert float(np.abs(runs["6.2", 0.5][1][last] - runs["5.3", 0.5][1][last]).max()) > 1e-6


def train_torch(loss, model, feats, labels):
    from transformers import Trainer

    decay = set(Trainer.get_decay_parameter_names(None, model))
    named = list(model.named_parameters())
    opt = torch.optim.AdamW([{"params": [p for n, p in named if n in decay], "weight_decay": WD},
                             {"params": [p for n, p in named if n not in decay], "weight_decay": 0.0}],
                            lr=LR, betas=(0.9, 0.999), eps=1e-8)
    values = []
    for step in range(STEPS):
        opt.zero_grad(set_to_none=True)
        random.seed(100 + step)
        value = loss([dict(f) for f in feats], labels)
        value.backward()
        torch.nn.utils.clip_grad_norm_([p for _, p in named], MAX_GRAD_NORM)
        opt.step()
        values.append(value.item())
    return values


def train_mlx(loss, model, feats, labels):
    runner = StepRunner(model, AdamW.for_model(model, LR, WD, (0.9, 0.999), 1e-8), MAX_GRAD_NORM)
    values = []
    for step in range(STEPS):
        random.seed(100 + step)
        values.append(runner.step([(loss, feats, labels)], 1.0)[0])
    return values


@pytest.mark.parametrize("case", ["mnrl-one-layer", "mnrl-all-layers", "2d", "log-weighting"])
def test_training_parity(case, folders):
    skip_unsupported(case)
    torch_model, mlx_model = load(folders["bert"])
    (t_feats, t_labels), (m_feats, m_labels) = batch(case, torch_model, mlx_model, seed=4)
    t_losses = train_torch(build(st_losses, torch_model, case), torch_model, t_feats, t_labels)
    m_losses = train_mlx(build(mlx_losses, mlx_model, case), mlx_model, m_feats, m_labels)
    rel = max(abs(a - b) / max(abs(a), 1e-6) for a, b in zip(t_losses, m_losses))
    print(f"{case}: losses {t_losses[0]:.5g} -> {t_losses[-1]:.5g}, max per-step rel {rel:.1e}")
    assert rel < LOSS_RTOL, (t_losses, m_losses)
    assert abs(t_losses[0] - t_losses[-1]) > 1e-3 * abs(t_losses[0])  # training moved


@pytest.mark.parametrize("outer", ["AdaptiveLayerLoss", "Matryoshka2dLoss"])
@pytest.mark.parametrize("cached", ["CachedMultipleNegativesRankingLoss", "CachedGISTEmbedLoss"])
def test_cached_base_loss_is_refused(outer, cached, folders):
    """ST warns "... is not compatible with <cached loss>" (its hook-driven backward misses the layers);
    the bridge refuses the combination with that sentence, the reason and the fix, before any forward."""
    torch_model, mlx_model = load(folders["bert"])
    extra = {"matryoshka_dims": [32, 16]} if outer == "Matryoshka2dLoss" else {}

    def inner(side_losses, model):
        return getattr(side_losses, cached)(model, model, mini_batch_size=2) if "GIST" in cached \
            else getattr(side_losses, cached)(model, mini_batch_size=2)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        getattr(st_losses, outer)(torch_model, inner(st_losses, torch_model), **extra)
    st_warned = [str(w.message) for w in caught if "not compatible" in str(w.message)]
    wrapped = "MatryoshkaLoss" if outer == "Matryoshka2dLoss" else cached  # ST names the loss it wraps
    if outer == "AdaptiveLayerLoss" or ST_MAJOR >= 6:  # ST 5.3's Matryoshka2dLoss wraps the cached loss unwarned
        assert st_warned and st_warned[0].endswith(f"is not compatible with {wrapped}.")
    with pytest.raises(ValueError, match=f"{outer} is not compatible with {wrapped}{'' if wrapped == cached else ' around ' + cached}.*uncached twin"):
        getattr(mlx_losses, outer)(mlx_model, inner(mlx_losses, mlx_model), **extra)


def test_bad_options_and_models(folders):
    torch_model, mlx_model = load(folders["bert"])
    inner = mlx_losses.MultipleNegativesRankingLoss(mlx_model)
    if ST_MAJOR >= 6:
        with pytest.raises(ValueError) as theirs:
            st_losses.AdaptiveLayerLoss(torch_model, st_losses.MultipleNegativesRankingLoss(torch_model),
                                        layer_weighting="cubic")
        with pytest.raises(ValueError) as ours:
            mlx_losses.AdaptiveLayerLoss(mlx_model, inner, layer_weighting="cubic")
        assert str(ours.value) == str(theirs.value)
    with pytest.raises(ValueError, match="first module is a Transformer"):
        mlx_losses.AdaptiveLayerLoss(object(), inner)
    # the wrapped loss's checks still run in the pre-flight
    with pytest.raises(ValueError, match="takes no labels"):
        mlx_losses.AdaptiveLayerLoss(mlx_model, inner).check_labels([1.0], "train dataset")
    # the hidden-states flag is restored after the loss
    loss = mlx_losses.AdaptiveLayerLoss(mlx_model, inner)
    loss([mlx_model.tokenize(c) for c in texts(2, 0)])
    assert not mlx_model[0].auto_model.config.output_hidden_states
    assert math.isclose(loss.get_layer_weight(3), 1.0 if ST_MAJOR >= 6 else 0.25)  # ST 5.3: 1 / (1 + i)


def test_a_wrapped_loss_that_never_embeds_is_named(folders):
    _, mlx_model = load(folders["bert"])

    class Constant:
        def __call__(self, features, labels=None):
            return mx.array(1.0)

    with pytest.raises(RuntimeError, match="the wrapped loss never called the model"):
        mlx_losses.AdaptiveLayerLoss(mlx_model, Constant())([mlx_model.tokenize(["a"])])


@pytest.mark.parametrize("outer", ["AdaptiveLayerLoss", "Matryoshka2dLoss"])
def test_a_wrapped_loss_with_parameters_of_its_own_is_refused(outer, folders):
    """ST trains SoftmaxLoss's classifier through the wrapper module; the bridge's trainer would not: refused."""
    _, mlx_model = load(folders["bert"])
    extra = {"matryoshka_dims": [32, 16]} if outer == "Matryoshka2dLoss" else {}
    inner = mlx_losses.SoftmaxLoss(mlx_model, 32, num_labels=3)
    with pytest.raises(ValueError, match=f"{outer} around SoftmaxLoss: that loss trains parameters of its own"):
        getattr(mlx_losses, outer)(mlx_model, inner, **extra)


@pytest.mark.parametrize("case", ["mnrl-one-layer", "2d"])
def test_through_the_trainers(case, folders, tmp_path, monkeypatch):
    """The installed ST's trainer and the bridge's, 10 full-batch steps from the same folder; logged losses
    within 1e-4 relative. ST's trainer also draws from Python's global ``random`` (its model-card callback
    samples dataset rows for the card's examples), so the global stream cannot be lined up across the two
    trainers: each side's loss modules get their own ``random.Random(7)``, drawn in the same order."""
    import sys
    import datasets
    from sentence_transformers import SentenceTransformerTrainer as TorchTrainer
    from sentence_transformers import SentenceTransformerTrainingArguments as TorchArgs

    from mlx_hf_bridge.sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    cols = texts(2, 9)
    train = datasets.Dataset.from_dict({"anchor": cols[0], "positive": cols[1]})
    recipe = dict(per_device_train_batch_size=BATCH, max_steps=10, learning_rate=5e-4, logging_steps=1, seed=0,
                  save_strategy="no", weight_decay=0.01, lr_scheduler_type="linear", disable_tqdm=True)
    logged = {}
    torch_model, mlx_model = load(folders["bert"])
    for side, model, side_losses, trainer_cls, args in (
            ("torch", torch_model, st_losses, TorchTrainer,
             TorchArgs(output_dir=str(tmp_path / "torch"), report_to="none", use_cpu=True, **recipe)),
            ("mlx", mlx_model, mlx_losses, SentenceTransformerTrainer,
             SentenceTransformerTrainingArguments(output_dir=str(tmp_path / "mlx"), **recipe))):
        loss = build(side_losses, model, case)
        stream = random.Random(7)
        for cls in (*type(loss).__mro__, *type(loss.loss).__mro__):  # the adaptive and Matryoshka modules
            module = sys.modules[cls.__module__]
            if getattr(module, "random", None) is random:
                monkeypatch.setattr(module, "random", stream)
        trainer = trainer_cls(model=model, args=args, train_dataset=train, loss=loss)
        trainer.train()
        logged[side] = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    theirs, ours = logged["torch"], logged["mlx"]
    rel = max(abs(a - b) / max(abs(a), 1e-6) for a, b in zip(theirs, ours))
    print(f"{case} through the trainers: {theirs[0]:.5g} -> {theirs[-1]:.5g}, max rel {rel:.1e}")
    assert len(ours) == len(theirs) == 10 and rel < LOSS_RTOL, (theirs, ours)

"""In-batch-negatives losses with the real model: the installed ST's ``SentenceTransformer`` on torch
(ST 5.3 in .venv, ST 6.2 in .venv-st6) and the bridge's, loaded from the same tiny BERT folder
(dropout 0), 10 full-batch AdamW steps from the same weights through the engine's ``StepRunner``
(cached losses through their ``value_and_grad``): per-step losses within 1e-4 relative, first-step
gradients within 1e-4. Also: cached losses equal their uncached twins, and their peak memory stays
flat in the batch size for a fixed mini-batch. The training harness is the pairwise losses' one.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from slow_cases import split  # noqa: E402

torch = pytest.importorskip("torch")

from conftest import ST_MAJOR, _save_tiny, tiny_bert_config  # noqa: E402
from test_dense_losses_pairwise_training import (  # noqa: E402,F401  (fixtures: models, one_torch_thread)
    BATCH,
    PUNCT,
    assert_parity,
    features,
    models,
    one_torch_thread,
    run_mlx,
    run_torch,
)

from conftest import random_sentence  # noqa: E402
from mlx_hf_bridge import losses as mlx_losses  # noqa: E402

if ST_MAJOR >= 6:
    from sentence_transformers.sentence_transformer import losses as st_losses
else:
    from sentence_transformers import losses as st_losses


def columns(n_columns, seed):
    """Texts with repeats across rows (GIST's guide then masks real false negatives)."""
    rng = random.Random(seed)
    cols = [[random_sentence(rng, 2, 12, PUNCT) for _ in range(BATCH)] for _ in range(n_columns)]
    cols[1][5] = cols[1][2]
    return cols


@pytest.fixture(scope="module")
def guides(tmp_path_factory, minilm_dir, tiny_modernbert_dir):
    """A second tiny BERT (same tokenizer, other weights) and a ModernBERT (other vocabulary: the
    texts are decoded and tokenized again for it), on both sides."""
    from sentence_transformers import SentenceTransformer as TorchST

    from mlx_hf_bridge.dense import SentenceTransformer

    bert = _save_tiny(tmp_path_factory.mktemp("guide-bert"), tiny_bert_config(), minilm_dir, seed=7)
    out = {}
    for name, folder in (("bert", bert), ("modernbert", tiny_modernbert_dir)):
        torch_guide = TorchST(str(folder), device="cpu")
        torch_guide.eval()
        out[name] = (torch_guide, SentenceTransformer(str(folder)))
    return out


CASES = {
    # name: (loss class, text columns, kwargs for both)
    "mnrl-pairs": ("MultipleNegativesRankingLoss", 2, {}),
    "mnrl-triplets-gte": ("MultipleNegativesRankingLoss", 3,
                          {"directions": ("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc")}),
    "mnrl-hardness": ("MultipleNegativesRankingLoss", 4, {"hardness_mode": "all_negatives", "hardness_strength": 5.0}),
    "mnrl-symmetric": ("MultipleNegativesSymmetricRankingLoss", 2, {"scale": 10.0}),
    "cached-mnrl": ("CachedMultipleNegativesRankingLoss", 3, {"mini_batch_size": 3}),
    "cached-mnrl-tokens": ("CachedMultipleNegativesRankingLoss", 2,
                           {"mini_batch_num_tokens": 40, "directions": ("query_to_doc", "doc_to_query"),
                            "partition_mode": "per_direction"}),
    "cached-mnrl-symmetric": ("CachedMultipleNegativesSymmetricRankingLoss", 2, {"mini_batch_size": 5}),
    "gist": ("GISTEmbedLoss", 3, {"guide": "bert", "margin": 0.05, "temperature": 0.1}),
    # ST 5.3's relative margin (s > s_pos * (1 - margin)) is ST 6.2's (s > s_pos - |s_pos| * margin) only
    # where the guide's positive score s_pos >= 0: the bridge is ST 6.2's; ModernBERT's guide has s_pos < 0 rows
    "gist-retokenized": ("GISTEmbedLoss", 2, {"guide": "modernbert", "temperature": 0.1, "margin": 0.1,
                                              "margin_strategy": "relative" if ST_MAJOR >= 6 else "absolute"}),
    "cached-gist": ("CachedGISTEmbedLoss", 3, {"guide": "bert", "mini_batch_size": 3, "temperature": 0.1,
                                               "margin_strategy": "relative", "margin": 0.1}),
    "matryoshka-mnrl": ("MatryoshkaLoss", 3, {"inner": ("MultipleNegativesRankingLoss", {}),
                                              "matryoshka_dims": [32, 16, 8], "matryoshka_weights": [1, 2, 1]}),
    "matryoshka-cached-mnrl": ("MatryoshkaLoss", 2, {"inner": ("CachedMultipleNegativesRankingLoss",
                                                               {"mini_batch_size": 3}),
                                                     "matryoshka_dims": [32, 8]}),
}


def build(side_losses, name, model, kwargs, guides, side):
    kwargs = dict(kwargs)
    if ST_MAJOR < 6:
        kwargs.pop("mini_batch_num_tokens", None) and kwargs.setdefault("mini_batch_size", 3)
    if "guide" in kwargs:
        kwargs["guide"] = guides[kwargs["guide"]][0 if side == "torch" else 1]
    if "inner" in kwargs:
        inner_name, inner_kwargs = kwargs.pop("inner")
        kwargs["loss"] = getattr(side_losses, inner_name)(model, **inner_kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return getattr(side_losses, name)(model, **kwargs)


class TrainsTheModelOnly(torch.nn.Module):
    """The guide is a child module of ST's GIST losses, run without gradients (never updated): the
    harness optimises the loss module when it has parameters, so hand it one without them."""

    def __init__(self, loss):
        super().__init__()
        object.__setattr__(self, "loss", loss)  # not registered: no parameters here
        object.__setattr__(self, "model", loss.model)

    def forward(self, features, labels):
        return self.loss(features, labels)


@pytest.mark.parametrize("case", split(list(CASES), fast=[  # CI: one per loss family
    "mnrl-pairs", "mnrl-symmetric", "cached-mnrl", "gist", "matryoshka-cached-mnrl"]))
def test_training_parity(case, models, guides):
    name, n_columns, kwargs = CASES[case]
    torch_model, mlx_model = models()
    t_feats, m_feats = features(torch_model, mlx_model, columns(n_columns, sorted(CASES).index(case)))
    torch_loss = build(st_losses, name, torch_model, kwargs, guides, "torch")
    mlx_loss = build(mlx_losses, name, mlx_model, kwargs, guides, "mlx")
    if "guide" in kwargs:
        assert mlx_loss.must_retokenize == torch_loss.must_retokenize == (kwargs["guide"] == "modernbert")
        torch_loss = TrainsTheModelOnly(torch_loss)
    assert_parity(f"{case} (ST {ST_MAJOR})", run_torch(torch_loss, (t_feats, None)), run_mlx(mlx_loss, (m_feats, None)))


@pytest.mark.parametrize("plain,cached,kwargs", [
    ("MultipleNegativesRankingLoss", "CachedMultipleNegativesRankingLoss", {"scale": 30.0}),
    ("GISTEmbedLoss", "CachedGISTEmbedLoss", {"guide": "bert"}),
])
def test_cached_equals_uncached_on_the_model(plain, cached, kwargs, models, guides):
    import mlx.nn as nn
    from mlx.utils import tree_flatten

    _, model = models()
    if "guide" in kwargs:
        kwargs = {**kwargs, "guide": guides[kwargs["guide"]][1]}
    feats = [model.tokenize(c) for c in columns(3, 11)]
    value, grads = nn.value_and_grad(model, lambda f: getattr(mlx_losses, plain)(model, **kwargs)(f))(feats)
    for mini in (1, 3, 8):
        loss = getattr(mlx_losses, cached)(model, mini_batch_size=mini, **kwargs)
        c_value, c_grads = loss.value_and_grad(feats)
        assert abs(c_value.item() - value.item()) < 1e-5 * abs(value.item())
        assert abs(loss(feats).item() - value.item()) < 1e-5 * abs(value.item())  # the no-grad call
        ref, got = dict(tree_flatten(grads)), dict(tree_flatten(c_grads))
        assert list(got) == list(ref)
        scale = max(float(np.abs(np.array(g)).max()) for g in ref.values())
        worst = max(float(np.abs(np.array(got[n]) - np.array(ref[n])).max()) for n in ref)
        assert worst < 1e-5 * scale, (mini, worst, scale)


MEMORY_SCRIPT = """
import json, sys
import mlx_hf_bridge
import mlx.core as mx
from mlx_hf_bridge import losses
from mlx_hf_bridge.dense import SentenceTransformer
model = SentenceTransformer(sys.argv[1])
model.train()
words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()
out = {}
for batch, mini in ((16, 4), (64, 4), (16, 16), (64, 64)):
    texts = [" ".join(words[(i + j) % len(words)] for j in range(60)) for i in range(batch)]
    features = [model.tokenize(texts) for _ in range(3)]
    mx.eval(features, model.parameters())
    loss = getattr(losses, sys.argv[2])(model, mini_batch_size=mini)
    loss.value_and_grad(features)  # warm-up
    mx.clear_cache(); mx.reset_peak_memory()
    base = mx.get_active_memory()
    value, grads = loss.value_and_grad(features)
    mx.eval(value, grads)
    out[f"{batch}/{mini}"] = mx.get_peak_memory() - base
    del value, grads
print(json.dumps(out))
"""


def test_cached_peak_memory_is_flat_in_batch_size(tmp_path, tiny_bert_dir):
    """Mini-batch 4: going from batch 16 to 64 adds under a tenth of what it adds with one mini-batch per
    batch (16/16 -> 64/64: every activation alive at once). What does grow is small and bounded: the
    token-embedding row gradients kept for one scatter (embedding_grad.py; folded at the table's size)."""
    tests = Path(__file__).parent
    script = f"import sys; sys.path.insert(0, {str(tests)!r})\n" + MEMORY_SCRIPT
    proc = subprocess.run([sys.executable, "-c", script, str(tiny_bert_dir), "CachedMultipleNegativesRankingLoss"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    peaks = json.loads(proc.stdout.strip().splitlines()[-1])
    print("peak bytes above baseline (batch/mini):", peaks)
    assert peaks["16/4"] > 0
    cached_growth, full_growth = peaks["64/4"] - peaks["16/4"], peaks["64/64"] - peaks["16/16"]
    assert cached_growth < 0.1 * full_growth, peaks
    assert peaks["64/4"] * 5 < peaks["64/64"], peaks


def test_gist_errors_and_config(models, guides):
    torch_model, mlx_model = models()
    torch_guide, mlx_guide = guides["bert"]
    for name in ("GISTEmbedLoss", "CachedGISTEmbedLoss"):
        with pytest.raises(ValueError) as theirs:
            getattr(st_losses, name)(torch_model, torch_guide, margin_strategy="percent")
        with pytest.raises(ValueError) as ours:
            getattr(mlx_losses, name)(mlx_model, mlx_guide, margin_strategy="percent")
        assert str(ours.value) == str(theirs.value)
        with pytest.raises(ValueError, match="must have a tokenizer attribute"):
            getattr(mlx_losses, name)(mlx_model, object())
        ours = getattr(mlx_losses, name)(mlx_model, mlx_guide, margin=0.2)
        theirs = getattr(st_losses, name)(torch_model, torch_guide, margin=0.2)
        config, ref = ours.get_config_dict(), theirs.get_config_dict()
        assert config.pop("guide") is mlx_guide and ref.pop("guide") is torch_guide
        assert {k: v for k, v in config.items() if k in ref} == ref  # ST 5.3: no mini_batch_num_tokens
        assert set(config) - set(ref) <= {"mini_batch_num_tokens"}
        if hasattr(theirs, "citation"):  # ST's CachedGISTEmbedLoss has none; the bridge's cites GIST
            assert ours.citation == theirs.citation
    four = [mlx_model.tokenize(c) for c in columns(4, 0)]
    with pytest.raises(ValueError, match=r"GISTEmbedLoss expects 2 to 3 text columns \(anchor, positive\[, negative\]\)"):
        mlx_losses.GISTEmbedLoss(mlx_model, mlx_guide)(four)
    assert mlx_losses.CachedGISTEmbedLoss(mlx_model, mlx_guide, mini_batch_size=3)(four).item() > 0  # any negatives


def test_cached_on_modernbert_packed_slices(tiny_modernbert_dir):
    """Padding-free slices (length-sorted, cut to their longest row, ModernBERT rows packed): the
    uncached loss and gradients on the padded batch."""
    import mlx.nn as nn
    from mlx.utils import tree_flatten

    from mlx_hf_bridge.dense import SentenceTransformer

    model = SentenceTransformer(str(tiny_modernbert_dir))
    rng = random.Random(5)
    cols = [[random_sentence(rng, 1, 40 if i % 3 == 0 else 4, PUNCT) for i in range(10)] for _ in range(3)]
    feats = [model.tokenize(c) for c in cols]
    plain = mlx_losses.MultipleNegativesRankingLoss(model)
    value, grads = nn.value_and_grad(model, lambda f: plain(f))(feats)
    c_value, c_grads = mlx_losses.CachedMultipleNegativesRankingLoss(model, mini_batch_size=3).value_and_grad(feats)
    assert abs(c_value.item() - value.item()) < 1e-5 * abs(value.item())
    ref, got = dict(tree_flatten(grads)), dict(tree_flatten(c_grads))
    scale = max(float(np.abs(np.array(g)).max()) for g in ref.values())
    assert max(float(np.abs(np.array(got[n]) - np.array(ref[n])).max()) for n in ref) < 1e-5 * scale


def test_cached_replays_dropout(tmp_path, minilm_dir):
    """With dropout on, pass 3 must see pass 1's masks: with one slice per column the cached gradients
    equal the uncached ones from the same random key (a wrong replay would not)."""
    import mlx.core as mx
    import mlx.nn as nn
    from mlx.utils import tree_flatten

    from mlx_hf_bridge.dense import SentenceTransformer

    folder = _save_tiny(tmp_path / "dropout", tiny_bert_config(hidden_dropout_prob=0.3), minilm_dir, seed=0)
    model = SentenceTransformer(str(folder))
    model.train()
    feats = [model.tokenize(c) for c in columns(2, 4)]
    mx.random.seed(3)
    value, grads = nn.value_and_grad(model, lambda f: mlx_losses.MultipleNegativesRankingLoss(model)(f))(feats)
    mx.random.seed(3)
    c_value, c_grads = mlx_losses.CachedMultipleNegativesRankingLoss(model, mini_batch_size=BATCH).value_and_grad(feats)
    mx.random.seed(4)
    other, _ = nn.value_and_grad(model, lambda f: mlx_losses.MultipleNegativesRankingLoss(model)(f))(feats)
    assert abs(other.item() - value.item()) > 1e-4  # dropout is on
    assert abs(c_value.item() - value.item()) < 1e-5 * abs(value.item())
    ref, got = dict(tree_flatten(grads)), dict(tree_flatten(c_grads))
    scale = max(float(np.abs(np.array(g)).max()) for g in ref.values())
    assert max(float(np.abs(np.array(got[n]) - np.array(ref[n])).max()) for n in ref) < 1e-5 * scale

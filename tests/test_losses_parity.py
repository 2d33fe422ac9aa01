"""Loss parity with real PyLate 1.6 on torch: same weights, same batches, same optimizer.

For each case both libraries load one PyLate-saved folder (dropout 0), tokenize the same rows with
their own ``tokenize`` (ids and masks asserted identical first), and train 10 steps. Per-step
losses must agree within 1e-4 relative, and the first step's gradients parameter by parameter
(by HF name) within 1e-4 of that parameter's largest gradient entry, floored at 1e-3 of the
largest entry of any parameter (gradients that are exactly 0 in theory, e.g. attention key
biases, are float noise in both libraries).
"""

from __future__ import annotations

import logging
import random
import subprocess
import sys
import textwrap

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest

from slow_cases import split_indices  # noqa: E402
from mlx.utils import tree_flatten

from mlx_hf_bridge.pylate import losses as mlx_losses
from mlx_hf_bridge.pylate import models as mlx_models

from conftest import _save_tiny, random_sentence, tiny_bert_config

LOSS_RTOL = 1e-4
GRAD_RTOL = 1e-4
STEPS = 10
PUNCT = [",", ".", ";", "!", "?", ":", "-", "(", ")"]


def sentence(rng: random.Random, n_min: int, n_max: int) -> str:
    return random_sentence(rng, n_min, n_max, PUNCT)


def make_rows(n: int, n_negatives: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        row = {"query": sentence(rng, 2, 9), "positive": sentence(rng, 3, 20)}
        for j in range(n_negatives):
            row["negative" if j == 0 else f"negative_{j + 1}"] = sentence(rng, 3, 20)
        rows.append(row)
    return rows


# --- folders and models ------------------------------------------------------------------------
def pylate_folder(tmp_path_factory, source, **kwargs):
    import torch
    from pylate import models

    torch.manual_seed(0)
    model = models.ColBERT(str(source), device="cpu", query_length=10, document_length=18, **kwargs)
    out = tmp_path_factory.mktemp("loss-colbert")
    model.save(str(out))
    return out


@pytest.fixture(scope="module")
def folders(tmp_path_factory, tiny_bert_dir, tiny_modernbert_dir):
    return {
        ("bert", True): pylate_folder(tmp_path_factory, tiny_bert_dir),
        ("bert", False): pylate_folder(tmp_path_factory, tiny_bert_dir, do_query_expansion=False),
        ("modernbert", True): pylate_folder(tmp_path_factory, tiny_modernbert_dir),
        ("modernbert", False): pylate_folder(tmp_path_factory, tiny_modernbert_dir, do_query_expansion=False),
    }


def load_pair(folder):
    from pylate import models

    torch_model = models.ColBERT(str(folder), device="cpu")
    mlx_model = mlx_models.ColBERT(str(folder))
    assert torch_model.skiplist == mlx_model.skiplist
    assert torch_model.do_query_expansion == mlx_model.do_query_expansion
    torch_model.train()
    mlx_model.train()
    return torch_model, mlx_model


def tokenize_both(torch_model, mlx_model, texts, is_query):
    t = torch_model.tokenize(texts, is_query=is_query, pad=True)
    m = mlx_model.tokenize(texts, is_query=is_query, pad=True)
    assert list(t) == list(m)
    for key in t:
        np.testing.assert_array_equal(t[key].numpy(), np.array(m[key]), err_msg=key)
    return t, m


def contrastive_batches(torch_model, mlx_model, n_negatives, batch_size=6, n_batches=3):
    """[(torch_features, mlx_features, None, None)] with columns query, positive, negatives."""
    rows = make_rows(batch_size * n_batches, n_negatives)
    out = []
    for b in range(n_batches):
        chunk = rows[b * batch_size : (b + 1) * batch_size]
        tf, mf = [], []
        for column in chunk[0]:
            t, m = tokenize_both(torch_model, mlx_model, [r[column] for r in chunk], is_query=column == "query")
            tf.append(t)
            mf.append(m)
        out.append((tf, mf, None, None))
    skip = set(mlx_model.skiplist)
    assert any(int(i) in skip for _, mf, _, _ in out for f in mf[1:] for i in np.array(f["input_ids"]).ravel())
    return out


def distillation_batches(torch_model, mlx_model, batch_size=4, n_ways=3, n_batches=3):
    import torch

    rng = random.Random(1)
    out = []
    for _ in range(n_batches):
        queries = [sentence(rng, 2, 9) for _ in range(batch_size)]
        documents = [sentence(rng, 3, 20) for _ in range(batch_size * n_ways)]
        scores = [[rng.uniform(-2, 12) for _ in range(n_ways)] for _ in range(batch_size)]
        tq, mq = tokenize_both(torch_model, mlx_model, queries, is_query=True)
        td, md = tokenize_both(torch_model, mlx_model, documents, is_query=False)
        out.append(([tq, td], [mq, md], torch.tensor(scores), mx.array(scores)))
    return out


# --- training loops ------------------------------------------------------------------------------
def common_name(name: str) -> str:
    for prefix, repl in (("0.auto_model.", ""), ("transformer.auto_model.", ""), ("1.", "dense.0.")):
        if name.startswith(prefix):
            return repl + name[len(prefix) :]
    return name


def run_torch(model, loss, batches, optimizer, lr, steps=STEPS):
    import torch

    opt = torch.optim.SGD(model.parameters(), lr=lr) if optimizer == "sgd" else torch.optim.AdamW(
        model.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01
    )
    values, grads = [], None
    for step in range(steps):
        features, _, labels, _ = batches[step % len(batches)]
        opt.zero_grad(set_to_none=True)
        value = loss(features, labels)
        value.backward()
        if step == 0:
            grads = {
                common_name(n): (p.grad if p.grad is not None else torch.zeros_like(p)).detach().numpy().copy()
                for n, p in model.named_parameters()
            }
        opt.step()
        values.append(value.item())
    return values, grads


def mlx_optimizer(optimizer, lr):
    if optimizer == "sgd":
        return optim.SGD(learning_rate=lr)
    # torch's AdamW: bias-corrected moments, eps outside the sqrt, decoupled decay applied first
    return optim.AdamW(learning_rate=lr, betas=[0.9, 0.999], eps=1e-8, weight_decay=0.01, bias_correction=True)


def mlx_value_and_grad(model, loss):
    if hasattr(loss, "value_and_grad"):
        return loss.value_and_grad
    return nn.value_and_grad(model, lambda features, labels: loss(features, labels))


def run_mlx(model, loss, batches, optimizer, lr, steps=STEPS):
    opt = mlx_optimizer(optimizer, lr)
    value_and_grad = mlx_value_and_grad(model, loss)
    values, grads = [], None
    for step in range(steps):
        _, features, _, labels = batches[step % len(batches)]
        value, step_grads = value_and_grad(features, labels)
        if step == 0:
            grads = {common_name(n): np.array(g) for n, g in tree_flatten(step_grads)}
        opt.update(model, step_grads)
        mx.eval(model.parameters(), opt.state)
        values.append(value.item())
    return values, grads


def grad_rel_errors(mlx_grads: dict, torch_grads: dict) -> dict[str, float]:
    assert mlx_grads.keys() == torch_grads.keys()
    scale = max(float(np.abs(g).max()) for g in torch_grads.values())
    assert scale > 0
    return {
        name: float(np.abs(mlx_grads[name] - ref).max()) / max(float(np.abs(ref).max()), 1e-3 * scale)
        for name, ref in torch_grads.items()
    }


def assert_parity(torch_run, mlx_run, label):
    (t_losses, t_grads), (m_losses, m_grads) = torch_run, mlx_run
    loss_rel = [abs(a - b) / abs(a) for a, b in zip(t_losses, m_losses)]
    grad_rel = grad_rel_errors(m_grads, t_grads)
    worst = max(grad_rel, key=grad_rel.get)
    print(f"{label}: per-step {[f'{r:.0e}' for r in loss_rel]} max loss rel {max(loss_rel):.2e}, max grad rel {grad_rel[worst]:.2e} ({worst})")
    assert len(t_losses) == STEPS
    assert max(loss_rel) < LOSS_RTOL, (t_losses, m_losses)
    assert grad_rel[worst] < GRAD_RTOL, (worst, grad_rel[worst])
    assert max(t_losses) - min(t_losses) > 1e-3  # training actually moved


# --- Contrastive ---------------------------------------------------------------------------------
CONTRASTIVE_CASES = [
    # (backbone, query expansion, n_negatives, optimizer, lr, kwargs)
    ("bert", True, 1, "sgd", 0.1, {}),
    ("bert", False, 2, "adamw", 1e-3, {"temperature": 0.05, "score_mini_batch_size": 4}),
    ("modernbert", True, 1, "adamw", 1e-3, {"size_average": False}),
    ("modernbert", False, 0, "sgd", 0.05, {"score_mini_batch_size": 5}),
]


@pytest.mark.parametrize("backbone,expansion,n_negatives,optimizer,lr,kwargs", CONTRASTIVE_CASES)
def test_contrastive_parity(folders, backbone, expansion, n_negatives, optimizer, lr, kwargs):
    from pylate import losses

    torch_model, mlx_model = load_pair(folders[(backbone, expansion)])
    batches = contrastive_batches(torch_model, mlx_model, n_negatives)
    assert_parity(
        run_torch(torch_model, losses.Contrastive(torch_model, **kwargs), batches, optimizer, lr),
        run_mlx(mlx_model, mlx_losses.Contrastive(mlx_model, **kwargs), batches, optimizer, lr),
        f"Contrastive {backbone} qe={expansion} {kwargs}",
    )


# --- CachedContrastive ---------------------------------------------------------------------------
CACHED_CASES = [
    ("bert", True, 1, "sgd", 0.02, {"mini_batch_size": 4}),
    ("bert", False, 2, "adamw", 1e-3, {"mini_batch_size": 5, "score_mini_batch_size": 2}),
    ("modernbert", True, 1, "sgd", 0.01, {"mini_batch_size": 5}),
    ("modernbert", False, 1, "adamw", 1e-3, {"mini_batch_size": 4, "size_average": False, "temperature": 0.05}),
    ("bert", True, 2, "sgd", 0.02, {"mini_batch_size": 1, "score_mini_batch_size": 6}),
]


@pytest.mark.parametrize("backbone,expansion,n_negatives,optimizer,lr,kwargs", split_indices(CACHED_CASES, {0, 1, 2}))
def test_cached_contrastive_parity(folders, backbone, expansion, n_negatives, optimizer, lr, kwargs):
    """Default ``scale_gradients="pylate"``: PyLate's B x gradients, step for step."""
    from pylate import losses

    torch_model, mlx_model = load_pair(folders[(backbone, expansion)])
    batches = contrastive_batches(torch_model, mlx_model, n_negatives)
    assert_parity(
        run_torch(torch_model, losses.CachedContrastive(torch_model, **kwargs), batches, optimizer, lr),
        run_mlx(mlx_model, mlx_losses.CachedContrastive(mlx_model, **kwargs), batches, optimizer, lr),
        f"CachedContrastive {backbone} qe={expansion} {kwargs}",
    )


@pytest.mark.parametrize("mini_batch_size", [4, 5])
def test_cached_contrastive_gradient_scale(folders, mini_batch_size):
    """PyLate's CachedContrastive gradients are B x Contrastive's; ``"mean"`` gives Contrastive's."""
    from pylate import losses

    torch_model, mlx_model = load_pair(folders[("bert", False)])
    batches = contrastive_batches(torch_model, mlx_model, 1, n_batches=1)
    batch_size = 6
    _, t_grads = run_torch(torch_model, losses.Contrastive(torch_model), batches, "sgd", 0.0, steps=1)
    pylate_loss, pylate_grads = mlx_losses.CachedContrastive(mlx_model, mini_batch_size=mini_batch_size).value_and_grad(
        batches[0][1]
    )
    mean_loss, mean_grads = mlx_losses.CachedContrastive(
        mlx_model, mini_batch_size=mini_batch_size, scale_gradients="mean"
    ).value_and_grad(batches[0][1])
    assert abs(pylate_loss.item() - mean_loss.item()) < 1e-7
    mean_grads = {common_name(n): np.array(g) for n, g in tree_flatten(mean_grads)}
    scaled = {common_name(n): np.array(g) / batch_size for n, g in tree_flatten(pylate_grads)}
    assert max(grad_rel_errors(mean_grads, t_grads).values()) < GRAD_RTOL
    assert max(grad_rel_errors(scaled, t_grads).values()) < GRAD_RTOL
    # the plain call is the no-grad path: same value
    assert abs(mlx_losses.CachedContrastive(mlx_model, mini_batch_size=mini_batch_size)(batches[0][1]).item()
               - pylate_loss.item()) < 1e-6


def test_cached_contrastive_scatters_the_embedding_gradient_once(folders, monkeypatch):
    """GradCache's re-encoding pass leaves the token-embedding table out of each slice's gradient
    and scatters all rows once: the same gradient tree (names and order) and values as
    differentiating the lookup slice by slice; a frozen table is left alone."""
    from mlx_hf_bridge.colbert import embedding_grad

    torch_model, mlx_model = load_pair(folders[("modernbert", True)])
    features = contrastive_batches(torch_model, mlx_model, 1, n_batches=1)[0][1]
    loss = mlx_losses.CachedContrastive(mlx_model, mini_batch_size=2)
    _, grads = loss.value_and_grad(features)

    with monkeypatch.context() as patch:  # the plain path: differentiate the lookup per slice
        patch.setattr(embedding_grad, "encoder_backbone", lambda model: None)
        _, dense_grads = loss.value_and_grad(features)
    names = [n for n, _ in tree_flatten(mlx_model.trainable_parameters())]
    assert [n for n, _ in tree_flatten(grads)] == names == [n for n, _ in tree_flatten(dense_grads)]
    table = "transformer.auto_model.embeddings.tok_embeddings.weight"
    scattered, reference = dict(tree_flatten(grads)), dict(tree_flatten(dense_grads))
    assert float(mx.abs(reference[table]).max()) > 0
    for name in names:
        np.testing.assert_allclose(np.array(scattered[name]), np.array(reference[name]), rtol=1e-5, atol=1e-7)

    # rows folded into a running table whenever more than 5 are kept (bounded memory): the same sums
    with monkeypatch.context() as patch:
        original = embedding_grad._Finish.__init__

        def small_fold(self, *args, **kwargs):
            original(self, *args, **kwargs)
            self.fold_rows = 5

        patch.setattr(embedding_grad._Finish, "__init__", small_fold)
        _, folded_grads = loss.value_and_grad(features)
    folded = dict(tree_flatten(folded_grads))
    assert [n for n, _ in tree_flatten(folded_grads)] == names
    np.testing.assert_allclose(np.array(folded[table]), np.array(reference[table]), rtol=1e-5, atol=1e-7)

    mlx_model.transformer.auto_model.embeddings.tok_embeddings.freeze()
    _, frozen_grads = loss.value_and_grad(features)
    assert table not in dict(tree_flatten(frozen_grads))
    assert len(tree_flatten(frozen_grads)) == len(names) - 1


def test_cached_contrastive_replays_dropout(tmp_path_factory, minilm_dir):
    """With dropout on, pass 3 must see pass 1's masks: with one slice per column, GradCache's
    gradients equal Contrastive's from the same random key (a wrong replay would not)."""
    src = _save_tiny(
        tmp_path_factory.mktemp("tiny-bert-dropout"),
        tiny_bert_config(hidden_dropout_prob=0.2, attention_probs_dropout_prob=0.2),
        minilm_dir,
        seed=0,
    )
    model = mlx_models.ColBERT(str(pylate_folder(tmp_path_factory, src)))
    model.train()
    rows = make_rows(6, 1)
    features = [model.tokenize([r[c] for r in rows], is_query=c == "query", pad=True) for c in rows[0]]

    mx.random.seed(123)
    ref_loss, ref_grads = nn.value_and_grad(model, lambda f: mlx_losses.Contrastive(model)(f))(features)
    mx.random.seed(123)
    loss, grads = mlx_losses.CachedContrastive(model, mini_batch_size=6, scale_gradients="mean").value_and_grad(features)
    assert abs(loss.item() - ref_loss.item()) < 1e-6
    ref_grads = {n: np.array(g) for n, g in tree_flatten(ref_grads)}
    errors = grad_rel_errors({n: np.array(g) for n, g in tree_flatten(grads)}, ref_grads)
    assert max(errors.values()) < 1e-5

    # dropout is really on: another key gives another loss
    mx.random.seed(7)
    other = mlx_losses.Contrastive(model)(features).item()
    assert abs(other - ref_loss.item()) > 1e-4

    # smaller slices: the loss value is reproducible from the recorded keys, and pass 3 does not
    # advance the global key (PyLate's fork_rng)
    mx.random.seed(5)
    cached = mlx_losses.CachedContrastive(model, mini_batch_size=4)
    value_only = cached(features).item()
    after_value = np.array(mx.random.state[0])
    mx.random.seed(5)
    value, _ = cached.value_and_grad(features)
    np.testing.assert_array_equal(np.array(mx.random.state[0]), after_value)
    assert value.item() == pytest.approx(value_only, rel=1e-6)


# --- Distillation --------------------------------------------------------------------------------
# Min-max normalisation divides by each query's score range (~0.1 here on scores ~7.5), so float32
# cancellation alone puts ~1e-5 relative noise on the gradients: torch fp32 itself is 1.5e-5 away
# from torch fp64 in the first case. Plain SGD with a large step amplifies that over 10 steps to
# ~1e-4 in *both* libraries' trajectories, so that case trains with AdamW.
DISTILLATION_CASES = [
    ("bert", True, "adamw", 1e-3, {}),
    ("bert", False, "adamw", 1e-3, {"normalize_scores": False}),
    ("modernbert", True, "adamw", 1e-3, {"size_average": False}),
    ("modernbert", False, "sgd", 0.1, {}),
]


@pytest.mark.parametrize("backbone,expansion,optimizer,lr,kwargs", DISTILLATION_CASES)
def test_distillation_parity(folders, backbone, expansion, optimizer, lr, kwargs):
    from pylate import losses

    torch_model, mlx_model = load_pair(folders[(backbone, expansion)])
    batches = distillation_batches(torch_model, mlx_model)
    assert_parity(
        run_torch(torch_model, losses.Distillation(torch_model, **kwargs), batches, optimizer, lr),
        run_mlx(mlx_model, mlx_losses.Distillation(mlx_model, **kwargs), batches, optimizer, lr),
        f"Distillation {backbone} qe={expansion} {kwargs}",
    )


# --- protocol details ----------------------------------------------------------------------------
def test_gather_across_devices_is_a_noop_on_one_process(folders, caplog):
    from mlx_hf_bridge.colbert import distributed

    torch_model, mlx_model = load_pair(folders[("bert", True)])
    features = contrastive_batches(torch_model, mlx_model, 1, n_batches=1)[0][1]
    plain = mlx_losses.Contrastive(mlx_model)(features).item()
    distributed._has_warned_dist_not_initialized = False
    with caplog.at_level(logging.WARNING):
        gathered = mlx_losses.Contrastive(mlx_model, gather_across_devices=True)(features).item()
        cached, _ = mlx_losses.CachedContrastive(mlx_model, mini_batch_size=4, gather_across_devices=True).value_and_grad(
            features
        )
    assert gathered == pytest.approx(plain, rel=1e-6)
    assert cached.item() == pytest.approx(plain, rel=1e-5)
    assert sum("Trying to gather" in r.getMessage() for r in caplog.records) == 1


def test_signatures_match_pylate():
    import inspect

    from pylate import losses

    for name in ("Contrastive", "CachedContrastive", "Distillation"):
        ours = inspect.signature(getattr(mlx_losses, name)).parameters
        theirs = inspect.signature(getattr(losses, name)).parameters
        for param, spec in theirs.items():
            assert param in ours, (name, param)
            if spec.default is not inspect.Parameter.empty and param != "score_metric":
                assert ours[param].default == spec.default, (name, param)
        assert list(ours)[: len(theirs)] == list(theirs), name
    assert inspect.signature(mlx_losses.CachedContrastive).parameters["scale_gradients"].default == "pylate"


def test_doctests():
    import doctest

    from mlx_hf_bridge.colbert import distributed, gradcache, loss_common, losses

    for module in (loss_common, gradcache, losses, distributed):
        result = doctest.testmod(module)
        assert result.failed == 0, module.__name__
    assert doctest.testmod(loss_common).attempted > 0 and doctest.testmod(gradcache).attempted > 0


# --- two processes (mx.distributed ring backend) ----------------------------------------------------
DISTRIBUTED_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import mlx_hf_bridge
    import mlx.core as mx
    import mlx.nn as nn
    import numpy as np
    from mlx.utils import tree_flatten
    from mlx_hf_bridge.pylate import losses, models

    folder, out_path, rows = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    world = mx.distributed.init()
    rank, size = world.rank(), world.size()
    model = models.ColBERT(folder)
    model.train()
    full = [model.tokenize([r[c] for r in rows], is_query=c == "query", pad=True) for c in rows[0]]
    local_b = len(rows) // size
    local = [{k: v[rank * local_b : (rank + 1) * local_b] for k, v in f.items()} for f in full]

    def flat(tree):
        return {k: np.array(v) for k, v in tree_flatten(tree)}

    def summed(tree):
        return {k: np.array(mx.distributed.all_sum(v)) for k, v in tree_flatten(tree)}

    gathered = losses.Contrastive(model, gather_across_devices=True)
    loss_g, grads_g = nn.value_and_grad(model, lambda f: gathered(f))(local)
    cached_mean = losses.CachedContrastive(model, mini_batch_size=3, gather_across_devices=True, scale_gradients="mean")
    loss_cm, grads_cm = cached_mean.value_and_grad(local)
    cached = losses.CachedContrastive(model, mini_batch_size=3, gather_across_devices=True)
    loss_c, grads_c = cached.value_and_grad(local)
    full_loss, full_grads = nn.value_and_grad(model, lambda f: losses.Contrastive(model)(f))(full)
    result = {
        "losses": np.array(mx.distributed.all_gather(mx.stack([loss_g, loss_cm, loss_c]).reshape(1, 3))).tolist(),
        "full_loss": full_loss.item(),
        "local_b": local_b,
        "size": size,
    }
    local_cmp = {
        "cached_mean_vs_gather": max(float(np.abs(flat(grads_cm)[k] - v).max()) for k, v in flat(grads_g).items()),
        "cached_vs_gather_times_b": max(
            float(np.abs(flat(grads_c)[k] / local_b - v).max()) for k, v in flat(grads_g).items()
        ),
    }
    result["local_cmp"] = np.array(mx.distributed.all_gather(mx.array([list(local_cmp.values())]))).tolist()
    sum_g = summed(grads_g)
    ref = flat(full_grads)
    scale = max(float(np.abs(v).max()) for v in ref.values())
    result["grad_scale"] = scale
    result["sum_vs_full"] = max(float(np.abs(sum_g[k] - size * size * v).max()) for k, v in ref.items()) / (size * size)
    if rank == 0:
        with open(out_path, "w") as f:
            json.dump(result, f)
    """
)


@pytest.mark.slow  # ~30 s; test_distributed's 2-rank equalities cover the gathered losses in CI
def test_gather_across_devices_two_processes(folders, tmp_path):
    """Two ring-backend processes, 4 rows each: loss_r = W * mean CE of the local queries against
    every rank's documents; summed over ranks the gradients are W^2 x the one-process full-batch
    Contrastive gradients (torch's all_gather backward sums the ranks' cotangents); GradCache with
    gathering agrees with Contrastive ("mean") and is B x it ("pylate")."""
    import json
    import os
    import shutil
    from pathlib import Path

    launcher = Path(sys.executable).with_name("mlx.launch")
    if not launcher.exists() and shutil.which("mlx.launch") is None:
        pytest.skip("mlx.launch is not installed")
    script = tmp_path / "dist_child.py"
    script.write_text(DISTRIBUTED_SCRIPT)
    out = tmp_path / "result.json"
    rows = make_rows(8, 1, seed=4)
    from distributed_helpers import free_port_run

    cmd = [str(launcher if launcher.exists() else shutil.which("mlx.launch")), "-n", "2", "--backend", "ring",
           "--starting-port", str(free_port_run(2)), "--",
           sys.executable, str(script), str(folders[("bert", True)]), str(out), json.dumps(rows)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    if not out.exists():
        if "ring" in proc.stderr.lower() and "error" in proc.stderr.lower():
            pytest.skip(f"ring backend unavailable: {proc.stderr[-300:]}")
        raise AssertionError(proc.stdout[-2000:] + proc.stderr[-3000:])
    result = json.loads(out.read_text())
    print("two processes:", result)
    size, local_b = result["size"], result["local_b"]
    assert size == 2
    losses_per_rank = np.array(result["losses"])  # (rank, [gather, cached mean, cached pylate])
    np.testing.assert_allclose(losses_per_rank[:, 1], losses_per_rank[:, 0], rtol=1e-5)
    np.testing.assert_allclose(losses_per_rank[:, 2], losses_per_rank[:, 0], rtol=1e-5)
    assert losses_per_rank[:, 0].sum() == pytest.approx(size * size * result["full_loss"], rel=1e-5)
    assert result["sum_vs_full"] < GRAD_RTOL * result["grad_scale"]
    assert np.max(result["local_cmp"]) < GRAD_RTOL * result["grad_scale"] * size


# --- memory --------------------------------------------------------------------------------------
MEMORY_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, {tests!r})
    import mlx_hf_bridge
    import mlx.core as mx
    from mlx_hf_bridge.pylate import losses, models
    model = models.ColBERT({folder!r})
    model.train()
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()
    texts = [" ".join(words[(i + j) % len(words)] for j in range(40)) for i in range(64)]
    features = [model.tokenize(texts, is_query=c == 0, pad=True) for c in range(3)]
    mx.eval(model.parameters())
    out = {{}}
    for mini in (4, 64):
        loss = losses.CachedContrastive(model, mini_batch_size=mini)
        loss.value_and_grad(features)  # warm-up
        mx.clear_cache(); mx.reset_peak_memory()
        base = mx.get_active_memory()
        value, grads = loss.value_and_grad(features)
        mx.eval(value, grads)
        out[mini] = mx.get_peak_memory() - base
        del value, grads
    print(json.dumps(out))
    """
)


def test_cached_contrastive_peak_memory_follows_mini_batch(tmp_path_factory, tiny_modernbert_dir):
    """Batch 64: peak memory with mini-batch 4 is well below mini-batch 64 (a GradCache that kept
    every slice's graph would not be)."""
    from pathlib import Path

    import torch
    from pylate import models

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("mem-colbert")
    models.ColBERT(str(tiny_modernbert_dir), device="cpu", query_length=32, document_length=48).save(str(folder))
    script = MEMORY_SCRIPT.format(tests=str(Path(__file__).parent), folder=str(folder))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import json

    peaks = {int(k): v for k, v in json.loads(proc.stdout.strip().splitlines()[-1]).items()}
    print("peak bytes above baseline:", peaks)
    assert peaks[4] > 0
    assert peaks[4] * 2 < peaks[64], peaks

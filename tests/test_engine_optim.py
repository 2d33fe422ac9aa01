"""AdamW, clipping, decay groups and schedules against the torch / transformers originals."""

from __future__ import annotations

import math
import sys

import mlx_hf_bridge  # noqa: F401  (BLAS preload before mlx.core)
import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
import torch

from mlx_hf_bridge import kernels
from mlx_hf_bridge.engine.optim import (
    AdamW, Schedule, clip_by_global_norm, clip_coefficient, decay_parameter_names, global_norm, warmup_steps_for,
)


def _torch_sched(name, warmup, total, **kw):
    from transformers import get_scheduler

    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = get_scheduler(name, opt, num_warmup_steps=warmup, num_training_steps=total, scheduler_specific_kwargs=kw)
    lrs = []
    for _ in range(total + 2):
        lrs.append(opt.param_groups[0]["lr"])  # the lr the optimizer step uses, as HF logs it
        opt.step()
        sched.step()
    return lrs


SCHEDULE_NAMES = ["linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts", "polynomial"]


@pytest.mark.parametrize("name", SCHEDULE_NAMES)
@pytest.mark.parametrize("warmup", [0, 3, 0.25])
def test_schedules_match_transformers(name, warmup):
    total = 17
    steps = warmup_steps_for(warmup, total)
    kw = {"num_cycles": 2} if name == "cosine_with_restarts" else {}
    expected = _torch_sched(name, steps, total, **kw)
    ours = Schedule(name, steps, total, base_lr=1.0, **kw)
    got = [ours.factor(s) for s in range(total + 2)]
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)


def test_warmup_ratio_is_ceil_of_total():
    from transformers import TrainingArguments

    for ratio, total in [(0.1, 95), (0.05, 7), (0.5, 3), (3, 10)]:
        ta = TrainingArguments(output_dir="unused", warmup_steps=ratio, report_to=[])
        assert warmup_steps_for(ratio, total) == ta.get_warmup_steps(total)
    assert warmup_steps_for(0.1, 95) == math.ceil(9.5)


def test_unsupported_schedule_is_clear():
    with pytest.raises(ValueError, match="inverse_sqrt.*not available on MLX"):
        Schedule("inverse_sqrt", 0, 10)


def _two_group_problem(seed=0):
    rng = np.random.default_rng(seed)
    shapes = {"dense.weight": (5, 4), "dense.bias": (5,), "LayerNorm.weight": (4,), "proj.weight": (3, 5)}
    params = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    grads = [{k: rng.standard_normal(s).astype(np.float32) * 3 for k, s in shapes.items()} for _ in range(6)]
    return params, grads


@pytest.mark.parametrize("path", ["cpu-kernel", "mlx-ops"])
def test_adamw_matches_torch_two_groups(path, monkeypatch):
    if path == "mlx-ops":
        monkeypatch.setattr(kernels, "applies", lambda *arrays: False)
    elif sys.platform.startswith("linux"):
        assert kernels.available(), kernels.status()
    params, grads = _two_group_problem()
    decay = ["dense.weight", "proj.weight"]
    no_decay = ["dense.bias", "LayerNorm.weight"]
    lrs = [1e-2, 5e-3, 2e-3, 1e-3, 7e-4, 0.0]  # a schedule, incl. a zero-lr step

    tp = {k: torch.nn.Parameter(torch.tensor(v)) for k, v in params.items()}
    topt = torch.optim.AdamW(
        [{"params": [tp[k] for k in decay], "weight_decay": 0.1},
         {"params": [tp[k] for k in no_decay], "weight_decay": 0.0}],
        lr=1.0, betas=(0.9, 0.98), eps=1e-6,
    )
    opt = AdamW([{"params": decay, "lr": 1.0, "weight_decay": 0.1}, {"params": no_decay, "lr": 1.0, "weight_decay": 0.0}],
                betas=(0.9, 0.98), eps=1e-6)
    ours = {k: mx.array(v) for k, v in params.items()}
    for g, lr in zip(grads, lrs):
        for group in topt.param_groups:
            group["lr"] = lr
        for k, p in tp.items():
            p.grad = torch.tensor(g[k])
        topt.step()
        ours = opt.update(ours, {k: mx.array(v) for k, v in g.items()}, lr_factor=lr)
        mx.eval(ours)
    for k in params:
        np.testing.assert_allclose(np.array(ours[k]), tp[k].detach().numpy(), rtol=1e-6, atol=1e-7)
    assert opt.step == len(lrs)


def test_compute_then_discard_leaves_state_untouched():
    params, grads = _two_group_problem(1)
    opt = AdamW([{"params": list(params), "lr": 0.1, "weight_decay": 0.0}])
    p = {k: mx.array(v) for k, v in params.items()}
    g = {k: mx.array(v) for k, v in grads[0].items()}
    opt.compute(p, g, 1.0)  # not committed
    assert opt.step == 0 and not opt.exp_avg


@pytest.mark.parametrize("max_norm", [0.5, 1.0, 1e6])
def test_clipping_matches_torch(max_norm):
    _, grads = _two_group_problem(2)
    g = grads[0]
    tparams = [torch.nn.Parameter(torch.zeros(v.shape)) for v in g.values()]
    for p, v in zip(tparams, g.values()):
        p.grad = torch.tensor(v)
    tnorm = torch.nn.utils.clip_grad_norm_(tparams, max_norm)
    clipped, norm = clip_by_global_norm({k: mx.array(v) for k, v in g.items()}, max_norm)
    assert float(norm) == pytest.approx(float(tnorm), rel=1e-6)  # logged before clipping
    for p, k in zip(tparams, g):
        np.testing.assert_allclose(np.array(clipped[k]), p.grad.numpy(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("path", ["cpu-kernel", "mlx-ops"])
def test_clipped_adamw_steps_match_torch(path, monkeypatch):
    """The trainer's step: global norm (one threaded pass per tensor on the kernel path), then the
    clipping coefficient applied inside the AdamW pass (``grad_scale``) = torch's
    ``clip_grad_norm_`` then ``AdamW.step``, over steps that clip and steps that do not."""
    rng = np.random.default_rng(7)
    shapes = {"big.weight": (300, 700), "dense.weight": (5, 4), "dense.bias": (5,)}  # 210k: several threads
    if path == "mlx-ops":
        monkeypatch.setattr(kernels, "applies", lambda *arrays: False)
        # MLX's CPU reduction sums float32 in sequence: 2.4e-5 relative off at 210k elements here
        shapes["big.weight"] = (30, 70)
    params = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    tp = {k: torch.nn.Parameter(torch.tensor(v)) for k, v in params.items()}
    topt = torch.optim.AdamW(list(tp.values()), lr=1e-2, weight_decay=0.01)
    opt = AdamW([{"params": list(params), "lr": 1e-2, "weight_decay": 0.01}])
    ours = {k: mx.array(v) for k, v in params.items()}
    for step, size in enumerate([3.0, 1e-4, 3.0]):  # clips, does not clip, clips
        g = {k: (rng.standard_normal(s) * size).astype(np.float32) for k, s in shapes.items()}
        for k, p in tp.items():
            p.grad = torch.tensor(g[k])
        tnorm = torch.nn.utils.get_total_norm([p.grad for p in tp.values()])
        norm = global_norm({k: mx.array(v) for k, v in g.items()})
        exact = np.sqrt(sum((v.astype(np.float64) ** 2).sum() for v in g.values()))
        if path == "cpu-kernel":  # accumulated in double: closer to the exact norm than torch's float32
            assert float(norm) == pytest.approx(exact, rel=1e-7), step
        # torch's own float32 reduction is up to 1.2e-6 off the exact norm on these gradients
        assert float(norm) == pytest.approx(float(tnorm), rel=2e-6), step
        coef = clip_coefficient(norm, 1.0)
        # clip_grad_norm_'s in-place scaling, with our coefficient (Adam amplifies the norms' 1e-6 gap)
        torch.nn.utils.clip_grads_with_norm_(list(tp.values()), 1.0, torch.tensor(float(norm)))
        topt.step()
        new, moments = opt.compute(ours, {k: mx.array(v) for k, v in g.items()}, 1.0, grad_scale=coef)
        opt.commit(moments)
        ours = new
        for k in params:
            # torch's vectorised ops and the kernel fuse multiply-adds differently: rounding at the
            # parameters' scale (bit-identical to clipping first: the same kernel, pre-scaled grads)
            want = tp[k].detach().numpy()
            assert np.abs(np.array(ours[k]) - want).max() <= 1e-6 * np.abs(want).max(), (step, k)


@pytest.mark.parametrize("path", ["cpu-kernel", "mlx-ops"])
def test_grad_scale_inside_adamw_is_clipping_first(path, monkeypatch):
    if path == "mlx-ops":
        monkeypatch.setattr(kernels, "applies", lambda *arrays: False)
    params, grads = _two_group_problem(3)
    coef = mx.array(0.37)
    p = {k: mx.array(v) for k, v in params.items()}
    fused, _ = AdamW([{"params": list(params), "lr": 0.1, "weight_decay": 0.01}]).compute(
        p, {k: mx.array(v) for k, v in grads[0].items()}, 1.0, grad_scale=coef)
    first, _ = AdamW([{"params": list(params), "lr": 0.1, "weight_decay": 0.01}]).compute(
        p, {k: mx.array(v) * coef for k, v in grads[0].items()}, 1.0)
    for k in params:
        assert np.array_equal(np.array(fused[k]), np.array(first[k])), k


def test_decay_groups_match_transformers(tiny_bert_dir, tiny_modernbert_dir):
    """Same parameter names as transformers' Trainer.get_decay_parameter_names on the torch twin."""
    from transformers import AutoModel
    from transformers.trainer_pt_utils import get_parameter_names

    from mlx_hf_bridge import loading

    patterns = [r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)"]
    for folder in (tiny_bert_dir, tiny_modernbert_dir):
        tmodel = AutoModel.from_pretrained(str(folder))
        expected = set(get_parameter_names(tmodel, [torch.nn.LayerNorm], patterns))
        mmodel = loading.load_encoder(folder)[0]
        ours = set(decay_parameter_names(mmodel))
        assert ours and ours == expected


def test_decay_rule_on_names():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.dense = nn.Linear(2, 2)
            self.final_norm = nn.LayerNorm(2)
            self.norm = nn.RMSNorm(2)
            self.LayerNorm = nn.LayerNorm(2)
            self.proj = nn.Linear(2, 2, bias=False)

    assert sorted(decay_parameter_names(M())) == ["dense.weight", "proj.weight"]


@pytest.mark.skipif(not kernels.available(), reason="the fused AdamW is a CPU kernel")
def test_fused_adamw_reuses_buffers_only_nothing_else_holds():
    n = 1 << 20  # 4 MiB per buffer
    rng = np.random.default_rng(0)
    p, g = (mx.array(rng.standard_normal(n).astype(np.float32)) for _ in range(2))
    m, v = mx.zeros((n,)), mx.zeros((n,))
    mx.eval(p, g, m, v)
    args = ((0.9, 0.999), 1 - 1e-3, 1e-2, math.sqrt(1 - 0.999), 1e-8)
    kept, kept_values = p, np.array(p)
    p1, m1, v1 = kernels.adamw(p, g, m, v, *args)
    del p, m, v
    mx.eval(p1, m1, v1)
    np.testing.assert_array_equal(np.array(kept), kept_values)  # a buffer someone holds is never written

    held = [mx.array(np.array(x)) for x in (p1, m1, v1)]  # copies, held here: updated out of place
    expected = kernels.adamw(held[0], g, held[1], held[2], *args)
    mx.eval(expected)
    mx.reset_peak_memory()
    base = mx.get_active_memory()
    p2, m2, v2 = kernels.adamw(p1, g, m1, v1, *args)
    del p1, m1, v1  # nothing else holds them now
    mx.eval(p2, m2, v2)
    assert mx.get_peak_memory() < base + n * 4  # not one new buffer: updated in place
    for ours, ref in zip((p2, m2, v2), expected):
        np.testing.assert_array_equal(np.array(ours), np.array(ref))

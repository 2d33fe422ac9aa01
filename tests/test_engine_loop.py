"""The engine's loop: accumulation, logging, callbacks, checkpointing recompute, precision, NaN guard."""

from __future__ import annotations

import math
import warnings

import mlx_hf_bridge  # noqa: F401
import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten
from test_engine_standin import Block, CountingVG, TinyContrastive, TinyEncoder, pairs, weights

from mlx_hf_bridge import kernels
from mlx_hf_bridge.engine import AdamW, NonFiniteLossError, Schedule, StepRunner, clip_by_global_norm
from mlx_hf_bridge.engine.remat import find_layer_class, gradient_checkpointing
from mlx_hf_bridge.sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments


def make(tmp_path, n=10, model=None, loss_cls=TinyContrastive, dataset=None, callbacks=None, **kw):
    model = model or TinyEncoder(dropout=0.0)
    base = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=2, num_train_epochs=1,
                learning_rate=1e-2, logging_steps=1, save_strategy="no", disable_tqdm=True)
    base.update(kw)
    args = SentenceTransformerTrainingArguments(**base)
    return SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset or pairs(n),
                                      loss=loss_cls(model), callbacks=callbacks)


def test_accumulation_keeps_partial_last_window_and_matches_manual_loop(tmp_path):
    trainer = make(tmp_path, n=10, gradient_accumulation_steps=2, warmup_steps=1, weight_decay=0.01,
                   max_grad_norm=0.5, lr_scheduler_type="linear")
    ref_model = TinyEncoder(dropout=0.0)
    ref_loss = TinyContrastive(ref_model)
    sampler = trainer.get_train_batch_sampler()
    sampler.set_epoch(0)
    batches = list(sampler)
    assert len(batches) == 5
    windows = [batches[0:2], batches[2:4], batches[4:5]]  # the 1-batch window is kept (HF)

    out = trainer.train()
    assert out.global_step == 3 and trainer.state.max_steps == 3
    assert trainer.loss.calls == 5

    opt = AdamW.for_model(ref_model, 1e-2, 0.01)
    sched = Schedule("linear", 1, 3)
    params = dict(tree_flatten(ref_model.trainable_parameters()))
    logs = [h for h in trainer.state.log_history if "loss" in h]
    for step, window in enumerate(windows):
        losses, acc = [], None
        for idx in window:
            _, feats, labels = trainer.loss_inputs(trainer.collate(idx))
            ref_model.update(__import__("mlx.utils", fromlist=["x"]).tree_unflatten(list(params.items())))
            loss, grads = nn.value_and_grad(ref_model, ref_loss)(feats, labels)
            grads = dict(tree_flatten(grads))
            losses.append(loss.item())
            acc = {k: g / len(window) for k, g in grads.items()} if acc is None else {
                k: acc[k] + g / len(window) for k, g in grads.items()}
        clipped, norm = clip_by_global_norm(acc, 0.5)
        params = opt.update(params, clipped, sched.factor(step))
        mx.eval(params)
        assert logs[step]["loss"] == pytest.approx(np.mean(losses), rel=1e-5)
        assert logs[step]["grad_norm"] == pytest.approx(norm.item(), rel=1e-5)  # before clipping
        assert logs[step]["learning_rate"] == pytest.approx(1e-2 * sched.factor(step))
        assert logs[step]["step"] == step + 1
    assert [h["epoch"] for h in logs] == pytest.approx([0.4, 0.8, 1.0])
    ours = weights(trainer.model)
    for k, v in params.items():
        np.testing.assert_allclose(ours[k], np.array(v), rtol=1e-5, atol=1e-6)
    final = trainer.state.log_history[-1]
    assert {"train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss"} <= set(final)
    assert out.training_loss == pytest.approx(np.mean([h["loss"] for h in logs]))


def test_same_seed_same_weights_with_dropout(tmp_path):
    a = make(tmp_path / "a", model=TinyEncoder(dropout=0.3), num_train_epochs=2)
    b = make(tmp_path / "b", model=TinyEncoder(dropout=0.3), num_train_epochs=2)
    c = make(tmp_path / "c", model=TinyEncoder(dropout=0.3), num_train_epochs=2, seed=7)
    a.train(), b.train(), c.train()
    wa, wb, wc = weights(a.model), weights(b.model), weights(c.model)
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)
    assert any(not np.array_equal(wa[k], wc[k]) for k in wa)


def test_real_transformers_callback_and_control(tmp_path):
    from transformers import TrainerCallback

    class Recorder(TrainerCallback):
        def __init__(self):
            self.events, self.logs = [], []

        def on_train_begin(self, args, state, control, **kwargs):
            self.events.append("begin")
            assert kwargs["model"] is not None

        def on_log(self, args, state, control, logs=None, **kwargs):
            self.logs.append(dict(logs))

        def on_step_end(self, args, state, control, **kwargs):
            self.events.append(f"step{state.global_step}")
            if state.global_step == 2:
                control.should_training_stop = True

        def on_save(self, args, state, control, **kwargs):
            self.events.append("save")

        def on_train_end(self, args, state, control, **kwargs):
            self.events.append("end")

    rec = Recorder()
    trainer = make(tmp_path, callbacks=[rec], save_strategy="steps", save_steps=100)
    out = trainer.train()
    assert out.global_step == 2
    assert rec.events == ["begin", "step1", "step2", "end"]  # stopped by the callback: no final save
    assert [set(l) for l in rec.logs[:2]] == [{"loss", "grad_norm", "learning_rate", "epoch"}] * 2


def test_value_and_grad_of_the_loss_is_preferred(tmp_path):
    trainer = make(tmp_path, loss_cls=CountingVG, gradient_accumulation_steps=2)
    trainer.train()
    assert trainer.loss.vg_calls == 5


def test_gradient_checkpointing_recomputes_each_layer(tmp_path):
    def run(gc):
        trainer = make(tmp_path / str(gc), n=4, per_device_train_batch_size=4, max_steps=1, gradient_checkpointing=gc)
        Block.calls = 0
        trainer.train()
        return Block.calls, weights(trainer.model)

    plain_calls, plain_w = run(False)
    ckpt_calls, ckpt_w = run(True)
    assert plain_calls == 4  # 2 layers x (query + positive)
    assert ckpt_calls == 8  # each layer runs again in the backward pass
    assert Block.__call__ is Block.__dict__["__call__"] and not hasattr(Block.__call__, "_mlx_hf_bridge_checkpointed")
    for k in plain_w:
        np.testing.assert_allclose(ckpt_w[k], plain_w[k], rtol=1e-5, atol=1e-6)


def test_checkpointed_dropout_uses_the_forward_masks():
    """mx.checkpoint re-runs the layer in backward; dropout must not draw new masks there."""
    mx.random.seed(0)
    model = TinyEncoder(dropout=0.5, layers=1)
    model.train()
    feats = model.tokenize(["a b c", "d e f g"])
    c = mx.random.normal((2, 8, 16))

    def fn(params):
        model.update(params)
        mask = feats["attention_mask"].astype(mx.float32)
        h0 = model.embeddings(feats["input_ids"])
        h1 = model.layers[0](h0, mask)
        return (h1 * c).sum(), (h0, h1)

    with gradient_checkpointing(model) as cls:
        assert cls is Block
        Block.calls = 0
        (_, (h0, h1)), grads = mx.value_and_grad(fn)(model.trainable_parameters())
        mx.eval(grads, h0, h1)
        assert Block.calls == 2
    # d/dLayerNorm.bias of sum(c * (h0 + drop(LN(...)) * m)) = sum over rows of c * keep/p * m
    kept = (np.array(h1) - np.array(h0)) != 0
    expected = (np.array(c) * kept / 0.5).sum(axis=(0, 1))
    np.testing.assert_allclose(np.array(grads["layers"][0]["LayerNorm"]["bias"]), expected, rtol=1e-5, atol=1e-5)


def test_gradient_checkpointing_on_real_encoders(tiny_bert_dir, tiny_modernbert_dir):
    from mlx_hf_bridge import loading

    for folder in (tiny_bert_dir, tiny_modernbert_dir):
        enc = loading.load_encoder(folder)[0]
        cls = find_layer_class(enc)
        assert cls.__name__ in ("BertLayer", "ModernBertEncoderLayer")
        ids = mx.array(np.arange(2, 26, dtype=np.int32).reshape(2, 12))
        mask = mx.array(np.array([[1] * 12, [1] * 7 + [0] * 5], dtype=np.int32))

        def loss(params):
            enc.update(params)
            return (enc(ids, mask) ** 2).mean()

        params = enc.trainable_parameters()
        g0 = dict(tree_flatten(mx.grad(loss)(params)))
        calls = {"n": 0}
        original = cls.__call__

        def counting(self, *a, **k):
            calls["n"] += 1
            return original(self, *a, **k)

        cls.__call__ = counting
        try:
            with gradient_checkpointing(enc):
                g1 = dict(tree_flatten(mx.grad(loss)(params)))
                mx.eval(g1)
        finally:
            cls.__call__ = original
        assert calls["n"] == 2 * len(enc.layers)
        for k in g0:
            np.testing.assert_allclose(np.array(g1[k]), np.array(g0[k]), rtol=1e-4, atol=1e-6)


class NaNAfter(TinyContrastive):
    nan_from = 4  # the call number (1-based) from which the loss is NaN

    def __call__(self, features, labels=None):
        loss = super().__call__(features, labels)
        return loss * float("nan") if self.calls >= self.nan_from else loss


def test_nan_loss_stops_names_step_and_keeps_last_good_checkpoint(tmp_path):
    seen = {}

    class Snapshot:
        def on_step_end(self, args, state, control, model=None, **kwargs):
            seen[state.global_step] = weights(model)

    trainer = make(tmp_path, loss_cls=NaNAfter, save_strategy="steps", save_steps=2, callbacks=[Snapshot()])
    with pytest.raises(NonFiniteLossError, match=r"step 4 .*checkpoint-2"):
        trainer.train()
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-2"]
    now = weights(trainer.model)
    assert all(np.array_equal(now[k], seen[3][k]) for k in now)  # the NaN update was not applied


def test_bf16_on_cpu_warns_once_and_trains_fp32(tmp_path):
    mx.set_default_device(mx.cpu)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from mlx_hf_bridge.engine import step as step_mod

        step_mod._warned.discard("cpu-half")
        make(tmp_path / "a", bf16=True, max_steps=2).train()
        make(tmp_path / "b", bf16=True, max_steps=2).train()
    msgs = [str(w.message) for w in caught if "float32" in str(w.message)]
    assert len(msgs) == 1


def test_half_compute_keeps_fp32_masters_and_grads():
    model = TinyEncoder(dropout=0.0)
    loss = TinyContrastive(model)
    feats = [model.tokenize(["a b", "c d"]), model.tokenize(["e f", "g h"])]
    ref = StepRunner(model, AdamW.for_model(model, 1e-3), 1.0).micro_grads(loss, feats, None)
    runner = StepRunner(model, AdamW.for_model(model, 1e-3), 1.0, compute_dtype=mx.bfloat16)
    loss_val, grads = runner.micro_grads(loss, feats, None)
    assert all(g.dtype == mx.float32 for g in grads.values())
    assert abs(loss_val.item() - ref[0].item()) < 0.05
    runner.step([(loss, feats, None)], 1.0)
    assert all(v.dtype == mx.float32 for _, v in tree_flatten(model.parameters()))


def test_compiled_step_matches_eager(tmp_path):
    eager = make(tmp_path / "e", model=TinyEncoder(dropout=0.2), max_steps=3)
    comp = make(tmp_path / "c", model=TinyEncoder(dropout=0.2), max_steps=3, torch_compile=True)
    eager.train(), comp.train()
    we, wc = weights(eager.model), weights(comp.model)
    for k in we:
        np.testing.assert_allclose(wc[k], we[k], rtol=1e-4, atol=1e-5)
    le = [h["loss"] for h in eager.state.log_history if "loss" in h]
    lc = [h["loss"] for h in comp.state.log_history if "loss" in h]
    assert np.allclose(le, lc, rtol=1e-4) and all(math.isfinite(x) for x in lc)


def test_step_never_writes_arrays_the_caller_still_holds():
    """The update runs in place only on buffers nothing else references (kernel donation): weights
    and moments a caller kept from before the step keep their values."""
    model = TinyEncoder(dropout=0.0)
    loss = TinyContrastive(model)
    feats = [model.tokenize(["a b", "c d"]), model.tokenize(["e f", "g h"])]
    runner = StepRunner(model, AdamW.for_model(model, 1e-2), 1.0)
    runner.step([(loss, feats, None)], 1.0)
    held = dict(tree_flatten(model.trainable_parameters()))
    held_moments = dict(runner.optimizer.exp_avg)
    before = {k: np.array(v) for k, v in held.items()}
    before_moments = {k: np.array(v) for k, v in held_moments.items()}
    runner.step([(loss, feats, None)], 1.0)
    after = dict(tree_flatten(model.trainable_parameters()))
    assert all(np.array_equal(np.array(held[k]), before[k]) for k in held)
    assert all(np.array_equal(np.array(held_moments[k]), before_moments[k]) for k in held_moments)
    assert any(not np.array_equal(np.array(after[k]), before[k]) for k in after)  # the step did update


@pytest.mark.skipif(not kernels.available(), reason="the fused AdamW is a CPU kernel")
def test_step_updates_weights_and_moments_in_place():
    """After the first step nothing but the runner holds the weights and moments, so the update
    allocates none of them anew: the step's peak is its forward product and gradient only."""
    n = 1 << 21  # 8 MiB per buffer: far above everything else the step allocates

    class Big(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = mx.random.normal((n,))

    class Dot:
        def __init__(self, model):
            self.model = model

        def __call__(self, features, labels):
            return (self.model.weight * features).sum()

    model, x = Big(), mx.random.normal((n,))
    mx.eval(model.parameters(), x)
    runner = StepRunner(model, AdamW.for_model(model, 1e-3), 1.0)
    runner.step([(Dot(model), x, None)], 1.0)
    mx.reset_peak_memory()
    base = mx.get_active_memory()
    runner.step([(Dot(model), x, None)], 1.0)
    assert mx.get_peak_memory() - base < 3 * n * 4  # product + gradient; not 3 more for p, m, v

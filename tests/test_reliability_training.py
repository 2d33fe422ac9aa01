"""Training faults: the non-finite guard (loss, gradient norm, weights) and truthful "good"
checkpoints, the output_dir lock, and the output_dir pre-flight before the first step."""

from __future__ import annotations

import errno
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import mlx_hf_bridge  # noqa: F401
import mlx.core as mx
import numpy as np
import pytest
from test_engine_standin import TinyContrastive, TinyEncoder, pairs, weights

from mlx_hf_bridge.engine import NonFiniteLossError, health, lock
from mlx_hf_bridge.engine.step import NonFiniteWeightsError, model_is_damaged
from mlx_hf_bridge.sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

TESTS = Path(__file__).parent


class StepCounter:
    def __init__(self):
        self.steps = 0

    def on_step_begin(self, args, state, control, **kwargs):
        self.steps += 1


def make(out, n=10, model=None, callbacks=None, **kw):
    model = model or TinyEncoder(dropout=0.0)
    base = dict(output_dir=str(out), per_device_train_batch_size=2, num_train_epochs=1, learning_rate=1e-2,
                logging_steps=1, save_strategy="steps", save_steps=1, disable_tqdm=True)
    base.update(kw)
    args = SentenceTransformerTrainingArguments(**base)
    return SentenceTransformerTrainer(model=model, args=args, train_dataset=pairs(n), loss=TinyContrastive(model),
                                      callbacks=callbacks)


def record(path):
    return json.loads((Path(path) / health.HEALTH_FILE).read_text())


def max_abs_saved(path):
    return max(float(np.abs(np.array(v)).max()) for v in mx.load(str(Path(path) / "model.safetensors")).values())


def listing(root):
    root = Path(root)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else None


# --- the non-finite guard and good checkpoints --------------------------------------------------
def test_lr_1e30_names_the_truthful_last_good_checkpoint_and_resume_skips_the_exploded_one(tmp_path, caplog):
    out = tmp_path / "out"
    # linear warm-up: step 1 runs at lr 0 (checkpoint-1 = the initial weights), step 2 at 5e29
    first = make(out, learning_rate=1e30, warmup_steps=2, lr_scheduler_type="linear")
    with pytest.raises(NonFiniteLossError) as info:
        first.train()
    msg = str(info.value)
    assert info.value.cause == "loss" and not info.value.applied
    assert "Training stopped at step 3" in msg and "loss=nan" in msg
    assert f"Last good checkpoint: {out / 'checkpoint-1'} (" in msg
    assert "checkpoint-2: the step after it (step 3) gave a non-finite loss" in msg
    assert "lower learning_rate (it is 1e+30)" in msg and "resumes from checkpoint-1" in msg

    # checkpoint-2's weights are finite but exploded: what the old guard called "last good"
    bad, good = record(out / "checkpoint-2"), record(out / "checkpoint-1")
    assert bad["weights_finite"] is True and bad["max_abs_weight"] > 1e20
    assert bad["max_abs_weight"] == pytest.approx(max_abs_saved(out / "checkpoint-2"))
    assert bad["verified"] == "failed" and bad["verified_by_step"] == 3 and bad["next_step_loss"] == "nan"
    assert good["verified"] == "ok" and good["verified_by_step"] == 2 and math_finite(good["next_step_loss"])
    assert good["max_abs_weight"] == pytest.approx(max_abs_saved(out / "checkpoint-1"))

    # following the advice works: resume=True takes checkpoint-1, says why checkpoint-2 was skipped
    second = make(out, learning_rate=1e-3, warmup_steps=2, lr_scheduler_type="linear")
    with caplog.at_level(logging.WARNING, logger="mlx_hf_bridge.engine.health"):
        result = second.train(resume_from_checkpoint=True)
    assert any("skipping" in r.message and "checkpoint-2" in r.message and "step 3" in r.message
               for r in caplog.records)
    assert result.global_step == 5
    new_logs = [h for h in second.state.log_history if "loss" in h]
    assert [h["step"] for h in new_logs] == [1, 2, 3, 4, 5]  # step 1's log came with checkpoint-1
    assert all(np.isfinite(h["loss"]) and np.isfinite(h["grad_norm"]) for h in new_logs)
    assert all(np.isfinite(v).all() for v in weights(second.model).values())
    assert record(out / "checkpoint-1")["verified"] == "ok"
    assert record(out / "checkpoint-2")["verified"] == "ok"  # re-saved by the resumed run, then trained from


def math_finite(x):
    return isinstance(x, float) and np.isfinite(x)


def test_no_good_checkpoint_is_named_none_and_resume_true_refuses(tmp_path, caplog):
    out = tmp_path / "out"
    with pytest.raises(NonFiniteLossError, match=r"Last good checkpoint: none \(not good: checkpoint-1: the step "
                                                 r"after it \(step 2\)") as info:
        make(out, learning_rate=1e30).train()
    assert "start a new run" in str(info.value)
    with pytest.raises(ValueError, match=r"No good checkpoint in .*checkpoint-1: .*resume_from_checkpoint=None"):
        make(out, learning_rate=1e-3).train(resume_from_checkpoint=True)
    # naming the bad one explicitly is allowed, with a warning, and fails as the record said
    with caplog.at_level(logging.WARNING, logger="mlx_hf_bridge.engine.health"):
        with pytest.raises(NonFiniteLossError, match=r"Training stopped at step 2 .*loss=nan"):
            make(out, learning_rate=1e-3).train(resume_from_checkpoint=str(out / "checkpoint-1"))
    assert any("Resuming from" in r.message and "although the step after it (step 2)" in r.message
               for r in caplog.records)


def test_finite_loss_but_overflowing_update_raises_weights_error_and_marks_the_model(tmp_path):
    out = tmp_path / "out"
    counter = StepCounter()
    # lr 1e39 is inf in float32: step 2's loss and gradient are finite, its update is not
    trainer = make(out, learning_rate=1e39, warmup_steps=2, lr_scheduler_type="linear", callbacks=[counter])
    with pytest.raises(NonFiniteWeightsError) as info:
        trainer.train()
    err, msg = info.value, str(info.value)
    assert isinstance(err, NonFiniteLossError) and err.cause == "weights" and err.applied
    assert np.isfinite(err.loss) and np.isfinite(err.grad_norm)
    assert "Training stopped at step 2" in msg and "weight arrays non-finite" in msg and "do not save it" in msg
    assert f"Last good checkpoint: {out / 'checkpoint-1'}" in msg
    assert counter.steps == 2
    assert record(out / "checkpoint-1")["verified"] == "ok"  # step 2 trained from it with a finite loss
    assert model_is_damaged(trainer.model)
    assert not all(np.isfinite(v).all() for v in weights(trainer.model).values())
    with pytest.raises(ValueError, match=r"weights are not finite .*resume_from_checkpoint=True"):
        trainer.train()  # continuing from the overflowed weights is refused
    again = make(out, model=trainer.model, learning_rate=1e-3)  # a trainer keeps its optimizer's lr (as HF)
    assert again.train(resume_from_checkpoint=True).global_step == 5
    assert model_is_damaged(again.model) is None
    assert all(np.isfinite(v).all() for v in weights(again.model).values())


def test_healthy_run_records_each_checkpoint(tmp_path):
    out = tmp_path / "out"
    make(out, save_steps=2, max_steps=4).train()
    mid, last = record(out / "checkpoint-2"), record(out / "checkpoint-4")
    assert mid["weights_finite"] and mid["verified"] == "ok" and mid["verified_by_step"] == 3 and mid["step"] == 2
    assert mid["max_abs_weight"] == pytest.approx(max_abs_saved(out / "checkpoint-2"))
    assert last["weights_finite"] and last["verified"] == "pending"  # nothing trained from it yet
    assert health.latest_good_checkpoint(out) == (out / "checkpoint-4", [])


def test_checkpoint_size_estimate_covers_a_real_checkpoint(tmp_path):
    model = TinyEncoder(dropout=0.0)
    make(tmp_path / "out", model=model, max_steps=1).train()
    saved = sum(p.stat().st_size for p in (tmp_path / "out" / "checkpoint-1").iterdir())
    estimate = lock.checkpoint_bytes(model)
    assert saved <= estimate < saved + 2 * (1 << 20)  # weights + 2 moments exact; JSON allowance on top
    only_model = lock.checkpoint_bytes(model, save_only_model=True)
    assert estimate - only_model == 2 * sum(v.size * 4 for _, v in __import__("mlx.utils").utils.tree_flatten(
        model.trainable_parameters()))


# --- the output_dir lock ------------------------------------------------------------------------
SECOND_RUN = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from test_reliability_training import StepCounter, make
    counter = StepCounter()
    try:
        make({out!r}, callbacks=[counter]).train()
    except Exception as err:
        print("ERROR", type(err).__name__, err)
    print("STEPS", counter.steps)
""")


def test_second_live_trainer_on_the_same_output_dir_is_refused(tmp_path):
    out = tmp_path / "out"
    seen = {}

    class RunSecondDuringFirst:
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == 2:
                code = SECOND_RUN.format(tests=str(TESTS), out=str(out))
                seen["run"] = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                             timeout=600, cwd=str(TESTS), env={**os.environ, "PYTHONPATH": str(
                                                 Path(mlx_hf_bridge.__file__).parent.parent)})

    first = make(out, callbacks=[RunSecondDuringFirst()])
    assert first.train().global_step == 5
    result = seen["run"]
    assert "ERROR OutputDirInUseError" in result.stdout, result.stdout + result.stderr
    assert f"pid {os.getpid()} on host" in result.stdout and "started 20" in result.stdout
    assert "another output_dir, or wait" in result.stdout
    assert "STEPS 0" in result.stdout
    # the first run's checkpoints are all there and its own
    assert sorted(p.name for p in out.iterdir()) == [f"checkpoint-{i}" for i in range(1, 6)]
    for i in range(1, 6):
        assert json.loads((out / f"checkpoint-{i}" / "trainer_state.json").read_text())["global_step"] == i


def test_lock_is_released_when_training_raises_and_a_stale_lock_file_does_not_block(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(NonFiniteLossError):
        make(out, learning_rate=1e30).train()
    assert not (out / lock.LOCK_NAME).exists()
    # a lock file a killed run left behind (no process holds its flock) is taken over
    (out / lock.LOCK_NAME).write_text(json.dumps({"pid": 2 ** 22 + 1, "host": "gone", "started": "2020-01-01"}))
    assert make(out, learning_rate=1e-3, max_steps=2).train().global_step == 2
    assert not (out / lock.LOCK_NAME).exists()


def test_lock_held_in_this_process_refuses_another_trainer_before_any_step(tmp_path):
    out = tmp_path / "out"
    counter = StepCounter()
    with lock.output_dir_lock(out):
        with pytest.raises(lock.OutputDirInUseError, match=rf"pid {os.getpid()} on host"):
            make(out, callbacks=[counter]).train()
    assert counter.steps == 0 and listing(out) is None  # the folder the lock created is gone again


def test_a_file_system_without_flock_trains_unlocked_with_a_warning(tmp_path, monkeypatch, caplog):
    import fcntl

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with caplog.at_level(logging.WARNING, logger="mlx_hf_bridge.engine.lock"):
        assert make(tmp_path / "out", max_steps=1).train().global_step == 1
    assert any("not guarded against a second training run" in r.message for r in caplog.records)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["checkpoint-1"]


# --- pre-flight ---------------------------------------------------------------------------------
def assert_refused_before_any_step(out, exc_type, pattern, root, **kw):
    before = listing(root)
    counter = StepCounter()
    trainer = make(out, callbacks=[counter], **kw)
    with pytest.raises(exc_type, match=pattern) as info:
        trainer.train()
    assert counter.steps == 0
    assert listing(root) == before
    return info.value


def test_output_dir_that_is_a_file_is_refused_before_any_step(tmp_path):
    target = tmp_path / "results"
    target.write_text("my notes")
    assert_refused_before_any_step(target, NotADirectoryError, r"output_dir=.*results' is a file, not a folder\. "
                                   r"Fix: pass a folder", tmp_path)
    assert_refused_before_any_step(target / "run1", NotADirectoryError,
                                   r"cannot be created: .*results is a file", tmp_path)
    assert target.read_text() == "my notes"


def test_read_only_output_dir_is_refused_before_any_step(tmpfs):
    ro = tmpfs("1m", read_only=True)
    err = assert_refused_before_any_step(ro / "out", PermissionError, r"is not writable: the file system is "
                                         r"read-only .*Fix: choose a folder you can write to", ro)
    assert err.errno == errno.EROFS
    assert_refused_before_any_step(ro, PermissionError, r"read-only", ro)


def test_not_writable_folder_is_refused_for_a_non_root_user(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root bypasses mode bits (the read-only tmpfs test covers root)")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert_refused_before_any_step(locked / "out", PermissionError, r"is not writable: permission denied", locked)
    finally:
        locked.chmod(0o700)


def test_too_little_free_space_is_refused_before_any_step_and_only_warned_without_saves(tmpfs, caplog):
    small = tmpfs("64k")  # the estimate for the tiny model is > 1 MiB (JSON allowance)
    err = assert_refused_before_any_step(small / "out", OSError, r"one checkpoint needs about 1\.\d MiB .*but only "
                                         r"\d+\.\d KiB is free .*Fix: free space there, choose another output_dir",
                                         small)
    assert err.errno == errno.ENOSPC
    counter = StepCounter()
    with caplog.at_level(logging.WARNING, logger="mlx_hf_bridge.engine.lock"):
        assert make(small / "out", save_strategy="no", max_steps=2, callbacks=[counter]).train().global_step == 2
    assert counter.steps == 2
    assert any("a final save_model() would fail" in r.message for r in caplog.records)
    assert listing(small) == []


# --- the reported case, on a real PyLate ColBERT (BERT written by transformers) ---------------------
def test_colbert_lr_1e30_stop_names_a_checkpoint_that_resumes_finitely(tmp_path, tiny_bert_dir):
    from mlx_hf_bridge.pylate import losses, models

    out = tmp_path / "out"

    def trainer(lr, model=None):
        model = model or models.ColBERT(str(tiny_bert_dir), query_length=8, document_length=12)
        args = SentenceTransformerTrainingArguments(
            output_dir=str(out), per_device_train_batch_size=2, num_train_epochs=1, learning_rate=lr, warmup_steps=2,
            lr_scheduler_type="linear", logging_steps=1, save_strategy="steps", save_steps=1, disable_tqdm=True)
        return SentenceTransformerTrainer(model=model, args=args, train_dataset=pairs(8, negatives=True),
                                          loss=losses.Contrastive(model))

    first = trainer(1e30)
    estimate = lock.checkpoint_bytes(first.model)
    with pytest.raises(NonFiniteLossError) as info:
        first.train()
    msg = str(info.value)
    last_good = Path(msg.split("Last good checkpoint: ")[1].split(" (")[0])
    assert last_good.name == "checkpoint-1"  # lr 0 at step 1: its weights are the initial ones
    exploded = [p for p in sorted(out.glob("checkpoint-*")) if record(p)["verified"] == "failed"]
    assert exploded and all(record(p)["weights_finite"] and record(p)["max_abs_weight"] > 1e20 for p in exploded)
    assert all(f"{p.name}: the step after it" in msg for p in exploded)
    saved = sum(f.stat().st_size for f in (out / "checkpoint-1").rglob("*") if f.is_file())
    # an upper bound, not a wild one: ~64 bytes per vocabulary entry covers tokenizer.json + vocab.txt
    assert saved <= estimate < 1.25 * saved + 2 * (1 << 20)

    second = trainer(1e-4)
    result = second.train(resume_from_checkpoint=True)
    assert result.global_step == 4
    losses_after = [h["loss"] for h in second.state.log_history if "loss" in h and h["step"] > 1]
    assert len(losses_after) == 3 and all(np.isfinite(losses_after))


def test_weights_check_is_exact_for_huge_finite_weights_and_a_single_nan():
    import mlx.nn as nn

    from mlx_hf_bridge.engine import AdamW, StepRunner

    class Vec(nn.Module):
        def __init__(self, values):
            super().__init__()
            self.weight = mx.array(values, dtype=mx.float32)

    class Zero:  # finite loss, zero gradient: AdamW leaves the weights as they are
        def __init__(self, model):
            self.model = model

        def __call__(self, features, labels):
            return (self.model.weight * features).sum()

    huge = Vec([3e38] * 4)  # finite, but their sum overflows to inf: the quick check must not fire alone
    runner = StepRunner(huge, AdamW.for_model(huge, 1e-3), 1.0)
    runner.step([(Zero(huge), mx.zeros((4,)), None)], 1.0)
    assert np.array_equal(np.array(huge.weight), np.full(4, 3e38, dtype=np.float32))
    assert model_is_damaged(huge) is None

    grows = Vec([1.0, 2.0, 3.0, 3.4e38])
    runner = StepRunner(grows, AdamW.for_model(grows, 1e38), 1.0)  # the last weight overflows to inf
    with pytest.raises(NonFiniteWeightsError, match=r"1 weight arrays non-finite \(e\.g\. \['weight'\]\)"):
        runner.step([(Zero(grows), -mx.ones((4,)), None)], 1.0)
    assert model_is_damaged(grows)
    grows.weight = mx.ones((4,))  # finite weights put back by any means clear the mark
    assert model_is_damaged(grows) is None

"""Checkpoints: layout, rotation, atomic writes, no pickle, and bit-identical resume (incl. SIGKILL)."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import mlx_hf_bridge  # noqa: F401
import numpy as np
import pytest
from test_engine_standin import TinyContrastive, TinyEncoder, pairs, weights

from mlx_hf_bridge.engine import checkpoint as ckpt
from mlx_hf_bridge.sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

TESTS = Path(__file__).parent

# 10 rows / batch 2 = 5 batches per epoch; accumulation 2 -> windows (2, 2, 1): 3 steps per epoch,
# 6 in all. Dropout is on, so the restored MLX key matters; step 4 sits mid-epoch 2.
RUN = dict(per_device_train_batch_size=2, gradient_accumulation_steps=2, num_train_epochs=2, learning_rate=1e-2,
           warmup_steps=0.2, weight_decay=0.01, logging_steps=1, save_steps=2, disable_tqdm=True)


def make(out, callbacks=None, evaluator=None, **kw):
    model = TinyEncoder(dropout=0.3)
    args = SentenceTransformerTrainingArguments(output_dir=str(out), **{**RUN, **kw})
    return SentenceTransformerTrainer(model=model, args=args, train_dataset=pairs(10), loss=TinyContrastive(model),
                                      callbacks=callbacks, evaluator=evaluator)


class StopAt:
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


def assert_same(a: dict, b: dict):
    assert a.keys() == b.keys()
    bad = [k for k in a if not np.array_equal(a[k], b[k])]
    assert not bad, f"not bit-identical: {bad[:3]}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run: final weights and log history."""
    trainer = make(tmp_path_factory.mktemp("ref") / "out")
    trainer.train()
    return weights(trainer.model), trainer.state.log_history


def test_layout_and_hf_compatible_state(tmp_path, reference):
    make(tmp_path / "out", max_steps=2).train()
    folder = tmp_path / "out" / "checkpoint-2"
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "optimizer.safetensors", "optimizer.json", "scheduler.json",
            "rng_state.json", "trainer_state.json", "training_args.json"} <= names
    assert not [n for n in names if n.endswith((".pt", ".pth", ".bin", ".pkl"))]
    from transformers import TrainerState

    state = TrainerState.load_from_json(str(folder / "trainer_state.json"))  # transformers reads our file
    assert state.global_step == 2 and state.max_steps == 2 and state.save_steps == 2 and state.train_batch_size == 2
    assert [h["step"] for h in state.log_history] == [1, 2]
    sched = json.loads((folder / "scheduler.json").read_text())
    assert sched["last_epoch"] == 2 and sched["name"] == "linear"
    assert json.loads((folder / "training_args.json").read_text())["save_steps"] == 2


def test_rotation_keeps_the_newest(tmp_path):
    make(tmp_path / "out", save_steps=1, save_total_limit=2).train()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["checkpoint-5", "checkpoint-6"]


def test_best_checkpoint_survives_rotation_and_is_loaded_at_end(tmp_path):
    def evaluator(model, output_path=None, epoch=None, steps=None):
        return {"score": -abs(steps - 2)}  # best at step 2

    trainer = make(tmp_path / "out", save_steps=1, eval_strategy="steps", eval_steps=1, save_total_limit=1,
                   load_best_model_at_end=True, metric_for_best_model="score", evaluator=evaluator)
    trainer.train()
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("checkpoint")) == ["checkpoint-2", "checkpoint-6"]
    assert trainer.state.best_model_checkpoint.endswith("checkpoint-2")
    assert_same(weights(trainer.model), weights(TinyEncoder(out / "checkpoint-2")))
    assert {"eval_score", "eval_runtime"} <= set(trainer.state.log_history[1])


def test_crash_during_save_leaves_previous_checkpoint_intact(tmp_path):
    trainer = make(tmp_path / "out")

    def crash(tmp_dir):
        if tmp_dir.name.startswith(".checkpoint-4"):
            assert (tmp_dir / "model.safetensors").exists()  # half written when the crash hits
            raise KeyboardInterrupt("simulated kill mid-save")

    trainer._before_commit_hook = crash
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["checkpoint-2"]
    assert ckpt.latest_checkpoint(tmp_path / "out").name == "checkpoint-2"


def test_resume_in_process_is_bit_identical_and_unpickled(tmp_path, reference, monkeypatch):
    first = make(tmp_path / "out", callbacks=[StopAt(4)])
    assert first.train().global_step == 4
    assert ckpt.latest_checkpoint(tmp_path / "out").name == "checkpoint-4"

    def no_pickle(*a, **k):
        raise AssertionError("pickle used on the resume path")

    monkeypatch.setattr(pickle, "load", no_pickle)
    monkeypatch.setattr(pickle, "loads", no_pickle)
    monkeypatch.setattr(pickle, "Unpickler", no_pickle)
    second = make(tmp_path / "out")
    out = second.train(resume_from_checkpoint=True)
    assert out.global_step == 6
    ref_w, ref_logs = reference
    assert_same(weights(second.model), ref_w)
    # the resumed log history continues the first run's and matches the uninterrupted one
    ref_losses = [h["loss"] for h in ref_logs if "loss" in h]
    got = [h["loss"] for h in second.state.log_history if "loss" in h]
    assert got == ref_losses


def test_resume_errors_are_clear(tmp_path):
    trainer = make(tmp_path / "out")
    with pytest.raises(ValueError, match="No valid checkpoint found"):
        trainer.train(resume_from_checkpoint=True)
    bad = tmp_path / "torch-ckpt"
    bad.mkdir()
    (bad / "optimizer.pt").write_bytes(b"x")
    with pytest.raises(ValueError, match="not a complete.*save_only_model.*pickles"):
        trainer.train(resume_from_checkpoint=str(bad))


SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    os.environ["HF_HUB_OFFLINE"] = "1"
    from test_engine_checkpoint import make
    from test_engine_standin import weights
    import numpy as np

    out, mode, step = sys.argv[1], sys.argv[2], int(sys.argv[3])

    class Kill:
        def on_step_end(self, args, state, control, **kw):
            if mode == "kill" and state.global_step == step:
                os.kill(os.getpid(), signal.SIGKILL)

    trainer = make(out, callbacks=[Kill()])
    if mode == "kill_in_save":
        def hook(tmp):
            if tmp.name.startswith(f".checkpoint-{{step}}"):
                os.kill(os.getpid(), signal.SIGKILL)
        trainer._before_commit_hook = hook
    trainer.train(resume_from_checkpoint=True if mode == "resume" else None)
    np.savez(os.path.join(out, "final.npz"), **weights(trainer.model))
    """
)


def _run(script, out, mode, step=0):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([sys.executable, str(script), str(out), mode, str(step)], env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("mode,step,resumes_from", [("kill", 5, "checkpoint-4"), ("kill_in_save", 4, "checkpoint-2")])
def test_sigkill_then_resume_is_bit_identical(tmp_path, reference, mode, step, resumes_from):
    script = tmp_path / "train_script.py"
    script.write_text(SCRIPT.format(tests=str(TESTS)))
    out = tmp_path / "out"
    killed = _run(script, out, mode, step)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert ckpt.latest_checkpoint(out).name == resumes_from
    resumed = _run(script, out, "resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    final = dict(np.load(out / "final.npz"))
    assert_same(final, reference[0])
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # stale temp folders were cleaned

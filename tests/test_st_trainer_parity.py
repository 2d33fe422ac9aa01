"""The loop's bookkeeping against the real sentence-transformers trainer (torch) on the same recipe.

Losses differ (different frameworks, RNGs), but steps, epochs, logged learning rates, log keys,
checkpoint names and trainer_state.json fields must be the same.
"""

from __future__ import annotations

import json

import mlx_hf_bridge  # noqa: F401
import pytest
from test_engine_standin import TinyContrastive, TinyEncoder, pairs

from mlx_hf_bridge.sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments


RECIPE = dict(per_device_train_batch_size=2, gradient_accumulation_steps=2, num_train_epochs=2, learning_rate=1e-3,
              warmup_steps=0.2, weight_decay=0.01, logging_steps=1, save_steps=2, save_total_limit=2, seed=3,
              lr_scheduler_type="cosine", logging_first_step=True)


def _torch_run(out, tiny_bert_dir):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers import SentenceTransformerTrainer as TorchTrainer
    from sentence_transformers import SentenceTransformerTrainingArguments as TorchArgs
    from sentence_transformers.losses import MultipleNegativesRankingLoss

    model = SentenceTransformer(str(tiny_bert_dir), device="cpu")
    args = TorchArgs(output_dir=str(out), report_to="none", disable_tqdm=True, use_cpu=True, **RECIPE)
    trainer = TorchTrainer(model=model, args=args, train_dataset=pairs(10), loss=MultipleNegativesRankingLoss(model))
    trainer.train()
    return trainer.state


def _mlx_run(out):
    model = TinyEncoder()
    args = SentenceTransformerTrainingArguments(output_dir=str(out), disable_tqdm=True, **RECIPE)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=pairs(10), loss=TinyContrastive(model))
    trainer.train()
    return trainer.state


def test_bookkeeping_matches_sentence_transformers(tmp_path, tiny_bert_dir):
    theirs = _torch_run(tmp_path / "torch", tiny_bert_dir)
    ours = _mlx_run(tmp_path / "mlx")
    assert ours.global_step == theirs.global_step == 6 and ours.max_steps == theirs.max_steps

    def rows(state):
        return [(h["step"], round(h["epoch"], 10), h["learning_rate"]) for h in state.log_history if "loss" in h]

    assert [r[:2] for r in rows(ours)] == [r[:2] for r in rows(theirs)]
    for (_, _, a), (_, _, b) in zip(rows(ours), rows(theirs)):
        assert a == pytest.approx(b, rel=1e-12, abs=1e-18)
    assert [set(h) for h in ours.log_history if "loss" in h] == [set(h) for h in theirs.log_history if "loss" in h]
    final_keys = set(theirs.log_history[-1]) - {"total_flos"}
    assert set(ours.log_history[-1]) == final_keys

    names = lambda d: sorted(p.name for p in d.iterdir() if p.name.startswith("checkpoint-"))  # noqa: E731
    assert names(tmp_path / "mlx") == names(tmp_path / "torch") == ["checkpoint-4", "checkpoint-6"]
    ts_ours = json.loads((tmp_path / "mlx" / "checkpoint-6" / "trainer_state.json").read_text())
    ts_theirs = json.loads((tmp_path / "torch" / "checkpoint-6" / "trainer_state.json").read_text())
    assert set(ts_ours) == set(ts_theirs)
    for key in ("global_step", "max_steps", "logging_steps", "save_steps", "eval_steps", "train_batch_size",
                "num_train_epochs", "epoch", "best_metric", "best_global_step", "best_model_checkpoint"):
        assert ts_ours[key] == ts_theirs[key], key

"""ST 6.2's multi-vector training surface against real sentence-transformers 6.2 on torch.

Both sides load the same ST 6-saved ``MultiVectorEncoder`` folder (tiny BERT / ModernBERT, dropout
0), collate the same rows with their own ``MultiVectorEncoderDataCollator`` (features asserted
identical), and train 10 full-batch steps (the whole dataset is one batch, so no sampler order can
differ). Per-step losses must agree within 1e-4 relative and the first step's gradients parameter by
parameter (by HF name) within 1e-4 of that parameter's largest entry (floored at 1e-3 of the largest
entry of any parameter). The trained bridge model, saved, loads in real ST 6.2 with encode_query /
encode_document max|Δ| ≤ 1e-5.

Runs in the ST 6 reference venv: ``.venv-st6/bin/python -m pytest -q tests/test_st6_training.py``.
"""

from __future__ import annotations

import pytest

from slow_cases import split_indices  # noqa: E402

pytest.importorskip("sentence_transformers", minversion="6")

from st6_training_helpers import *  # noqa: E402,F401,F403  (data, variants, step loops, assertions)

pytestmark = pytest.mark.st6


LOSS_CASES = [
    # (loss, variant, n_negatives / documents, optimizer, lr, kwargs)
    ("MultiVectorMultipleNegativesRankingLoss", "bert-fixed", 1, "sgd", 0.2, {}),
    ("MultiVectorMultipleNegativesRankingLoss", "bert-min", 2, "adamw", 2e-3, {"scale": 3.0, "mini_batch_size": 3}),
    ("MultiVectorMultipleNegativesRankingLoss", "modernbert", 0, "adamw", 2e-3, {"score_mini_batch_size": 3}),
    ("MultiVectorMultipleNegativesRankingLoss", "bert-raw", 1, "sgd", 2e-3, {"scale": 0.5}),
    ("CachedMultiVectorMultipleNegativesRankingLoss", "bert-fixed", 1, "sgd", 0.2, {"mini_batch_size": 3}),
    ("CachedMultiVectorMultipleNegativesRankingLoss", "bert-raw", 0, "adamw", 5e-4, {"mini_batch_size": 3, "scale": 0.5}),
    ("CachedMultiVectorMultipleNegativesRankingLoss", "bert-min", 2, "adamw", 2e-3,
     {"mini_batch_size": 8, "mini_batch_num_tokens": 30, "score_mini_batch_size": 2, "scale": 0.5}),
    ("CachedMultiVectorMultipleNegativesRankingLoss", "modernbert", 1, "sgd", 0.1, {"mini_batch_size": 8}),
    ("MultiVectorDistillKLDivLoss", "bert-fixed", 3, "sgd", 0.2, {}),
    ("MultiVectorDistillKLDivLoss", "bert-min", 2, "adamw", 3e-4,
     {"temperature": 2.0, "teacher_temperature": 4.0, "mini_batch_size": 3}),
    ("MultiVectorDistillKLDivLoss", "modernbert", 3, "adamw", 1e-3, {}),
    ("MultiVectorMarginMSELoss", "bert-min", 2, "adamw", 2e-3, {}),
    ("MultiVectorMarginMSELoss", "modernbert", 3, "sgd", 0.005, {"mini_batch_size": 2}),
]


# CI: each loss, each optimizer, ModernBERT once; the rest with the slow tests
@pytest.mark.parametrize("loss_name,variant,n,optimizer,lr,kwargs", split_indices(LOSS_CASES, {0, 3, 4, 8, 10, 11}))
def test_loss_parity(st6_folders, tmp_path, loss_name, variant, n, optimizer, lr, kwargs):
    torch_model, mlx_model = load_pair(st6_folders[variant])

    def make_rows(attempt):
        distinct = attempt > 0
        rows = (contrastive_rows(8, n, seed=attempt, distinct=distinct) if "Ranking" in loss_name
                else scored_rows(6, n, seed=1 + attempt, distinct=distinct))
        if loss_name == "MultiVectorMarginMSELoss" and n == 2:  # one negative: flat teacher margins
            rows = [{**{k: v for k, v in r.items() if k != "label"}, "label": r["label"][0] - r["label"][1]}
                    for r in rows]
        return rows

    # the gradients are compared, so the batch must not start at a MaxSim near-tie (see maxsim_min_gap)
    _, (t_features, t_labels, m_features, m_labels) = well_conditioned_rows(make_rows, torch_model, mlx_model)
    if t_labels is not None:
        t_labels = t_labels.float()
    assert_parity(
        run_torch(torch_model, torch_loss(loss_name, torch_model, kwargs), (t_features, t_labels), optimizer, lr),
        run_mlx(mlx_model, getattr(mlx_losses, loss_name)(mlx_model, **kwargs), (m_features, m_labels), optimizer, lr),
        f"{loss_name} {variant} {kwargs}",
    )
    assert_saved_model_loads_in_st6(mlx_model, tmp_path / "trained")


# --- the trainer ---------------------------------------------------------------------------------
TRAINER_CASES = [
    # (loss, variant, kwargs, rows, optimizer_cls_and_kwargs)
    ("MultiVectorMultipleNegativesRankingLoss", "bert-fixed", {}, "contrastive", None),
    ("CachedMultiVectorMultipleNegativesRankingLoss", "modernbert", {"mini_batch_size": 3}, "contrastive",
     {"lr": 1e-3, "betas": (0.9, 0.98), "eps": 1e-7}),
    ("MultiVectorDistillKLDivLoss", "bert-min", {"temperature": 0.5}, "scored", None),
]


def trainer_args(cls, out, n_rows, extra):
    return cls(output_dir=str(out), per_device_train_batch_size=n_rows, per_device_eval_batch_size=n_rows,
               max_steps=STEPS, learning_rate=2e-3, warmup_steps=2, logging_steps=1, eval_strategy="steps",
               eval_steps=5, save_strategy="no", report_to="none", seed=0, **extra)


def step_losses(log_history):
    train = {e["step"]: e["loss"] for e in log_history if "loss" in e}
    evals = {e["step"]: e["eval_loss"] for e in log_history if "eval_loss" in e}
    return [train[s] for s in sorted(train)], [evals[s] for s in sorted(evals)]


@pytest.mark.parametrize("loss_name,variant,kwargs,kind,adamw_kwargs", TRAINER_CASES)
def test_trainer_parity(st6_folders, tmp_path, loss_name, variant, kwargs, kind, adamw_kwargs):
    """Both ST 6 trainers, full-batch, 10 steps with warmup + linear decay, clipping, an eval loss
    every 5 steps, a callback; per-step training losses, eval losses and step counts agree."""
    import torch
    from datasets import Dataset
    from sentence_transformers import MultiVectorEncoderTrainer as TorchTrainer
    from sentence_transformers import MultiVectorEncoderTrainingArguments as TorchArgs
    from transformers import TrainerCallback as TorchCallback

    from mlx_hf_bridge.sentence_transformers import TrainerCallback
    from mlx_hf_bridge.sentence_transformers.multi_vector_encoder import (
        MultiVectorEncoderTrainer, MultiVectorEncoderTrainingArguments,
    )

    rows = contrastive_rows(8, 1) if kind == "contrastive" else scored_rows(6, 3)
    train, evaluation = Dataset.from_list(rows), Dataset.from_list(rows[: len(rows) // 2])
    extra = {} if adamw_kwargs is None else {"optimizer_cls_and_kwargs": (torch.optim.AdamW, adamw_kwargs)}
    steps = {"torch": 0, "mlx": 0}

    def counter(base, key):
        return type("Count", (base,), {"on_step_end": lambda self, *a, **k: steps.__setitem__(key, steps[key] + 1)})()

    torch_model, mlx_model = load_pair(st6_folders[variant])
    torch_trainer = TorchTrainer(
        model=torch_model, args=trainer_args(TorchArgs, tmp_path / "torch", len(rows), {}), train_dataset=train,
        eval_dataset=evaluation, loss=torch_loss(loss_name, torch_model, kwargs),
        callbacks=[counter(TorchCallback, "torch")], **extra)
    torch_trainer.train()
    mlx_trainer = MultiVectorEncoderTrainer(
        model=mlx_model, args=trainer_args(MultiVectorEncoderTrainingArguments, tmp_path / "mlx", len(rows), {}),
        train_dataset=train, eval_dataset=evaluation, loss=getattr(mlx_losses, loss_name)(mlx_model, **kwargs),
        callbacks=[counter(TrainerCallback, "mlx")], **extra)
    mlx_trainer.train()

    (t_train, t_eval), (m_train, m_eval) = step_losses(torch_trainer.state.log_history), step_losses(
        mlx_trainer.state.log_history)
    assert len(t_train) == len(m_train) == STEPS and len(t_eval) == len(m_eval) == 2
    assert steps == {"torch": STEPS, "mlx": STEPS}
    rel = [abs(a - b) / abs(a) for a, b in zip(t_train + t_eval, m_train + m_eval)]
    print(f"trainer {loss_name}: max rel {max(rel):.2e}")
    assert max(rel) < LOSS_RTOL, (t_train, m_train, t_eval, m_eval)
    assert max(t_train) - min(t_train) > 1e-3
    mlx_trainer.save_model(str(tmp_path / "final"))
    assert_saved_model_loads_in_st6(mlx_model, tmp_path / "final")



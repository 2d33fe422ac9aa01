"""Step 3: model, loss, evaluator, training arguments and trainer.

Every PyLate / sentence-transformers import of the example is in the block below. The file is the
torch version (real PyLate); the MLX version is the same file with the two import lines swapped:

    -from pylate import evaluation, losses, models, utils
    -from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    +from mlx_hf_bridge.pylate import evaluation, losses, models, utils
    +from mlx_hf_bridge.sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

Both blocks are kept here; ``REASONIR_BACKEND=torch|mlx`` (``train.py --backend``) picks one. Under
``mlx-hf-bridge run train.py`` the torch block itself resolves to the bridge.
"""

from __future__ import annotations

import os

BACKEND = os.environ.get("REASONIR_BACKEND", "torch").lower()

if BACKEND == "torch":
    from pylate import evaluation, losses, models, utils
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
elif BACKEND == "mlx":
    from mlx_hf_bridge.pylate import evaluation, losses, models, utils
    from mlx_hf_bridge.sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
else:
    raise ValueError(f"REASONIR_BACKEND must be 'torch' or 'mlx', got {BACKEND!r}")

# What actually runs (True for the MLX block, and for the torch block under `mlx-hf-bridge run`).
ON_MLX = SentenceTransformerTrainer.__module__.startswith("mlx_hf_bridge")


def force_cpu() -> None:
    """``--cpu``. torch: MPS is reported unavailable, so neither the trainer nor PyLate's
    CachedContrastive (whose RandContext refuses any machine with MPS) touches it; the model and the
    trainer get ``device="cpu"`` / ``use_cpu=True``. MLX: the default device becomes the CPU."""
    if ON_MLX:
        from mlx_hf_bridge.backend import use_cpu

        use_cpu()
        return
    try:
        import torch
    except ImportError:
        return
    torch.backends.mps.is_available = lambda: False


def seed_everything(seed: int) -> None:
    """Seed before the model is built (its projection layer is randomly initialised)."""
    if ON_MLX:
        from mlx_hf_bridge.backend import seed_everything as seed_mlx

        seed_mlx(seed)
    else:
        from transformers import set_seed

        set_seed(seed)


def build_model(cfg):
    kwargs = dict(
        model_name_or_path=cfg.model,
        document_length=cfg.document_length,
        query_length=cfg.query_length,
        skiplist_words=[],
    )
    if cfg.cpu:
        kwargs["device"] = "cpu"
    return models.ColBERT(**kwargs)


def build_loss(model, cfg):
    return losses.CachedContrastive(
        model,
        mini_batch_size=cfg.mini_batch_size,
        gather_across_devices=True,
        temperature=1.0,
    )


def build_evaluator(eval_dataset, cfg, name: str = "reasonir-holdout"):
    """Triplet accuracy on the held-out rows (MaxSim(query, pos) > MaxSim(query, neg)); None without them."""
    if eval_dataset is None:
        return None
    return evaluation.ColBERTTripletEvaluator(
        anchors=eval_dataset["query"],
        positives=eval_dataset["pos"],
        negatives=eval_dataset["neg"],
        name=name,
        batch_size=min(cfg.batch_size, 32),
    )


def build_args(cfg, has_eval: bool = False):
    kwargs = dict(
        output_dir=cfg.output_dir,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        save_steps=cfg.save_steps,
        logging_steps=cfg.logging_steps,
        fp16=cfg.fp16,
        bf16=cfg.bf16,
        run_name=cfg.run_name,
        learning_rate=cfg.lr,
        dataloader_num_workers=cfg.num_workers,
        seed=cfg.seed,
    )
    if cfg.cpu:
        kwargs["use_cpu"] = True
    if has_eval:
        kwargs.update(eval_strategy="steps", eval_steps=cfg.eval_steps or cfg.save_steps)
    return SentenceTransformerTrainingArguments(**kwargs)


def build_trainer(model, args, train_dataset, loss, eval_dataset=None, evaluator=None):
    return SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        loss=loss,
        evaluator=evaluator,
        data_collator=utils.ColBERTCollator(model.tokenize),
    )

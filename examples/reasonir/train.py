"""Train Reason-ModernColBERT (GTE-ModernColBERT-v1 + CachedContrastive on ReasonIR hq).

    python train.py                                    # the full recipe, torch/PyLate, Hub data
    python train.py --backend mlx                      # the same on MLX (mlx_hf_bridge)
    mlx-hf-bridge run train.py                         # the torch file, imports resolved to MLX

The final model is saved to ``output/<model_short>/<run_name>/final``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from training.config import TrainingConfig  # noqa: E402

DEFAULTS = TrainingConfig()


def parse_args(argv=None) -> tuple[TrainingConfig, str | None]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    d = DEFAULTS
    p.add_argument("--dataset", default=d.dataset,
                   help="hub id, save_to_disk folder, .jsonl/.parquet file, or Hub-shaped folder")
    p.add_argument("--dataset_config", default=d.dataset_config, help="config for hub ids / Hub-shaped folders")
    p.add_argument("--split", default=d.split)
    p.add_argument("--documents", default=d.documents,
                   help="BRIGHT documents (hub id or folder) for raw rows; default xlangai/BRIGHT for the hub dataset")
    p.add_argument("--documents_config", default=d.documents_config)
    p.add_argument("--model", default=d.model)
    p.add_argument("--epochs", type=float, default=d.epochs)
    p.add_argument("--max_steps", type=int, default=d.max_steps, help="stop after this many steps (-1: epochs)")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--batch_size", type=int, default=d.batch_size)
    p.add_argument("--mini_batch_size", type=int, default=d.mini_batch_size)
    p.add_argument("--query_length", type=int, default=d.query_length)
    p.add_argument("--document_length", type=int, default=d.document_length)
    p.add_argument("--num_workers", type=int, default=d.num_workers)
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                   help="bf16 mixed precision (default on, off when --fp16)")
    p.add_argument("--fp16", action="store_true")
    p.add_argument("--sample", action="store_true", help="train on a random subset of --sample_size rows")
    p.add_argument("--sample_size", type=int, default=d.sample_size)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--holdout", type=float, default=d.holdout,
                   help="hold rows out for evaluation: a fraction (<1) or a count (>=1)")
    p.add_argument("--cpu", action="store_true", help="force the CPU (torch: also disables MPS)")
    p.add_argument("--run_name", default=None, help="default <model_short>-ReasonIR")
    p.add_argument("--output_root", default=d.output_root, help="runs go to <output_root>/<model_short>/<run_name>")
    p.add_argument("--save_steps", type=int, default=d.save_steps)
    p.add_argument("--logging_steps", type=int, default=d.logging_steps)
    p.add_argument("--eval_steps", type=int, default=None, help="with --holdout; default --save_steps")
    p.add_argument("--backend", choices=("torch", "mlx"), default=None,
                   help="which import block of training/build.py to use (default: $REASONIR_BACKEND or torch)")
    a = p.parse_args(argv)
    bf16 = (not a.fp16) if a.bf16 is None else a.bf16
    try:
        cfg = TrainingConfig(
            dataset=a.dataset, dataset_config=a.dataset_config or None, split=a.split, documents=a.documents,
            documents_config=a.documents_config, sample=a.sample, sample_size=a.sample_size, holdout=a.holdout,
            seed=a.seed, model=a.model, query_length=a.query_length, document_length=a.document_length,
            epochs=a.epochs, lr=a.lr, batch_size=a.batch_size, mini_batch_size=a.mini_batch_size,
            max_steps=a.max_steps, bf16=bf16, fp16=a.fp16, cpu=a.cpu, num_workers=a.num_workers,
            run_name=a.run_name, output_root=a.output_root, save_steps=a.save_steps,
            logging_steps=a.logging_steps, eval_steps=a.eval_steps,
        )
    except ValueError as exc:
        p.error(str(exc))
    return cfg, a.backend


def main(argv=None) -> int:
    cfg, backend = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if backend:
        os.environ["REASONIR_BACKEND"] = backend
    from training import build  # after the backend is chosen
    from training.data import load_training_data

    if cfg.cpu:
        build.force_cpu()
    build.seed_everything(cfg.seed)
    train_dataset, eval_dataset = load_training_data(cfg)
    print(f"[reasonir] backend={'mlx' if build.ON_MLX else 'torch'} train={len(train_dataset)} "
          f"eval={0 if eval_dataset is None else len(eval_dataset)} output_dir={cfg.output_dir}", flush=True)

    model = build.build_model(cfg)
    loss = build.build_loss(model, cfg)
    args = build.build_args(cfg, has_eval=eval_dataset is not None)
    evaluator = build.build_evaluator(eval_dataset, cfg)
    trainer = build.build_trainer(model, args, train_dataset, loss, eval_dataset, evaluator)
    result = trainer.train()

    summary = {"backend": "mlx" if build.ON_MLX else "torch", "global_step": result.global_step,
               "training_loss": result.training_loss}
    if eval_dataset is not None:
        summary["eval"] = {k: float(v) for k, v in trainer.evaluate().items() if isinstance(v, (int, float))}
    model.save_pretrained(cfg.final_dir)
    summary["final"] = cfg.final_dir
    print("[reasonir] " + json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

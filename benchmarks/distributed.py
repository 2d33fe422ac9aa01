"""Data parallel on this machine: step time on 1 vs 2 processes, bytes all-reduced per step, ring throughput.

    .venv/bin/python benchmarks/distributed.py            # builds a small BERT, runs everything, prints a table

Runs the engine's trainer (dense MNRL, gather_across_devices=True) as (1 process x batch B),
(1 process x batch 2B: the same global batch) and (2 ring ranks on 127.0.0.1 x per-device B, started with
mlx.launch), timing optimizer steps after a warm-up; then times ``mx.distributed.all_sum`` of fp32 buffers
on the 2 ranks. Appends one JSON line per measurement to benchmarks/results-distributed.jsonl.
On one host the ranks share the CPU cores (and memory bandwidth), so this measures the overhead of
the distributed step, not a speed-up; across Macs each rank has its own machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
RESULTS = HERE.with_name("results-distributed.jsonl")


def build_model(path: Path, hidden: int, layers: int):
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from mlx_hf_bridge import assets

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
                        intermediate_size=4 * hidden, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    BertModel(config).save_pretrained(path)
    AutoTokenizer.from_pretrained(str(assets.minilm_path())).save_pretrained(path)


def child(model_dir: str, batch: int, steps: int, out: str):
    import mlx.core as mx
    from datasets import Dataset

    import mlx_hf_bridge  # noqa: F401
    from mlx_hf_bridge.engine import TrainerCallback
    from mlx_hf_bridge.sentence_transformers import (SentenceTransformer, SentenceTransformerTrainer,
                                                     SentenceTransformerTrainingArguments, losses)

    world = mx.distributed.init()
    size, rank = world.size(), world.rank()
    n = batch * size * steps
    rows = {"query": [f"question {i} about topic {i % 13} and {i % 7}" for i in range(n)],
            "positive": [f"an answer {i} on topic {i % 13}, with detail {i % 7} and more words" for i in range(n)]}
    times = []

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.t = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            times.append(time.perf_counter() - self.t)

    model = SentenceTransformer(model_dir)
    args = SentenceTransformerTrainingArguments(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=batch,
                                                max_steps=steps, save_strategy="no", disable_tqdm=True,
                                                logging_steps=steps, report_to="none")
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=Dataset.from_dict(rows),
                                         loss=losses.MultipleNegativesRankingLoss(model, gather_across_devices=True),
                                         callbacks=[Timer()])
    trainer.train()
    warm = times[2:] or times
    result = {"kind": "step", "world": size, "per_device_batch": batch, "global_batch": batch * size,
              "step_s": sum(warm) / len(warm), "steps_timed": len(warm),
              "allreduce_bytes_per_step": getattr(trainer.runner.reducer, "bytes_per_step", 0)}
    if size > 1:
        result["allreduce"] = allreduce_throughput(world)
    if rank == 0:
        Path(out).write_text(json.dumps(result))


def allreduce_throughput(world) -> list[dict]:
    import mlx.core as mx

    rows = []
    for mib in (0.25, 4, 32):
        x = mx.ones((int(mib * (1 << 20)) // 4,), dtype=mx.float32)
        mx.eval(mx.distributed.all_sum(x, group=world))  # warm-up
        reps = 10
        start = time.perf_counter()
        for _ in range(reps):
            mx.eval(mx.distributed.all_sum(x, group=world))
        per = (time.perf_counter() - start) / reps
        rows.append({"MiB": mib, "seconds": per, "GB_per_s": x.nbytes / per / 1e9})
    return rows


def run(argv: list[str], n: int) -> dict:
    out = Path(tempfile.mkdtemp()) / "result.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, str(HERE), "--child", *argv, "--out", str(out)]
    if n > 1:
        cmd = [str(Path(sys.executable).with_name("mlx.launch")), "-n", str(n), "--backend", "ring",
               "--python", sys.executable, str(HERE), "--child", *argv, "--out", str(out)]
    subprocess.run(cmd, check=True, env=env, timeout=1800)
    return json.loads(out.read_text())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--model")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--out")
    a = parser.parse_args()
    if a.child:
        return child(a.model, a.batch, a.steps, a.out)
    model = Path(a.model or tempfile.mkdtemp()) / "bert"
    if not model.exists():
        build_model(model, a.hidden, a.layers)
    results = [run(["--model", str(model), "--batch", str(b), "--steps", str(a.steps)], n)
               for n, b in ((1, a.batch), (1, 2 * a.batch), (2, a.batch))]
    meta = {"date": time.strftime("%Y-%m-%d"), "machine": platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "hidden": a.hidden, "layers": a.layers}
    with RESULTS.open("a") as f:
        for r in results:
            f.write(json.dumps({**meta, **r}) + "\n")
    for r in results:
        print(f"world {r['world']} x per-device {r['per_device_batch']:>3} (global {r['global_batch']:>3}): "
              f"{r['step_s'] * 1e3:8.1f} ms/step, all-reduced {r['allreduce_bytes_per_step'] / 1e6:.2f} MB/step")
    for row in results[-1].get("allreduce", []):
        print(f"all_sum {row['MiB']:>5} MiB fp32 on 2 ranks: {row['seconds'] * 1e3:7.2f} ms, {row['GB_per_s']:.2f} GB/s")


if __name__ == "__main__":
    main()

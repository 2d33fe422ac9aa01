"""Training memory with LoRA vs full fine-tuning on a Qwen3-0.6B-shaped backbone with few layers.

Qwen3-0.6B's widths (hidden 1024, intermediate 3072, 16 query / 8 key-value heads of 128, vocab 151669, tied
input table) with ``--layers`` layers, random MLX init (no download; the weights do not change the memory).
Each mode runs in a fresh subprocess: one warm-up step, then one measured step of the engine (``StepRunner``:
forward, backward, clipping, AdamW) on an in-batch contrastive loss over mean-pooled embeddings. Reported: the
MLX allocator peak of the measured step (``mx.get_peak_memory`` after ``mx.reset_peak_memory``: weights,
gradients, AdamW moments, activations) and its parts. Timing is printed for information only.

    python benchmarks/lora_memory.py                          # 4 layers, 8 pairs x 128 tokens, r=16 all-linear
    python benchmarks/lora_memory.py --layers 2 --tokens 64 --targets q_proj v_proj
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, sys, time
import mlx_hf_bridge
import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten
from transformers import Qwen3Config
from mlx_hf_bridge.adapters import lora
from mlx_hf_bridge.adapters.config import lora_settings
from mlx_hf_bridge.engine.optim import AdamW
from mlx_hf_bridge.engine.step import StepRunner
from mlx_hf_bridge.loading import build_model

cfg = json.loads(sys.argv[1])
config = Qwen3Config(vocab_size=151669, hidden_size=1024, intermediate_size=3072, num_hidden_layers=cfg["layers"],
                     num_attention_heads=16, num_key_value_heads=8, head_dim=128, max_position_embeddings=32768,
                     tie_word_embeddings=True)
config.is_causal = False
backbone = build_model(config)
if cfg["mode"] == "lora":
    targets = cfg["targets"] if cfg["targets"] != ["all-linear"] else "all-linear"
    lora.inject(backbone, lora_settings({"r": cfg["r"], "lora_alpha": 2 * cfg["r"], "target_modules": targets}))
backbone.train()
B, L = cfg["pairs"], cfg["tokens"]
ids = [mx.random.randint(0, 151669, (B, L)) for _ in range(2)]
mask = mx.ones((B, L), mx.int32)

def loss(features, labels):
    a, p = [backbone(x, mask).mean(axis=1) for x in features]
    a = a / mx.linalg.norm(a, axis=-1, keepdims=True)
    p = p / mx.linalg.norm(p, axis=-1, keepdims=True)
    return nn.losses.cross_entropy(20.0 * a @ p.T, mx.arange(B), reduction="mean")

optimizer = AdamW.for_model(backbone, 1e-4, 0.01)
runner = StepRunner(backbone, optimizer, 1.0)
runner.step([(loss, ids, None)], 1.0)  # warm-up: kernels, AdamW moments allocated
mx.clear_cache()
mx.reset_peak_memory()
start = time.perf_counter()
runner.step([(loss, ids, None)], 1.0)
mx.eval(runner.params)
seconds = time.perf_counter() - start
nbytes = lambda tree: sum(int(v.nbytes) for _, v in tree_flatten(tree))
print(json.dumps({"mode": cfg["mode"], "peak_mb": mx.get_peak_memory() / 2**20,
                  "weights_mb": nbytes(backbone.parameters()) / 2**20,
                  "trainable_mb": nbytes(backbone.trainable_parameters()) / 2**20,
                  "adamw_state_mb": sum(int(v.nbytes) for v in optimizer.state_tensors().values()) / 2**20,
                  "step_s": round(seconds, 2)}))
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--r", type=int, default=16)
    parser.add_argument("--targets", nargs="+", default=["all-linear"])
    args = parser.parse_args()
    rows = []
    for mode in ("full", "lora"):
        cfg = {**vars(args), "mode": mode}
        out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(cfg)], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps({**rows[-1], **{k: v for k, v in vars(args).items()}}))
    full, lora_row = rows
    print(f"peak {full['peak_mb']:.0f} MB (full) vs {lora_row['peak_mb']:.0f} MB (LoRA r={args.r} {' '.join(args.targets)}): "
          f"{full['peak_mb'] / lora_row['peak_mb']:.2f}x; AdamW state {full['adamw_state_mb']:.0f} vs "
          f"{lora_row['adamw_state_mb']:.1f} MB")


if __name__ == "__main__":
    main()

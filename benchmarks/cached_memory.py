"""Peak memory of one training step: ``CachedContrastive`` (GradCache) vs ``Contrastive``.

Builds a small random ModernBERT ColBERT (written by transformers, so torch is needed for the
setup only), then measures in a fresh subprocess per configuration the MLX allocator peak
(``mx.get_peak_memory`` after ``mx.reset_peak_memory``, minus what was live before the step) and
the process high-water mark (VmHWM / ru_maxrss). Timing is printed for information only.

    python benchmarks/cached_memory.py                      # batch 64, mini-batches 4 16 64
    python benchmarks/cached_memory.py --hidden 256 --layers 6 --document-length 180
    python benchmarks/cached_memory.py --batch 16 32 64 128 --minis 4 --no-contrastive   # flat in batch?

GradCache's peak should grow with ``mini_batch_size``, not with the batch size, and stay below
``Contrastive``'s, whose graph holds the activations of the whole batch. (What still grows with the
batch is linear and small: the cached embeddings and their gradients, and the scoring chunk of
``score_mini_batch_size`` queries against all documents.)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
import mlx_hf_bridge
import mlx.core as mx
import mlx.nn as nn
from mlx_hf_bridge.pylate import losses, models

cfg = json.loads(sys.argv[1])
model = models.ColBERT(cfg["folder"], query_length=cfg["query_length"], document_length=cfg["document_length"])
model.train()
words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma".split()
def texts(offset, n_words):
    return [" ".join(words[(i * 7 + j + offset) % len(words)] for j in range(n_words)) for i in range(cfg["batch"])]
features = [model.tokenize(texts(0, cfg["query_length"]), is_query=True, pad=True)]
features += [model.tokenize(texts(c, cfg["document_length"]), is_query=False, pad=True) for c in range(1, 2 + cfg["negatives"])]
mx.eval(model.parameters(), features)
if cfg["mini"] is None:
    loss = losses.Contrastive(model)
    step = nn.value_and_grad(model, lambda f: loss(f))
else:
    loss = losses.CachedContrastive(model, mini_batch_size=cfg["mini"])
    step = loss.value_and_grad
value, grads = step(features)  # warm-up (kernels, caches)
mx.eval(value, grads)
del value, grads
mx.clear_cache()
mx.reset_peak_memory()
base = mx.get_active_memory()
start = time.perf_counter()
value, grads = step(features)
mx.eval(value, grads)
seconds = time.perf_counter() - start
print(json.dumps({
    "peak_mb": (mx.get_peak_memory() - base) / 2**20,
    "rss_hwm_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10),
    "loss": value.item(),
    "seconds": seconds,
}))
"""


def build_folder(args) -> str:
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import _save_tiny, tiny_modernbert_config

    from mlx_hf_bridge import assets

    folder = Path(tempfile.mkdtemp(prefix="cached-memory-")) / "modernbert"
    config = tiny_modernbert_config(
        hidden_size=args.hidden,
        intermediate_size=args.hidden * 3 // 2,
        num_hidden_layers=args.layers,
        num_attention_heads=max(1, args.hidden // 64),
        local_attention=64,
    )
    _save_tiny(folder, config, assets.modernbert_tokenizer_dir(), seed=0)
    # save a ColBERT folder once, so every subprocess loads the same Dense / prefix-token weights
    import mlx_hf_bridge  # noqa: F401  (BLAS preload before mlx.core)
    from mlx_hf_bridge.pylate import models

    colbert = folder.with_name("colbert")
    models.ColBERT(str(folder), query_length=args.query_length, document_length=args.document_length).save(str(colbert))
    return str(colbert)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, nargs="+", default=[64])
    parser.add_argument("--minis", type=int, nargs="+", default=[4, 16, 64])
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--query-length", type=int, default=32)
    parser.add_argument("--document-length", type=int, default=128)
    parser.add_argument("--negatives", type=int, default=1)
    parser.add_argument("--no-contrastive", dest="contrastive", action="store_false",
                        help="skip the plain Contrastive reference run")
    parser.add_argument("--folder", help="an existing ColBERT / HF folder instead of a random ModernBERT")
    args = parser.parse_args()

    folder = args.folder or build_folder(args)
    print(
        f"model: {folder} | batch {' / '.join(map(str, args.batch))}, 1 query + {1 + args.negatives} document columns, "
        f"query_length {args.query_length}, document_length {args.document_length}"
    )
    rows = []
    runs = [(batch, mini) for batch in args.batch for mini in ([None] if args.contrastive else []) + args.minis]
    for batch, mini in runs:
        cfg = dict(
            folder=folder, batch=batch, mini=mini, negatives=args.negatives,
            query_length=args.query_length, document_length=args.document_length,
        )
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, json.dumps(cfg)],
            capture_output=True, text=True, cwd=str(ROOT), env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
        )
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-3000:])
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        label = "Contrastive" if mini is None else f"CachedContrastive(mini_batch_size={mini})"
        label = f"batch {batch:<4} {label}"
        rows.append((label, result))
        print(
            f"{label:<51} peak {result['peak_mb']:9.1f} MB   process HWM {result['rss_hwm_mb']:8.1f} MB   "
            f"loss {result['loss']:.4f}   {result['seconds']:.2f} s",
            flush=True,
        )
    return rows


if __name__ == "__main__":
    main()

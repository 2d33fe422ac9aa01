"""A/B benchmark: torch-CPU PyLate fallback vs mlx_hf_bridge, same weights, data and sizes.

Both sides run in their own worker process (``worker.py``), started once; steps alternate
A, B, A, B so machine noise hits both alike. Reports samples/s, real tokens/s, peak RSS, the
bridge/torch ratio and the max relative loss difference over the measured steps.

    python benchmarks/bench.py train --document-length 2048 --layers 4 --steps 3
    python benchmarks/bench.py train --fixed --document-length 512
    python benchmarks/bench.py encode --document-length 512
    python benchmarks/bench.py train --sides st6-dense mlx-dense   # dense CachedMNRL vs ST 6.2 (.venv-st6)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent


# "torch-malloc": the torch fallback run with the glibc malloc settings mlx_hf_bridge makes for itself
# (backend._retain_freed_memory), to show how much of the ratio that setting is
TORCH_MALLOC_ENV = {"MALLOC_TRIM_THRESHOLD_": str(2**31 - 1), "MALLOC_MMAP_THRESHOLD_": str(32 << 20)}


ST6_PYTHON = HERE.parent / ".venv-st6" / "bin" / "python"


class Worker:
    def __init__(self, side: str):
        self.side = side
        env = {**os.environ, **TORCH_MALLOC_ENV} if side == "torch-malloc" else None
        # the ST 6.2 side runs in the ST 6 reference venv (ST 6 and PyLate 1.6 cannot share one)
        python = str(ST6_PYTHON) if side.startswith("st6") else sys.executable
        self.proc = subprocess.Popen(
            [python, str(HERE / "worker.py"), side], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=open(HERE / f".{side}.log", "w"), text=True, env=env,
        )

    def ask(self, **msg) -> dict:
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.side} worker died; see benchmarks/.{self.side}.log")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"{self.side} worker: {reply['error']} (benchmarks/.{self.side}.log)")
        return reply

    def close(self):
        try:
            self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        self.proc.wait(timeout=60)


def run_train(args, cfg):
    sides = {name: Worker(name) for name in args.sides}
    for w in sides.values():
        w.ask(cmd="setup", **cfg)
    results = {name: [] for name in sides}
    total = args.warmup + args.steps
    for i in range(total):
        for name, w in sides.items():
            r = w.ask(cmd="step", i=i)
            r["i"] = i
            results[name].append(r)
            print(f"  step {i} {name:<5} loss {r['loss']:.6f}  {r['seconds']:.2f}s  rss {r['peak_rss_mb']:.0f} MB", flush=True)
    for w in sides.values():
        w.close()
    return summarize(args, results, cfg, per="step")


def run_encode(args, cfg):
    sides = {name: Worker(name) for name in args.sides}
    for w in sides.values():
        w.ask(cmd="setup", **cfg)
    results = {name: [] for name in sides}
    for i in range(args.warmup + args.steps):
        for name, w in sides.items():
            r = w.ask(cmd="encode", n=args.encode_docs, batch_size=args.mini_batch_size)
            r["i"] = i
            r["tokens"] = 0
            results[name].append(r)
            print(f"  round {i} {name:<5} {r['seconds']:.2f}s", flush=True)
    for w in sides.values():
        w.close()
    return summarize(args, results, cfg, per="encode")


def summarize(args, results, cfg, per):
    rows = {}
    for name, rs in results.items():
        measured = rs[args.warmup :]
        sec = statistics.median(r["seconds"] for r in measured)
        n = cfg["batch_size"] if per == "step" else args.encode_docs
        rows[name] = {
            "seconds": sec,
            "samples_per_s": n / sec,
            "tokens_per_s": statistics.median(r["tokens"] / r["seconds"] for r in measured) if per == "step" else None,
            "peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
            "losses": [r.get("loss") for r in rs],
        }
    out = {"config": cfg, "per": per, "sides": rows, "machine": machine()}
    if "torch-malloc" in rows and "mlx" in rows:
        out["ratio_torch_malloc"] = rows["mlx"]["samples_per_s"] / rows["torch-malloc"]["samples_per_s"]
    for torch_side, mlx_side in (("torch", "mlx"), ("st6-dense", "mlx-dense")):
        if torch_side in rows and mlx_side in rows and torch_side != "torch":
            out[f"ratio_{mlx_side}"] = rows[mlx_side]["samples_per_s"] / rows[torch_side]["samples_per_s"]
            if per == "step":
                pairs = zip(rows[torch_side]["losses"], rows[mlx_side]["losses"])
                out[f"max_rel_loss_diff_{mlx_side}"] = max(abs(a - b) / max(abs(a), 1e-12) for a, b in pairs)
    if "torch" in rows and "mlx" in rows:
        out["ratio"] = rows["mlx"]["samples_per_s"] / rows["torch"]["samples_per_s"]
        if per == "step":
            diffs = [abs(a - b) / max(abs(a), 1e-12) for a, b in zip(rows["torch"]["losses"], rows["mlx"]["losses"])]
            out["max_rel_loss_diff"] = max(diffs)
    return out


def machine() -> dict:
    info = {"python": platform.python_version(), "cpus": os.cpu_count(), "load": os.getloadavg()[0]}
    try:
        info["cpu"] = next(
            line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")
        )
    except (OSError, StopIteration):
        info["cpu"] = platform.processor()
    return info


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["train", "encode"])
    p.add_argument("--arch", choices=["modernbert", "qwen3"], default="modernbert",
                   help="modernbert: base width (--hidden); qwen3: Qwen3-Embedding-0.6B's width (1024, GQA 16/8 x 128)")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--hidden", type=int, default=768)
    p.add_argument("--document-length", type=int, default=512)
    p.add_argument("--query-length", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--mini-batch-size", type=int, default=4)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--fixed", action="store_true", help="full-length texts: no padding to remove")
    p.add_argument("--no-padding-free", dest="padding_free", action="store_false")
    p.add_argument("--no-query-expansion", dest="do_query_expansion", action="store_false")
    p.add_argument("--encode-docs", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--sides", nargs="+", default=["torch", "mlx"], choices=["torch", "mlx", "torch-malloc", "st6-dense", "mlx-dense"])
    p.add_argument("--json", type=Path, help="append the result as one JSON line to this file")
    args = p.parse_args(argv)

    sys.path.insert(0, str(HERE))
    from workload import model_folder, qwen3_folder

    heads = max(1, args.hidden // 64)
    folder = qwen3_folder(args.layers) if args.arch == "qwen3" else \
        model_folder(args.layers, hidden=args.hidden, heads=heads, intermediate=args.hidden * 3 // 2)
    n_rows = args.batch_size * (args.warmup + args.steps) if args.mode == "train" else args.encode_docs
    cfg = {
        "model": str(folder), "arch": args.arch, "layers": args.layers, "hidden": 1024 if args.arch == "qwen3" else args.hidden, "document_length": args.document_length,
        "query_length": args.query_length, "batch_size": args.batch_size, "mini_batch_size": args.mini_batch_size,
        "lr": 1e-5, "seed": 0, "fixed": args.fixed, "padding_free": args.padding_free, "threads": args.threads,
        "do_query_expansion": args.do_query_expansion, "n_rows": n_rows,
        "model_config": json.loads((folder / "config.json").read_text()) if (folder / "config.json").exists() else {},
    }
    t0 = time.time()
    result = (run_train if args.mode == "train" else run_encode)(args, cfg)
    result["wall_s"] = time.time() - t0
    print(json.dumps({k: v for k, v in result.items() if k != "sides"}, indent=1))
    for name, r in result["sides"].items():
        tps = f"{r['tokens_per_s']:.0f} tok/s" if r["tokens_per_s"] else ""
        print(f"{name:<6} {r['samples_per_s']:.3f} samples/s {tps}  peak RSS {r['peak_rss_mb']:.0f} MB")
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Where the per-token gap comes from: the ops of one ModernBERT-base-width layer, torch vs MLX's own
ops vs the bridge's compiled CPU kernels (mlx_hf_bridge/kernels; exp has no kernel of its own).

Each side runs in its own process (the bridge's OpenBLAS preload slows torch in-process) with the
same thread count; shapes are those of one GradCache mini-batch of workload (b): 4 documents x 512
tokens, hidden 768, 12 heads, GeGLU intermediate 1152. Times are medians of ``--repeat`` runs, in ms.

    python benchmarks/op_profile.py            # prints a markdown table
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

B, L, H, HEADS, INTER = 4, 512, 768, 12, 1152
OPS = ["gemm (B·L,768)x(768,2304)", "softmax (B,12,L,L)", "exp (B,12,L,L)", "gelu erf (B,L,1152)",
       "layer_norm (B,L,768)", "attention core fwd+bwd", "3-layer encoder fwd+bwd"]


def median_ms(fn, repeat):
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return sorted(times)[len(times) // 2]


def torch_side(repeat, threads, model_dir):
    import torch
    import torch.nn.functional as F
    from transformers import AutoModel

    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B * L, H, generator=g)
    w = torch.randn(H, 3 * H, generator=g) * 0.02
    s = torch.randn(B, HEADS, L, L, generator=g)
    u = torch.randn(B, L, INTER, generator=g)
    h = torch.randn(B, L, H, generator=g)
    ln = torch.nn.LayerNorm(H, bias=False)
    q, k, v = (torch.randn(B, HEADS, L, 64, generator=g, requires_grad=True) for _ in range(3))

    def attention():
        F.scaled_dot_product_attention(q, k, v).sum().backward()

    model = AutoModel.from_pretrained(model_dir).train()
    ids = torch.randint(5, 50000, (B, L), generator=g)
    mask = torch.ones(B, L, dtype=torch.long)

    def encoder():
        model(input_ids=ids, attention_mask=mask).last_hidden_state.sum().backward()

    with torch.no_grad():
        fns = [lambda: x @ w, lambda: s.softmax(-1), lambda: s.exp(), lambda: F.gelu(u), lambda: ln(h)]
        out = [median_ms(f, repeat) for f in fns]
    out += [median_ms(attention, repeat), median_ms(encoder, max(2, repeat // 4))]
    return out


def mlx_side(repeat, threads, model_dir, use_kernels):
    """MLX's own ops (``use_kernels`` False, and the model runs with MLX_HF_BRIDGE_KERNELS=0), or the
    bridge's compiled CPU kernels where it has one (softmax, GELU, LayerNorm, the fused attention
    core: RoPE + masked softmax(Q Kᵀ) V from the QKV projection, forward and backward)."""
    sys.modules.setdefault("torch", None)
    os.environ["MLX_HF_BRIDGE_KERNELS"] = "1" if use_kernels else "0"
    os.environ["MLX_HF_BRIDGE_THREADS"] = str(threads)
    import mlx_hf_bridge  # noqa: F401  (BLAS preload first)
    import mlx.core as mx
    import mlx.nn as nn

    from mlx_hf_bridge import kernels
    from mlx_hf_bridge.models.base import attention
    from mlx_hf_bridge.transformers import AutoModel

    assert kernels.available() == use_kernels, kernels.status()

    mx.random.seed(0)
    x = mx.random.normal((B * L, H))
    w = mx.random.normal((H, 3 * H)) * 0.02
    s = mx.random.normal((B, HEADS, L, L))
    u = mx.random.normal((B, L, INTER))
    h = mx.random.normal((B, L, H))
    weight = mx.ones((H,))
    q, k, v = (mx.random.normal((B, HEADS, L, 64)) for _ in range(3))
    mx.eval(x, w, s, u, h, weight, q, k, v)

    def run(fn):
        return lambda: mx.eval(fn())

    if use_kernels:  # the fused kernel from the QKV projection (it applies RoPE too)
        qkv = mx.concatenate([t.transpose(0, 2, 1, 3).reshape(B, L, H) for t in (q, k, v)], axis=-1)
        mask = mx.ones((B, L))
        mx.eval(qkv)
        fused_grad = mx.grad(lambda x: kernels.attention(x, mask, HEADS, -1, 160000.0).sum())
        attention_grad = lambda q, k, v: fused_grad(qkv)  # noqa: E731
    else:
        attention_grad = mx.grad(lambda q, k, v: attention(q, k, v, 0.125, None).sum(), argnums=(0, 1, 2))
    model = AutoModel.from_pretrained(model_dir)
    model.train()
    ids = mx.random.randint(5, 50000, (B, L))
    mask = mx.ones((B, L), dtype=mx.int32)
    encoder_grad = nn.value_and_grad(model, lambda ids, mask: model(ids, mask).sum())

    fns = [lambda: x @ w, lambda: kernels.softmax(s), lambda: mx.exp(s), lambda: kernels.gelu_exact(u),
           lambda: kernels.layer_norm(h, weight, None, 1e-5), lambda: attention_grad(q, k, v)]
    out = [median_ms(run(f), repeat) for f in fns]
    out.append(median_ms(run(lambda: encoder_grad(ids, mask)), max(2, repeat // 4)))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=9)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--side", choices=["torch", "mlx", "bridge"], help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.side:
        if args.side == "torch":
            out = torch_side(args.repeat, args.threads, args.model)
        else:
            out = mlx_side(args.repeat, args.threads, args.model, use_kernels=args.side == "bridge")
        print(json.dumps(out))
        return 0
    sys.path.insert(0, os.path.dirname(__file__))
    from workload import CACHE, model_folder

    model_folder(3)  # the benchmark's 3-layer base-width model (HF folder written next to it)
    hf_dir = str(CACHE / "hf-modernbert-h768-l3-s0")
    results = {}
    for side in ("torch", "mlx", "bridge"):
        proc = subprocess.run([sys.executable, __file__, "--side", side, "--repeat", str(args.repeat),
                               "--threads", str(args.threads), "--model", hf_dir],
                              capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-3000:])
        results[side] = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"| op (B={B}, L={L}) | torch ms | MLX ops ms | bridge kernels ms | MLX ops / torch time "
          f"| bridge / torch time |\n|---|---|---|---|---|---|")
    for i, op in enumerate(OPS):
        t, m, b = results["torch"][i], results["mlx"][i], results["bridge"][i]
        print(f"| {op} | {t:.1f} | {m:.1f} | {b:.1f} | {m / t:.2f}× | {b / t:.2f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

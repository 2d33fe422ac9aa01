"""``mlx-hf-bridge`` command line: env | run | verify | demo."""

from __future__ import annotations

import argparse
import platform
import sys


def cmd_env(args) -> int:
    import mlx.core as mx

    from . import __version__, backend

    print(f"mlx_hf_bridge    {__version__}")
    print(f"python           {platform.python_version()} ({platform.system()} {platform.machine()})")
    print(f"mlx              {mx.__version__}")
    for name in ("transformers", "tokenizers", "safetensors", "huggingface_hub", "datasets", "numpy"):
        try:
            from importlib.metadata import version

            print(f"{name:<16} {version(name)}")
        except Exception:
            print(f"{name:<16} not installed")
    print(f"device           {backend.device_name()}")
    print(f"BLAS             {backend.blas_info()}")
    print(f"malloc           {backend.malloc_info()}")
    from . import kernels

    print(f"CPU kernels      {kernels.status()}")
    if args.bench:
        print(f"matmul fp32      {backend.matmul_gflops(args.size):.1f} GFLOP/s ({args.size}^3, best of 5)")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "run":  # everything after the script belongs to the script
        from .runner import main as run_main

        return run_main(argv[1:])
    if argv and argv[0] == "verify":
        from .verify import main as verify_main

        return verify_main(argv[1:])
    if argv and argv[0] == "serve":
        from .serving import main as serve_main

        return serve_main(argv[1:])
    if argv and argv[0] == "demo":
        from .demo import main as demo_main

        return demo_main(argv[1:])
    parser = argparse.ArgumentParser(prog="mlx-hf-bridge", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    env = sub.add_parser("env", help="versions, device, the active BLAS and CPU kernels")
    env.add_argument("--bench", action="store_true", help="also measure fp32 matmul GFLOP/s")
    env.add_argument("--size", type=int, default=1024)
    sub.add_parser("run", help="run a PyLate / sentence-transformers script on MLX: run script.py [args]")
    sub.add_parser("verify", help="compare a saved folder (PyLate ColBERT, sentence-transformers dense or ST 6 "
                   "multi-vector, Hugging Face) with the torch library: verify <folder>")
    sub.add_parser("demo", help="offline demo: fine-tune MiniLM as a ColBERT on BoolQ, evaluate, export")
    sub.add_parser("serve", help="serve a ColBERT's embeddings over HTTP (PyLate's /v1/embeddings): serve MODEL")
    args = parser.parse_args(argv)
    return cmd_env(args)


if __name__ == "__main__":
    sys.exit(main())

"""``pylate.server`` on MLX: PyLate's server script with its arguments (``--host 0.0.0.0 --port 8002
--model ...``), PyLate's ``/v1/embeddings`` schema, dynamic batching; see ``mlx_hf_bridge.serving``.

    python -m mlx_hf_bridge.pylate.server --model lightonai/GTE-ModernColBERT-v1
"""

from __future__ import annotations

import argparse

from ..serving import DEFAULT_MODEL_NAME, EmbeddingServer, add_arguments, build_server, serve

__all__ = ["DEFAULT_MODEL_NAME", "EmbeddingServer", "build_server", "main"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Run the ColBERT embedding server (PyLate's API) on MLX.")
    parser.add_argument("--model", default=DEFAULT_MODEL_NAME,
                        help="Model to serve, can be an HF model or a path to a model")
    add_arguments(parser, host="0.0.0.0")  # PyLate's default host
    return serve(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())

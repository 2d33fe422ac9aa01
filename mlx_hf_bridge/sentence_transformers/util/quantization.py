"""``sentence_transformers.util.quantization`` (ST 6.2) on MLX: ``quantize_embeddings`` as ST 6.2 computes it."""

from ...dense.quantization import quantize_embeddings

__all__ = ["quantize_embeddings"]

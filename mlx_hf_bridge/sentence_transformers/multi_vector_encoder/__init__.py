"""``sentence_transformers.multi_vector_encoder`` (ST 6) on MLX."""

from ...multi_vector import MultiVectorEncoder

__all__ = ["MultiVectorEncoder"]

"""``sentence_transformers.multi_vector_encoder.modules`` (ST 6) on MLX."""

from ...modules import MultiVectorMask

__all__ = ["MultiVectorMask"]

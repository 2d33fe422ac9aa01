"""``sentence_transformers.multi_vector_encoder.modules.multi_vector_mask`` (ST 6.2) on MLX."""

from ....modules.multi_vector_mask import MultiVectorMask

__all__ = ["MultiVectorMask"]

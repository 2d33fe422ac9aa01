"""``sentence_transformers.multi_vector_encoder.modules`` (ST 6) on MLX."""

from ....modules.multi_vector_mask import MultiVectorMask
from ....modules.token_pooling import BaseTokenPooling, HierarchicalTokenPooling, LambdaTokenPooling

__all__ = ["BaseTokenPooling", "HierarchicalTokenPooling", "LambdaTokenPooling", "MultiVectorMask"]

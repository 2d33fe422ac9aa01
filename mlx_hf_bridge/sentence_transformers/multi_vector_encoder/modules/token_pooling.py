"""``sentence_transformers.multi_vector_encoder.modules.token_pooling`` (ST 6.2) on MLX."""

from ....modules.token_pooling import BaseTokenPooling, HierarchicalTokenPooling, LambdaTokenPooling

__all__ = ["BaseTokenPooling", "HierarchicalTokenPooling", "LambdaTokenPooling"]

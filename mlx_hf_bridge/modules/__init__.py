"""sentence-transformers 6's module kinds on MLX, one file each, and ``layout`` (which library wrote
a folder, and whether the bridge can read it exactly)."""

from .dense import Dense
from .multi_vector_mask import MultiVectorMask
from .normalize import Normalize
from .token_pooling import BaseTokenPooling, HierarchicalTokenPooling, LambdaTokenPooling
from .transformer import QUERY_EXPANSION_STRATEGIES, Transformer

__all__ = ["BaseTokenPooling", "Dense", "HierarchicalTokenPooling", "LambdaTokenPooling", "MultiVectorMask", "Normalize",
           "QUERY_EXPANSION_STRATEGIES", "Transformer"]

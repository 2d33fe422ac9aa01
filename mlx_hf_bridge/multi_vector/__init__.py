"""The multi-vector (late-interaction) family in sentence-transformers 6's spelling."""

from .encoder import MultiVectorEncoder

__all__ = ["MultiVectorEncoder"]

"""``sentence_transformers.sentence_transformer`` (ST 6.2's dense family) on MLX."""

from ...dense.model import SentenceTransformer

__all__ = ["SentenceTransformer"]

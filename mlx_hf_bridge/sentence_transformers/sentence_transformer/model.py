"""``sentence_transformers.sentence_transformer.model`` (ST 6.2): ``SentenceTransformer`` on MLX."""

from ...dense.model import SentenceTransformer

__all__ = ["SentenceTransformer"]

"""``sentence_transformers.sentence_transformer.trainer`` (ST 6.2's path): the one trainer."""

from ..trainer import SentenceTransformerTrainer

__all__ = ["SentenceTransformerTrainer"]

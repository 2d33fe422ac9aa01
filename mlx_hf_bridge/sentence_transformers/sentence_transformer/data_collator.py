"""``sentence_transformers.sentence_transformer.data_collator`` (ST 6.2's path)."""

from ...engine.data import DefaultCollator as SentenceTransformerDataCollator

__all__ = ["SentenceTransformerDataCollator"]

"""``sentence_transformers.sentence_transformer.model_card`` (ST 6.2's path)."""

from ...model_card.card_data import SentenceTransformerModelCardData

__all__ = ["SentenceTransformerModelCardData"]

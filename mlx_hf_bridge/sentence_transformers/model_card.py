"""``sentence_transformers.model_card`` (ST 5.3's path, an ST 6 shim)."""

from ..model_card.card_data import SentenceTransformerModelCardData

__all__ = ["SentenceTransformerModelCardData"]

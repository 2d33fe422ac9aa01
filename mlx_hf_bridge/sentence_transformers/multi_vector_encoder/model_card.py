"""``sentence_transformers.multi_vector_encoder.model_card`` (ST 6.2's path)."""

from ...model_card.card_data import MultiVectorEncoderModelCardData

__all__ = ["MultiVectorEncoderModelCardData"]

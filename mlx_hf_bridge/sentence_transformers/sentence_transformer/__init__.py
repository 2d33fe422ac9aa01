"""``sentence_transformers.sentence_transformer`` (ST 6.2's dense family) on MLX."""

from ...dense.model import SentenceTransformer
from ...model_card.card_data import SentenceTransformerModelCardData
from .data_collator import SentenceTransformerDataCollator
from .trainer import SentenceTransformerTrainer
from .training_args import SentenceTransformerTrainingArguments

__all__ = ["SentenceTransformer", "SentenceTransformerModelCardData", "SentenceTransformerDataCollator",
           "SentenceTransformerTrainer", "SentenceTransformerTrainingArguments"]

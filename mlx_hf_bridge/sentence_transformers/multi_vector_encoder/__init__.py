"""``sentence_transformers.multi_vector_encoder`` (ST 6) on MLX."""

from ...colbert.scores import maxsim, maxsim_pairwise
from ...model_card.card_data import MultiVectorEncoderModelCardData
from ...multi_vector import MultiVectorEncoder
from .data_collator import MultiVectorEncoderDataCollator
from .trainer import MultiVectorEncoderTrainer
from .training_args import MultiVectorEncoderTrainingArguments

__all__ = [
    "MultiVectorEncoder",
    "MultiVectorEncoderDataCollator",
    "MultiVectorEncoderModelCardData",
    "MultiVectorEncoderTrainer",
    "MultiVectorEncoderTrainingArguments",
    "maxsim",
    "maxsim_pairwise",
]

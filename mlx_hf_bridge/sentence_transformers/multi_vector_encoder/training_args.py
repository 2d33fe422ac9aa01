"""``sentence_transformers.multi_vector_encoder.training_args`` (ST 6.2): the class lives with the
other argument classes (``sentence_transformers.training_args``, derived from the installed transformers)."""

from ..training_args import MultiVectorEncoderTrainingArguments

__all__ = ["MultiVectorEncoderTrainingArguments"]

"""``sentence_transformers.base.training_args`` (ST 6)."""

from ..training_args import BaseTrainingArguments

__all__ = ["BaseTrainingArguments"]

"""``sentence_transformers.sentence_transformer.training_args`` (ST 6.2's path; it re-exports the sampler
choices as ST 6.2's module does)."""

from ..training_args import BatchSamplers, MultiDatasetBatchSamplers, SentenceTransformerTrainingArguments

__all__ = ["BatchSamplers", "MultiDatasetBatchSamplers", "SentenceTransformerTrainingArguments"]

"""``sentence_transformers.base.sampler`` (ST 6): the batch-sampler choices (the samplers themselves are
``mlx_hf_bridge.engine.sampling``'s, picked by the trainer)."""

from ..training_args import BatchSamplers, MultiDatasetBatchSamplers

__all__ = ["BatchSamplers", "MultiDatasetBatchSamplers"]

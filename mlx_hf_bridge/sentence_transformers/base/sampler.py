"""``sentence_transformers.base.sampler`` (ST 6): the batch-sampler choices and the single-dataset
samplers with ST's constructor ``(dataset, batch_size, drop_last, valid_label_columns=None,
generator=None, seed=0)`` (``mlx_hf_bridge.engine.sampling``'s, which the trainer picks from
``BatchSamplers``; same algorithms, NumPy RNG: the order differs from torch's for the same seed)."""

from ...engine.sampling import DefaultBatchSampler, GroupByLabelBatchSampler, NoDuplicatesBatchSampler
from ..training_args import BatchSamplers, MultiDatasetBatchSamplers

__all__ = ["BatchSamplers", "MultiDatasetBatchSamplers", "DefaultBatchSampler", "GroupByLabelBatchSampler",
           "NoDuplicatesBatchSampler"]

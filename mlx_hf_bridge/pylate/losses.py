"""``pylate.losses`` on MLX: ``Contrastive``, ``CachedContrastive`` (real GradCache), ``Distillation``.

See :mod:`mlx_hf_bridge.colbert.losses` for the loss protocol and the CachedContrastive gradient
scale (B x the mean-loss gradients by default, as PyLate 1.6).
"""

from ..colbert.losses import CachedContrastive, Contrastive, Distillation, extract_skiplist_mask

__all__ = ["Contrastive", "Distillation", "CachedContrastive", "extract_skiplist_mask"]

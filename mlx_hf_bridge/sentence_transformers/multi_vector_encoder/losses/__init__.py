"""``sentence_transformers.multi_vector_encoder.losses`` (ST 6.2) on MLX.

Façades over the bridge's one implementation of each loss (``mlx_hf_bridge.colbert``): the
in-batch contrastive loss and GradCache (PyLate's ``Contrastive`` / ``CachedContrastive``) and the
distillation pipeline, with ST 6's conventions (``colbert.conventions``), names and defaults.
"""

from .cached_multiple_negatives_ranking import CachedMultiVectorMultipleNegativesRankingLoss
from .distill_kl_div import MultiVectorDistillKLDivLoss
from .margin_mse import MultiVectorMarginMSELoss
from .multiple_negatives_ranking import MultiVectorMultipleNegativesRankingLoss

__all__ = [
    "MultiVectorMultipleNegativesRankingLoss",
    "CachedMultiVectorMultipleNegativesRankingLoss",
    "MultiVectorDistillKLDivLoss",
    "MultiVectorMarginMSELoss",
]

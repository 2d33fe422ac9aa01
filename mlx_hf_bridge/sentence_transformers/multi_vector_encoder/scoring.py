"""``sentence_transformers.multi_vector_encoder.scoring`` (ST 6.2) on MLX: ColBERT (MaxSim) scoring
for the losses, on the bridge's one MaxSim (``colbert.scores.maxsim``). XTR scoring is not provided."""

from ...colbert.conventions import (
    colbert_kd_scores,
    colbert_scores,
    colbert_scores_pairwise,
    mean_colbert_kd_scores,
    mean_colbert_scores,
    mean_colbert_scores_pairwise,
)

__all__ = [
    "colbert_kd_scores", "colbert_scores", "colbert_scores_pairwise",
    "mean_colbert_kd_scores", "mean_colbert_scores", "mean_colbert_scores_pairwise",
]

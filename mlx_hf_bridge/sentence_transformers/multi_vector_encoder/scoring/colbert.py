"""``sentence_transformers.multi_vector_encoder.scoring.colbert`` (ST 6.2): MaxSim scoring, on ``colbert.conventions``."""

from ....colbert.conventions import (  # noqa: F401
    colbert_kd_scores,
    colbert_scores,
    colbert_scores_pairwise,
    mean_colbert_kd_scores,
    mean_colbert_scores,
    mean_colbert_scores_pairwise,
)

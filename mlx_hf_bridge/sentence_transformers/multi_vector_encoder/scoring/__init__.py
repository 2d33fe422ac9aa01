"""``sentence_transformers.multi_vector_encoder.scoring`` (ST 6.2) on MLX: the scoring callables a
multi-vector loss takes as ``similarity_fct``. ColBERT (MaxSim) scoring runs on the bridge's one
MaxSim (``colbert.scores.maxsim``, via ``colbert.conventions``); XTR's global top-k token retrieval
on ``colbert.xtr``. Submodules ``scoring.colbert`` / ``scoring.xtr`` as in ST 6.2."""

from .colbert import (
    colbert_kd_scores,
    colbert_scores,
    colbert_scores_pairwise,
    mean_colbert_kd_scores,
    mean_colbert_scores,
    mean_colbert_scores_pairwise,
)
from .xtr import XTRKDScores, XTRScores, xtr_kd_scores, xtr_scores, xtr_scores_pairwise

__all__ = [
    "colbert_scores", "colbert_scores_pairwise", "colbert_kd_scores",
    "mean_colbert_scores", "mean_colbert_scores_pairwise", "mean_colbert_kd_scores",
    "XTRScores", "XTRKDScores", "xtr_scores", "xtr_scores_pairwise", "xtr_kd_scores",
]

"""``pylate.scores`` on MLX (multiplicative masking, query-major ``ColBERTScores``)."""

from enum import Enum

from ..colbert.scores import ColBERTScores, colbert_kd_scores, colbert_scores, colbert_scores_pairwise


class SimilarityFunction(str, Enum):
    MAXSIM = "MaxSim"


__all__ = ["ColBERTScores", "SimilarityFunction", "colbert_kd_scores", "colbert_scores", "colbert_scores_pairwise"]

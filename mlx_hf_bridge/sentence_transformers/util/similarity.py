"""``sentence_transformers.util.similarity`` on MLX (ST 5.3 / 6.2 names)."""

__all__ = [
    "SimilarityFunction", "cos_sim", "dot_score", "euclidean_sim", "manhattan_sim", "normalize_embeddings",
    "pairwise_angle_sim", "pairwise_cos_sim", "pairwise_dot_score", "pairwise_euclidean_sim",
    "pairwise_manhattan_sim", "truncate_embeddings", "maxsim", "maxsim_pairwise", "mean_maxsim",
    "mean_maxsim_pairwise", "pytorch_cos_sim",
]

from ...dense.similarity import (  # noqa: F401
    SimilarityFunction,
    cos_sim,
    dot_score,
    euclidean_sim,
    manhattan_sim,
    normalize_embeddings,
    pairwise_angle_sim,
    pairwise_cos_sim,
    pairwise_dot_score,
    pairwise_euclidean_sim,
    pairwise_manhattan_sim,
    truncate_embeddings,
)
from ...colbert.scores import maxsim, maxsim_pairwise, mean_maxsim, mean_maxsim_pairwise  # noqa: F401

pytorch_cos_sim = cos_sim  # ST's old name

"""``sentence_transformers.util`` on MLX: similarity functions (``util.similarity``); more helpers are
added beside it (quantization, retrieval)."""

from .similarity import *  # noqa: F401,F403
from .similarity import SimilarityFunction, cos_sim, dot_score, pytorch_cos_sim  # noqa: F401
from .quantization import quantize_embeddings  # noqa: F401,E402

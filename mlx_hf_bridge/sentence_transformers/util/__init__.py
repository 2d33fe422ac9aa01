"""``sentence_transformers.util`` on MLX: similarity functions (``util.similarity``), ``quantize_embeddings``
(``util.quantization``), ``paraphrase_mining`` / ``paraphrase_mining_embeddings`` and ``resolve_ids``
(``util.dataset``), ``semantic_search``, ``similarity_fct_name`` and ``LoggingHandler``."""

from .similarity import *  # noqa: F401,F403
from .similarity import SimilarityFunction, cos_sim, dot_score, pytorch_cos_sim  # noqa: F401
from .quantization import quantize_embeddings  # noqa: F401,E402
from ...evaluation.mining import paraphrase_mining, paraphrase_mining_embeddings  # noqa: F401,E402
from .dataset import resolve_ids  # noqa: F401,E402
from ...dense.retrieval import information_retrieval, semantic_search  # noqa: F401,E402
from ...losses._common import similarity_fct_name  # noqa: F401,E402
from ..readers import LoggingHandler  # noqa: F401,E402

"""``sentence_transformers.evaluation`` (ST 5.3's path; ST 6.2 keeps it as a deprecated alias of
``sentence_transformer.evaluation``) on MLX: the evaluators of :mod:`mlx_hf_bridge.evaluation`.

The trainer imports ``SequentialEvaluator`` from here; PyLate's evaluators subclass ``SentenceEvaluator``.
ST 5.3's per-class module paths (``sentence_transformers.evaluation.InformationRetrievalEvaluator``...)
are the bridge's modules under those names.
"""

import importlib
import sys

from ...evaluation import (  # noqa: F401
    BaseEvaluator,
    BinaryClassificationEvaluator,
    EmbeddingSimilarityEvaluator,
    InformationRetrievalEvaluator,
    MSEEvaluator,
    NanoBEIREvaluator,
    ParaphraseMiningEvaluator,
    RerankingEvaluator,
    SentenceEvaluator,
    SequentialEvaluator,
    SimilarityFunction,
    TripletEvaluator,
)

__all__ = [
    "SentenceEvaluator", "SimilarityFunction", "BinaryClassificationEvaluator", "EmbeddingSimilarityEvaluator",
    "InformationRetrievalEvaluator", "MSEEvaluator", "ParaphraseMiningEvaluator", "SequentialEvaluator",
    "TripletEvaluator", "RerankingEvaluator", "NanoBEIREvaluator",
]

# ST 5.3's module per class -> the bridge module that defines it
_ST5_MODULES = {
    "BinaryClassificationEvaluator": "binary_classification", "EmbeddingSimilarityEvaluator": "embedding_similarity",
    "InformationRetrievalEvaluator": "information_retrieval", "MSEEvaluator": "mse", "NanoBEIREvaluator": "nano_beir",
    "ParaphraseMiningEvaluator": "paraphrase_mining", "RerankingEvaluator": "reranking", "SentenceEvaluator": "base",
    "SequentialEvaluator": "sequential", "TripletEvaluator": "triplet",
}


def alias_modules(package: str, modules: dict) -> None:
    """Registers ``package.<name>`` as ``mlx_hf_bridge.evaluation.<module>`` (imports find it in sys.modules)."""
    for name, module in modules.items():
        sys.modules.setdefault(f"{package}.{name}", importlib.import_module(f"mlx_hf_bridge.evaluation.{module}"))


alias_modules(__name__, _ST5_MODULES)
sys.modules.setdefault(f"{__name__}.SimilarityFunction", importlib.import_module("mlx_hf_bridge.dense.similarity"))

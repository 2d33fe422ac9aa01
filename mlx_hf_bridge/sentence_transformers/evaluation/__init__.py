"""``sentence_transformers.evaluation`` (ST 5.3's path; ST 6.2 keeps it as a deprecated alias of
``sentence_transformer.evaluation``) on MLX: the evaluators of :mod:`mlx_hf_bridge.evaluation`.

The trainer imports ``SequentialEvaluator`` from here; PyLate's evaluators subclass ``SentenceEvaluator``.
ST 5.3's per-class module paths (``sentence_transformers.evaluation.InformationRetrievalEvaluator``...)
are the bridge's modules under those names.
"""

import importlib
import sys
import types

from ...evaluation import (  # noqa: F401
    BaseEvaluator,
    BinaryClassificationEvaluator,
    EmbeddingSimilarityEvaluator,
    InformationRetrievalEvaluator,
    LabelAccuracyEvaluator,
    MSEEvaluator,
    NanoBEIREvaluator,
    ParaphraseMiningEvaluator,
    RerankingEvaluator,
    SentenceEvaluator,
    SequentialEvaluator,
    SimilarityFunction,
    TranslationEvaluator,
    TripletEvaluator,
)

__all__ = [
    "SentenceEvaluator", "SimilarityFunction", "BinaryClassificationEvaluator", "EmbeddingSimilarityEvaluator",
    "InformationRetrievalEvaluator", "MSEEvaluator", "ParaphraseMiningEvaluator", "SequentialEvaluator",
    "TranslationEvaluator", "TripletEvaluator", "RerankingEvaluator",
    "NanoBEIREvaluator", "LabelAccuracyEvaluator",
]

# ST 5.3's module per class -> the bridge module that defines it
_ST5_MODULES = {
    "BinaryClassificationEvaluator": "binary_classification", "EmbeddingSimilarityEvaluator": "embedding_similarity",
    "InformationRetrievalEvaluator": "information_retrieval", "LabelAccuracyEvaluator": "label_accuracy", "MSEEvaluator": "mse", "NanoBEIREvaluator": "nano_beir",
    "ParaphraseMiningEvaluator": "paraphrase_mining", "RerankingEvaluator": "reranking", "SentenceEvaluator": "base",
    "SequentialEvaluator": "sequential", "TranslationEvaluator": "translation", "TripletEvaluator": "triplet",
}


def alias_modules(package: str, modules: dict) -> None:
    """Registers ``package.<name>`` as ``mlx_hf_bridge.evaluation.<module>`` (imports find it in sys.modules)."""
    for name, module in modules.items():
        target = f"mlx_hf_bridge.evaluation.{module}" if module else "mlx_hf_bridge.dense.similarity"
        sys.modules.setdefault(f"{package}.{name}", importlib.import_module(target))


class _ClassNamedModules(types.ModuleType):
    """Importing ``...evaluation.TripletEvaluator`` (a module named after its class) under another
    name, as ``run`` does, makes Python set the package attribute to the module: keep the class."""

    def __setattr__(self, name, value):
        if isinstance(value, types.ModuleType) and isinstance(getattr(self, name, None), type):
            return
        super().__setattr__(name, value)


alias_modules(__name__, {**_ST5_MODULES, "SimilarityFunction": None})
sys.modules[__name__].__class__ = _ClassNamedModules

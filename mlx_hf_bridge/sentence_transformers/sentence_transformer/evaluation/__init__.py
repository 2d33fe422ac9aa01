"""``sentence_transformers.sentence_transformer.evaluation`` (ST 6.2's path) on MLX, with ST 6.2's
module names (``...evaluation.information_retrieval``...) for the bridge's modules."""

from ....evaluation import (  # noqa: F401
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
    "BaseEvaluator", "SentenceEvaluator", "SimilarityFunction", "BinaryClassificationEvaluator",
    "EmbeddingSimilarityEvaluator", "InformationRetrievalEvaluator", "MSEEvaluator", "ParaphraseMiningEvaluator",
    "SequentialEvaluator", "TranslationEvaluator", "TripletEvaluator", "RerankingEvaluator",
    "NanoBEIREvaluator", "LabelAccuracyEvaluator",
]

from ...evaluation import alias_modules  # noqa: E402

alias_modules(__name__, {name: name for name in (
    "binary_classification", "embedding_similarity", "information_retrieval", "label_accuracy", "mse", "nano_beir", "paraphrase_mining",
    "reranking", "translation", "triplet",
)})

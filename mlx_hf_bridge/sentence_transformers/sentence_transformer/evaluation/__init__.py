"""``sentence_transformers.sentence_transformer.evaluation`` (ST 6.2's path) on MLX."""

from ....evaluation import (  # noqa: F401
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
    "BaseEvaluator", "SentenceEvaluator", "SimilarityFunction", "BinaryClassificationEvaluator",
    "EmbeddingSimilarityEvaluator", "InformationRetrievalEvaluator", "MSEEvaluator", "ParaphraseMiningEvaluator",
    "SequentialEvaluator", "TripletEvaluator", "RerankingEvaluator", "NanoBEIREvaluator",
]

"""``sentence_transformers.evaluation`` (ST 5.3's path; ST 6.2 keeps it as a deprecated alias of
``sentence_transformer.evaluation``) on MLX: the evaluators of :mod:`mlx_hf_bridge.evaluation`.

The trainer imports ``SequentialEvaluator`` from here; PyLate's evaluators subclass ``SentenceEvaluator``.
"""

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

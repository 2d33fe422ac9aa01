"""``sentence_transformers.multi_vector_encoder.evaluation`` (ST 6.2) on MLX: the evaluators of
:mod:`mlx_hf_bridge.evaluation.multi_vector`."""

from ....evaluation.multi_vector import (
    MultiVectorInformationRetrievalEvaluator,
    MultiVectorNanoBEIREvaluator,
    MultiVectorRerankingEvaluator,
    MultiVectorTripletEvaluator,
)
from ....evaluation.multi_vector_distillation import MultiVectorDistillationEvaluator

__all__ = [
    "MultiVectorInformationRetrievalEvaluator",
    "MultiVectorNanoBEIREvaluator",
    "MultiVectorTripletEvaluator",
    "MultiVectorDistillationEvaluator",
    "MultiVectorRerankingEvaluator",
]

"""``sentence_transformers.base.evaluation`` (ST 6.2) on MLX: the evaluator base and ``SequentialEvaluator``."""

from .evaluator import BaseEvaluator, SentenceEvaluator
from .sequential import SequentialEvaluator

__all__ = ["BaseEvaluator", "SentenceEvaluator", "SequentialEvaluator"]

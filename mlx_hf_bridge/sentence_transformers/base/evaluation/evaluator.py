"""``sentence_transformers.base.evaluation.evaluator`` (ST 6.2)."""

from ....evaluation.base import BaseEvaluator, SentenceEvaluator

__all__ = ["BaseEvaluator", "SentenceEvaluator"]

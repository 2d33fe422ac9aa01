"""``sentence_transformers.base.evaluation.sequential`` (ST 6.2)."""

from ....evaluation.sequential import SequentialEvaluator

__all__ = ["SequentialEvaluator"]

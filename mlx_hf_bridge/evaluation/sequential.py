"""sentence-transformers' ``SequentialEvaluator``."""

from __future__ import annotations

from .base import SentenceEvaluator


class SequentialEvaluator(SentenceEvaluator):
    """Runs each evaluator in turn; returns their merged metrics plus ``sequential_score``, which is
    ``main_score_function`` of their primary scores (default: the last one's). An evaluator that
    returns a float contributes ``{"evaluator_<i>": score}``; one without a ``primary_metric``
    contributes its first value. No evaluators give a score of 0.0 (ST 6.2)."""

    def __init__(self, evaluators, main_score_function=lambda scores: scores[-1]):
        super().__init__()
        self.evaluators = list(evaluators)
        self.main_score_function = main_score_function

    def __call__(self, model, output_path: str | None = None, epoch: int = -1, steps: int = -1) -> dict[str, float]:
        evaluations, scores = [], []
        for evaluator_idx, evaluator in enumerate(self.evaluators):
            evaluation = evaluator(model, output_path, epoch, steps)
            if not isinstance(evaluation, dict):
                scores.append(evaluation)
                evaluation = {f"evaluator_{evaluator_idx}": evaluation}
            elif getattr(evaluator, "primary_metric", None) is not None:
                scores.append(evaluation[evaluator.primary_metric])
            else:
                scores.append(evaluation[list(evaluation.keys())[0]])
            evaluations.append(evaluation)

        self.primary_metric = "sequential_score"
        main_score = self.main_score_function(scores) if scores else 0.0
        results = {key: value for evaluation in evaluations for key, value in evaluation.items()}
        results["sequential_score"] = main_score
        return results

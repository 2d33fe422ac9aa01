"""The evaluator plumbing the trainer uses: ST's ``SentenceEvaluator`` base and ``SequentialEvaluator``.

An evaluator is any callable ``evaluator(model, output_path=None, epoch=-1, steps=-1) -> dict``;
the trainer prefixes its keys with ``eval_``. Retrieval evaluators live in ``mlx_hf_bridge.pylate.evaluation``.
"""

from __future__ import annotations


class SentenceEvaluator:
    """Base class: subclasses implement ``__call__`` and set ``primary_metric``."""

    greater_is_better = True
    primary_metric: str | None = None

    def __call__(self, model, output_path=None, epoch: int = -1, steps: int = -1) -> dict:
        raise NotImplementedError

    @staticmethod
    def prefix_name_to_metrics(metrics: dict, name: str) -> dict:
        return {f"{name}_{k}" if name else k: v for k, v in metrics.items()}


class SequentialEvaluator(SentenceEvaluator):
    """Runs evaluators in turn; merged metrics plus ``sequential_score`` (ST's semantics)."""

    def __init__(self, evaluators, main_score_function=lambda scores: scores[-1]):
        self.evaluators = list(evaluators)
        self.main_score_function = main_score_function
        self.primary_metric = "sequential_score"

    def __call__(self, model, output_path=None, epoch: int = -1, steps: int = -1) -> dict:
        evaluations, scores = [], []
        for i, evaluator in enumerate(self.evaluators):
            result = evaluator(model, output_path=output_path, epoch=epoch, steps=steps)
            if not isinstance(result, dict):
                scores.append(result)
                result = {f"evaluator_{i}": result}
            else:
                key = getattr(evaluator, "primary_metric", None)
                scores.append(result[key] if key in result else next(iter(result.values())))
            evaluations.append(result)
        merged = {k: v for result in evaluations for k, v in result.items()}
        merged["sequential_score"] = self.main_score_function(scores)
        return merged

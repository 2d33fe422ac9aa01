"""``pipeline(task, model=...)`` on MLX: transformers' text-classification, fill-mask and
token-classification pipelines (their output formats and rules) over the bridge's task models.

    >>> from mlx_hf_bridge.transformers import pipeline                    # doctest: +SKIP
    >>> classifier = pipeline("text-classification", model="out/checkpoint-500")
    >>> classifier(["great film", "dull"], top_k=None)

``model``: a folder / hub id (loaded with the task's ``AutoModelFor*``) or a bridge task model;
``tokenizer`` defaults to the model's folder. ``device`` / ``device_map`` / ``dtype`` are accepted and
ignored (MLX places arrays itself; the weights stay float32). No torch on this path.
"""

from __future__ import annotations

from .base import Pipeline, PipelineException
from .fill_mask import FillMaskPipeline
from .text_classification import TextClassificationPipeline
from .token_classification import NerPipeline, TokenClassificationPipeline

ALIASES = {"sentiment-analysis": "text-classification", "ner": "token-classification"}
TASKS = {
    "text-classification": (TextClassificationPipeline, "AutoModelForSequenceClassification", "ForSequenceClassification"),
    "fill-mask": (FillMaskPipeline, "AutoModelForMaskedLM", "ForMaskedLM"),
    "token-classification": (TokenClassificationPipeline, "AutoModelForTokenClassification", "ForTokenClassification"),
}
_IGNORED = ("device", "device_map", "dtype", "torch_dtype", "framework", "use_fast")


def _task_of(config) -> str:
    for architecture in getattr(config, "architectures", None) or []:
        for task, (_, _, suffix) in TASKS.items():
            if architecture.endswith(suffix):
                return task
    raise ValueError(
        f"Cannot infer the task from the model's config (architectures={getattr(config, 'architectures', None)}). "
        f"Pass it: pipeline(task, model=...) with task one of {', '.join(sorted([*TASKS, *ALIASES]))}.")


def pipeline(task: str | None = None, model=None, config=None, tokenizer=None, revision: str | None = None,
             token=None, trust_remote_code: bool | None = None, model_kwargs: dict | None = None,
             pipeline_class=None, **kwargs) -> Pipeline:
    """transformers' ``pipeline`` for the tasks above; other keyword arguments go to the pipeline
    (``top_k``, ``function_to_apply``, ``aggregation_strategy``, ``batch_size``, ...)."""
    from .. import auto

    if model is None:
        raise ValueError(
            "pipeline() needs model=: a folder or hub id of a trained model, or a bridge task model (transformers "
            "would download a default checkpoint; the bridge does not pick one for you).")
    for name in _IGNORED:
        kwargs.pop(name, None)
    if task is not None:
        task = ALIASES.get(task, task)
        if task not in TASKS:
            raise KeyError(f"Unknown task {task!r} for the bridge's pipeline: available tasks are "
                           f"{', '.join(sorted([*TASKS, *ALIASES]))}. Other pipelines need transformers on torch.")
    if isinstance(model, str):
        if task is None:
            from transformers import AutoConfig

            task = _task_of(AutoConfig.from_pretrained(model, revision=revision, token=token,
                                                       trust_remote_code=bool(trust_remote_code)))
        loader = getattr(auto, TASKS[task][1])
        name = model
        model = loader.from_pretrained(model, revision=revision, token=token,
                                       trust_remote_code=bool(trust_remote_code), **(model_kwargs or {}))
    else:
        task = task or _task_of(model.config)
        name = getattr(model.config, "_name_or_path", None)
    if tokenizer is None or isinstance(tokenizer, str):
        source = tokenizer or name
        if not source:
            raise ValueError("The model has no folder to read a tokenizer from: pass tokenizer= (a tokenizer or a path).")
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(source, revision=revision, token=token)
    cls = pipeline_class or TASKS[task][0]
    return cls(model=model, tokenizer=tokenizer, task=task, **kwargs)


__all__ = ["FillMaskPipeline", "NerPipeline", "Pipeline", "PipelineException", "TextClassificationPipeline",
           "TokenClassificationPipeline", "pipeline"]

"""transformers-style task heads (sequence classification, masked LM, token classification) on the
bridge's backbones. One module per architecture family registers its head classes; a new backbone
plugs in by adding ``tasks/<model_type>.py`` that calls :func:`register_head` (or by calling it
from anywhere before loading)."""

from __future__ import annotations

from importlib import import_module

from .base import TaskModel, TaskOutput

TASKS = ("sequence-classification", "masked-lm", "token-classification")
_HEADS: dict[tuple[str, str], type] = {}


def register_head(model_type: str, task: str, cls: type):
    if task not in TASKS:
        raise ValueError(f"Unknown task {task!r}; one of {', '.join(TASKS)}.")
    _HEADS[(model_type, task)] = cls
    return cls


def head_class(model_type: str, task: str) -> type:
    """The task-model class for an HF ``model_type`` (imports ``tasks/<model_type>.py`` on first use)."""
    if (model_type, task) not in _HEADS:
        module = f"{__name__}.{model_type.replace('-', '_')}"  # xlm-roberta -> tasks/xlm_roberta.py
        try:
            import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
    if (model_type, task) not in _HEADS:
        have = sorted({m for m, t in _HEADS if t == task}) or ["bert", "modernbert"]
        raise ValueError(
            f"No {task} head for model_type {model_type!r} in mlx_hf_bridge (heads exist for: {', '.join(have)}). "
            "Use one of those architectures, or run this model with transformers on torch."
        )
    return _HEADS[(model_type, task)]


__all__ = ["TASKS", "TaskModel", "TaskOutput", "head_class", "register_head"]

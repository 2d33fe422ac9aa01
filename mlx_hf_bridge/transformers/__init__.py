"""transformers-shaped entry points backed by MLX modules."""

from .auto import AutoModel, AutoModelForMaskedLM, AutoModelForSequenceClassification, AutoModelForTokenClassification

_FROM_TRANSFORMERS = ("AutoConfig", "AutoTokenizer")  # configs and tokenizers are transformers' own
_TRAINER = {"Trainer": "trainer", "TrainingArguments": "training_args", "EarlyStoppingCallback": "trainer_eval",
            "EvalPrediction": "trainer_eval", "PredictionOutput": "trainer_eval"}
_ENGINE = ("TrainerCallback", "TrainerControl", "TrainerState")
_PIPELINES = ("pipeline", "Pipeline", "TextClassificationPipeline", "FillMaskPipeline", "TokenClassificationPipeline",
              "NerPipeline")
_COLLATORS = ("DataCollatorForLanguageModeling", "DataCollatorForTokenClassification", "DataCollatorWithPadding",
              "DefaultDataCollator", "default_data_collator")


def __getattr__(name):
    if name in _TRAINER:
        from importlib import import_module

        return getattr(import_module(f"{__name__}.{_TRAINER[name]}"), name)
    if name in _ENGINE:
        from ..engine import callbacks, state

        return getattr(callbacks if name == "TrainerCallback" else state, name)
    if name in _COLLATORS:
        from . import data_collator

        return getattr(data_collator, name)
    if name in _PIPELINES:
        from . import pipelines

        return getattr(pipelines, name)
    if name in _FROM_TRANSFORMERS:  # lazily: importing them makes transformers import torch when installed
        import transformers

        return getattr(transformers, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    *_COLLATORS,
    *_PIPELINES,
    *_TRAINER,
    *_ENGINE,
    "AutoConfig",
    "AutoModel",
    "AutoModelForMaskedLM",
    "AutoModelForSequenceClassification",
    "AutoModelForTokenClassification",
    "AutoTokenizer",
]

"""transformers-shaped entry points backed by MLX modules."""

from .auto import AutoModel, AutoModelForMaskedLM, AutoModelForSequenceClassification, AutoModelForTokenClassification

_FROM_TRANSFORMERS = ("AutoConfig", "AutoTokenizer")  # configs and tokenizers are transformers' own
_COLLATORS = ("DataCollatorForLanguageModeling", "DataCollatorForTokenClassification", "DataCollatorWithPadding",
              "DefaultDataCollator", "default_data_collator")


def __getattr__(name):
    if name in _COLLATORS:
        from . import data_collator

        return getattr(data_collator, name)
    if name in _FROM_TRANSFORMERS:  # lazily: importing them makes transformers import torch when installed
        import transformers

        return getattr(transformers, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    *_COLLATORS,
    "AutoConfig",
    "AutoModel",
    "AutoModelForMaskedLM",
    "AutoModelForSequenceClassification",
    "AutoModelForTokenClassification",
    "AutoTokenizer",
]

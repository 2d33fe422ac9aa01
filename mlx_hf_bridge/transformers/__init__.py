"""transformers-shaped entry points backed by MLX modules."""

from .auto import AutoModel, AutoModelForMaskedLM, AutoModelForSequenceClassification, AutoModelForTokenClassification

_FROM_TRANSFORMERS = ("AutoConfig", "AutoTokenizer")  # configs and tokenizers are transformers' own


def __getattr__(name):
    if name in _FROM_TRANSFORMERS:  # lazily: importing them makes transformers import torch when installed
        import transformers

        return getattr(transformers, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AutoConfig",
    "AutoModel",
    "AutoModelForMaskedLM",
    "AutoModelForSequenceClassification",
    "AutoModelForTokenClassification",
    "AutoTokenizer",
]

"""One module per architecture, keyed by HF ``model_type``."""

from importlib import import_module

SUPPORTED_MODEL_TYPES = ("bert", "gemma3_text", "lfm2", "modernbert", "qwen3", "roberta", "t5gemma", "xlm-roberta", "xmod")


def get_architecture(model_type: str):
    """The module (``ModelArgs``, ``Model``) for an HF ``model_type``."""
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(
            f"Unsupported model_type {model_type!r}. mlx_hf_bridge supports: "
            f"{', '.join(SUPPORTED_MODEL_TYPES)}."
        )
    return import_module(f"{__name__}.{model_type.replace('-', '_')}")  # xlm-roberta -> xlm_roberta.py

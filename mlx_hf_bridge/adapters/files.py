"""PEFT's adapter folder: ``adapter_config.json`` + ``adapter_model.safetensors`` (what ``PeftModel.save_pretrained``
and transformers' ``save_pretrained`` on a model with an adapter write, and what ST writes into its Transformer
module folder in place of ``config.json`` / ``model.safetensors``)."""

from __future__ import annotations

import json
from pathlib import Path

from . import lora
from .config import lora_settings

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def is_adapter_folder(folder) -> bool:
    folder = Path(folder)
    return (folder / ADAPTER_CONFIG).is_file() and not (folder / "config.json").is_file()


def read_adapter_config(folder) -> dict:
    from ..errors import read_json

    path = Path(folder) / ADAPTER_CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: no {ADAPTER_CONFIG}; load_adapter needs a PEFT adapter folder "
                                "(adapter_config.json + adapter_model.safetensors).")
    return read_json(path, "the PEFT adapter settings")


def base_folder_of(folder):
    """Where an adapter folder's base model lives (``base_model_name_or_path``), resolved as a path or hub id."""
    from ..loading import resolve_path

    base = read_adapter_config(folder).get("base_model_name_or_path")
    if not base:
        raise ValueError(f"{folder}/{ADAPTER_CONFIG} has no base_model_name_or_path, so the base model is unknown; "
                         "load the base model and call load_adapter(folder) on it.")
    return resolve_path(base)


def load_adapter_folder(backbone, folder):
    """Validate the folder's config, wrap its target modules, then load its tensors (all before returning)."""
    from ..loading import read_safetensors

    folder = Path(folder)
    settings = lora_settings(read_adapter_config(folder))
    weights = folder / ADAPTER_WEIGHTS
    if not weights.is_file():
        raise FileNotFoundError(f"{folder}: no {ADAPTER_WEIGHTS} beside {ADAPTER_CONFIG} (PEFT's .bin files are "
                                "not read: re-save with safe_serialization=True).")
    tensors = read_safetensors(weights, "Re-save the adapter with peft or the bridge")
    lora.inject(backbone, settings)
    lora.load_adapter_state(backbone, tensors, str(weights))
    return settings


def write_adapter_files(backbone, folder, tokenizer=None):
    """What transformers' ``save_pretrained`` writes for a model with a PEFT adapter: the adapter only (ST 5.3
    and 6.2 write no ``config.json`` / base weights then: the base stays where ``base_model_name_or_path`` says)."""
    from ..io_utils import write_safetensors

    folder = Path(folder)
    config = dict(backbone._lora_config)
    config.setdefault("base_model_name_or_path", None)
    (folder / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    state = lora.adapter_state(backbone)
    if _vocab_resized(backbone, config["base_model_name_or_path"]):  # PEFT's save_embedding_layers="auto"
        state[lora.embedding_key(backbone)] = backbone.get_input_embeddings().weight
    write_safetensors(folder / ADAPTER_WEIGHTS, state, metadata={"format": "pt"})
    if tokenizer is not None:
        tokenizer.save_pretrained(str(folder))


def _vocab_resized(backbone, base) -> bool:
    """PEFT's test: the base model's config.json has another vocab_size than the model being saved (a base
    whose config cannot be found counts as not resized, as PEFT assumes, with its warning)."""
    import warnings

    from ..errors import read_json
    from ..loading import resolve_path

    if not base:
        return False
    try:
        config_file = resolve_path(base) / "config.json"
    except Exception:  # noqa: BLE001 - offline / unknown id: PEFT's "could not determine"
        config_file = None
    if config_file is None or not config_file.is_file():
        warnings.warn(f"Could not find a config file in {base} - will assume that the vocabulary was not modified.")
        return False
    vocab = read_json(config_file, "the base model's config").get("vocab_size")
    return vocab is not None and vocab != int(backbone.get_input_embeddings().weight.shape[0])

"""HF folder or hub id -> MLX encoder + config + tokenizer, and the inverse (saving is exporting)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import mlx.core as mx
import numpy as np

from .io_utils import atomic_dir, atomic_file
from .models import SUPPORTED_MODEL_TYPES, get_architecture

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def resolve_path(name_or_path, revision=None, token=None, cache_folder=None, local_files_only=False) -> Path:
    """A local folder, or a hub id downloaded through ``huggingface_hub`` (honours HF_HUB_OFFLINE)."""
    path = Path(os.path.expanduser(str(name_or_path)))
    if path.is_dir():
        return path
    looks_local = str(name_or_path).startswith((".", "/", "~")) or path.exists() or str(name_or_path).count("/") > 1
    if looks_local:
        if path.exists():
            raise NotADirectoryError(f"{name_or_path} is a file; pass the model folder that contains it.")
        raise FileNotFoundError(
            f"Model path {str(name_or_path)!r} does not exist. Pass an existing local folder "
            "(an HF, sentence-transformers or PyLate save) or a hub id such as 'org/name'."
        )
    from huggingface_hub import snapshot_download

    try:
        return Path(
            snapshot_download(
                str(name_or_path),
                revision=revision,
                token=token,
                cache_dir=cache_folder,
                local_files_only=local_files_only,
            )
        )
    except Exception as exc:  # huggingface_hub raises many types; name the cause and the fix
        raise OSError(
            f"Could not find {str(name_or_path)!r} locally nor download it from the Hub "
            f"({type(exc).__name__}: {exc}). Check the id / path, your network, or set "
            "HF_HUB_OFFLINE=1 and pass a local folder."
        ) from exc


def _read_safetensors(path: Path) -> dict:
    try:
        return mx.load(str(path))
    except Exception as exc:
        raise ValueError(
            f"Could not read {path} ({exc}). The file is truncated or not a safetensors file; "
            "re-download or re-save the model."
        ) from exc


def load_weights(folder: Path) -> dict[str, mx.array]:
    """All tensors of an HF folder: ``model.safetensors``, a sharded index, or ``pytorch_model.bin``."""
    folder = Path(folder)
    single = folder / "model.safetensors"
    index = folder / "model.safetensors.index.json"
    if single.exists():
        return _read_safetensors(single)
    if index.exists():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        weights = {}
        for shard in shards:
            weights.update(_read_safetensors(folder / shard))
        return weights
    binary = folder / "pytorch_model.bin"
    if binary.exists():
        from .torch_pickle import load_torch_bin

        return {k: mx.array(v) for k, v in load_torch_bin(binary).items()}
    raise FileNotFoundError(
        f"No weights in {folder}: expected one of {', '.join(WEIGHT_FILES)}. "
        "Is this the model folder (not its parent), and did the download finish?"
    )


def load_config(folder: Path):
    """The transformers config object (configs and tokenizers are all we use transformers for)."""
    cfg_path = Path(folder) / "config.json"
    if not cfg_path.exists():
        raise FileNotFoundError(f"No config.json in {folder}; it is not a Hugging Face model folder.")
    model_type = json.loads(cfg_path.read_text()).get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        get_architecture(model_type)  # raises the error that lists the supported types
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(folder))


def load_tokenizer(folder: Path, **kwargs):
    folder = Path(folder)
    if not any((folder / f).exists() for f in ("tokenizer.json", "vocab.txt", "tokenizer_config.json")):
        raise FileNotFoundError(
            f"No tokenizer in {folder} (tokenizer.json, tokenizer_config.json or vocab.txt). "
            "Copy the base model's tokenizer files into the folder."
        )
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder), **kwargs)


def build_model(config, weights: dict | None = None, dtype=mx.float32):
    """Instantiate the MLX encoder for ``config`` and load ``weights`` (HF names) strictly."""
    arch = get_architecture(config.model_type)
    args = arch.ModelArgs.from_dict(config.to_dict())
    model = arch.Model(args)
    if weights is not None:
        weights = arch.Model.sanitize(weights)
        if "pooler" in model and not arch.Model.has_pooler(weights):
            del model["pooler"]
        weights = {k: v.astype(dtype) if mx.issubdtype(v.dtype, mx.floating) else v for k, v in weights.items()}
        model.load_weights(list(weights.items()), strict=True)
    model.config = config
    model.eval()  # like transformers' from_pretrained; MLX modules start in training mode
    mx.eval(model.parameters())
    return model


def load_encoder(name_or_path, dtype=mx.float32, tokenizer_kwargs=None, **hub_kwargs):
    """Returns ``(model, config, tokenizer, folder)``; bad input fails before weights are read."""
    folder = resolve_path(name_or_path, **hub_kwargs)
    config = load_config(folder)
    tokenizer = load_tokenizer(folder, **(tokenizer_kwargs or {}))
    weights = load_weights(folder)
    model = build_model(config, weights, dtype)
    return model, config, tokenizer, folder


def encoder_state(model) -> dict[str, mx.array]:
    """The encoder's parameters under HF names (flattened MLX paths are already HF paths)."""
    from mlx.utils import tree_flatten

    return dict(tree_flatten(model.parameters()))


def save_safetensors(path: Path, tensors: dict[str, mx.array]):
    """Write safetensors atomically with the metadata torch loaders expect."""
    with atomic_file(path) as tmp:
        mx.save_safetensors(str(tmp), tensors, metadata={"format": "pt"})


def save_encoder(model, folder, tokenizer=None):
    """Write an HF folder (config.json + model.safetensors [+ tokenizer]) that transformers loads."""
    with atomic_dir(folder) as tmp:
        write_encoder_files(model, tmp, tokenizer)


def write_encoder_files(model, folder: Path, tokenizer=None):
    state = encoder_state(model)
    config = model.config
    config.vocab_size = int(model.get_input_embeddings().weight.shape[0])
    config.save_pretrained(str(folder))
    mx.save_safetensors(str(Path(folder) / "model.safetensors"), state, metadata={"format": "pt"})
    if tokenizer is not None:
        tokenizer.save_pretrained(str(folder))


def to_numpy(x) -> np.ndarray:
    return np.array(x.astype(mx.float32)) if x.dtype == mx.bfloat16 else np.array(x)

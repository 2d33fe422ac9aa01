"""HF folder or hub id -> MLX encoder + config + tokenizer, and the inverse (saving is exporting)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import mlx.core as mx
import numpy as np

from .errors import InvalidFileError, read_json, require_key
from .io_utils import atomic_file, save_folder, write_safetensors
from .models import SUPPORTED_MODEL_TYPES, get_architecture

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
RESTORE_CONFIG = "Restore config.json from the original model (re-download it or re-save the model)"


def resolve_path(name_or_path, revision=None, token=None, cache_folder=None, local_files_only=False) -> Path:
    """A local folder, or a hub id downloaded through ``huggingface_hub`` (honours HF_HUB_OFFLINE)."""
    path = Path(os.path.expanduser(str(name_or_path)))
    if path.is_dir():
        _recover(path)
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

    pinned = _cached_commit_snapshot(str(name_or_path), revision, cache_folder, local_files_only)
    if pinned is not None:
        return pinned
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


def _cached_commit_snapshot(repo_id: str, revision, cache_folder, local_files_only) -> Path | None:
    """Offline with ``revision=<commit>``: the cached ``snapshots/<commit>/`` folder, as transformers'
    per-file ``cached_file`` (what PyLate uses) reads it. ``snapshot_download`` would insist on the
    cached tree listing, which a cache filled by per-file downloads does not have."""
    import re

    from huggingface_hub import constants

    if revision is None or not re.fullmatch(r"[0-9a-f]{40}", str(revision)):
        return None
    if not (local_files_only or constants.HF_HUB_OFFLINE):
        return None
    cache = Path(cache_folder) if cache_folder is not None else Path(constants.HF_HUB_CACHE)
    snapshot = cache / ("models--" + repo_id.replace("/", "--")) / "snapshots" / str(revision)
    return snapshot if snapshot.is_dir() else None


SAFETENSORS_FIX = "re-download or re-save the model"


def _recover(folder: Path):
    """Finish a save a kill interrupted in ``folder`` before reading it (io_utils.save_folder rolls
    completed saves forward); a folder we cannot write (a read-only cache) is read as it is."""
    from .io_utils import recover_folder

    try:
        recover_folder(folder)
    except OSError:
        pass


def read_safetensors(path: Path, fix: str = SAFETENSORS_FIX) -> dict:
    try:
        return mx.load(str(path))
    except Exception as exc:
        raise ValueError(
            f"Could not read {path} ({exc}). The file is truncated or not a safetensors file; {fix}."
        ) from exc


def check_safetensors_complete(path: Path, fix: str = SAFETENSORS_FIX):
    """Header-only check (no tensor is read): the header parses and the file holds every byte it lists."""
    path = Path(path)
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            header_len = int.from_bytes(f.read(8), "little")
            if size < 8 or header_len > size - 8:
                raise ValueError(f"header of {header_len} bytes in a {size}-byte file")
            header = json.loads(f.read(header_len))
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise ValueError(f"Could not read {path} ({exc}). The file is truncated or not a safetensors file; {fix}.") from None
    if 8 + header_len + end > size:
        raise ValueError(
            f"{path} is truncated: its header lists {8 + header_len + end} bytes, the file has {size} "
            f"(an interrupted copy or a full disk?); {fix}."
        )


def load_weights(folder: Path) -> dict[str, mx.array]:
    """All tensors of an HF folder: ``model.safetensors``, a sharded index, or ``pytorch_model.bin``."""
    folder = Path(folder)
    single = folder / "model.safetensors"
    index = folder / "model.safetensors.index.json"
    if single.exists():
        return read_safetensors(single)
    if index.exists():
        weight_map = require_key(read_json(index, "the index of the sharded weights"), "weight_map", index,
                                 "the index of the sharded weights")
        shards = sorted(set(weight_map.values()))
        missing = [shard for shard in shards if not (folder / shard).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{index} lists shard(s) that are not in {folder}: {', '.join(missing)}. The download or copy "
                "is incomplete; fetch the missing shard files (or re-save the model)."
            )
        weights = {}
        for shard in shards:
            weights.update(read_safetensors(folder / shard))
        return weights
    binary = folder / "pytorch_model.bin"
    if binary.exists():
        from .torch_pickle import load_torch_bin

        return {k: mx.array(v) for k, v in load_torch_bin(binary).items()}
    raise FileNotFoundError(
        f"No weights in {folder}: expected one of {', '.join(WEIGHT_FILES)}. "
        "Is this the model folder (not its parent), and did the download finish?"
    )


def nonfinite_tensors(folder: Path) -> list[str]:
    """``"<file>: <tensor> (n NaN, m inf of size)"`` for every weight tensor under ``folder`` holding
    NaN or inf (optimizer state is not a weight and is skipped)."""
    folder = Path(folder)
    found = []
    for path in sorted(folder.rglob("*.safetensors")):
        rel = path.relative_to(folder)
        if path.name == "optimizer.safetensors" or any(part.startswith(".") for part in rel.parts):
            continue
        for name, tensor in read_safetensors(path).items():
            if not mx.issubdtype(tensor.dtype, mx.floating):
                continue
            nans, infs = int(mx.isnan(tensor).sum().item()), int(mx.isinf(tensor).sum().item())
            if nans or infs:
                found.append(f"{rel}: {name} ({nans} NaN, {infs} inf of {tensor.size})")
    return found


def load_config(folder: Path, trust_remote_code: bool = False):
    """The transformers config object (configs and tokenizers are all we use transformers for).

    A config whose ``auto_map`` points at custom modeling code loads the built-in class of its
    ``model_type`` without ``trust_remote_code`` (as transformers does); with it, the custom torch
    code was asked for, and it cannot run on MLX: refused, naming the entry.
    """
    cfg_path = Path(folder) / "config.json"
    if not cfg_path.exists():
        raise FileNotFoundError(f"No config.json in {folder}; it is not a Hugging Face model folder.")
    raw = read_json(cfg_path, "the model config")
    if not isinstance(raw, dict):
        raise InvalidFileError(f"{cfg_path} (the model config) holds a JSON {type(raw).__name__}, not an object. {RESTORE_CONFIG}.")
    model_type, auto_map = raw.get("model_type"), raw.get("auto_map")
    builtin_problem = _builtin_args_problem(model_type, raw)
    if auto_map and (trust_remote_code or model_type not in SUPPORTED_MODEL_TYPES):
        raise ValueError(
            f"{cfg_path}: auto_map {auto_map!r} (model_type {model_type!r}) points at custom modeling code"
            f"{', and trust_remote_code=True asks to run it' if trust_remote_code else ''}. Custom code is torch code "
            f"and cannot run on MLX; mlx_hf_bridge supports the built-in model types {', '.join(SUPPORTED_MODEL_TYPES)}. "
            + (f"The built-in {model_type!r} class cannot stand in for it: {builtin_problem}" if builtin_problem
               else f"Pass trust_remote_code=False to load the built-in {model_type!r} class instead (not the folder's "
               "code), or run this model with the torch library." if model_type in SUPPORTED_MODEL_TYPES
               else "Run this model with the torch library.")
        )
    if model_type not in SUPPORTED_MODEL_TYPES:
        get_architecture(model_type)  # raises the error that lists the supported types
    if builtin_problem:  # said before the tokenizer and weights are read
        raise ValueError(f"{cfg_path}: {builtin_problem}")
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(folder))


def _builtin_args_problem(model_type, raw: dict) -> str | None:
    """Why the built-in architecture cannot build this config (its ``ModelArgs`` refusal), or None."""
    if model_type not in SUPPORTED_MODEL_TYPES:
        return None
    try:
        get_architecture(model_type).ModelArgs.from_dict(raw)
    except ValueError as exc:
        return str(exc)
    return None


def check_remote_code(folder: Path, trust_remote_code: bool):
    """The ``trust_remote_code`` refusal of :func:`load_config` for a PyLate / ST folder, before
    anything is read: the backbone's ``config.json`` is at the root or in the first module's folder."""
    if not trust_remote_code:
        return
    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.exists() and (folder / "modules.json").exists():
        modules = read_json(folder / "modules.json", "the sentence-transformers module list")
        if isinstance(modules, list) and modules and isinstance(modules[0], dict):
            config_path = folder / modules[0].get("path", "") / "config.json"
    if config_path.exists():
        load_config(config_path.parent, trust_remote_code=True)


LAYOUT_JSON_FILES = {
    "modules.json": "the sentence-transformers module list",
    "config_sentence_transformers.json": "the sentence-transformers / PyLate model config",
    "sentence_bert_config.json": "the Transformer module config",
    "artifact.metadata": "the Stanford ColBERT metadata",
}


def check_layout_json(folder: Path):
    """Parse every JSON file of an ST / PyLate layout (root and module folders, e.g. ``1_Dense/config.json``)
    before anything is loaded: a damaged one is named with the parser's position and the fix."""
    folder = Path(folder)
    parsed = {name: read_json(folder / name, what) for name, what in LAYOUT_JSON_FILES.items() if (folder / name).exists()}
    entries = parsed.get("modules.json")
    for entry in entries if isinstance(entries, list) else []:
        sub = entry.get("path") if isinstance(entry, dict) else None
        for name in ("config.json", "sentence_bert_config.json") if sub else ():
            if (folder / sub / name).is_file():
                read_json(folder / sub / name, f"the config of module {sub}")


TOKENIZER_JSON_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")


def load_tokenizer(folder: Path, **kwargs):
    folder = Path(folder)
    if not any((folder / f).exists() for f in ("tokenizer.json", "vocab.txt", "tokenizer_config.json")):
        raise FileNotFoundError(
            f"No tokenizer in {folder} (tokenizer.json, tokenizer_config.json or vocab.txt). "
            "Copy the base model's tokenizer files into the folder."
        )
    for name in TOKENIZER_JSON_FILES:  # transformers' parse errors name neither the file nor the fix
        if (folder / name).exists():
            read_json(folder / name, "a tokenizer file", "Copy the tokenizer files of the base model into the folder")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder), **kwargs)


def check_weights_match(model, weights: dict, source, config_name: str = "config.json"):
    """MLX's strict load names a tensor but not the file or the cause; say both, before loading."""
    from mlx.utils import tree_flatten

    expected = {k: v.shape for k, v in tree_flatten(model.parameters())}
    where = f"the weights in {source}" if source else "the weights"
    wrong = [f"{k}: {tuple(v.shape)} in the file, {tuple(expected[k])} from {config_name}"
             for k, v in weights.items() if k in expected and tuple(v.shape) != tuple(expected[k])]
    missing = sorted(set(expected) - set(weights))
    extra = sorted(set(weights) - set(expected))
    if wrong or missing or extra:
        details = "; ".join(
            part for part in (
                f"wrong shape: {', '.join(wrong[:5])}" if wrong else "",
                f"missing: {', '.join(missing[:5])}" if missing else "",
                f"unexpected: {', '.join(extra[:5])}" if extra else "",
            ) if part
        )
        raise ValueError(
            f"{config_name} and {where} disagree ({details}). The config (e.g. hidden_size, vocab_size, "
            "num_hidden_layers) and the weights must come from the same model: restore the original "
            "config.json or weights, or re-save the model."
        )


def build_model(config, weights: dict | None = None, dtype=mx.float32):
    """Instantiate the MLX encoder for ``config`` and load ``weights`` (HF names) strictly."""
    arch = get_architecture(config.model_type)
    args = arch.ModelArgs.from_dict(config.to_dict())
    model = arch.Model(args)
    if weights is not None:
        weights = arch.Model.sanitize(weights)
        if "pooler" in model and not arch.Model.has_pooler(weights):
            del model["pooler"]
        check_weights_match(model, weights, getattr(config, "_name_or_path", None))
        weights = {k: v.astype(dtype) if mx.issubdtype(v.dtype, mx.floating) else v for k, v in weights.items()}
        model.load_weights(list(weights.items()), strict=True)
    if hasattr(arch, "encoder_config"):  # an encoder-decoder's encoder: the config as ST loads (and saves) it
        config = arch.encoder_config(config)
    model.config = config
    model.eval()  # like transformers' from_pretrained; MLX modules start in training mode
    mx.eval(model.parameters())
    return model


def load_encoder(name_or_path, dtype=mx.float32, tokenizer_kwargs=None, trust_remote_code=False, **hub_kwargs):
    """Returns ``(model, config, tokenizer, folder)``; bad input fails before weights are read."""
    folder = resolve_path(name_or_path, **hub_kwargs)
    config = load_config(folder, trust_remote_code=trust_remote_code)
    tokenizer = load_tokenizer(folder, **(tokenizer_kwargs or {}))
    weights = load_weights(folder)
    model = build_model(config, weights, dtype)
    return model, config, tokenizer, folder


def encoder_state(model) -> dict[str, mx.array]:
    """The encoder's parameters under HF names (flattened MLX paths are already HF paths)."""
    from mlx.utils import tree_flatten

    return dict(tree_flatten(model.parameters()))


def save_safetensors(path: Path, tensors: dict[str, mx.array]):
    """Write safetensors atomically with the metadata torch loaders expect (a full disk is a SaveError)."""
    with atomic_file(path) as tmp:
        write_safetensors(tmp, tensors, metadata={"format": "pt"})


def save_encoder(model, folder, tokenizer=None):
    """Write an HF folder (config.json + model.safetensors [+ tokenizer]) that transformers loads.

    As ``PreTrainedModel.save_pretrained``: the folder's other files are left alone (see
    ``io_utils.save_folder`` for what a kill mid-save leaves)."""
    size = sum(int(v.nbytes) for v in encoder_state(model).values())
    save_folder(folder, lambda tmp: write_encoder_files(model, tmp, tokenizer), size_hint=size)


def write_encoder_files(model, folder: Path, tokenizer=None):
    from .adapters import files as adapter_files, has_adapter

    if has_adapter(model):  # as transformers' save_pretrained on a PEFT model: the adapter only
        return adapter_files.write_adapter_files(model, folder, tokenizer)
    state = encoder_state(model)
    config = model.config
    config.vocab_size = int(model.get_input_embeddings().weight.shape[0])
    config.save_pretrained(str(folder))
    write_safetensors(Path(folder) / "model.safetensors", state, metadata={"format": "pt"})
    if tokenizer is not None:
        tokenizer.save_pretrained(str(folder))


def to_numpy(x) -> np.ndarray:
    return np.array(x.astype(mx.float32)) if x.dtype == mx.bfloat16 else np.array(x)

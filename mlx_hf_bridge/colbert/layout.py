"""Reading and writing the PyLate / sentence-transformers folder layout (pylate-api.md §3)."""

from __future__ import annotations

import json
import string
from pathlib import Path

import mlx.core as mx

from .. import __version__
from ..loading import build_model, load_config, load_tokenizer, load_weights, write_encoder_files
from ..models import get_architecture
from ..modules import layout as module_layout
from .modules import Dense, Transformer

COLBERT_KEYS = (
    "query_prefix",
    "document_prefix",
    "query_length",
    "document_length",
    "attend_to_expansion_tokens",
    "skiplist_words",
    "do_query_expansion",
)


def read_modules(folder: Path, tokenizer_kwargs=None):
    """An ST 5 / PyLate folder -> (Transformer, [Dense...], colbert_config). Pooling/Normalize are dropped,
    as PyLate does. Unknown module types, mixed layouts, missing or unlisted module folders and
    sentence-transformers 6 folders are refused (``modules.layout``) before any weights are read."""
    found = module_layout.read_layout(folder)
    if found.dialect == "st6":
        types = ", ".join(e["type"] for _, _, e in found.modules)
        hint = (
            "Load it with mlx_hf_bridge.sentence_transformers.MultiVectorEncoder(path), which reads ST 6's query "
            "expansion, prompts, MultiVectorMask and Normalize exactly."
            if found.model_type == "MultiVectorEncoder"
            else "The bridge reads ST 6 MultiVectorEncoder folders only (with mlx_hf_bridge.sentence_transformers."
            "MultiVectorEncoder); convert this one with the real sentence-transformers 6 first."
        )
        raise module_layout.LayoutError(
            f"{folder} was saved by sentence-transformers 6 (model_type {found.model_type or 'SentenceTransformer'}; "
            f"modules.json types {types}). Read as a PyLate ColBERT it would get PyLate's defaults ([Q]/[D] prefixes, "
            f"32-token query expansion, punctuation skiplist) instead of the settings saved in it. {hint}"
        )
    transformer, denses = None, []
    for kind, path, entry in found.modules:
        if transformer is None:
            if kind != "Transformer":
                raise ValueError(f"{folder}: first module is {entry['type']}, expected a Transformer.")
            transformer = load_transformer(folder / path, tokenizer_kwargs)
        elif kind == "Dense":
            denses.append(Dense.load(folder / path))
        elif kind == "Transformer":
            raise module_layout.LayoutError(f"{folder}/modules.json lists a second Transformer ({entry['name']!r}).")
        # Pooling and Normalize are dropped, as PyLate does.
    if transformer is None:
        raise ValueError(f"{folder}/modules.json lists no Transformer module.")
    return transformer, denses, found.model_config


def load_transformer(path: Path, tokenizer_kwargs=None) -> Transformer:
    from ..adapters.files import base_folder_of, is_adapter_folder
    from ..adapters.mixin import attach_adapter_folder

    base = base_folder_of(path) if is_adapter_folder(path) else path  # a PEFT save: the base lives elsewhere
    config = load_config(base)
    tokenizer = load_tokenizer(path, **(tokenizer_kwargs or {}))
    auto_model = build_model(config, load_weights(base))
    if base != path:
        attach_adapter_folder(auto_model, path)
    st_config_path = path / "sentence_bert_config.json"
    st_config = json.loads(st_config_path.read_text()) if st_config_path.exists() else {}
    return Transformer(auto_model, tokenizer, st_config.get("max_seq_length"), st_config.get("do_lower_case", False))


def load_plain_hf(folder: Path, tokenizer_kwargs=None):
    """A plain HF folder (or Stanford ``HF_ColBERT``) -> (Transformer, stanford Dense or None, raw weights)."""
    config = load_config(folder)
    tokenizer = load_tokenizer(folder, **(tokenizer_kwargs or {}))
    weights = load_weights(folder)
    stanford = (config.architectures or [None])[0] == "HF_ColBERT"
    dense = Dense.from_stanford_weights(weights) if stanford else None
    auto_model = build_model(config, weights)
    return Transformer(auto_model, tokenizer, None), dense


def read_stanford_metadata(folder: Path) -> dict:
    path = folder / "artifact.metadata"
    return json.loads(path.read_text()) if path.exists() else {}


def colbert_config(model) -> dict:
    """``config_sentence_transformers.json`` with the exact keys PyLate 1.6's ``ColBERT.save`` writes
    (no ``model_type``: PyLate reads its absence as "ColBERT")."""
    import transformers

    return {
        "__version__": {
            "mlx_hf_bridge": __version__,
            "mlx": mx.__version__,
            "transformers": transformers.__version__,
        },
        "prompts": model.prompts or {"query": "", "document": ""},
        "default_prompt_name": model.default_prompt_name,
        "similarity_fn_name": "MaxSim",
        "query_prefix": model.query_prefix,
        "document_prefix": model.document_prefix,
        "query_length": model.query_length,
        "document_length": model.document_length,
        "attend_to_expansion_tokens": model.attend_to_expansion_tokens,
        "skiplist_words": model.skiplist_words,
        "do_query_expansion": model.do_query_expansion,
    }


def write_folder(model, folder: Path):
    """Write every file of the PyLate layout into ``folder`` (callers make it atomic)."""
    transformer = model.transformer
    backbone = transformer.auto_model
    arch = get_architecture(backbone.config.model_type)
    backbone.config.architectures = [arch.HF_ARCHITECTURE]
    write_encoder_files(backbone, folder, transformer.tokenizer)
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": transformer.max_seq_length, "do_lower_case": transformer.do_lower_case}, indent=2)
    )
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]
    for i, dense in enumerate(model.dense, start=1):
        name = f"{i}_Dense"
        dense.save(folder / name)
        modules.append({"idx": i, "name": str(i), "path": name, "type": "pylate.models.Dense.Dense"})
    (folder / "modules.json").write_text(json.dumps(modules, indent=2))
    (folder / "config_sentence_transformers.json").write_text(json.dumps(colbert_config(model), indent=2))


DEFAULT_SKIPLIST = list(string.punctuation)

"""Which library wrote a model folder, and whether the bridge can read it exactly.

Dialects, in the order PyLate and sentence-transformers 6 resolve them:
- no ``modules.json``: ``stanford`` (``config.json`` architectures ``HF_ColBERT``) or plain ``hf``;
- ``modules.json`` whose types are ST 6's (``sentence_transformers.base.modules.*``,
  ``sentence_transformers.multi_vector_encoder.modules.*``, ...): ``st6``, with the family from
  ``config_sentence_transformers.json``'s ``model_type`` (``MultiVectorEncoder`` for ColBERT-style);
- ``modules.json`` with sentence-transformers 5 / PyLate types: ``pylate`` when PyLate wrote it (a
  PyLate Dense, PyLate's config keys, or ST 6's "ColBERT" model_type for PyLate 3), else ``st5``.

Every listed module must be a kind the bridge implements, from one library generation, with its
folder present; a numbered module folder that ``modules.json`` does not list is refused too (its
weights would silently be left out). All checks run before any weights are read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import read_json

ST5_KINDS = {
    "sentence_transformers.models.Transformer": "Transformer",
    "sentence_transformers.models.Transformer.Transformer": "Transformer",
    "sentence_transformers.models.Pooling": "Pooling",
    "sentence_transformers.models.Pooling.Pooling": "Pooling",
    "sentence_transformers.models.Normalize": "Normalize",
    "sentence_transformers.models.Normalize.Normalize": "Normalize",
    "sentence_transformers.models.Dense": "Dense",
    "sentence_transformers.models.Dense.Dense": "Dense",
    "pylate.models.Dense.Dense": "Dense",
    "pylate.models.Dense": "Dense",
    # dense only (dense.loading): ST 5.3's StaticEmbedding and Router (Asym: its old name)
    "sentence_transformers.models.StaticEmbedding": "StaticEmbedding",
    "sentence_transformers.models.StaticEmbedding.StaticEmbedding": "StaticEmbedding",
    "sentence_transformers.models.Router": "Router",
    "sentence_transformers.models.Router.Router": "Router",
    "sentence_transformers.models.Asym": "Router",
}
ST6_KINDS = {
    "sentence_transformers.base.modules.transformer.Transformer": "Transformer",
    "sentence_transformers.base.modules.Transformer": "Transformer",
    "sentence_transformers.base.modules.dense.Dense": "Dense",
    "sentence_transformers.base.modules.Dense": "Dense",
    "sentence_transformers.base.modules.normalize.Normalize": "Normalize",
    "sentence_transformers.base.modules.Normalize": "Normalize",
    "sentence_transformers.multi_vector_encoder.modules.multi_vector_mask.MultiVectorMask": "MultiVectorMask",
    "sentence_transformers.multi_vector_encoder.modules.MultiVectorMask": "MultiVectorMask",
    "sentence_transformers.multi_vector_encoder.modules.token_pooling.HierarchicalTokenPooling": "HierarchicalTokenPooling",
    "sentence_transformers.multi_vector_encoder.modules.HierarchicalTokenPooling": "HierarchicalTokenPooling",
    # the dense family's (SentenceTransformer): read by dense.loading
    "sentence_transformers.sentence_transformer.modules.pooling.Pooling": "Pooling",
    "sentence_transformers.sentence_transformer.modules.Pooling": "Pooling",
    "sentence_transformers.sentence_transformer.modules.static_embedding.StaticEmbedding": "StaticEmbedding",
    "sentence_transformers.sentence_transformer.modules.StaticEmbedding": "StaticEmbedding",
    "sentence_transformers.base.modules.router.Router": "Router",
    "sentence_transformers.base.modules.Router": "Router",
    "sentence_transformers.sentence_transformer.modules.Router": "Router",
}
MULTI_VECTOR_KINDS = ("Transformer", "Dense", "Normalize", "MultiVectorMask", "HierarchicalTokenPooling")
# module kinds whose folder holds state the model needs (Pooling / Normalize folders may be absent,
# e.g. a Hub repo drops an empty 2_Normalize/)
NEEDS_FOLDER = {"Transformer", "Dense", "MultiVectorMask", "HierarchicalTokenPooling"}
ST6_MODULE_PREFIXES = ("sentence_transformers.base.", "sentence_transformers.multi_vector_encoder.",
                       "sentence_transformers.sentence_transformer.", "sentence_transformers.sparse_encoder.",
                       "sentence_transformers.cross_encoder.")
PYLATE_CONFIG_KEYS = ("query_prefix", "document_prefix", "do_query_expansion", "attend_to_expansion_tokens",
                      "skiplist_words", "query_length", "document_length")
# how ST / PyLate name a module's folder: f"{idx}_{ClassName}". Suffixed variants some repos ship
# beside the listed one (stella's 2_Dense_1024, 2_Dense_2048, ...) are alternatives, not omissions.
MODULE_FOLDER = re.compile(r"^\d+_[A-Za-z][A-Za-z0-9]*$")


class LayoutError(ValueError):
    """A folder the bridge cannot read exactly (what it is, and what is supported)."""


@dataclass
class Layout:
    folder: Path
    dialect: str  # "st6" | "pylate" | "st5" | "stanford" | "hf"
    model_type: str | None = None  # config_sentence_transformers.json's model_type, if any
    modules: list = field(default_factory=list)  # [(kind, path, entry)] in idx order
    model_config: dict = field(default_factory=dict)


def _supported(table) -> str:
    return ", ".join(sorted(table))


def read_layout(folder) -> Layout:
    """Identify the folder's dialect and validate its modules (no weights read)."""
    folder = Path(folder)
    modules_path = folder / "modules.json"
    if not modules_path.exists():
        config_path = folder / "config.json"
        config = read_json(config_path, "the model's config") if config_path.exists() else {}
        stanford = "HF_ColBERT" in (config.get("architectures") or []) if isinstance(config, dict) else False
        return Layout(folder, "stanford" if stanford else "hf")
    entries = read_json(modules_path, "the module list")
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "type" in e for e in entries):
        raise LayoutError(f"{modules_path}: expected a JSON list of {{idx, name, path, type}} entries.")
    config_path = folder / "config_sentence_transformers.json"
    model_config = read_json(config_path, "the model's settings") if config_path.exists() else {}
    modules, generations = [], set()
    for entry in sorted(entries, key=lambda e: int(e.get("idx", 0))):
        kind_name = entry["type"]
        if kind_name in ST6_KINDS:
            kind, generation = ST6_KINDS[kind_name], "sentence-transformers 6"
        elif kind_name in ST5_KINDS:
            kind, generation = ST5_KINDS[kind_name], "sentence-transformers 5 / PyLate"
        else:
            newer = kind_name.startswith(ST6_MODULE_PREFIXES)
            raise LayoutError(
                f"{modules_path}: module {entry.get('name', entry.get('idx'))!r} has type {kind_name!r}, which the "
                "bridge cannot run on MLX. Supported module types: "
                f"{_supported(ST6_KINDS) if newer else _supported(ST5_KINDS)}."
            )
        generations.add(generation)
        modules.append((kind, str(entry.get("path", "")), entry))
    if len(generations) > 1:
        listing = ", ".join(f"{e['type']}" for _, _, e in modules)
        raise LayoutError(
            f"{modules_path} mixes sentence-transformers 6 module types with sentence-transformers 5 / PyLate "
            f"ones ({listing}); no library writes such a folder, and the bridge will not guess how to read it. "
            "Re-save the model with one library."
        )
    check_module_folders(folder, modules)
    model_type = model_config.get("model_type") if isinstance(model_config, dict) else None
    if generations == {"sentence-transformers 6"}:
        dialect = "st6"
    elif model_type == "ColBERT" or any(e["type"].startswith("pylate.") for _, _, e in modules) or any(
        k in model_config for k in PYLATE_CONFIG_KEYS
    ):
        dialect = "pylate"
    else:
        dialect = "st5"
    return Layout(folder, dialect, model_type, modules, model_config)


def check_module_folders(folder: Path, modules) -> None:
    """Listed-but-missing and present-but-unlisted module folders, each named with the fix."""
    listed = {path.rstrip("/") for _, path, _ in modules if path}
    for kind, path, entry in modules:
        if path and kind in NEEDS_FOLDER and not (folder / path).is_dir():
            raise LayoutError(
                f"{folder / 'modules.json'} lists module {entry.get('name')!r} ({entry['type']}) in {path!r}, "
                f"but {folder / path} does not exist: the model would run without its {kind}. Restore the "
                "folder from the original model, or remove the entry if the model really has no such module."
            )
    for child in sorted(folder.iterdir()):
        if child.is_dir() and MODULE_FOLDER.match(child.name) and child.name not in listed and any(child.iterdir()):
            raise LayoutError(
                f"{child} looks like a saved module ({', '.join(sorted(p.name for p in child.iterdir())[:4])}) "
                f"but {folder / 'modules.json'} does not list it: loading would silently leave it out (a "
                f"{child.name.split('_', 1)[1]} module would be replaced by a fresh random one, or skipped). Add its "
                "entry to modules.json (idx, name, path, type), or move the folder out of the model folder."
            )


# --- sentence-transformers 6 folders ---------------------------------------------------------------
ST6_TYPE_NAMES = {
    "Transformer": "sentence_transformers.base.modules.transformer.Transformer",
    "Dense": "sentence_transformers.base.modules.dense.Dense",
    "Normalize": "sentence_transformers.base.modules.normalize.Normalize",
    "MultiVectorMask": "sentence_transformers.multi_vector_encoder.modules.multi_vector_mask.MultiVectorMask",
    "HierarchicalTokenPooling": "sentence_transformers.multi_vector_encoder.modules.token_pooling.HierarchicalTokenPooling",
    # never written: its save raises ST 6.2's "cannot be saved"
    "LambdaTokenPooling": "sentence_transformers.multi_vector_encoder.modules.token_pooling.LambdaTokenPooling",
}


def load_st6_modules(layout: Layout) -> list:
    """The modules of an ST 6 folder, each read as ST 6 reads it (Dense configs without feature
    names read token embeddings, ST 6's MultiVectorEncoder hook)."""
    from .dense import Dense
    from .multi_vector_mask import MultiVectorMask
    from .normalize import Normalize
    from .token_pooling import HierarchicalTokenPooling
    from .transformer import Transformer

    if not layout.modules or layout.modules[0][0] != "Transformer":
        raise LayoutError(f"{layout.folder / 'modules.json'}: the first module must be a Transformer.")
    loaded = []
    for index, (kind, path, entry) in enumerate(layout.modules):
        sub = layout.folder / path if path else layout.folder
        if kind not in MULTI_VECTOR_KINDS:
            raise LayoutError(
                f"{layout.folder / 'modules.json'}: module {entry.get('name')!r} is a {kind} ({entry['type']}), which a "
                f"multi-vector model does not have; supported: {', '.join(MULTI_VECTOR_KINDS)}."
            )
        if kind == "Transformer":
            if index:
                raise LayoutError(f"{layout.folder / 'modules.json'}: a second Transformer ({entry['name']!r}) is not supported.")
            loaded.append(Transformer.load(sub))
        elif kind == "Dense":
            dense = Dense.load(sub, init_defaults={"module_input_name": "token_embeddings"})
            if dense.module_input_name != "token_embeddings" or dense.module_output_name != "token_embeddings":
                raise LayoutError(
                    f"{sub / 'config.json'}: this Dense maps {dense.module_input_name!r} -> {dense.module_output_name!r}; "
                    "a multi-vector model has token embeddings only (module_input_name / module_output_name "
                    "'token_embeddings'), so ST 6 could not run it either."
                )
            loaded.append(dense)
        elif kind == "Normalize":
            loaded.append(Normalize.load(sub))
        elif kind == "HierarchicalTokenPooling":
            loaded.append(HierarchicalTokenPooling.load(sub))
        else:
            loaded.append(MultiVectorMask.load(sub))
    return loaded


def st6_model_config(model) -> dict:
    """``config_sentence_transformers.json`` with the keys ST 6.2's MultiVectorEncoder writes."""
    import mlx.core as mx
    import transformers

    from .. import __version__

    return {
        "__version__": {"mlx": mx.__version__, "mlx_hf_bridge": __version__, "transformers": transformers.__version__},
        "default_prompt_name": model.default_prompt_name,
        "model_type": "MultiVectorEncoder",
        "prompts": dict(model.prompts),
        "similarity_fn_name": model._similarity_fn_name,
    }


def write_st6_folder(model, folder: Path) -> None:
    """Every file of ST 6's layout for ``model`` (a MultiVectorEncoder) into ``folder``."""
    import json

    from ..loading import write_encoder_files
    from ..models import get_architecture

    entries = []
    for idx, module in enumerate(model):
        kind = type(module).__name__
        if kind not in ST6_TYPE_NAMES:
            raise LayoutError(f"module {idx} is a {kind}; ST 6's layout can hold {sorted(ST6_TYPE_NAMES)} only.")
        path = "" if idx == 0 and kind == "Transformer" else f"{idx}_{kind}"
        target = folder / path
        target.mkdir(parents=True, exist_ok=True)
        if kind == "Transformer":
            backbone = module.auto_model
            backbone.config.architectures = [get_architecture(backbone.config.model_type).HF_ARCHITECTURE]
            write_encoder_files(backbone, target, module.tokenizer)
            module.save_config(target)
        else:
            module.save(target)
        entries.append({"idx": idx, "name": str(idx), "path": path, "type": ST6_TYPE_NAMES[kind]})
    (folder / "modules.json").write_text(json.dumps(entries, indent=2))
    (folder / "config_sentence_transformers.json").write_text(json.dumps(st6_model_config(model), indent=2, sort_keys=True))

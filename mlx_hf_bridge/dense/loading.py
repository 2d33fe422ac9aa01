"""The module pipeline of a dense ``SentenceTransformer`` folder.

Folders of either generation load -- sentence-transformers 5 (``sentence_transformers.models.*``:
Transformer, Pooling, Dense, Normalize), sentence-transformers 6 (``sentence_transformers.base.modules.*``
and ``sentence_transformer.modules.Pooling``, model_type ``SentenceTransformer``) and plain HF folders (the
backbone + mean Pooling, with ST's warning) -- and every model runs with the semantics and saves the layout
of the *installed* sentence-transformers (``modules.pooling.installed_generation``; ST 6.2's when none is
installed), as that library itself reads any folder: ST 5.3's ("st5": texts stripped before tokenization,
ST 5.3's Pooling and quantisation; its layout is read by 5.3 and 6.2) or ST 6.2's ("st6").
The first module is the input module: a Transformer, a StaticEmbedding or a Router (whose routes
each start with one of those; ``load_router`` reads its ``router_config.json`` and sub-folders).
Everything the bridge cannot reproduce (other module kinds, PyLate / multi-vector / Stanford folders)
is refused by ``modules.layout`` or here before any weights are read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ..errors import read_json
from ..modules import Dense, Normalize, Transformer
from ..modules import layout as module_layout
from ..modules.pooling import Pooling, installed_generation
from ..modules.router import Router
from ..modules.static_embedding import StaticEmbedding

logger = logging.getLogger(__name__)

DENSE_KINDS = ("Transformer", "StaticEmbedding", "Router", "Pooling", "Dense", "Normalize")
INPUT_KINDS = ("Transformer", "StaticEmbedding", "Router")  # what tokenizes: first (a Router may also come later)
_REFUSED_DIALECTS = {
    "pylate": "a PyLate ColBERT folder (multi-vector); load it with mlx_hf_bridge.pylate.models.ColBERT",
    "stanford": "a Stanford-NLP ColBERT (HF_ColBERT) checkpoint; load it with mlx_hf_bridge.pylate.models.ColBERT",
}


@dataclass
class Loaded:
    modules: list
    generation: str  # "st5" | "st6": whose tokenization / Pooling semantics the model reproduces
    config: dict = field(default_factory=dict)  # config_sentence_transformers.json


def load_folder(folder, processor_kwargs=None, config_kwargs=None, model_kwargs=None) -> Loaded:
    layout = module_layout.read_layout(folder)  # validates every listed module before any weights
    kwargs = dict(model_kwargs=model_kwargs, processor_kwargs=processor_kwargs, config_kwargs=config_kwargs)
    if layout.dialect == "hf":
        logger.warning(f"No sentence-transformers model found with name {folder}. Creating a new one with mean pooling.")
        transformer = Transformer(folder, **kwargs)
        generation = installed_generation()
        pooling = Pooling(transformer.get_embedding_dimension(), "mean", flavour=generation)
        return Loaded([transformer, pooling], generation)
    if layout.dialect in _REFUSED_DIALECTS:
        raise module_layout.LayoutError(f"{folder} is {_REFUSED_DIALECTS[layout.dialect]}, not a dense SentenceTransformer.")
    if layout.dialect == "st6" and (layout.model_type or "SentenceTransformer") != "SentenceTransformer":
        raise module_layout.LayoutError(
            f"{folder} is a sentence-transformers 6 {layout.model_type} save (config_sentence_transformers.json "
            "model_type); the bridge's SentenceTransformer loads SentenceTransformer folders"
            + (", and mlx_hf_bridge.sentence_transformers.MultiVectorEncoder loads this one."
               if layout.model_type == "MultiVectorEncoder" else ". Convert it with the real sentence-transformers 6 first.")
        )
    if any(v for v in kwargs.values()):
        raise ValueError(
            "model_kwargs / processor_kwargs / config_kwargs are not applied to saved sentence-transformers folders "
            "on MLX yet; drop them (the folder's own settings are used)."
        )
    # the installed ST's semantics and save layout, whoever wrote the folder (as ST 6.2 reads ST 5 folders)
    generation = installed_generation()
    # two passes: every settings-only module first (a bad Pooling mode is named before weights are read)
    modules = [None] * len(layout.modules)
    for index, (kind, path, entry) in enumerate(layout.modules):
        sub = layout.folder / path if path else layout.folder
        where = f"{layout.folder / 'modules.json'}: module {entry.get('name', index)!r} ({entry['type']})"
        if kind not in DENSE_KINDS:
            raise module_layout.LayoutError(
                f"{where} is a {kind}, which a dense SentenceTransformer on MLX does not run; supported: {', '.join(DENSE_KINDS)}."
            )
        if (index == 0 and kind not in INPUT_KINDS) or (index > 0 and kind in ("Transformer", "StaticEmbedding")):
            raise module_layout.LayoutError(
                f"{where}: the bridge runs an input module ({', '.join(INPUT_KINDS)}) first and a Transformer / "
                "StaticEmbedding only first (ST's text pipeline); this folder has another order."
            )
        if kind in ("Pooling", "Normalize"):
            modules[index] = load_module(kind, sub, generation, layout.dialect)
    for index, (kind, path, entry) in enumerate(layout.modules):
        if modules[index] is None:
            modules[index] = load_module(kind, layout.folder / path if path else layout.folder, generation, layout.dialect)
    return Loaded(modules, generation, layout.model_config if isinstance(layout.model_config, dict) else {})


def load_module(kind: str, folder, generation: str, dialect: str):
    """One saved module of a dense model, read as the installed ST reads it."""
    if kind == "Transformer":
        return Transformer.load(folder)
    if kind == "StaticEmbedding":
        return StaticEmbedding.load(folder, generation=generation)
    if kind == "Router":
        return load_router(folder, generation)
    if kind == "Pooling":
        return Pooling.load(folder, flavour=generation)
    if kind == "Normalize":
        return Normalize.load(folder)
    # ST 5.3's Dense always maps sentence_embedding; ST 6's names its features (same default)
    return Dense.load(folder, drop_unknown=dialect != "st6")


def load_router(folder, generation: str) -> Router:
    """A Router folder: ``router_config.json`` (or the legacy ``config.json``) with each module's type,
    each route's module ids and the Router's settings; one sub-folder per module id."""
    from pathlib import Path

    folder = Path(folder)
    path = folder / "router_config.json"
    path = path if path.exists() else folder / "config.json"  # ST's fallback: older Router / Asym saves
    if not path.exists():
        raise module_layout.LayoutError(f"{folder / 'router_config.json'} does not exist: a Router folder lists its "
                                        "routes there. Restore it from the original model.")
    config = read_json(path, "the Router's routes")
    if not isinstance(config, dict) or not all(isinstance(config.get(k), dict) for k in ("types", "structure")):
        raise module_layout.LayoutError(f"{path}: expected {{'types': {{id: type}}, 'structure': {{route: [ids]}}, "
                                        "'parameters': {...}}, as sentence-transformers' Router writes it.")
    kinds, dialect = {}, "st6"
    for module_id, type_name in config["types"].items():
        if "/" in module_id or "\\" in module_id or module_id in ("", ".", ".."):
            raise module_layout.LayoutError(f"{path}: module id {module_id!r} is not a plain folder name.")
        kind = module_layout.ST6_KINDS.get(type_name) or module_layout.ST5_KINDS.get(type_name)
        if kind not in DENSE_KINDS or kind == "Router":
            raise module_layout.LayoutError(
                f"{path}: module {module_id!r} has type {type_name!r}, which a Router route on MLX does not run; "
                "supported: Transformer or StaticEmbedding first, then Pooling, Dense, Normalize."
            )
        if type_name in module_layout.ST5_KINDS:
            dialect = "st5"
        if kind in ("Transformer", "StaticEmbedding", "Dense") and not (folder / module_id).is_dir():
            raise module_layout.LayoutError(f"{path} lists {module_id!r} ({type_name}) but {folder / module_id} does "
                                            "not exist; restore the folder from the original model.")
        kinds[module_id] = kind
    for route, ids in config["structure"].items():
        missing = [i for i in ids if i not in kinds]
        if missing:
            raise module_layout.LayoutError(f"{path}: route {route!r} uses {missing}, which 'types' does not list.")
    modules = {i: load_module(kind, folder / i, generation, dialect) for i, kind in kinds.items()}
    parameters = dict(config.get("parameters") or {})
    mappings = parameters.pop("route_mappings", None) or {}
    if mappings and generation == "st5":
        raise module_layout.LayoutError(f"{path}: route_mappings are a sentence-transformers 6 Router setting; "
                                        "sentence-transformers 5.3 cannot load this folder either. Install ST 6.")
    parameters["route_mappings"] = _route_mapping_keys(mappings) if generation == "st6" else None
    structure = {route: [modules[i] for i in ids] for route, ids in config["structure"].items()}
    try:
        return Router(structure, flavour=generation, **parameters)
    except (TypeError, ValueError) as exc:  # a route the bridge cannot run, or settings ST would refuse
        raise module_layout.LayoutError(f"{path}: {exc}") from None


def _route_mapping_keys(mappings: dict) -> dict:
    """ST 6.2 writes each (task, modality) key as its str(); it reads them back with ``literal_eval``
    and skips (with a warning) those it cannot parse."""
    import ast

    out = {}
    for key, route in mappings.items():
        try:
            out[ast.literal_eval(key)] = route
        except (ValueError, SyntaxError):
            logger.warning(f"Could not parse route_mapping key: {key}. Skipping.")
    return out

"""A dense ``SentenceTransformer``'s folder, in the layout of the generation it reproduces.

- "st5" models (sentence-transformers 5 installed, see ``dense.loading``) are written
  as ST 5.3 writes them: ``sentence_transformers.models.*`` types, ``sentence_bert_config.json`` with
  ``max_seq_length`` / ``do_lower_case``, ST 5.3's Pooling booleans and Dense keys, an empty
  ``N_Normalize/``. ST 5.3 and ST 6.2 both read that layout.
- "st6" models (ST 6 or no ST installed) as ST 6.2 writes them:
  ``base.modules.*`` / ``sentence_transformer.modules.pooling.Pooling`` types and ST 6.2's configs.
  ST 5.3 cannot read an ST 6.2 folder (its module types do not exist there), as with ST 6.2's own saves.
A StaticEmbedding or a Router first is saved in the root, as both versions do; a Router writes
``router_config.json`` and one sub-folder per module (``{route}_{index}_{Class}``), each written as
the same module would be at the top level. ST 6.2 writes a module shared by routes once, ST 5.3
once per use (reproduced).
Callers make the whole write atomic (``io_utils.save_folder``).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..modules import Dense, Normalize, Transformer
from ..modules.pooling import Pooling
from ..modules.router import Router
from ..modules.static_embedding import StaticEmbedding

TYPE_NAMES = {
    "st5": {Transformer: "sentence_transformers.models.Transformer", Pooling: "sentence_transformers.models.Pooling",
            Dense: "sentence_transformers.models.Dense", Normalize: "sentence_transformers.models.Normalize",
            StaticEmbedding: "sentence_transformers.models.StaticEmbedding",
            Router: "sentence_transformers.models.Router"},
    "st6": {Transformer: "sentence_transformers.base.modules.transformer.Transformer",
            Pooling: "sentence_transformers.sentence_transformer.modules.pooling.Pooling",
            Dense: "sentence_transformers.base.modules.dense.Dense",
            Normalize: "sentence_transformers.base.modules.normalize.Normalize",
            StaticEmbedding: "sentence_transformers.sentence_transformer.modules.static_embedding.StaticEmbedding",
            Router: "sentence_transformers.base.modules.router.Router"},
}
ST5_DENSE_KEYS = ("in_features", "out_features", "bias", "activation_function")
SAVED_IN_ROOT = (Transformer, StaticEmbedding, Router)  # as the first module


def _kind(module):
    for cls in (Transformer, Pooling, Dense, Normalize, StaticEmbedding, Router):
        if isinstance(module, cls):
            return cls
    raise TypeError(f"{type(module).__name__} cannot be saved in a sentence-transformers layout by the bridge.")


def router_type_name(kind, generation: str) -> str:
    """``f"{type(m).__module__}.{type(m).__name__}"`` of ST's class, as its Router writes types."""
    name = TYPE_NAMES[generation][kind]
    return f"{name}.{kind.__name__}" if generation == "st5" else name


def model_config(model) -> dict:
    """``config_sentence_transformers.json`` with the keys the generation's ST writes."""
    import mlx.core as mx
    import transformers

    from .. import __version__

    config = {
        "model_type": "SentenceTransformer",
        "__version__": {"mlx": mx.__version__, "mlx_hf_bridge": __version__, "transformers": transformers.__version__},
        "prompts": dict(model.prompts),
        "default_prompt_name": model.default_prompt_name,
        "similarity_fn_name": model.similarity_fn_name,
    }
    if model.generation == "st6" and model.truncate_dim is not None:
        config["truncate_dim"] = model.truncate_dim
    return config


def write_module(module, target: Path, generation: str, where: str = "module") -> type:
    """One module's files into ``target`` (created), as the generation's ST writes them; returns its kind."""
    from ..loading import write_encoder_files
    from ..models import get_architecture

    kind = _kind(module)
    target.mkdir(parents=True, exist_ok=True)
    if kind is Transformer:
        backbone = module.auto_model
        backbone.config.architectures = [get_architecture(backbone.config.model_type).HF_ARCHITECTURE]
        write_encoder_files(backbone, target, module.tokenizer)
        if generation == "st5":
            config = {"max_seq_length": module.max_seq_length, "do_lower_case": False}
            (target / "sentence_bert_config.json").write_text(json.dumps(config, indent=4))
        else:
            module.save_config(target)
    elif kind is Pooling:
        if module.flavour != generation:
            raise ValueError(
                f"{where}: a Pooling with {module.flavour!r} semantics cannot be saved in the {generation} "
                "layout (each generation's Pooling pools differently in edge cases); build the model from one "
                "generation's modules."
            )
        module.save(target)
    elif kind is Dense:
        module.save(target)
        if generation == "st5":  # ST 5.3's Dense takes only these keys
            config = {k: v for k, v in module.get_config_dict().items() if k in ST5_DENSE_KEYS}
            (target / "config.json").write_text(json.dumps(config, indent=4))
    elif kind is StaticEmbedding:
        module.save(target)
    elif kind is Router:
        write_router(module, target, generation)
    elif generation == "st6":
        module.save(target)
    return kind


def write_router(router: Router, folder: Path, generation: str) -> None:
    if router.flavour != generation:
        raise ValueError(f"a Router with {router.flavour!r} routing cannot be saved in the {generation} layout; "
                         "build it under one generation.")
    types, structure, written = {}, {}, {}
    for route, modules in router.sub_modules.items():
        structure[route] = []
        for index, module in enumerate(modules):
            module_id = written.get(id(module)) if generation == "st6" else None
            if module_id is None:
                module_id = f"{route}_{index}_{type(module).__name__}"
                kind = write_module(module, folder / module_id, generation, where=f"Router route {route!r}, module {index}")
                types[module_id] = router_type_name(kind, generation)
                written[id(module)] = module_id
            structure[route].append(module_id)
    config = {"types": types, "structure": structure, "parameters": router.get_config_dict()}
    (folder / "router_config.json").write_text(json.dumps(config, indent=4))


def write_folder(model, folder: Path) -> None:
    generation = model.generation
    folder = Path(folder)
    entries = []
    for idx, module in enumerate(model):
        kind = _kind(module)
        path = "" if idx == 0 and kind in SAVED_IN_ROOT else f"{idx}_{kind.__name__}"
        write_module(module, folder / path, generation, where=f"module {idx}")
        entries.append({"idx": idx, "name": str(idx), "path": path, "type": TYPE_NAMES[generation][kind]})
    (folder / "modules.json").write_text(json.dumps(entries, indent=2))
    config = model_config(model)
    (folder / "config_sentence_transformers.json").write_text(
        json.dumps(config, indent=2, sort_keys=generation == "st6")
    )

"""The module pipeline of a dense ``SentenceTransformer`` folder.

Folders of either generation load -- sentence-transformers 5 (``sentence_transformers.models.*``:
Transformer, Pooling, Dense, Normalize), sentence-transformers 6 (``sentence_transformers.base.modules.*``
and ``sentence_transformer.modules.Pooling``, model_type ``SentenceTransformer``) and plain HF folders (the
backbone + mean Pooling, with ST's warning) -- and every model runs with the semantics and saves the layout
of the *installed* sentence-transformers (``modules.pooling.installed_generation``; ST 6.2's when none is
installed), as that library itself reads any folder: ST 5.3's ("st5": texts stripped before tokenization,
ST 5.3's Pooling and quantisation; its layout is read by 5.3 and 6.2) or ST 6.2's ("st6").
Everything the bridge cannot reproduce (other module kinds, a Router, StaticEmbedding, PyLate /
multi-vector / Stanford folders) is refused by ``modules.layout`` or here before any weights are read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ..modules import Dense, Normalize, Transformer
from ..modules import layout as module_layout
from ..modules.pooling import Pooling, installed_generation

logger = logging.getLogger(__name__)

DENSE_KINDS = ("Transformer", "Pooling", "Dense", "Normalize")
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
        if (kind == "Transformer") != (index == 0):
            raise module_layout.LayoutError(
                f"{where}: the bridge runs a Transformer first and only first (ST's text pipeline); this folder "
                "has another order."
            )
        if kind == "Pooling":
            modules[index] = Pooling.load(sub, flavour=generation)
        elif kind == "Normalize":
            modules[index] = Normalize.load(sub)
    for index, (kind, path, entry) in enumerate(layout.modules):
        sub = layout.folder / path if path else layout.folder
        if kind == "Transformer":
            modules[index] = Transformer.load(sub)
        elif kind == "Dense":
            # ST 5.3's Dense always maps sentence_embedding; ST 6's names its features (same default)
            modules[index] = Dense.load(sub, drop_unknown=layout.dialect != "st6")
    return Loaded(modules, generation, layout.model_config if isinstance(layout.model_config, dict) else {})

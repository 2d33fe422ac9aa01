"""Folders older than sentence-transformers 6's MultiVectorEncoder, read the way ST 6.2 converts them.

- PyLate (``query_prefix`` / ``do_query_expansion`` / ... in ``config_sentence_transformers.json``):
  the prefixes become the start of the ``query`` / ``document`` prompts and are registered as
  special tokens (so prepending them as text gives the ids PyLate inserted), expansion becomes
  ``{"strategy": "fixed", "attend": attend_to_expansion_tokens, "length": query_length or 32}``,
  ``document_length`` moves onto the Transformer, the skiplist is the saved one (punctuation when
  none is saved), and MultiVectorMask + token-level Normalize are appended.
- sentence-transformers 5 (dense): Pooling and the sentence-level Normalize are dropped, a Dense
  head is moved to token level (a random 128-d projection when there is none), no skiplist.
- Stanford ``HF_ColBERT``: ``artifact.metadata``'s markers, lengths and ``mask_punctuation``, the
  root ``linear.weight`` projection.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field

from ..errors import read_json
from ..loading import load_weights
from .dense import Dense
from .layout import Layout, LayoutError
from .multi_vector_mask import MultiVectorMask
from .normalize import Normalize
from .transformer import Transformer

PYLATE_TRANSFORMER_KEYS = ("query_length", "document_length", "query_expansion")
PYLATE_MARKERS = PYLATE_TRANSFORMER_KEYS + (
    "do_query_expansion", "attend_to_expansion_tokens", "attend_to_mask_tokens", "query_prefix", "document_prefix",
    "skiplist_words",
)


@dataclass
class Converted:
    modules: list
    prompts: dict = field(default_factory=dict)  # saved prompts, merged under the caller's
    default_prompt_name: str | None = None
    similarity_fn_name: str | None = None
    prefixes: dict = field(default_factory=dict)  # legacy markers to register as special tokens


def _pylate_transformer_settings(config: dict) -> dict:
    """ST 6's ``_parse_model_config``: PyLate's flat keys -> Transformer keyword arguments."""
    knobs = {k: config[k] for k in PYLATE_TRANSFORMER_KEYS if k in config and (config[k] is not None or k == "query_expansion")}
    if "query_expansion" not in knobs and any(k in config for k in PYLATE_MARKERS):
        if config.get("do_query_expansion") is False:
            knobs["query_expansion"] = None
        else:
            attend = config.get("attend_to_expansion_tokens", config.get("attend_to_mask_tokens"))
            length = knobs.pop("query_length", None) or config.get("query_length") or 32
            knobs["query_expansion"] = {"strategy": "fixed", "attend": bool(attend), "length": length}
    return knobs


def convert_modules_json_folder(layout: Layout, supported_similarity) -> Converted:
    """A PyLate or sentence-transformers 5 folder as ST 6.2's MultiVectorEncoder loads it."""
    config = layout.model_config if isinstance(layout.model_config, dict) else {}
    prompts, prefixes = dict(config.get("prompts") or {}), {}
    for key, role in (("query_prefix", "query"), ("document_prefix", "document")):
        if key in config:
            prefix = config[key] or ""
            prefixes[role] = prefix
            prompts[role] = prefix + (prompts.get(role) or "").removeprefix(prefix)
    saved_similarity = config.get("similarity_fn_name")
    modules, dense_found = [], False
    for kind, path, entry in layout.modules:
        sub = layout.folder / path if path else layout.folder
        if kind == "Transformer":
            if modules:
                raise LayoutError(f"{layout.folder / 'modules.json'}: a second Transformer ({entry['name']!r}) is not supported.")
            modules.append(Transformer.load(sub, init_defaults=_pylate_transformer_settings(config)))
        elif kind == "Dense":
            # ST 6 reads legacy Dense heads at token level, whatever feature they were saved for
            dense = Dense.load(sub, init_defaults={"module_input_name": "token_embeddings"}, drop_unknown=True)
            dense.module_input_name = dense.module_output_name = "token_embeddings"
            modules.append(dense)
            dense_found = True
        # Pooling and the sentence-level Normalize have no token-level meaning: dropped, as ST 6 does
    if not modules:
        raise LayoutError(f"{layout.folder / 'modules.json'} lists no Transformer module.")
    if not dense_found:
        modules.append(_random_projection(modules[0]))
    skiplist = config.get("skiplist_words")
    if skiplist is None and prefixes:
        skiplist = list(string.punctuation)  # PyLate's default
    modules += [MultiVectorMask(skiplist_words=skiplist), Normalize(module_input_name="token_embeddings")]
    return Converted(
        modules, prompts, config.get("default_prompt_name"),
        saved_similarity if saved_similarity in supported_similarity else None, prefixes,
    )


def convert_stanford_folder(layout: Layout) -> Converted:
    """A Stanford-NLP ``HF_ColBERT`` checkpoint as ST 6.2 loads it."""
    folder = layout.folder
    metadata_path = folder / "artifact.metadata"
    metadata = read_json(metadata_path, "the Stanford ColBERT settings") if metadata_path.exists() else {}
    prefixes = {
        "query": (metadata.get("query_token_id") or "[unused0]") + " ",
        "document": (metadata.get("doc_token_id") or "[unused1]") + " ",
    }
    settings = {
        "query_expansion": {"strategy": "fixed", "attend": bool(metadata.get("attend_to_mask_tokens")),
                            "length": metadata.get("query_maxlen") or 32},
    }
    if metadata.get("doc_maxlen") is not None:
        settings["document_length"] = metadata["doc_maxlen"]
    transformer = Transformer(folder, **settings)
    weight = load_weights(folder)["linear.weight"]
    out_features, in_features = weight.shape
    projection = Dense(in_features, out_features, bias=False, activation_function=None, init_weight=weight,
                       module_input_name="token_embeddings")
    skiplist = list(string.punctuation) if metadata.get("mask_punctuation", True) else []
    modules = [transformer, projection, MultiVectorMask(skiplist_words=skiplist), Normalize(module_input_name="token_embeddings")]
    return Converted(modules, dict(prefixes), prefixes=prefixes)


def _random_projection(transformer) -> Dense:
    hidden = transformer.get_embedding_dimension()
    return Dense(hidden, 128, bias=False, activation_function=None, module_input_name="token_embeddings")


def register_prefix_tokens(tokenizer, prefixes: dict) -> None:
    """ST 6's ``_register_prefix_tokens``: a legacy marker the tokenizer knows but splits (``[unused0]``,
    or PyLate's normalised ``[Q] `` on a lowercasing tokenizer) becomes a non-normalised special token."""
    from tokenizers import AddedToken

    added = set(getattr(tokenizer, "added_tokens_encoder", None) or {})
    vocab = tokenizer.get_vocab()
    register = []
    for value in prefixes.values():
        if not value or not value.split():
            continue
        for prefix in (value, value.split(None, 1)[0]):
            if prefix not in added and prefix not in vocab:
                continue
            if tokenizer.tokenize(prefix) != [prefix]:
                register.append(AddedToken(prefix, normalized=False, special=True))
            break
    if register:
        tokenizer.add_special_tokens({"additional_special_tokens": register})

"""sentence-transformers 6's ``base.modules.Transformer`` for text, on MLX: the backbone, its tokenizer,
per-task lengths and ColBERT-style query expansion (``QueryExpansionConfig``), read and written in
ST 6's ``sentence_bert_config.json`` format."""

from __future__ import annotations

import json
from pathlib import Path

import mlx.core as mx
import numpy as np

from ..adapters.files import base_folder_of, is_adapter_folder
from ..adapters.mixin import attach_adapter_folder
from ..colbert.modules import Transformer as _Backbone
from ..errors import read_json
from ..loading import build_model, load_config, load_tokenizer, load_weights, resolve_path

EXPANSION_KEYS = ("strategy", "attend", "token", "length")
EXPANSION_STRATEGIES = QUERY_EXPANSION_STRATEGIES = ("fixed", "min")
TEXT_MODALITY = {"text": {"method": "forward", "method_output_name": "last_hidden_state"}}
# sentence_bert_config.json keys ST 6's Transformer accepts, and the values the bridge reproduces
CONFIG_KEYS = (
    "transformer_task", "modality_config", "module_output_name", "processing_kwargs", "unpad_inputs",
    "query_length", "document_length", "query_expansion", "max_seq_length", "do_lower_case",
    "model_args", "model_kwargs", "tokenizer_args", "processor_kwargs", "config_args", "config_kwargs",
)


def normalize_query_expansion(query_expansion):
    """ST 6's ``_normalize_query_expansion``: validate, fill ``attend=False`` / ``token=None``."""
    if query_expansion is None:
        return None
    unknown = set(query_expansion) - set(EXPANSION_KEYS)
    if unknown:
        raise ValueError(f"query_expansion has unknown keys {sorted(unknown)!r}. Valid keys: {sorted(EXPANSION_KEYS)!r}.")
    strategy = query_expansion.get("strategy")
    if strategy not in EXPANSION_STRATEGIES:
        raise ValueError(f"query_expansion['strategy'] must be one of {EXPANSION_STRATEGIES!r}, got {strategy!r}.")
    attend = query_expansion.get("attend", False)
    if not isinstance(attend, bool):
        raise ValueError(f"query_expansion['attend'] must be a bool, got {attend!r}.")
    length = query_expansion.get("length")
    if not isinstance(length, int) or isinstance(length, bool) or length < 1:
        raise ValueError(
            f"query_expansion strategy={strategy!r} requires 'length': a positive int specifying "
            "the pad target (total tokens after expansion). Classic ColBERT uses 32."
        )
    return {"strategy": strategy, "attend": attend, "token": query_expansion.get("token"), "length": length}


def _lowercase_tokenizer(tokenizer):
    # ST 6 lowercases through the tokenizer's normalizer (so it is saved in tokenizer.json)
    from tokenizers.normalizers import Lowercase, Sequence

    backend = tokenizer.backend_tokenizer
    current = backend.normalizer
    if current is not None and "Lowercase" in repr(current):
        return
    backend.normalizer = Lowercase() if current is None else Sequence([Lowercase(), current])


class Transformer(_Backbone):
    """``Transformer(model_name_or_path, query_length=, document_length=, query_expansion=, ...)``.

    Only the text ``feature-extraction`` task runs on MLX; anything else ST 6 can express is refused
    by name. ``preprocess`` reproduces ST 6's tokenization: prompt prepended as text (no strip),
    per-task ``max_length``, and expansion pads swapped for the mask (or ``token``) id, marked in
    ``query_expansion_positions``.
    """

    def __init__(
        self,
        model_name_or_path,
        *,
        transformer_task: str = "feature-extraction",
        model_kwargs=None,
        processor_kwargs=None,
        config_kwargs=None,
        processing_kwargs=None,
        backend: str = "torch",
        modality_config=None,
        module_output_name=None,
        unpad_inputs=None,
        query_length=None,
        document_length=None,
        query_expansion=None,
        max_seq_length=None,
        do_lower_case: bool = False,
        tokenizer_name_or_path=None,
        cache_dir=None,
        revision=None,
        token=None,
        local_files_only: bool = False,
        trust_remote_code: bool = False,
        subfolder: str = "",
    ):
        _refuse_unsupported(
            transformer_task=transformer_task, modality_config=modality_config, module_output_name=module_output_name,
            processing_kwargs=processing_kwargs, model_kwargs=model_kwargs, config_kwargs=config_kwargs,
        )
        folder = resolve_path(model_name_or_path, revision, token, cache_dir, local_files_only)
        folder = folder / subfolder if subfolder else folder
        adapter = folder if is_adapter_folder(folder) else None  # ST's save of a PEFT model: the base lives elsewhere
        base = base_folder_of(adapter) if adapter else folder
        config = load_config(base)
        processor_kwargs = {k: v for k, v in (processor_kwargs or {}).items() if k not in _HUB_KEYS}
        if max_seq_length is not None and "model_max_length" not in processor_kwargs:
            processor_kwargs["model_max_length"] = max_seq_length
        tokenizer_folder = folder if tokenizer_name_or_path is None else resolve_path(tokenizer_name_or_path)
        tokenizer = load_tokenizer(tokenizer_folder, **processor_kwargs)
        max_positions = getattr(config, "max_position_embeddings", -1)
        if "model_max_length" not in processor_kwargs and max_positions not in (None, -1):
            tokenizer.model_max_length = min(tokenizer.model_max_length, max_positions)
        if do_lower_case:
            _lowercase_tokenizer(tokenizer)
        super().__init__(build_model(config, load_weights(base)), tokenizer, None, False)
        if adapter is not None:
            attach_adapter_folder(self.auto_model, adapter)
        self.model_name_or_path = str(model_name_or_path)
        self.unpad_inputs = unpad_inputs
        self.query_length = query_length
        self.document_length = document_length
        self.query_expansion = query_expansion
        self._check_lengths()

    def _check_lengths(self):
        """A length past BERT's position table fails on the first text that long (torch raises an index
        error, the MLX BERT refuses it); said up front, with the fix. RoPE models have no table."""
        limit = getattr(self.auto_model, "max_positions", None)
        expansion = (self.query_expansion or {}).get("length")
        for name, length in (("query_length", self.query_length), ("document_length", self.document_length),
                             ("query_expansion['length']", expansion)):
            if limit is not None and length is not None and length > limit:
                table = getattr(getattr(self.auto_model, "config", None), "max_position_embeddings", limit)
                raise ValueError(  # RoBERTa's table has pad_token_id + 1 more rows than tokens
                    f"{name}={length} is longer than the model's position table allows (max_position_embeddings="
                    f"{table} in {self.model_name_or_path}/config.json: at most {limit} tokens): texts that long "
                    f"cannot be encoded. Fix: set {name} to at "
                    f"most {limit}."
                )

    def __setattr__(self, key, value):
        # nn.Module would store a dict value as a child entry, bypassing the validating property
        if key == "query_expansion":
            object.__setattr__(self, key, value)
        else:
            super().__setattr__(key, value)

    # --- ST 6 attributes ---------------------------------------------------------------------
    @property
    def query_expansion(self):
        return self._query_expansion

    @query_expansion.setter
    def query_expansion(self, value):
        expansion = normalize_query_expansion(value)
        if expansion is not None:
            self._check_expansion_token(expansion)
            if self.query_length is not None and self.query_length < expansion["length"]:
                raise ValueError(
                    f"query_length={self.query_length} is smaller than query_expansion['length']={expansion['length']}. "
                    "The expansion length is the query width floor, so a smaller query_length cap is "
                    "contradictory. Drop query_length, raise it to at least the expansion length, or lower "
                    "the expansion length."
                )
        object.__setattr__(self, "_query_expansion", expansion)

    def _check_expansion_token(self, expansion):
        tok, token = self.tokenizer, expansion["token"]
        if token is None:
            if tok.mask_token_id is None and tok.eos_token_id is None:
                raise ValueError(
                    f"query_expansion strategy={expansion['strategy']!r} with token=None falls back to the "
                    "tokenizer's mask_token, then its eos_token, but this tokenizer has neither. "
                    "Set ``query_expansion={..., 'token': '<your_token>'}`` explicitly."
                )
            return
        token_id = tok.convert_tokens_to_ids(token)
        if token_id is None or (token_id == tok.unk_token_id and token != tok.unk_token):
            raise ValueError(f"query_expansion token={token!r} isn't in this tokenizer's vocabulary.")

    def __call__(self, features: dict) -> dict:
        """ST's forward: ``token_embeddings``, and ``all_layer_embeddings`` (every layer's output, as
        transformers' ``hidden_states``) while the backbone config's ``output_hidden_states`` is set,
        which ST's AdaptiveLayerLoss does around its first pass."""
        if not getattr(getattr(self.auto_model, "config", None), "output_hidden_states", False):
            return super().__call__(features)
        last, hidden_states = self.auto_model(
            features["input_ids"], features["attention_mask"], features.get("token_type_ids"), output_hidden_states=True
        )
        return {**features, "token_embeddings": last, "all_layer_embeddings": hidden_states}

    def get_embedding_dimension(self) -> int:
        return self.get_word_embedding_dimension()

    @property
    def max_seq_length(self):
        return self.tokenizer.model_max_length

    @max_seq_length.setter
    def max_seq_length(self, value):
        if value is not None:  # the backbone's constructor stores None here
            self.tokenizer.model_max_length = value

    # --- tokenization ------------------------------------------------------------------------
    def preprocess(self, texts, prompt=None, task=None, max_length=None, **_):
        """ST 6's ``Transformer.preprocess`` for text -> dict of ``mx.array``."""
        texts = [prompt + t for t in texts] if prompt else list(texts)
        expansion = self.query_expansion if task == "query" else None
        task_max = max_length if max_length is not None else (
            self.query_length if task == "query" else self.document_length if task == "document" else None
        )
        kwargs = {"padding": True, "truncation": "longest_first"}
        if expansion is None:
            if task_max is not None:
                kwargs["max_length"] = task_max
        elif expansion["strategy"] == "fixed":
            kwargs.update(max_length=expansion["length"], padding="max_length")
        elif task_max is not None:
            kwargs["max_length"] = max(task_max, expansion["length"])
        out = {k: np.asarray(v) for k, v in self.tokenizer(texts, return_tensors="np", **kwargs).items()}
        if expansion is not None:
            out = self._expand(out, expansion)
        return {k: mx.array(v.astype(np.bool_ if v.dtype == np.bool_ else np.int32)) for k, v in out.items()}

    def _expand(self, out: dict, expansion: dict) -> dict:
        floor = expansion["length"]
        ids, mask = out["input_ids"], out["attention_mask"]
        missing = floor - ids.shape[1]
        if missing > 0:  # 'min' pads only to the batch's longest: widen to the floor
            out = {k: np.pad(v, [(0, 0), (0, missing)]) for k, v in out.items()}
            ids, mask = out["input_ids"], out["attention_mask"]
        positions = (mask == 0) & (np.arange(ids.shape[1])[None, :] < floor)
        tok = self.tokenizer
        if expansion["token"] is not None:
            expansion_id = tok.convert_tokens_to_ids(expansion["token"])
        else:
            expansion_id = tok.mask_token_id if tok.mask_token_id is not None else tok.eos_token_id
        if expansion_id is not None:
            out["input_ids"] = np.where(positions, expansion_id, ids)
        if expansion["attend"]:
            out["attention_mask"] = np.where(positions, 1, mask)
        out["query_expansion_positions"] = positions
        return out

    def tokenize(self, texts, padding=True, task=None, prompt=None):
        return self.preprocess(texts, prompt=prompt, task=task)

    # --- persistence -------------------------------------------------------------------------
    def get_config_dict(self) -> dict:
        """ST 6's ``sentence_bert_config.json``: keys at their defaults are omitted, as ST 6 does."""
        config = {
            "transformer_task": "feature-extraction",
            "modality_config": TEXT_MODALITY,
            "module_output_name": "token_embeddings",
        }
        if self.unpad_inputs is not None:
            config["unpad_inputs"] = self.unpad_inputs
        for key in ("query_length", "document_length", "query_expansion"):
            if getattr(self, key) is not None:
                config[key] = getattr(self, key)
        return config

    def save_config(self, folder: Path):
        (Path(folder) / "sentence_bert_config.json").write_text(json.dumps(self.get_config_dict(), indent=4))

    @classmethod
    def load(cls, folder, init_defaults=None) -> "Transformer":
        """A saved Transformer (root folder or subfolder), refusing options it cannot reproduce;
        ``init_defaults`` fill settings the saved config lacks (ST 6's hook for legacy folders)."""
        folder = Path(folder)
        path = folder / "sentence_bert_config.json"
        config = read_json(path, "the Transformer module's settings") if path.exists() else {}
        unknown = sorted(set(config) - set(CONFIG_KEYS))
        if unknown:
            raise ValueError(
                f"{path}: unknown Transformer setting(s) {unknown}; ST 6's Transformer accepts {sorted(CONFIG_KEYS)}."
            )
        renames = {"model_args": "model_kwargs", "tokenizer_args": "processor_kwargs", "config_args": "config_kwargs"}
        config = {renames.get(k, k): v for k, v in config.items()}
        for key, value in (init_defaults or {}).items():
            config.setdefault(key, value)
        try:
            return cls(folder, **config)
        except UnsupportedOption as exc:
            raise UnsupportedOption(f"{path}: {exc}") from None


_HUB_KEYS = ("token", "revision", "cache_dir", "local_files_only", "trust_remote_code", "subfolder")


class UnsupportedOption(ValueError):
    """A saved or passed ST 6 module option that the bridge cannot reproduce on MLX."""


def _refuse_unsupported(transformer_task, modality_config, module_output_name, processing_kwargs, model_kwargs, config_kwargs):
    if transformer_task != "feature-extraction":
        raise UnsupportedOption(
            f"transformer_task={transformer_task!r} is not supported on MLX; the bridge runs the text "
            "'feature-extraction' task (token embeddings) only."
        )
    if modality_config is not None and _plain(modality_config) != TEXT_MODALITY:
        raise UnsupportedOption(
            f"modality_config={modality_config!r} is not supported on MLX; the bridge runs {TEXT_MODALITY!r} only."
        )
    if module_output_name not in (None, "token_embeddings"):
        raise UnsupportedOption(f"module_output_name={module_output_name!r}: the bridge writes 'token_embeddings' only.")
    if processing_kwargs:
        raise UnsupportedOption(
            f"processing_kwargs={processing_kwargs!r} are not supported on MLX; remove them (the bridge "
            "tokenizes with ST 6's defaults, query_length / document_length and query_expansion)."
        )
    for name, kwargs in (("model_kwargs", model_kwargs), ("config_kwargs", config_kwargs)):
        extra = {
            k: v for k, v in (kwargs or {}).items()
            if k not in _HUB_KEYS and not (k in ("dtype", "torch_dtype") and str(v) in ("float32", "torch.float32"))
        }
        if extra:
            raise UnsupportedOption(
                f"{name}={extra!r} cannot be applied on MLX (the bridge loads the backbone in float32 "
                "with its own attention); remove them."
            )


def _plain(modality_config):
    return json.loads(json.dumps({str(k): v for k, v in modality_config.items()}))

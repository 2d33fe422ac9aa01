"""sentence-transformers 6.2's ``MultiVectorEncoder`` on MLX.

A sequential pipeline ``Transformer -> [Dense ...] -> MultiVectorMask -> [Normalize]`` (ST 6's module
kinds, ``mlx_hf_bridge.modules``), loaded from and saved to ST 6's folder layout. It shares PyLate
``ColBERT``'s machinery: the length-ordered encode loop (``colbert.encode``), packed documents
(``colbert.padding``), the sequential surface (``multi_vector.base``), the backbones and
Dense (``colbert.modules``), MaxSim (``colbert.scores``, ST 6's masking rules) and the atomic
folder save (``io_utils.save_folder``); only the names, defaults and the layout are ST 6's.
"""

from __future__ import annotations

import logging

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from ..adapters import AdapterMixin
from ..colbert import scores
from ..colbert.encode import encode_in_length_order
from ..colbert.padding import packed_sequences
from ..errors import check_texts
from ..io_utils import save_folder
from ..loading import check_layout_json, check_remote_code, resolve_path
from ..model_card.card_data import MultiVectorEncoderModelCardData
from ..modules import Dense, MultiVectorMask, Normalize, Transformer
from ..modules import layout as module_layout
from ..modules import token_pooling as pooling_module
from ..modules import legacy
from .base import MultiVectorModule

logger = logging.getLogger(__name__)

SIMILARITY_FNS = {
    "maxsim": (scores.maxsim, scores.maxsim_pairwise),
    "meanmaxsim": (scores.mean_maxsim, scores.mean_maxsim_pairwise),
}
_OTHER_DIALECTS = {
    "pylate": "the PyLate ColBERT folder",
    "st5": "the sentence-transformers 5 (dense SentenceTransformer) folder",
    "stanford": "the Stanford-NLP ColBERT (HF_ColBERT) checkpoint",
}


def _check_head(module, where: str) -> None:
    if not isinstance(module, (Dense, MultiVectorMask, Normalize, pooling_module.BaseTokenPooling)):
        raise TypeError(
            f"{where}: {type(module).__module__}.{type(module).__name__} is not a module kind MultiVectorEncoder "
            "runs on MLX; use mlx_hf_bridge.modules' Transformer (first), Dense, MultiVectorMask, Normalize and "
            "HierarchicalTokenPooling (ST 6's names and arguments)."
        )


class MultiVectorEncoder(AdapterMixin, MultiVectorModule, nn.Module):
    """``MultiVectorEncoder(model_name_or_path=None, *, modules=None, prompts=None, default_prompt_name=None,
    ..., similarity_fn_name=None)`` with ST 6.2's signature and defaults.

    Reads ST 6 multi-vector folders exactly (the Transformer's ``query_length`` / ``document_length`` /
    ``query_expansion``, prompts prepended as text, ``MultiVectorMask``, ``Normalize`` only where saved)
    and plain HF folders (ST 6's default pipeline: a random 128-d projection, no skiplist, Normalize);
    PyLate, sentence-transformers 5 and Stanford folders are converted as ST 6.2 converts them
    (``modules.legacy``). Folders it cannot read as ST 6 does raise a ``ValueError`` naming what they are.
    """

    model_type = "MultiVectorEncoder"
    SUPPORTED_SIMILARITY_FN_NAMES = ("maxsim", "meanmaxsim")

    def __init__(
        self,
        model_name_or_path: str | None = None,
        *,
        modules=None,
        device=None,
        prompts=None,
        default_prompt_name=None,
        cache_folder=None,
        trust_remote_code: bool = False,
        revision=None,
        local_files_only: bool = False,
        token=None,
        model_kwargs=None,
        processor_kwargs=None,
        config_kwargs=None,
        model_card_data=None,
        backend: str = "torch",
        similarity_fn_name=None,
    ):
        super().__init__()
        if backend != "torch":
            raise ValueError(f"backend={backend!r}: the bridge runs on MLX; leave backend at its default.")
        if device is not None and str(device).startswith("cpu"):
            from .. import backend as mlx_backend

            mlx_backend.use_cpu()
        self._similarity_fn_name = None
        self.similarity_fn_name = similarity_fn_name
        self.prompts = {"query": None, "document": None, **(prompts or {})}
        self.default_prompt_name = default_prompt_name
        # as ST: a default card data, so evaluators can store their metrics for the card
        self.model_card_data = model_card_data if model_card_data is not None else MultiVectorEncoderModelCardData()
        self.model_name_or_path = str(model_name_or_path) if model_name_or_path is not None else None
        if model_name_or_path is not None:
            if modules is not None:
                logger.warning("Both `model_name_or_path` and `modules` were provided; the modules are loaded from the path.")
            folder = resolve_path(model_name_or_path, revision, token, cache_folder, local_files_only)
            check_layout_json(folder)  # a damaged JSON file is named before anything is read
            check_remote_code(folder, trust_remote_code)  # custom modeling code cannot run on MLX
            modules = self._load_folder(folder, model_kwargs, processor_kwargs, config_kwargs)
        if not modules:
            raise ValueError(
                "MultiVectorEncoder needs model_name_or_path (an ST 6 multi-vector or plain HF folder, or a hub id) "
                "or a non-empty modules=[Transformer(...), Dense(...), MultiVectorMask(), Normalize(...)]."
            )
        modules = list(modules)
        if not isinstance(modules[0], Transformer):
            raise ValueError(
                f"The first module must be mlx_hf_bridge's ST 6 Transformer, got {type(modules[0]).__name__}."
            )
        for module in modules[1:]:
            _check_head(module, "modules")
        self.transformer, self.heads = modules[0], modules[1:]
        self._validate_prompts()
        for module in self.heads:
            if isinstance(module, MultiVectorMask):
                module.resolve_with_tokenizer(self.tokenizer)
        if self.transformer.query_expansion is not None and not any(isinstance(m, MultiVectorMask) for m in self.heads):
            logger.warning(
                "query_expansion is set on the Transformer module, but no MultiVectorMask module follows it. "
                "MultiVectorMask is what includes the expansion tokens in the scoring mask, so without one they "
                "will not be scored. Add a MultiVectorMask module after the Transformer."
            )
        self.eval()

    def __setattr__(self, key, value):
        # settings, not children: nn.Module would file a dict or list under its parameter tree
        if key in ("prompts", "model_card_data"):
            object.__setattr__(self, key, value)
        else:
            super().__setattr__(key, value)

    # --- loading -----------------------------------------------------------------------------------
    def _load_folder(self, folder, model_kwargs, processor_kwargs, config_kwargs) -> list:
        layout = module_layout.read_layout(folder)
        kwargs = dict(model_kwargs=model_kwargs, processor_kwargs=processor_kwargs, config_kwargs=config_kwargs)
        if layout.dialect == "hf":
            transformer = Transformer(folder, **kwargs)
            hidden = transformer.get_embedding_dimension()
            logger.info("No ColBERT checkpoint detected: added a randomly-initialised projection of (%d, 128).", hidden)
            return [
                transformer,
                Dense(hidden, 128, bias=False, activation_function=None, module_input_name="token_embeddings"),
                MultiVectorMask(),
                Normalize(module_input_name="token_embeddings"),
            ]
        if layout.dialect != "st6":
            if any(kwargs.values()):
                raise ValueError("model_kwargs / processor_kwargs / config_kwargs are not applied to saved folders yet; drop them.")
            converted = (
                legacy.convert_stanford_folder(layout) if layout.dialect == "stanford"
                else legacy.convert_modules_json_folder(layout, self.SUPPORTED_SIMILARITY_FN_NAMES)
            )
            logger.warning("Converting %s %s to MultiVectorEncoder, as sentence-transformers 6 does.",
                           _OTHER_DIALECTS[layout.dialect], folder)
            self._merge_saved(converted.prompts, converted.default_prompt_name, converted.similarity_fn_name)
            if converted.prefixes:
                legacy.register_prefix_tokens(converted.modules[0].tokenizer, converted.prefixes)
            return converted.modules
        if layout.model_type != self.model_type:
            raise module_layout.LayoutError(
                f"{folder} is a sentence-transformers 6 {layout.model_type or 'SentenceTransformer'} save "
                "(config_sentence_transformers.json model_type); the bridge loads ST 6 MultiVectorEncoder "
                "folders only. Convert it with the real sentence-transformers 6 first."
            )
        if any(kwargs.values()):
            raise ValueError("model_kwargs / processor_kwargs / config_kwargs are not applied to saved ST 6 folders yet; drop them.")
        modules = module_layout.load_st6_modules(layout)
        config = layout.model_config
        self._merge_saved(config.get("prompts") or {}, config.get("default_prompt_name"), config.get("similarity_fn_name"))
        return modules

    def _merge_saved(self, prompts: dict, default_prompt_name, similarity_fn_name):
        """Saved settings under the caller's: a prompt fills only a key not given (or None), as ST 6 merges."""
        for name, text in prompts.items():
            if self.prompts.get(name) is None:
                self.prompts[name] = text
        if self.default_prompt_name is None:
            self.default_prompt_name = default_prompt_name
        if self._similarity_fn_name is None and similarity_fn_name in self.SUPPORTED_SIMILARITY_FN_NAMES:
            self.similarity_fn_name = similarity_fn_name

    def _validate_prompts(self):
        for key, value in self.prompts.items():
            if value is None:
                self.prompts[key] = ""
        if self.default_prompt_name is not None and self.default_prompt_name not in self.prompts:
            raise ValueError(
                f"Default prompt name '{self.default_prompt_name}' not found in the configured prompts "
                f"dictionary with keys {list(self.prompts.keys())!r}."
            )

    # --- the sequential model ----------------------------------------------------------------------
    def _module_list(self) -> list:
        return [self.transformer, *self.heads]

    def append(self, module) -> "MultiVectorEncoder":
        """torch's ``nn.Sequential.append`` as ST 6 scripts use it (``model.append(HierarchicalTokenPooling(...))``)."""
        _check_head(module, "append")
        if isinstance(module, MultiVectorMask):
            module.resolve_with_tokenizer(self.tokenizer)
        self.heads = [*self.heads, module]
        return self

    def __iter__(self):
        return iter(self._module_list())

    @property
    def dense(self) -> list:
        return [m for m in self.heads if isinstance(m, Dense)]

    def get_embedding_dimension(self):
        for module in reversed(list(self)):
            if hasattr(module, "get_embedding_dimension"):
                return module.get_embedding_dimension()
        return None

    def preprocess(self, inputs, prompt=None, task=None, **kwargs) -> dict:
        return self.transformer.preprocess(check_texts(inputs), prompt=prompt, task=task, **kwargs)

    tokenize = preprocess

    def __call__(self, features: dict, task=None) -> dict:
        pooling_module.refuse_outside_encode(self, task)  # training through token pooling: not yet
        out = self.transformer(features)
        for module in self.heads:
            out = module(out, task=task)
        return out

    forward = __call__

    # --- encoding ----------------------------------------------------------------------------------
    def encode_query(self, inputs, prompt_name=None, prompt=None, batch_size: int = 32, show_progress_bar=None,
                     output_value="token_embeddings", convert_to_numpy: bool = False, device=None,
                     normalize_embeddings: bool = False, pool=None, chunk_size=None, token_pooling=None, **kwargs):
        """``encode`` with ``task="query"`` and the ``"query"`` prompt when none is given."""
        if prompt_name is None and prompt is None and "query" in self.prompts:
            prompt_name = "query"
        return self.encode(inputs, prompt_name, prompt, batch_size, show_progress_bar, output_value, convert_to_numpy,
                           device, normalize_embeddings, pool, chunk_size, token_pooling, task="query", **kwargs)

    def encode_document(self, inputs, prompt_name=None, prompt=None, batch_size: int = 32, show_progress_bar=None,
                        output_value="token_embeddings", convert_to_numpy: bool = False, device=None,
                        normalize_embeddings: bool = False, pool=None, chunk_size=None, token_pooling=None, **kwargs):
        """``encode`` with ``task="document"`` and the first of the document / passage / corpus prompts."""
        if prompt_name is None and prompt is None:
            prompt_name = next((c for c in ("document", "passage", "corpus") if c in self.prompts), None)
        return self.encode(inputs, prompt_name, prompt, batch_size, show_progress_bar, output_value, convert_to_numpy,
                           device, normalize_embeddings, pool, chunk_size, token_pooling, task="document", **kwargs)

    def encode(self, inputs, prompt_name=None, prompt=None, batch_size: int = 32, show_progress_bar=None,
               output_value="token_embeddings", convert_to_numpy: bool = False, device=None,
               normalize_embeddings: bool = False, pool=None, chunk_size=None, token_pooling=None, task=None, **kwargs):
        """Per-text token embeddings sliced by the scoring mask: a list of (n_i, dim) ``mx.array``
        (numpy with ``convert_to_numpy=True``); ``output_value=None`` gives each text's raw features."""
        if batch_size <= 0:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}.")
        if output_value not in ("token_embeddings", None):
            raise ValueError(
                f'output_value must be "token_embeddings" or None (raw per-input feature dicts), got {output_value!r}.'
            )
        if "convert_to_tensor" in kwargs:
            raise ValueError(
                f"{type(self).__name__}.encode() has no `convert_to_tensor`: multi-vector embeddings are "
                "variable-length, so there is nothing to stack. Encoding already returns a list of arrays. Drop the "
                "argument, or pass `convert_to_numpy=True` for a list of numpy arrays."
            )
        if kwargs:
            raise ValueError(
                f"{type(self).__name__}.encode() has been called with additional keyword arguments that "
                f"this model does not use: {list(kwargs)}."
            )
        if pool is not None:
            raise NotImplementedError("pool= is not supported on MLX yet (one process).")
        pooling_module.check_per_call(token_pooling)
        if isinstance(device, list):
            raise NotImplementedError("A list of devices (multi-process encoding) is not supported on MLX.")
        single = isinstance(inputs, str)
        texts = check_texts([inputs] if single else inputs, "inputs")
        prompt = self._resolve_prompt(prompt, prompt_name)
        self.eval()

        # documents return only real tokens, so their rows may run packed (ModernBERT on the CPU),
        # as ColBERT's do; queries keep expansion positions the encoder does not attend to
        pack = task != "query" and output_value is not None and getattr(self, "padding_free", True)

        def encode_batch(batch):
            features = self.transformer.preprocess(batch, prompt=prompt, task=task)
            with packed_sequences(self, pack), pooling_module.encoding():
                out = self(features, task=task)
            if output_value is None:
                out = pooling_module.pool_encoded(self, token_pooling, out, task, logger)
                mx.eval(out)
                return [{k: (v[i] if isinstance(v, mx.array) and v.ndim and v.shape[0] == len(batch) else v)
                         for k, v in out.items()} for i in range(len(batch))]
            embeddings, masks = out["token_embeddings"], out["attention_mask"].astype(mx.bool_)
            mx.eval(embeddings, masks)
            emb_np, mask_np = np.array(embeddings.astype(mx.float32)), np.array(masks)
            rows = [emb_np[i][mask_np[i]] for i in range(len(batch))]
            if normalize_embeddings:
                rows = [r / np.maximum(np.linalg.norm(r, axis=-1, keepdims=True), 1e-12) for r in rows]
            rows = pooling_module.pool_encoded(self, token_pooling, rows, task, logger)
            return rows if convert_to_numpy else [mx.array(r) for r in rows]

        desc = f"Encoding {'queries' if task == 'query' else 'documents'}"
        result = encode_in_length_order(texts, batch_size, encode_batch, desc, bool(show_progress_bar))
        return result[0] if single else result

    def _resolve_prompt(self, prompt, prompt_name):
        if prompt is None:
            if prompt_name is not None:
                if prompt_name not in self.prompts:
                    raise ValueError(
                        f"Prompt name '{prompt_name}' not found in the configured prompts dictionary with keys "
                        f"{list(self.prompts.keys())!r}."
                    )
                return self.prompts[prompt_name]
            if self.default_prompt_name is not None:
                return self.prompts.get(self.default_prompt_name)
        elif prompt_name is not None:
            logger.warning("Provide either a `prompt`, a `prompt_name`, or neither, but not both. Ignoring the `prompt_name`.")
        return prompt

    # --- scoring -----------------------------------------------------------------------------------
    @property
    def similarity_fn_name(self) -> str:
        if self._similarity_fn_name is None:
            self.similarity_fn_name = "maxsim"
        return self._similarity_fn_name

    @similarity_fn_name.setter
    def similarity_fn_name(self, value):
        value = getattr(value, "value", value)  # a SimilarityFunction enum member
        if value is not None and value not in self.SUPPORTED_SIMILARITY_FN_NAMES:
            if value == "xtr":  # ST 6.2's own refusal: XTR scores depend on the batch, not on the pair
                raise ValueError(
                    f"MultiVectorEncoder only supports {self.SUPPORTED_SIMILARITY_FN_NAMES} as the model-level "
                    "similarity. XTR is a training-time scoring: pass xtr_scores (or a configured XTRScores) "
                    "as a loss's similarity_fct instead. XTR's global top-k runs over the in-batch token "
                    "pool, so a pair's score depends on batch composition and is not well defined here."
                )
            raise ValueError(
                f"MultiVectorEncoder only supports {self.SUPPORTED_SIMILARITY_FN_NAMES}, got {value!r}. "
                "Cosine / dot / euclidean / manhattan are defined on single vectors and don't compose "
                "with ragged per-token embeddings."
            )
        object.__setattr__(self, "_similarity_fn_name", value)

    def similarity(self, embeddings1, embeddings2, **kwargs) -> mx.array:
        """All-pairs (queries x documents) scores with ST 6's MaxSim (or MeanMaxSim)."""
        return SIMILARITY_FNS[self.similarity_fn_name][0](embeddings1, embeddings2, **kwargs)

    def similarity_pairwise(self, embeddings1, embeddings2, **kwargs) -> mx.array:
        return SIMILARITY_FNS[self.similarity_fn_name][1](embeddings1, embeddings2, **kwargs)

    # --- persistence -------------------------------------------------------------------------------
    def save(self, path, model_name=None, create_model_card: bool = True, train_datasets=None,
             safe_serialization: bool = True):
        """Write ST 6's folder layout into ``path``; other files there are left alone (as ST 6 does).
        With ``create_model_card`` a sentence-transformers-style README (``model_card.dense``)."""
        if path is None:
            return
        from ..engine.step import refuse_if_damaged

        refuse_if_damaged(self, path)

        def write(tmp):
            module_layout.write_st6_folder(self, tmp)
            if create_model_card:
                from ..model_card import write_model_card

                write_model_card(tmp, self._card_info(model_name, train_datasets))

        save_folder(path, write)

    def _card_info(self, model_name=None, train_datasets=None, model_id=None) -> dict:
        from ..model_card.card_data import card_info

        return card_info(self, "multi-vector", model_name, train_datasets, model_id,
                         max_seq_length=self.max_seq_length, dense_similarity="MaxSim",
                         query_length=getattr(self.transformer, "query_length", None),
                         document_length=getattr(self.transformer, "document_length", None))

    save_pretrained = save

    def push_to_hub(self, repo_id: str, token=None, private=None, safe_serialization: bool = True, commit_message=None,
                    local_model_path=None, exist_ok: bool = False, replace_model_card: bool = False,
                    train_datasets=None, revision=None, create_pr: bool = False) -> str:
        """Save ST 6's layout, then upload it (``hub.push_to_hub``: the save is kept if the upload fails)."""
        from .. import hub

        return hub.push_model(
            self, repo_id, "MultiVectorEncoder", train_datasets=train_datasets, token=token, private=private,
            commit_message=commit_message, local_model_path=local_model_path, exist_ok=exist_ok,
            replace_model_card=replace_model_card, revision=revision, create_pr=create_pr,
        )

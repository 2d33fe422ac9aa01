"""PyLate's ``models.ColBERT`` on MLX: same constructor, resolution order, tokenization and layout."""

from __future__ import annotations

import logging
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from ..adapters import AdapterMixin
from ..io_utils import save_folder
from ..loading import check_layout_json, check_remote_code, resolve_path
from ..multi_vector.base import MultiVectorModule
from . import layout, scores
from .encode import EncodeMixin
from .modules import Dense, resize_token_embeddings

logger = logging.getLogger(__name__)


class ColBERT(AdapterMixin, EncodeMixin, MultiVectorModule, nn.Module):
    """A late-interaction model: ``Transformer`` backbone + ``Dense`` projection(s).

    Loads a plain HF model (adds ``[Q] ``/``[D] `` tokens, resizes the embeddings, appends a bias-free
    Identity Dense to ``embedding_size``, pad := mask token), a PyLate folder, a sentence-transformers
    folder (Pooling/Normalize dropped, Dense activation/bias kept) or a Stanford ``HF_ColBERT``
    checkpoint. ``None`` arguments resolve as in PyLate: explicit > saved config > default.

    >>> model = ColBERT("path/to/model")                       # doctest: +SKIP
    >>> q = model.encode(["what is mlx?"], is_query=True)       # doctest: +SKIP
    >>> d = model.encode(["MLX is an array framework."], is_query=False)  # doctest: +SKIP
    >>> model.similarity(q, d)                                  # doctest: +SKIP
    """

    def __init__(
        self,
        model_name_or_path: str | None = None,
        modules=None,
        device=None,
        prompts=None,
        default_prompt_name=None,
        similarity_fn_name=None,
        cache_folder=None,
        trust_remote_code=False,
        revision=None,
        local_files_only=False,
        token=None,
        use_auth_token=None,
        truncate_dim=None,
        embedding_size=None,
        bias=False,
        query_prefix=None,
        document_prefix=None,
        truncation=True,
        query_length=None,
        document_length=None,
        do_query_expansion=None,
        attend_to_expansion_tokens=None,
        skiplist_words=None,
        model_kwargs=None,
        tokenizer_kwargs=None,
        config_kwargs=None,
        model_card_data=None,
    ):
        super().__init__()
        if model_name_or_path is None and modules is None:
            raise ValueError("ColBERT needs model_name_or_path (a local folder or hub id) or modules.")
        if device is not None:
            from .. import backend

            backend.use_cpu() if str(device).startswith("cpu") else None
        self.model_name_or_path = str(model_name_or_path) if model_name_or_path is not None else None
        self.prompts = dict(prompts or {})
        self.default_prompt_name = default_prompt_name
        self.model_card_data = model_card_data
        saved: dict = {}
        stanford_meta: dict = {}
        is_stanford = False
        if modules is not None:
            self.transformer, denses = modules[0], list(modules[1:])
        else:
            folder = resolve_path(model_name_or_path, revision, token or use_auth_token, cache_folder, local_files_only)
            self.folder = folder
            check_layout_json(folder)  # before anything is read, a damaged file is named
            check_remote_code(folder, trust_remote_code)
            if (folder / "modules.json").exists():
                self.transformer, denses, saved = layout.read_modules(folder, tokenizer_kwargs)
                self.prompts = self.prompts or saved.get("prompts") or {}
                self.default_prompt_name = default_prompt_name or saved.get("default_prompt_name")
            else:
                logger.warning(
                    "No sentence-transformers model found with name %s. Creating a ColBERT model from it.",
                    model_name_or_path,
                )
                self.transformer, stanford_dense = layout.load_plain_hf(folder, tokenizer_kwargs)
                denses = [stanford_dense] if stanford_dense is not None else []
                is_stanford = stanford_dense is not None
                if is_stanford:
                    stanford_meta = layout.read_stanford_metadata(folder)
        hidden = self.transformer.get_word_embedding_dimension()
        if not denses:
            denses = [Dense(hidden, embedding_size or 128, bias=bias)]
        if embedding_size is not None and denses[-1].out_features != embedding_size:
            # PyLate appends a projection rather than replacing the existing one.
            denses.append(Dense(denses[-1].out_features, embedding_size, bias=bias))
        self.dense = denses

        def resolve(name, explicit, stanford_key, default):
            if explicit is not None:
                return explicit
            if name in saved and saved[name] is not None:
                return saved[name]
            if stanford_key and stanford_meta.get(stanford_key) is not None:
                return stanford_meta[stanford_key]
            return default

        self.query_prefix = resolve("query_prefix", query_prefix, "query_token_id", "[unused0]" if is_stanford else "[Q] ")
        self.document_prefix = resolve("document_prefix", document_prefix, "doc_token_id", "[unused1]" if is_stanford else "[D] ")
        self._add_prefix_tokens()
        self._set_pad_token()
        self.document_length = resolve("document_length", document_length, "doc_maxlen", 180)
        self.query_length = resolve("query_length", query_length, "query_maxlen", 32)
        for name in ("document_length", "query_length"):
            self._check_length(name, getattr(self, name), f"pass {name}={{limit}} (or less) to ColBERT(...)")
        self.skiplist_words = resolve("skiplist_words", skiplist_words, None, list(layout.DEFAULT_SKIPLIST))
        self.skiplist = [self.tokenizer.convert_tokens_to_ids(w) for w in self.skiplist_words]
        self.do_query_expansion = resolve("do_query_expansion", do_query_expansion, None, True)
        self.attend_to_expansion_tokens = resolve(
            "attend_to_expansion_tokens", attend_to_expansion_tokens, "attend_to_mask_tokens", False
        )
        if not self.do_query_expansion:
            self.attend_to_expansion_tokens = False
        self.eval()

    # --- construction helpers -------------------------------------------------------------
    def _add_prefix_tokens(self):
        prefixes = [p for p in (self.query_prefix, self.document_prefix) if p != ""]
        backbone = self.transformer.auto_model
        if prefixes:
            resize_token_embeddings(backbone, len(self.tokenizer))
            self.tokenizer.add_tokens(prefixes)
            resize_token_embeddings(backbone, len(self.tokenizer))
        tok = self.tokenizer
        self.query_prefix_id = tok.convert_tokens_to_ids(self.query_prefix) if self.query_prefix else None
        self.document_prefix_id = tok.convert_tokens_to_ids(self.document_prefix) if self.document_prefix else None

    def _set_pad_token(self):
        tok = self.tokenizer
        if tok.mask_token_id is not None:
            tok.pad_token_id = tok.mask_token_id
        elif tok.eos_token_id is not None:
            tok.pad_token_id = tok.eos_token_id
        elif tok.pad_token_id is not None:
            logger.warning("No MASK or EOS token for query expansion; using the existing pad token.")
        else:
            raise NotImplementedError(
                "The tokenizer has no MASK, EOS or pad token to use for query expansion padding."
            )

    def _check_length(self, name: str, length, fix: str):
        """A length past BERT's position table would read garbage rows on MLX (torch raises at the first
        text that long); refused up front. RoPE models (ModernBERT) have no table and no limit."""
        limit = getattr(self.transformer.auto_model, "max_positions", None)
        if limit is not None and length is not None and int(length) > limit:
            table = getattr(getattr(self.transformer.auto_model, "config", None), "max_position_embeddings", limit)
            raise ValueError(  # RoBERTa's table has pad_token_id + 1 more rows than tokens
                f"{name}={length} is longer than the model's position table allows (max_position_embeddings={table} "
                f"in the config.json of {self.model_name_or_path or 'the backbone'}: at most {limit} tokens): "
                f"tokens past {limit} "
                f"have no position embedding, so PyLate on torch fails with an index error on the first text that "
                f"long. Fix: {fix.format(limit=limit)}."
            )

    # --- sentence-transformers surface (indexing, tokenizer, device: multi_vector.base) ------
    def _module_list(self) -> list:
        return [self.transformer, *self.dense]

    @property
    def similarity_fn_name(self) -> str:
        return "MaxSim"

    def get_sentence_embedding_dimension(self) -> int:
        return self.dense[-1].out_features

    def __call__(self, features: dict) -> dict:
        """ST forward: ``token_embeddings`` (B, L, D), not normalised, not masked."""
        out = self.transformer(features)
        for dense in self.dense:
            out = dense(out)
        return out

    forward = __call__

    # --- tokenization ----------------------------------------------------------------------
    def preprocess(self, inputs=None, is_query: bool = True, pad: bool = False, task=None, texts=None, **kwargs) -> dict:
        """``tokenize`` under the name of PyLate's sentence-transformers-v6 branch (``texts`` = ``inputs``)."""
        if inputs is None and texts is None:
            raise TypeError("preprocess() needs the texts: model.preprocess(inputs, is_query=...)")
        return self.tokenize(inputs if inputs is not None else texts, is_query=is_query, pad=pad, task=task)

    def tokenize(self, texts, is_query: bool = True, pad: bool = False, task=None) -> dict:
        """PyLate's tokenize: prefix id inserted at position 1; queries padded when expanding."""
        max_length = self.query_length if is_query else self.document_length
        name = "query_length" if is_query else "document_length"
        self._check_length(name, max_length, f"set model.{name} = {{limit}} (or less)")
        prefix_id = self.query_prefix_id if is_query else self.document_prefix_id
        use_prefix = prefix_id is not None
        # PyLate mutates max_seq_length here; it leaks into sentence_bert_config.json on save.
        self.transformer.max_seq_length = max_length - 1 if use_prefix else max_length
        padding = "max_length" if pad or (is_query and self.do_query_expansion) else True
        out = self.transformer.tokenize(list(texts), padding=padding)
        if use_prefix:
            out["input_ids"] = self.insert_prefix_token(out["input_ids"], prefix_id)
            out["attention_mask"] = self.insert_prefix_token(out["attention_mask"], 1)
            if "token_type_ids" in out:
                out["token_type_ids"] = self.insert_prefix_token(out["token_type_ids"], 0)
        if is_query and self.attend_to_expansion_tokens:
            out["attention_mask"] = np.ones_like(out["attention_mask"])
        return {k: mx.array(np.asarray(v, dtype=np.int32)) for k, v in out.items()}

    @staticmethod
    def insert_prefix_token(input_ids, prefix_id: int):
        ids = np.asarray(input_ids)
        column = np.full((ids.shape[0], 1), prefix_id, dtype=ids.dtype)
        return np.concatenate([ids[:, :1], column, ids[:, 1:]], axis=1)

    @staticmethod
    def skiplist_mask(input_ids, skiplist) -> mx.array:
        return scores.skiplist_mask(input_ids, skiplist)

    # --- scoring ---------------------------------------------------------------------------
    def similarity(self, queries_embeddings, documents_embeddings, queries_mask=None, documents_mask=None):
        return scores.colbert_scores(queries_embeddings, documents_embeddings, queries_mask, documents_mask)

    def similarity_pairwise(self, queries_embeddings, documents_embeddings):
        return scores.colbert_scores_pairwise(queries_embeddings, documents_embeddings)

    # --- persistence -----------------------------------------------------------------------
    def save(self, path, model_name=None, create_model_card=True, train_datasets=None, safe_serialization=True):
        """Write the PyLate folder layout into ``path``; other files there are left alone (as in PyLate).

        Crash-safe (``io_utils.save_folder``: a kill leaves the old files or, after the next save,
        the new ones); a full, read-only or forbidden disk raises ``io_utils.SaveError`` naming the
        file, with nothing half-written left. A model whose weights a training step made non-finite
        is refused (``engine.step.refuse_if_damaged``).
        """
        from mlx.utils import tree_flatten

        from ..engine.step import refuse_if_damaged

        refuse_if_damaged(self, path)

        def write(tmp):
            layout.write_folder(self, tmp)
            if create_model_card:
                self._write_model_card(tmp, model_name, train_datasets)

        size = sum(int(v.nbytes) for _, v in tree_flatten(self.parameters()))
        save_folder(path, write, size_hint=size)

    save_pretrained = save

    def _write_model_card(self, folder: Path, model_name=None, train_datasets=None):
        try:
            from ..model_card import write_model_card
        except ImportError:
            return
        info = dict(getattr(self, "card_info", {}) or {})
        info.setdefault("model", self)
        info.setdefault("base_model", getattr(self, "model_name_or_path", None))
        if model_name:
            info["model_name"] = model_name
        if train_datasets:
            info["train_datasets"] = train_datasets
        write_model_card(folder, info)

    def push_to_hub(
        self,
        repo_id: str,
        token=None,
        private=None,
        safe_serialization=True,
        commit_message=None,
        local_model_path=None,
        exist_ok=False,
        replace_model_card=False,
        train_datasets=None,
        revision=None,
        create_pr=False,
    ) -> str:
        """sentence-transformers' ``push_to_hub``: save the PyLate folder, then upload it.

        The save is kept locally when the upload fails; the error names the folder.
        """
        from .. import hub
        from ..model_card import write_model_card

        def card(folder, final_repo_id):
            info = {**(getattr(self, "card_info", {}) or {}), "model": self, "model_id": final_repo_id}
            if train_datasets:
                info["train_datasets"] = train_datasets
            write_model_card(folder, info)

        return hub.push_to_hub(
            lambda folder: self.save(folder, model_name=repo_id, create_model_card=False),
            repo_id, token=token, private=private, commit_message=commit_message,
            local_model_path=local_model_path, exist_ok=exist_ok, replace_model_card=replace_model_card,
            revision=revision, create_pr=create_pr, card_fn=card,
        )

    @staticmethod
    def load(input_path) -> "ColBERT":
        return ColBERT(model_name_or_path=input_path)


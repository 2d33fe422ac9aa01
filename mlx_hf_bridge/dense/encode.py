"""``SentenceTransformer.encode`` / ``encode_query`` / ``encode_document`` with ST's parameters, defaults
and return types (ST 5.3 and ST 6.2 agree on them).

The loop is the one every family shares (``colbert.encode.encode_in_length_order``: longest texts
first, one padding width per batch). Sentence embeddings only read real tokens (every Pooling mode
masks padding), so their rows run packed where the backbone can (``colbert.padding.packed_sequences``);
``output_value="token_embeddings"`` / ``None`` return per-token outputs and run padded, as ST does.
"""

from __future__ import annotations

import logging

import mlx.core as mx
import numpy as np

from ..colbert.encode import encode_in_length_order
from ..colbert.padding import packed_sequences
from .quantization import quantizer
from .similarity import normalize_embeddings as _normalize

logger = logging.getLogger(__name__)

ALLOWED_PRECISIONS = ("float32", "int8", "uint8", "binary", "ubinary")
OUTPUT_VALUES = ("sentence_embedding", "token_embeddings", None)
DOCUMENT_PROMPT_NAMES = ("document", "passage", "corpus")


class DenseEncodeMixin:
    def encode_query(self, sentences, prompt_name=None, prompt=None, batch_size: int = 32, show_progress_bar=None,
                     output_value="sentence_embedding", precision="float32", convert_to_numpy: bool = True,
                     convert_to_tensor: bool = False, device=None, normalize_embeddings: bool = False,
                     truncate_dim=None, pool=None, chunk_size=None, **kwargs):
        """``encode`` with ``task="query"`` and the ``"query"`` prompt when none is given."""
        if prompt_name is None and prompt is None and "query" in self.prompts:
            prompt_name = "query"
        return self.encode(sentences, prompt_name, prompt, batch_size, show_progress_bar, output_value, precision,
                           convert_to_numpy, convert_to_tensor, device, normalize_embeddings, truncate_dim, pool,
                           chunk_size, task="query", **kwargs)

    def encode_document(self, sentences, prompt_name=None, prompt=None, batch_size: int = 32, show_progress_bar=None,
                        output_value="sentence_embedding", precision="float32", convert_to_numpy: bool = True,
                        convert_to_tensor: bool = False, device=None, normalize_embeddings: bool = False,
                        truncate_dim=None, pool=None, chunk_size=None, **kwargs):
        """``encode`` with ``task="document"`` and the first of the document / passage / corpus prompts."""
        if prompt_name is None and prompt is None:
            prompt_name = next((c for c in DOCUMENT_PROMPT_NAMES if c in self.prompts), None)
        return self.encode(sentences, prompt_name, prompt, batch_size, show_progress_bar, output_value, precision,
                           convert_to_numpy, convert_to_tensor, device, normalize_embeddings, truncate_dim, pool,
                           chunk_size, task="document", **kwargs)

    def encode(self, sentences, prompt_name=None, prompt=None, batch_size: int = 32, show_progress_bar=None,
               output_value="sentence_embedding", precision="float32", convert_to_numpy: bool = True,
               convert_to_tensor: bool = False, device=None, normalize_embeddings: bool = False,
               truncate_dim=None, pool=None, chunk_size=None, **kwargs):
        """Sentence embeddings: a (n, dim) numpy array by default, an ``mx.array`` with
        ``convert_to_tensor=True``, a list of 1-D ``mx.array`` with ``convert_to_numpy=False``; a single
        string gives one vector. ``output_value="token_embeddings"`` gives each text's token embeddings
        up to its last real token, ``None`` every output feature per text."""
        if show_progress_bar is None:
            show_progress_bar = logger.getEffectiveLevel() in (logging.INFO, logging.DEBUG)
        if convert_to_tensor:
            convert_to_numpy = False
        if output_value not in OUTPUT_VALUES:
            raise ValueError(f"output_value must be one of {OUTPUT_VALUES}, got {output_value!r}.")
        if output_value != "sentence_embedding":
            convert_to_tensor = convert_to_numpy = False
        if batch_size <= 0:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}.")
        task = kwargs.pop("task", None)
        if kwargs.pop("processing_kwargs", None):
            raise NotImplementedError("processing_kwargs= (ST 6's per-call processor settings) is not supported on MLX yet.")
        if kwargs:
            raise ValueError(
                f"{type(self).__name__}.encode() has been called with additional keyword arguments that this model "
                f"does not use: {list(kwargs)}. As per {type(self).__name__}.get_model_kwargs(), this model does not "
                "accept any additional keyword arguments."
            )
        if pool is not None or isinstance(device, list):
            raise NotImplementedError("Multi-process encoding (pool= / a list of devices) is not supported on MLX; one process encodes.")
        if precision and precision not in ALLOWED_PRECISIONS:
            raise ValueError(f"Precision {precision!r} is not supported, must be one of {set(ALLOWED_PRECISIONS)}")
        single = isinstance(sentences, str) or not hasattr(sentences, "__len__")
        texts = [sentences] if single else (sentences.tolist() if isinstance(sentences, np.ndarray) else list(sentences))
        if texts and isinstance(texts[0], dict) and hasattr(getattr(self, "transformer", None), "structure"):
            from ..modules.router import task_rows

            texts, task = task_rows(texts, task)  # a Router's {task: text} rows
        prompt = self._resolve_prompt(prompt, prompt_name)
        truncate_dim = truncate_dim if truncate_dim is not None else self.truncate_dim
        extra = {}
        if prompt:
            length = self._prompt_length(prompt, task)
            if length is not None:
                extra["prompt_length"] = length
        self.eval()
        pack = output_value == "sentence_embedding" and getattr(self, "padding_free", True)

        def encode_batch(batch):
            features = {**self.tokenize(batch, prompt=prompt, task=task), **extra}
            with packed_sequences(self, pack):
                out = self(features, task=task)
            if truncate_dim is not None:
                out["sentence_embedding"] = out["sentence_embedding"][..., :truncate_dim]
            if output_value == "token_embeddings":
                mx.eval(out["token_embeddings"], out["attention_mask"])
                mask = np.array(out["attention_mask"])
                # ST keeps positions up to the last attended one (at least the first)
                ends = [int(np.nonzero(row)[0].max()) + 1 if row.any() else 1 for row in mask]
                return [out["token_embeddings"][i, :end] for i, end in enumerate(ends)]
            if output_value is None:
                mx.eval({k: v for k, v in out.items() if isinstance(v, mx.array)})
                return [{k: (v[i] if isinstance(v, mx.array) and v.ndim and v.shape[0] == len(batch) else v)
                         for k, v in out.items()} for i in range(len(batch))]
            embeddings = out["sentence_embedding"]
            if normalize_embeddings:
                embeddings = _normalize(embeddings)
            mx.eval(embeddings)
            return list(embeddings)

        results = encode_in_length_order(texts, batch_size, encode_batch, "Batches", bool(show_progress_bar))
        if output_value != "sentence_embedding":
            return results[0] if single else results
        embeddings = mx.stack(results) if results else mx.array([])
        if results and precision and precision != "float32":
            embeddings = quantizer(self.generation)(np.array(embeddings.astype(mx.float32)), precision=precision)
            embeddings = embeddings if convert_to_numpy else mx.array(embeddings)
        if convert_to_numpy:
            embeddings = np.array(embeddings.astype(mx.float32)) if isinstance(embeddings, mx.array) else embeddings
        elif not convert_to_tensor:
            embeddings = [embeddings[i] for i in range(embeddings.shape[0])] if results else []
        return embeddings[0] if single else embeddings

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
            logger.warning("Encode with either a `prompt`, a `prompt_name`, or neither, but not both. "
                           "Ignoring the `prompt_name` in favor of `prompt`.")
        return prompt

    def _prompt_length(self, prompt: str, task=None) -> int:
        """ST's ``_get_prompt_length``: the tokenized prompt's length, less a trailing special token
        (measured as the model tokenizes: ST 5 folders strip it first)."""
        from ..modules import Transformer

        cache = self.__dict__.setdefault("_prompt_lengths", {})
        module = self.input_module(task) if hasattr(self, "input_module") else self.transformer
        if not isinstance(module, Transformer):
            return None  # a StaticEmbedding has no positions to exclude (Pooling never sees its tokens)
        if (prompt, task) not in cache:
            ids = np.array(self.tokenize([prompt], task=task)["input_ids"])
            length = ids.shape[-1]
            if int(ids[0, -1]) in set(module.tokenizer.all_special_ids):
                length -= 1
            cache[(prompt, task)] = length
        return cache[(prompt, task)]

    def get_model_kwargs(self) -> list:
        return []

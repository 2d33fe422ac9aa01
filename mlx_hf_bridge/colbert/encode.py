"""``ColBERT.encode`` with PyLate's parameters, defaults, masks and return shapes (pylate-api.md §2.6)."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
from tqdm.auto import trange

from ..errors import check_texts
from .padding import packed_sequences


def _text_length(text) -> int:
    # sentence-transformers' _text_length: characters for a string
    if isinstance(text, dict):
        return len(next(iter(text.values())))
    if not hasattr(text, "__len__"):
        return 1
    if len(text) == 0 or isinstance(text[0], int):
        return len(text)
    return sum(len(t) for t in text)


def encode_in_length_order(texts, batch_size: int, encode_batch, desc: str, show_progress_bar: bool = False) -> list:
    """The encode loop PyLate and ST share: longest texts first (one padding width per batch),
    ``encode_batch(texts) -> [per-text output]`` on each slice, results back in input order."""
    texts = check_texts(texts, "encode() input", "text")  # before sorting: the index named is the caller's
    order = np.argsort([-_text_length(t) for t in texts])
    sorted_texts = [texts[int(i)] for i in order]
    results = []
    for start in trange(0, len(texts), batch_size, desc=desc, disable=not show_progress_bar):
        results.extend(encode_batch(sorted_texts[start : start + batch_size]))
    inverse = np.argsort(order)
    return [results[int(i)] for i in inverse]


class EncodeMixin:
    def encode(
        self,
        sentences,
        prompt_name=None,
        prompt=None,
        batch_size: int = 32,
        show_progress_bar=None,
        precision="float32",
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        padding: bool = False,
        device=None,
        normalize_embeddings: bool = True,
        is_query: bool = True,
        pool_factor: int = 1,
        protected_tokens: int = 1,
        output_value="token_embeddings",
    ):
        """Token embeddings per text: a list of (n_tokens, dim) arrays (numpy, or ``mx.array``
        with ``convert_to_tensor=True``). Documents drop padding and skiplist tokens; queries keep
        every position when ``do_query_expansion``. Vectors are L2-normalised after masking."""
        if output_value not in ("token_embeddings", None):
            raise ValueError(f"output_value must be 'token_embeddings' or None, got {output_value!r}.")
        if output_value is None and pool_factor > 1:  # PyLate's check: pooled tokens no longer align with ids
            raise ValueError("output_value=None is not compatible with pool_factor > 1.")
        if pool_factor > 1:
            raise NotImplementedError("pool_factor > 1 (hierarchical token pooling) is not supported yet.")
        if precision not in (None, "float32"):
            raise NotImplementedError(f"precision={precision!r}: only float32 embeddings are supported.")
        if isinstance(sentences, list) and sentences and isinstance(sentences[0], list):
            nested = [
                self.encode(
                    batch, prompt_name, prompt, batch_size, show_progress_bar, precision, convert_to_numpy,
                    convert_to_tensor, padding, device, normalize_embeddings, is_query, pool_factor,
                    protected_tokens, output_value,
                )
                for batch in sentences
            ]
            return [mx.stack(b) for b in nested] if convert_to_tensor else nested
        if not convert_to_numpy:
            convert_to_tensor = True
        self.eval()
        input_was_string = isinstance(sentences, str) or not hasattr(sentences, "__len__")
        if input_was_string:
            sentences = [sentences]
        if prompt is None and prompt_name is not None:
            if prompt_name not in self.prompts:
                raise ValueError(
                    f"Prompt name '{prompt_name}' not found in the configured prompts dictionary. "
                    f"Available keys are: {list(self.prompts)!r}."
                )
            prompt = self.prompts[prompt_name]
        elif prompt is None and self.default_prompt_name is not None:
            prompt = self.prompts.get(self.default_prompt_name)
        if prompt:
            sentences = [prompt + s for s in sentences]

        keys = ("token_embeddings",) if output_value else ("token_embeddings", "input_ids", "attention_mask", "masks")

        def encode_batch(batch):
            # padding-free (the default) pads documents to the batch's longest, as PyLate does;
            # ``model.padding_free = False`` pads them to document_length (same vectors)
            fixed = not is_query and not getattr(self, "padding_free", True)
            features = self.tokenize(batch, is_query=is_query, pad=fixed)
            # only documents' real tokens are returned, so their rows may run packed (no padding)
            with packed_sequences(self, not is_query and not fixed and bool(output_value)):
                embeddings = self(features)["token_embeddings"]
            if not is_query:
                masks = self.skiplist_mask(features["input_ids"], self.skiplist) & features["attention_mask"].astype(mx.bool_)
            elif self.do_query_expansion:
                masks = mx.ones(features["input_ids"].shape, dtype=mx.bool_)
            else:
                masks = features["attention_mask"].astype(mx.bool_)
            if normalize_embeddings:
                # per-token L2 norm; selecting tokens first (PyLate) gives the same vectors
                embeddings = embeddings / mx.maximum(mx.linalg.norm(embeddings, axis=-1, keepdims=True), 1e-12)
            mx.eval(embeddings, masks)
            emb_np = np.array(embeddings.astype(mx.float32))
            mask_np = np.array(masks)
            if output_value:
                return [(emb_np[i][mask_np[i]],) for i in range(emb_np.shape[0])]
            return [
                (emb_np[i], np.array(features["input_ids"][i]), np.array(features["attention_mask"][i]), mask_np[i])
                for i in range(emb_np.shape[0])
            ]

        desc = f"Encoding {'queries' if is_query else 'documents'} (bs={batch_size})"
        items = encode_in_length_order(sentences, batch_size, encode_batch, desc, bool(show_progress_bar))
        outputs = {k: [item[j] for item in items] for j, k in enumerate(keys)}
        if padding:
            pad_values = {"token_embeddings": 0, "masks": 0, "attention_mask": 0, "input_ids": self.tokenizer.pad_token_id or 0}
            for key, values in outputs.items():
                longest = max(v.shape[0] for v in values)
                outputs[key] = [
                    np.pad(v, [(0, longest - v.shape[0])] + [(0, 0)] * (v.ndim - 1), constant_values=pad_values[key])[None]
                    for v in values
                ]
        if convert_to_tensor:
            outputs = {k: [mx.array(v) for v in vals] for k, vals in outputs.items()}
        if output_value == "token_embeddings":
            result = outputs["token_embeddings"]
            return result[0] if input_was_string else result
        return {k: v[0] for k, v in outputs.items()} if input_was_string else outputs

"""sentence-transformers' ``StaticEmbedding`` on MLX (ST 5.3 ``models.StaticEmbedding``, ST 6.2
``sentence_transformer.modules.StaticEmbedding``): a text's embedding is the mean of its tokens' rows.

ST runs ``torch.nn.EmbeddingBag(mode="mean")`` over the flat token ids of the batch and the offsets
where each text starts; the tokens come from a ``tokenizers.Tokenizer`` without special tokens and
without padding. An empty text is an empty bag: a zero vector, as torch gives. The folder holds
``model.safetensors`` (``embedding.weight``) and ``tokenizer.json``; model2vec folders
(``embeddings`` [+ ``mapping`` / ``weights``]) load as the installed ST loads them.
"""

from __future__ import annotations

import math
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from ..errors import check_texts

WEIGHT_KEY = "embedding.weight"
MODEL2VEC_TOOLS = "model2vec distils / loads with torch-based code"


def _rust_tokenizer(tokenizer):
    """A ``tokenizers.Tokenizer`` from it, or ST's error for a slow tokenizer."""
    from tokenizers import Tokenizer

    inner = getattr(tokenizer, "_tokenizer", None)  # transformers' PreTrainedTokenizerFast wraps one
    if isinstance(inner, Tokenizer):
        return inner
    if isinstance(tokenizer, Tokenizer):
        return tokenizer
    raise ValueError(
        "The tokenizer must be fast (i.e. Rust-backed) to use this class. "
        "Use Tokenizer.from_pretrained() from `tokenizers` to load a fast tokenizer."
    )


def bag_means(table: mx.array, input_ids: mx.array, offsets: mx.array) -> mx.array:
    """``EmbeddingBag(mode="mean")``: row b is the mean of ``table[input_ids[offsets[b]:offsets[b+1]]]``
    (zeros for an empty bag). A scatter-add of the looked-up rows into their bags: memory linear in
    the tokens (static models train with batches of thousands), MLX ops only (nothing read on the host)."""
    n_tokens = input_ids.shape[0]
    starts = offsets.astype(mx.int32)
    # each token's bag: how many bags start at or before it, less one (an empty bag starts where the next does)
    marks = mx.zeros((n_tokens + 1,), dtype=mx.int32).at[starts].add(1)
    bag_of_token = mx.cumsum(marks[:n_tokens]) - 1
    lengths = mx.concatenate([starts[1:], mx.array([n_tokens], dtype=mx.int32)]) - starts
    sums = mx.zeros((starts.shape[0], table.shape[1]), dtype=table.dtype).at[bag_of_token].add(table[input_ids])
    return sums / mx.maximum(lengths, 1)[:, None].astype(table.dtype)


class StaticEmbedding(nn.Module):
    """``StaticEmbedding(tokenizer, embedding_weights=None, embedding_dim=None, **kwargs)``: ST's
    arguments. A fresh table is drawn from N(0, 1) (torch's EmbeddingBag initialisation)."""

    def __init__(self, tokenizer, embedding_weights=None, embedding_dim: int | None = None, **kwargs):
        super().__init__()
        tokenizer = _rust_tokenizer(tokenizer)
        if embedding_weights is not None:
            weights = embedding_weights
            if hasattr(weights, "detach"):  # a torch tensor from a script
                weights = weights.detach().cpu().numpy()
            weights = weights if isinstance(weights, mx.array) else mx.array(np.asarray(weights))
        elif embedding_dim is not None:
            weights = mx.random.normal((tokenizer.get_vocab_size(), embedding_dim))
        else:
            raise ValueError("Either `embedding_weights` or `embedding_dim` must be provided.")
        self.embedding = nn.Embedding(1, 1)  # holds the table as ``embedding.weight``, torch's state-dict name
        self.embedding.weight = weights
        if self.embedding.weight.ndim != 2:
            raise ValueError(f"embedding_weights must be a (vocabulary, dim) matrix, got shape {self.embedding.weight.shape}.")
        tokenizer.no_padding()
        object.__setattr__(self, "tokenizer", tokenizer)  # a Rust object, not a child module
        self.base_model = kwargs.get("base_model")

    @property
    def num_embeddings(self) -> int:
        return int(self.embedding.weight.shape[0])

    @property
    def embedding_dim(self) -> int:
        return int(self.embedding.weight.shape[1])

    def preprocess(self, texts, prompt=None, task=None, **_) -> dict:
        """ST's ``preprocess`` / ``tokenize``: flat ``input_ids`` and each text's start in ``offsets``."""
        texts = check_texts(texts)
        if prompt:
            texts = [prompt + t for t in texts]
        ids = [encoding.ids for encoding in self.tokenizer.encode_batch(texts, add_special_tokens=False)]
        offsets = np.cumsum([0] + [len(row) for row in ids[:-1]])
        flat = np.array([i for row in ids for i in row], dtype=np.int32)
        return {"input_ids": mx.array(flat), "offsets": mx.array(offsets.astype(np.int32))}

    def tokenize(self, texts, task=None, prompt=None, **kwargs) -> dict:
        return self.preprocess(texts, prompt=prompt, task=task)

    def __call__(self, features: dict, task=None, **_) -> dict:
        return {**features, "sentence_embedding": bag_means(self.embedding.weight, features["input_ids"], features["offsets"])}

    @property
    def max_seq_length(self):
        return math.inf

    @max_seq_length.setter
    def max_seq_length(self, value):
        pass  # ST's is a read-only inf; setting it (as scripts do for any model) changes nothing

    def get_embedding_dimension(self) -> int:
        return self.embedding_dim

    get_sentence_embedding_dimension = get_embedding_dimension

    # --- persistence -------------------------------------------------------------------------
    def save(self, output_path, *args, safe_serialization: bool = True, **kwargs) -> None:
        from ..loading import save_safetensors

        if not safe_serialization:
            raise ValueError("safe_serialization=False (pytorch_model.bin) is not written on MLX; save safetensors.")
        Path(output_path).mkdir(parents=True, exist_ok=True)
        save_safetensors(Path(output_path) / "model.safetensors", {WEIGHT_KEY: self.embedding.weight})
        self.tokenizer.save(str(Path(output_path) / "tokenizer.json"))

    @classmethod
    def load(cls, input_path, generation: str = "st6") -> "StaticEmbedding":
        """A saved StaticEmbedding or a model2vec folder. model2vec's ``mapping`` / ``weights`` are folded in
        as ST 6.2 does; ST 5.3 reads ``embeddings`` alone (its quirk on vocabulary-quantised models, kept)."""
        from tokenizers import Tokenizer

        from ..loading import load_weights

        folder = Path(input_path)
        tokenizer_path = folder / "tokenizer.json"
        if not tokenizer_path.is_file():
            raise FileNotFoundError(
                f"{tokenizer_path} does not exist: a StaticEmbedding folder holds its tokenizer.json beside the "
                "weights. Restore it from the original model."
            )
        try:
            tokenizer = Tokenizer.from_file(str(tokenizer_path))
        except Exception as exc:  # the Rust parser's message names the position
            raise ValueError(f"{tokenizer_path} is not a valid tokenizers file ({exc}); restore it.") from None
        weights = load_weights(folder)
        if WEIGHT_KEY in weights:
            table = weights[WEIGHT_KEY]
        elif "embeddings" in weights:
            table = weights["embeddings"]
            if generation != "st5":
                table = fold_model2vec(table, weights.get("mapping"), weights.get("weights"))
        else:
            raise KeyError(
                f"{folder}: no {WEIGHT_KEY!r} (a StaticEmbedding save) or 'embeddings' (a model2vec model) tensor; "
                f"found {sorted(weights)[:5]}. Is this a StaticEmbedding folder?"
            )
        return cls(tokenizer, embedding_weights=table)

    @classmethod
    def from_model2vec(cls, model_id_or_path: str) -> "StaticEmbedding":
        """A model2vec folder or Hub id: its ``model.safetensors`` and ``tokenizer.json`` (no model2vec needed)."""
        from ..loading import resolve_path

        return cls.load(resolve_path(model_id_or_path), generation="st6")

    @classmethod
    def from_distillation(cls, model_name: str, *args, **kwargs):
        raise NotImplementedError(
            "StaticEmbedding.from_distillation runs model2vec's distillation, which encodes the vocabulary with "
            "the torch model: it does not run on MLX. Distil with sentence-transformers on torch (or model2vec), "
            "save, and load the folder here (SentenceTransformer(path) or StaticEmbedding.from_model2vec(path))."
        )


def fold_model2vec(embeddings: mx.array, mapping=None, token_weights=None) -> mx.array:
    """ST 6.2's fold: ``row[token] = embeddings[mapping[token]] * weights[token]``; with weights the
    table is float32 (ST widens it to at least float32 first and keeps that dtype)."""
    if mapping is not None:
        embeddings = embeddings[mapping.astype(mx.int32)]
    if token_weights is not None:
        embeddings = embeddings.astype(mx.float32) * token_weights[:, None].astype(mx.float32)
    return embeddings

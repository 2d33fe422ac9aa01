"""A tiny stand-in model and losses that follow the engine's model/loss protocols (no tests here).

Also importable from subprocess scripts (``sys.path.insert(0, tests_dir)``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import mlx_hf_bridge  # noqa: F401  (BLAS preload before mlx.core)
import mlx.core as mx
import mlx.nn as nn
import numpy as np


class Block(nn.Module):
    def __init__(self, dim, dropout):
        super().__init__()
        self.dense = nn.Linear(dim, dim)
        self.LayerNorm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def __call__(self, x, mask):
        Block.calls += 1
        return x + self.dropout(self.LayerNorm(nn.gelu(self.dense(x)))) * mask[..., None]


Block.calls = 0


class TinyEncoder(nn.Module):
    """``TinyEncoder(path)`` reloads what ``save(path)`` wrote, like ColBERT(path)."""

    def __init__(self, path=None, vocab=97, dim=16, layers=2, dropout=0.1, seed=0, max_length=8):
        super().__init__()
        cfg = dict(vocab=vocab, dim=dim, layers=layers, dropout=dropout, max_length=max_length)
        if path is not None:
            cfg = json.loads((Path(path) / "config.json").read_text())
        self.cfg = cfg
        mx.random.seed(seed)
        self.embeddings = nn.Embedding(cfg["vocab"], cfg["dim"])
        self.layers = [Block(cfg["dim"], cfg["dropout"]) for _ in range(cfg["layers"])]
        self.proj = nn.Linear(cfg["dim"], 8, bias=False)
        if path is not None:
            self.load_weights(str(Path(path) / "model.safetensors"))
        mx.eval(self.parameters())

    def tokenize(self, texts, is_query=True, pad=False, task=None):
        L = self.cfg["max_length"]
        ids = np.zeros((len(texts), L), dtype=np.int32)
        mask = np.zeros((len(texts), L), dtype=np.int32)
        for i, t in enumerate(texts):
            words = ([1] if is_query else [2]) + [
                3 + int.from_bytes(hashlib.blake2b(w.encode(), digest_size=4).digest(), "little") % (self.cfg["vocab"] - 3)
                for w in str(t).lower().split()
            ]
            words = words[:L]
            ids[i, : len(words)] = words
            mask[i, : len(words)] = 1
        return {"input_ids": mx.array(ids), "attention_mask": mx.array(mask)}

    def __call__(self, features):
        mask = features["attention_mask"].astype(mx.float32)
        x = self.embeddings(features["input_ids"])
        for layer in self.layers:
            x = layer(x, mask)
        return {**features, "token_embeddings": self.proj(x)}

    def save(self, path):
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text(json.dumps(self.cfg))
        from mlx.utils import tree_flatten

        mx.save_safetensors(str(path / "model.safetensors"), dict(tree_flatten(self.parameters())))


def pooled(model, features):
    out = model(features)
    mask = features["attention_mask"].astype(mx.float32)[..., None]
    emb = (out["token_embeddings"] * mask).sum(axis=1) / mx.maximum(mask.sum(axis=1), 1.0)
    return emb / mx.maximum(mx.linalg.norm(emb, axis=-1, keepdims=True), 1e-9)


class TinyContrastive:
    """In-batch-negatives cross-entropy over (query, positive[, negatives]) columns."""

    expected_inputs = (2, None, False, "query, positive[, negative, ...]")

    def __init__(self, model, temperature=0.1):
        self.model, self.temperature = model, temperature
        self.calls = 0

    def __call__(self, sentence_features, labels=None):
        self.calls += 1
        q = pooled(self.model, sentence_features[0])
        d = mx.concatenate([pooled(self.model, f) for f in sentence_features[1:]], axis=0)
        scores = q @ d.T / self.temperature
        return nn.losses.cross_entropy(scores, mx.arange(q.shape[0]), reduction="mean")


class TinyScoreLoss:
    """Regression of cosine(a, b) onto a float label (needs labels)."""

    expected_inputs = (2, 2, True, "sentence1, sentence2 and a 'score' label column")

    def __init__(self, model):
        self.model = model

    def __call__(self, sentence_features, labels):
        a, b = (pooled(self.model, f) for f in sentence_features)
        return ((a * b).sum(axis=-1) - labels.astype(mx.float32)).square().mean()


class CountingVG(TinyContrastive):
    """Same loss, but exposes value_and_grad (as GradCache losses do); the engine must use it."""

    def value_and_grad(self, sentence_features, labels=None):
        self.vg_calls = getattr(self, "vg_calls", 0) + 1
        return nn.value_and_grad(self.model, lambda f, l: TinyContrastive.__call__(self, f, l))(sentence_features, labels)


def pairs(n=10, negatives=False, seed=0):
    """A small (query, positive[, negative]) datasets.Dataset with distinct texts."""
    from datasets import Dataset

    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(40)]
    q = [" ".join(rng.choice(words, 3)) + f" q{i}" for i in range(n)]
    data = {"query": q, "positive": [t.replace("q", "p") + " doc" for t in q]}
    if negatives:
        data["negative"] = [f"neg {i} " + " ".join(rng.choice(words, 2)) for i in range(n)]
    return Dataset.from_dict(data)


def weights(model) -> dict:
    from mlx.utils import tree_flatten

    return {k: np.array(v) for k, v in tree_flatten(model.parameters())}

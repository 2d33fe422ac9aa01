"""sentence-transformers 6.2's token pooling (``multi_vector_encoder.modules.token_pooling``) on MLX.

Fewer vectors per document: ``HierarchicalTokenPooling`` clusters a document's token vectors (Ward
linkage on cosine distance, from scipy, or fastcluster when installed, as ST 6.2 picks) and keeps
each cluster's mean. Applied as ST 6.2 applies it: as a pipeline module (saved in the model), per call
(``encode(..., token_pooling=...)``) or standalone (``pool``). Only ``tasks`` are pooled (documents
by default; no task counts as "document").

The cluster assignment is ST 6.2's: the same float32 distance matrix, the same linkage and
``fcluster(maxclust)`` cut, clusters numbered by their sorted labels, means accumulated in token
order in the input dtype, then (by default) every output vector L2-normalised. Two vectors whose
distances to a third tie to the last float32 bit may still be merged differently from torch, as
ST 6.2 itself notes for fastcluster against scipy.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from ..colbert.loss_common import normalize
from ..errors import read_json
from .normalize import write_module_config

PADDING_SIDES = ("left", "right")


class BaseTokenPooling(nn.Module):
    """ST 6.2's ``BaseTokenPooling``: subclasses implement ``pool_one`` ((n, D) -> (m, D)) and list
    their settings in ``config_keys``."""

    config_keys = ["tasks"]

    def __init__(self, *, tasks=None):
        super().__init__()
        if isinstance(tasks, str):
            tasks = [tasks]
        self.tasks = list(tasks) if tasks is not None else ["document"]

    def __setattr__(self, key, value):
        # plain settings, not children: nn.Module would file a list under its parameter tree
        object.__setattr__(self, key, value)

    def applies_to(self, task) -> bool:
        return (task or "document") in self.tasks

    def __call__(self, features: dict, task=None) -> dict:
        """Pools each row's masked tokens; returns right-padded token embeddings and their new mask."""
        if not self.applies_to(task):
            return features
        embeddings = features["token_embeddings"]
        if embeddings.shape[0] == 0:
            return features
        masks = np.array(features["attention_mask"]).astype(bool)
        pooled = [self.pool_one(_rows(embeddings[i], masks[i])) for i in range(embeddings.shape[0])]
        lengths = np.array([row.shape[0] for row in pooled])
        new_mask = mx.array(np.arange(int(lengths.max()))[None, :] < lengths[:, None])
        return {**features, "token_embeddings": _pad(pooled, "right", embeddings.shape[-1], embeddings.dtype),
                "attention_mask": new_mask}

    forward = __call__

    def pool(self, embeddings, *, task=None, attention_mask=None, padding_side: str = "right"):
        """A list of (n_i, D) arrays -> a list of pooled arrays; a (B, T, D) padded array -> a padded
        array (on ``padding_side``). Without ``attention_mask`` a padded input's rows are found as
        ST 6.2 finds them: from the first / last non-zero vector on ``padding_side``. numpy in, numpy out."""
        if not self.applies_to(task):
            return embeddings
        if isinstance(embeddings, (mx.array, np.ndarray)):
            if embeddings.ndim != 3:
                raise ValueError(f"Tensor input must be 3D (B, T, D); got shape {tuple(embeddings.shape)}.")
            if padding_side not in PADDING_SIDES:
                raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}.")
            as_numpy = isinstance(embeddings, np.ndarray)
            padded = mx.array(embeddings) if as_numpy else embeddings
            if padded.shape[0] == 0:
                empty = mx.zeros((0, 0, padded.shape[-1]), dtype=padded.dtype)
                return np.array(empty) if as_numpy else empty
            rows = _unpad(padded, attention_mask, padding_side)
            out = _pad([self.pool_one(row) for row in rows], padding_side, padded.shape[-1], padded.dtype)
            return np.array(out) if as_numpy else out
        if isinstance(embeddings, list):
            if not embeddings:
                return []
            if embeddings[0].ndim != 2:
                raise ValueError(f"list entries must be 2D tensors; got shape {tuple(embeddings[0].shape)}.")
            return [_like(self.pool_one(mx.array(e) if isinstance(e, np.ndarray) else e), e) for e in embeddings]
        raise ValueError("embeddings must be a list of 2D tensors or a 3D padded tensor.")

    def pool_one(self, embedding: mx.array) -> mx.array:
        raise NotImplementedError

    def get_config_dict(self) -> dict:
        return {key: getattr(self, key) for key in self.config_keys}

    def save(self, output_path, *args, **kwargs):
        write_module_config(output_path, self.get_config_dict())


class HierarchicalTokenPooling(BaseTokenPooling):
    """``HierarchicalTokenPooling(pool_factor=1.0, *, num_protected_tokens=1, normalize_embeddings=True,
    tasks=None)``: the first ``num_protected_tokens`` tokens are kept, the rest clustered into
    ``max(int(n // pool_factor), 1)`` groups (Ward linkage on ``1 - cosine``), each replaced by its
    mean; ``pool_factor=1`` pools nothing. ``normalize_embeddings`` L2-normalises every output token
    (half precision in float32). A saved config without ``normalize_embeddings`` loads with False (ST 6.2)."""

    config_keys = ["pool_factor", "num_protected_tokens", "normalize_embeddings", "tasks"]

    def __init__(self, pool_factor: float = 1.0, *, num_protected_tokens: int = 1, normalize_embeddings: bool = True,
                 tasks=None):
        super().__init__(tasks=tasks)
        if pool_factor < 1:
            raise ValueError(f"pool_factor must be >= 1, got {pool_factor}.")
        if num_protected_tokens < 0:
            raise ValueError(f"num_protected_tokens must be >= 0, got {num_protected_tokens}.")
        self.pool_factor = pool_factor
        self.num_protected_tokens = num_protected_tokens
        self.normalize_embeddings = normalize_embeddings

    def __call__(self, features: dict, task=None) -> dict:
        if self.pool_factor <= 1:  # ST 6.2: no clustering, every position (padding too) normalised
            if self.normalize_embeddings and self.applies_to(task):
                return {**features, "token_embeddings": _normalize_tokens(features["token_embeddings"])}
            return features
        return super().__call__(features, task=task)

    forward = __call__

    def pool_one(self, embedding: mx.array) -> mx.array:
        return hierarchical_pool_one(embedding, self.pool_factor, self.num_protected_tokens, self.normalize_embeddings)

    @staticmethod
    def load(input_path) -> "HierarchicalTokenPooling":
        path = Path(input_path) / "config.json"
        config = read_json(path, "the HierarchicalTokenPooling module's settings") if path.exists() else {}
        keys = HierarchicalTokenPooling.config_keys
        unknown = sorted(set(config) - set(keys))
        if unknown:
            raise ValueError(f"{path}: unknown HierarchicalTokenPooling setting(s) {unknown}; ST 6.2 accepts {keys}.")
        config.setdefault("normalize_embeddings", False)  # configs saved before the option existed
        return HierarchicalTokenPooling(**config)


class LambdaTokenPooling(BaseTokenPooling):
    """``LambdaTokenPooling(pool_fn, *, tasks=None)``: ``pool_fn`` maps one document's (n, D) array to
    (m, D). A Python callable cannot be saved (ST 6.2 refuses too)."""

    def __init__(self, pool_fn, *, tasks=None):
        super().__init__(tasks=tasks)
        self.pool_fn = pool_fn

    def pool_one(self, embedding: mx.array) -> mx.array:
        return self.pool_fn(embedding)

    def save(self, output_path, *args, **kwargs):
        raise NotImplementedError(
            "LambdaTokenPooling wraps a user-supplied Python callable and cannot be saved. Use "
            "it standalone or per-call to encode(token_pooling=...). For a saveable pipeline module, "
            "subclass BaseTokenPooling with your own class."
        )


# --- the math (one document) ---------------------------------------------------------------------
@functools.cache
def _clustering():
    """(linkage, fcluster, squareform): fastcluster's linkage when installed, else scipy's, as ST 6.2
    chooses (the two differ only on exact ties); scipy for the rest."""
    try:
        from scipy.cluster.hierarchy import fcluster, linkage
        from scipy.spatial.distance import squareform
    except ImportError as err:
        raise ImportError(
            "HierarchicalTokenPooling clusters with scipy's Ward linkage, as sentence-transformers 6.2 does, and "
            "scipy is not installed: pip install scipy"
        ) from err
    try:
        from fastcluster import linkage
    except (ImportError, OSError, RuntimeError):
        pass
    return linkage, fcluster, squareform


def hierarchical_pool_one(embedding: mx.array, pool_factor: float, num_protected_tokens: int,
                          normalize_embeddings: bool = True) -> mx.array:
    """ST 6.2's ``_hierarchical_pool_one``: (n, D) -> (protected + clusters, D)."""
    protected, to_pool = embedding[:num_protected_tokens], embedding[num_protected_tokens:]
    count = to_pool.shape[0]
    num_clusters = max(int(count // pool_factor), 1)
    if num_clusters < count:
        linkage, fcluster, squareform = _clustering()
        vectors = np.array(to_pool.astype(mx.float32))
        distances = np.clip(1 - vectors @ vectors.T, 0, 2)  # float32, as torch's mm + clamp
        tree = linkage(squareform(distances, checks=False), method="ward")
        labels = fcluster(tree, t=num_clusters, criterion="maxclust") - 1
        # clusters numbered by sorted label (fcluster may return fewer than asked on ties)
        _, inverse = np.unique(labels, return_inverse=True)
        embedding = mx.concatenate([protected, _cluster_means(to_pool, inverse.reshape(-1))], axis=0)
    return _normalize_tokens(embedding) if normalize_embeddings else embedding


def _cluster_means(vectors: mx.array, inverse: np.ndarray) -> mx.array:
    """Per-cluster means as torch's CPU ``scatter_add_`` then ``/ counts`` make them: sums accumulated
    in token order in float32 (torch accumulates half precision in float32 too), rounded to the input
    dtype, then divided. Round r adds every cluster's r-th member (or an exact 0)."""
    num_clusters = int(inverse.max()) + 1
    members = [np.flatnonzero(inverse == c) for c in range(num_clusters)]
    counts = np.array([len(m) for m in members])
    wide = vectors.astype(mx.float32)
    padded = mx.concatenate([wide, mx.zeros((1, wide.shape[1]), dtype=mx.float32)], axis=0)
    zero_row = vectors.shape[0]
    sums = mx.zeros((num_clusters, wide.shape[1]), dtype=mx.float32)
    for r in range(int(counts.max())):
        picks = np.array([m[r] if r < len(m) else zero_row for m in members], dtype=np.int32)
        sums = sums + padded[mx.array(picks)]
    sums = sums.astype(vectors.dtype).astype(mx.float32)
    return (sums / mx.array(counts.astype(np.float32))[:, None]).astype(vectors.dtype)


def _normalize_tokens(embedding: mx.array) -> mx.array:
    if embedding.dtype in (mx.float16, mx.bfloat16):
        return normalize(embedding.astype(mx.float32)).astype(embedding.dtype)
    return normalize(embedding)


# --- padded <-> per-row ----------------------------------------------------------------------------
def _rows(embedding: mx.array, mask: np.ndarray) -> mx.array:
    return embedding[mx.array(np.flatnonzero(mask).astype(np.int32))]


def _unpad(padded: mx.array, attention_mask, padding_side: str) -> list:
    if attention_mask is not None:
        masks = np.array(attention_mask).astype(bool)
        return [_rows(padded[i], masks[i]) for i in range(padded.shape[0])]
    real = np.array(mx.abs(padded.astype(mx.float32)).sum(axis=-1) > 0)
    rows = []
    for i in range(padded.shape[0]):
        nonzero = np.flatnonzero(real[i])
        if nonzero.size == 0:
            rows.append(padded[i][:0])
        else:  # rows of zeros between real ones are kept, as ST 6.2 keeps them
            rows.append(padded[i][: int(nonzero[-1]) + 1] if padding_side == "right" else padded[i][int(nonzero[0]):])
    return rows


def _pad(rows: list, padding_side: str, dim: int, dtype) -> mx.array:
    width = max(row.shape[0] for row in rows)
    out = []
    for row in rows:
        pad = mx.zeros((width - row.shape[0], dim), dtype=row.dtype)
        out.append(mx.concatenate([row, pad] if padding_side == "right" else [pad, row], axis=0))
    return mx.stack(out).astype(dtype) if out else mx.zeros((0, 0, dim), dtype=dtype)


def _like(array: mx.array, reference):
    return np.array(array) if isinstance(reference, np.ndarray) else array


# --- in MultiVectorEncoder -------------------------------------------------------------------------
def pools(model) -> bool:
    return any(isinstance(module, BaseTokenPooling) for module in model)


_ENCODING = contextvars.ContextVar("mlx_hf_bridge_token_pooling_encoding", default=False)


@contextlib.contextmanager
def encoding():
    """Marks ``MultiVectorEncoder.encode``'s forward (where pooling runs as in ST 6.2)."""
    token = _ENCODING.set(True)
    try:
        yield
    finally:
        _ENCODING.reset(token)


def check_per_call(token_pooling):
    if token_pooling is not None and not isinstance(token_pooling, BaseTokenPooling):
        raise TypeError(
            f"token_pooling must be a BaseTokenPooling (mlx_hf_bridge.modules.token_pooling, e.g. "
            f"HierarchicalTokenPooling), got {type(token_pooling).__name__}."
        )


def pool_encoded(model, token_pooling, data, task, logger):
    """``encode(token_pooling=...)``: after the pipeline (and ``normalize_embeddings``) on each text's
    sliced vectors, or on the batch's features for ``output_value=None``; compounds with a pooling
    the pipeline already has, as ST 6.2 warns."""
    if token_pooling is None:
        return data
    check_per_call(token_pooling)
    if token_pooling.applies_to(task) and pools(model):
        _warn_once(logger)
    return token_pooling(data, task=task) if isinstance(data, dict) else token_pooling.pool(data, task=task)


@functools.cache
def _warn_once(logger):
    logger.warning(
        "This model already includes a token pooling in its pipeline: the per-call `token_pooling=` pools further "
        "on top of it (compounding). Omit it if you only want the model's built-in pooling."
    )


def refuse_outside_encode(model, task):
    """A direct forward (the losses' path) through a pooling that applies: ST 6.2 trains through the
    cluster means with the pooled scoring mask; the bridge's losses score the unpooled mask, so they
    would silently mis-score. Refused with the way round it."""
    if _ENCODING.get():
        return
    for module in model:
        if isinstance(module, BaseTokenPooling) and (
            module.applies_to(task) and (not isinstance(module, HierarchicalTokenPooling) or module.pool_factor > 1)
        ):
            raise NotImplementedError(
                f"Training (or a direct forward) through {type(module).__name__} is not supported on MLX yet: "
                "sentence-transformers 6.2 backpropagates through the cluster means, and the bridge's losses "
                "score the unpooled tokens. Train without the pooling module (model.heads.pop()), then add it back "
                "(model.heads.append(...)) before saving; encode / encode_document pool as ST 6.2 does."
            )

"""PLAID's compression on MLX + numpy: k-means centroids and ``nbits`` residual codes.

Each token embedding is stored as the id of its nearest centroid plus, per dimension, the bucket
its residual falls in (``2**nbits`` buckets cut at the residuals' quantiles, as Stanford ColBERT
and fast-plaid do). Decompression is ``centroid + bucket_weight`` (renormalised when the corpus
was unit-norm, as ColBERT's codec does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mlx.core as mx
import numpy as np

SUPPORTED_NBITS = (1, 2, 4, 8)
_ASSIGN_CHUNK = 1 << 15  # tokens per centroid-assignment matmul: bounds the (chunk, n_centroids) block


def default_num_centroids(n_tokens: int) -> int:
    """Stanford ColBERT / fast-plaid's heuristic: ``2 ** floor(log2(16 * sqrt(n_tokens)))``."""
    return max(1, int(2 ** math.floor(math.log2(16 * math.sqrt(max(n_tokens, 1))))))


def default_kmeans_documents(n_documents: int) -> int:
    """Documents sampled for k-means when ``n_samples_kmeans`` is None (fast-plaid's rule)."""
    return min(1 + int(16 * math.sqrt(120 * n_documents)), n_documents)


def _normalize(x: mx.array) -> mx.array:
    return x / mx.maximum(mx.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def assign(tokens: np.ndarray, centroids: np.ndarray | mx.array) -> np.ndarray:
    """Nearest centroid by inner product (the centroids are unit-norm), in chunks."""
    c = mx.array(centroids) if not isinstance(centroids, mx.array) else centroids
    out = []
    for start in range(0, len(tokens), _ASSIGN_CHUNK):
        block = mx.array(np.ascontiguousarray(tokens[start:start + _ASSIGN_CHUNK], dtype=np.float32))
        out.append(np.array(mx.argmax(block @ c.T, axis=1)).astype(np.int32))
    return np.concatenate(out) if out else np.zeros(0, np.int32)


def kmeans(points: np.ndarray, k: int, niters: int, seed: int) -> np.ndarray:
    """Spherical k-means (inner-product assignment, unit-norm centroids); empty clusters keep their centroid."""
    rng = np.random.default_rng(seed)
    k = min(k, len(points))
    x = mx.array(np.ascontiguousarray(points, dtype=np.float32))
    c = _normalize(x[mx.array(np.sort(rng.choice(len(points), size=k, replace=False)))])
    for _ in range(niters):
        codes = mx.array(assign(points, c))
        sums = mx.zeros(c.shape, dtype=mx.float32).at[codes].add(x)
        counts = mx.zeros((k,), dtype=mx.float32).at[codes].add(mx.ones(codes.shape, dtype=mx.float32))
        c = mx.where((counts > 0)[:, None], _normalize(sums), c)
    return np.array(c, dtype=np.float32)


@dataclass
class ResidualCodec:
    centroids: np.ndarray  # (n_centroids, dim) float32
    bucket_cutoffs: np.ndarray  # (2**nbits - 1,) float32
    bucket_weights: np.ndarray  # (2**nbits,) float32
    nbits: int
    normalized: bool  # the corpus was unit-norm: decompressed embeddings are renormalised

    @property
    def dim(self) -> int:
        return int(self.centroids.shape[1])

    @property
    def packed_width(self) -> int:
        return self.dim * self.nbits // 8

    @classmethod
    def train(cls, tokens: np.ndarray, centroids: np.ndarray, nbits: int, seed: int, normalized: bool):
        """Bucket cutoffs / weights from the residuals of (a sample of) the tokens."""
        rng = np.random.default_rng(seed + 1)
        sample = tokens if len(tokens) <= 1 << 16 else tokens[rng.choice(len(tokens), 1 << 16, replace=False)]
        residuals = sample - centroids[assign(sample, centroids)]
        n = 1 << nbits
        cutoffs = np.quantile(residuals, np.arange(1, n) / n).astype(np.float32)
        weights = np.quantile(residuals, (np.arange(n) + 0.5) / n).astype(np.float32)
        return cls(centroids.astype(np.float32), cutoffs, weights, nbits, normalized)

    def compress(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(codes int32 (n,), packed residual buckets uint8 (n, dim * nbits / 8))."""
        codes = assign(tokens, self.centroids)
        buckets = np.searchsorted(self.bucket_cutoffs, tokens - self.centroids[codes], side="right")
        per_byte = 8 // self.nbits
        buckets = buckets.astype(np.uint8).reshape(len(tokens), -1, per_byte)
        packed = np.zeros(buckets.shape[:2], dtype=np.uint8)
        for j in range(per_byte):  # first value in the high bits
            packed |= buckets[:, :, j] << np.uint8(self.nbits * (per_byte - 1 - j))
        return codes, packed

    def _byte_table(self) -> np.ndarray:
        """(256, values per byte) bucket weights for every byte value: decompression is one gather."""
        per_byte = 8 // self.nbits
        values = np.arange(256, dtype=np.uint16)[:, None] >> (self.nbits * (per_byte - 1 - np.arange(per_byte)))
        return self.bucket_weights[values & ((1 << self.nbits) - 1)]

    def decompress(self, codes: np.ndarray, packed: np.ndarray) -> np.ndarray:
        if not hasattr(self, "_table"):
            self._table = self._byte_table()
        out = self._table[packed].reshape(len(codes), self.dim) + self.centroids[codes]
        if self.normalized:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out

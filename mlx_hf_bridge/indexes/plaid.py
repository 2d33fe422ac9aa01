"""PLAID multi-vector search on MLX + numpy (no torch, no fast-plaid).

Search, per query: (1) query tokens x centroids; (2) IVF probing: the documents listed under each
token's ``n_ivf_probe`` best centroids (all documents when that finds fewer than ``k``, so a
``k`` >= corpus query returns every document, as fast-plaid does); (3) centroid interaction: each candidate is scored with its
tokens' centroids instead of its tokens (centroids whose best query score is under
``centroid_score_threshold`` count 0: Stanford PLAID's pruning), keeping the best ``n_full_scores``;
(4) MaxSim of those, on their float32 tokens with ``store_embeddings`` (the bridge's default:
exact ColBERT scores) or on their decompressed tokens (fast-plaid's approximate scores); the top ``k``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import mlx.core as mx
import numpy as np

from . import plaid_store
from .plaid_codec import (SUPPORTED_NBITS, ResidualCodec, default_kmeans_documents, default_num_centroids,
                          kmeans)
from .plaid_store import IndexCorruptedError, PlaidData

logger = logging.getLogger(__name__)
_DOC_BLOCK = 4096  # candidate documents scored per matmul block

__all__ = ["PlaidIndex", "IndexCorruptedError", "as_token_matrices"]


def as_token_matrices(embeddings, what: str) -> list[np.ndarray]:
    """numpy / mx / torch, one (tokens, dim) matrix, a (batch, tokens, dim) block or a list of them."""
    if hasattr(embeddings, "detach"):
        embeddings = embeddings.detach().cpu().float().numpy()
    if isinstance(embeddings, (np.ndarray, mx.array)):
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if embeddings.ndim == 2:
            return [embeddings]
        if embeddings.ndim == 3:
            return list(embeddings)
        raise ValueError(f"{what} must be (tokens, dim), (batch, tokens, dim) or a list of (tokens, dim); "
                         f"got an array of shape {embeddings.shape}.")
    out = []
    for i, e in enumerate(embeddings):
        if hasattr(e, "detach"):
            e = e.detach().cpu().float().numpy()
        e = np.asarray(e, dtype=np.float32)
        if e.ndim == 3 and e.shape[0] == 1:
            e = e[0]
        if e.ndim != 2:
            raise ValueError(f"{what}[{i}] must be a (tokens, dim) matrix; got shape {e.shape}.")
        out.append(e)
    return out


def _plain_id(document_id):
    return document_id.item() if hasattr(document_id, "item") else document_id


class PlaidIndex:
    """The index at ``folder``; created by the first :meth:`add`, memory-mapped when it exists."""

    def __init__(self, folder, nbits=4, kmeans_niters=4, max_points_per_centroid=256, n_samples_kmeans=None,
                 seed=42, n_ivf_probe=8, n_full_scores=8192, centroid_score_threshold=None,
                 store_embeddings=True):
        if nbits not in SUPPORTED_NBITS:
            raise ValueError(f"nbits={nbits} is not supported; use one of {SUPPORTED_NBITS}.")
        if n_ivf_probe < 1 or n_full_scores < 1:
            raise ValueError(f"n_ivf_probe ({n_ivf_probe}) and n_full_scores ({n_full_scores}) must be >= 1.")
        self.folder = Path(folder)
        self.config = dict(nbits=nbits, kmeans_niters=kmeans_niters, max_points_per_centroid=max_points_per_centroid,
                           n_samples_kmeans=n_samples_kmeans, seed=seed, store_embeddings=store_embeddings)
        self.n_ivf_probe, self.n_full_scores = n_ivf_probe, n_full_scores
        self.centroid_score_threshold = centroid_score_threshold
        self.data: PlaidData | None = None
        if plaid_store.exists(self.folder):
            self.data, meta = plaid_store.load(self.folder)
            self.config = meta["config"]  # the build settings of the index on disk win
        self._ids_to_rows = None

    # --- building -------------------------------------------------------------------------------
    @property
    def n_documents(self) -> int:
        return 0 if self.data is None else self.data.n_docs

    def _check(self, docs: list[np.ndarray], ids: list) -> None:
        if len(docs) != len(ids):
            raise ValueError(f"{len(ids)} document ids for {len(docs)} document embeddings.")
        if len(set(ids)) != len(ids):
            raise ValueError("documents_ids contains duplicates.")
        dims = {d.shape[1] for d in docs}
        expected = {self.data.codec.dim} if self.data is not None else dims
        if len(dims | expected) > 1:
            raise ValueError(f"Document embeddings have dimension(s) {sorted(dims)}; the index holds "
                             f"{sorted(expected)}-dimensional tokens.")
        empty = [ids[i] for i, d in enumerate(docs) if len(d) == 0]
        if empty:
            raise ValueError(f"Documents with no token embeddings cannot be indexed: {empty[:5]}.")
        if not all(np.isfinite(d).all() for d in docs):
            raise ValueError("Document embeddings contain NaN or inf.")

    def _train_codec(self, docs: list[np.ndarray]) -> ResidualCodec:
        cfg = self.config
        rng = np.random.default_rng(cfg["seed"])
        n_docs = cfg["n_samples_kmeans"] or default_kmeans_documents(len(docs))
        sampled = np.concatenate([docs[i] for i in np.sort(rng.choice(len(docs), min(n_docs, len(docs)), replace=False))])
        k = min(default_num_centroids(sum(len(d) for d in docs)), len(sampled))
        limit = k * cfg["max_points_per_centroid"]
        if len(sampled) > limit:
            sampled = sampled[np.sort(rng.choice(len(sampled), limit, replace=False))]
        centroids = kmeans(sampled, k, cfg["kmeans_niters"], cfg["seed"])
        normalized = bool(np.allclose(np.linalg.norm(sampled, axis=1), 1.0, atol=1e-3))
        return ResidualCodec.train(sampled, centroids, cfg["nbits"], cfg["seed"], normalized)

    def add(self, documents_ids, documents_embeddings) -> None:
        docs = as_token_matrices(documents_embeddings, "documents_embeddings")
        ids = [_plain_id(i) for i in documents_ids]
        if not docs:
            return
        self._check(docs, ids)
        present = set(ids) & set(self.data.ids if self.data is not None else [])
        if present:
            logger.warning("%d document ids are already indexed; their embeddings are replaced.", len(present))
            self.remove(list(present))
        if docs[0].shape[1] * self.config["nbits"] % 8:
            raise ValueError(f"Embedding dimension {docs[0].shape[1]} x nbits {self.config['nbits']} must be a "
                             f"multiple of 8 bits.")
        codec = self.data.codec if self.data is not None else self._train_codec(docs)
        tokens = np.concatenate(docs)
        codes, residuals = codec.compress(tokens)
        lengths = np.array([len(d) for d in docs], dtype=np.int64)
        if self.data is None or self.data.n_docs == 0:
            old_codes, old_res, old_off, old_ids, old_emb = (np.zeros(0, np.int32), np.zeros((0, codec.packed_width), np.uint8),
                                                             np.zeros(1, np.int64), [], np.zeros((0, codec.dim), np.float32))
        else:
            d = self.data
            old_codes, old_res, old_off, old_ids, old_emb = d.codes, d.residuals, d.doc_offsets, d.ids, d.embeddings
        offsets = np.concatenate([old_off, old_off[-1] + np.cumsum(lengths)]).astype(np.int64)
        embeddings = np.concatenate([old_emb, tokens]) if self.config["store_embeddings"] else None
        self._replace(PlaidData(codec, np.concatenate([old_codes, codes]), np.concatenate([old_res, residuals]),
                                offsets, list(old_ids) + ids, embeddings))

    def remove(self, documents_ids) -> None:
        if self.data is None:
            return
        drop = {_plain_id(i) for i in documents_ids}
        keep = np.array([i not in drop for i in self.data.ids], dtype=bool)
        if keep.all():
            return
        d = self.data
        rows, starts = d.doc_tokens(np.flatnonzero(keep))
        lengths = np.diff(d.doc_offsets)[keep]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self._replace(PlaidData(d.codec, np.asarray(d.codes)[rows], np.asarray(d.residuals)[rows], offsets,
                                [i for i, k in zip(d.ids, keep) if k],
                                None if d.embeddings is None else np.asarray(d.embeddings)[rows]))

    def _replace(self, data: PlaidData) -> None:
        data.build_ivf()
        plaid_store.write(self.folder, data, self.config)
        self.data, _ = plaid_store.load(self.folder)  # serve from the memory-mapped files just written
        self._ids_to_rows = None

    # --- search ---------------------------------------------------------------------------------
    def rows_of(self, documents_ids) -> np.ndarray:
        if self._ids_to_rows is None:
            self._ids_to_rows = {i: r for r, i in enumerate(self.data.ids)}
        return np.array(sorted({self._ids_to_rows[i] for i in map(_plain_id, documents_ids) if i in self._ids_to_rows}),
                        dtype=np.int64)

    def _maxsim(self, q: mx.array, candidates: np.ndarray, token_scores) -> np.ndarray:
        """Sum over query tokens of the max over each candidate's tokens, block by block."""
        out = []
        for start in range(0, len(candidates), _DOC_BLOCK):
            rows, starts = self.data.doc_tokens(candidates[start:start + _DOC_BLOCK])
            sims = token_scores(rows)
            out.append(np.maximum.reduceat(sims, starts, axis=1).sum(axis=0))
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def search(self, query: np.ndarray, k: int, subset_rows: np.ndarray | None = None):
        """(storage rows, scores) of the best ``k`` documents for one (tokens, dim) query."""
        d = self.data
        q = mx.array(query)
        centroid_scores = np.array(q @ mx.array(d.codec.centroids).T)  # (tokens, n_centroids)
        if subset_rows is not None:
            candidates = subset_rows
        else:
            n_probe = min(self.n_ivf_probe, centroid_scores.shape[1])
            probed = np.unique(np.argpartition(-centroid_scores, n_probe - 1, axis=1)[:, :n_probe])
            lists = [d.ivf[d.ivf_offsets[c]:d.ivf_offsets[c + 1]] for c in probed]
            candidates = np.unique(np.concatenate(lists)).astype(np.int64)
            if len(candidates) < min(k, d.n_docs):  # fewer hits than asked: every document competes
                candidates = np.arange(d.n_docs, dtype=np.int64)
        if len(candidates) == 0:
            return candidates, np.zeros(0, np.float32)
        if len(candidates) > self.n_full_scores:
            pruned = centroid_scores
            if self.centroid_score_threshold is not None:
                pruned = np.where(centroid_scores.max(axis=0) >= self.centroid_score_threshold, centroid_scores, 0.0)
            approx = self._maxsim(q, candidates, lambda rows: pruned[:, np.asarray(d.codes[rows])])
            candidates = np.sort(candidates[np.argpartition(-approx, self.n_full_scores - 1)[:self.n_full_scores]])

        def full(rows):
            if d.embeddings is not None:  # exact ColBERT scores from the stored float32 tokens
                tokens = np.asarray(d.embeddings[rows])
            else:  # fast-plaid's scores: decompressed tokens
                tokens = d.codec.decompress(np.asarray(d.codes[rows]), np.asarray(d.residuals[rows]))
            return np.array(q @ mx.array(tokens).T)

        scores = self._maxsim(q, candidates, full)
        order = np.lexsort((candidates, -scores))[:k]  # best first; ties by storage order
        return candidates[order], scores[order]

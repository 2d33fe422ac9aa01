"""``pylate.scores`` on MLX: ColBERT (multiplicative masking, query-major ``ColBERTScores``) and XTR.

Every score function follows the type rule of :mod:`._types` (torch in -> torch out, numpy -> numpy,
mx -> mx); the math is in :mod:`mlx_hf_bridge.colbert.scores` / :mod:`mlx_hf_bridge.colbert.pylate_xtr`.
"""

import os
from enum import Enum

from ...colbert import scores as _colbert
from ...colbert.pylate_xtr import pylate_xtr_kd_scores, pylate_xtr_scores
from .._types import like_inputs
from . import _flash_backend, _lik_backend  # noqa: F401 - PyLate exposes both as attributes


class SimilarityFunction(str, Enum):
    MAXSIM = "MaxSim"


def _check_backend(backend) -> None:
    """PyLate's ``backend`` / ``PYLATE_SCORES_BACKEND`` check. The fused kernels it names need CUDA (flash)
    or CUDA / MPS torch tensors (lik); the bridge always computes on MLX, so asking for one explicitly
    fails as PyLate does on tensors those kernels cannot take."""
    backend = (backend if backend is not None else os.environ.get("PYLATE_SCORES_BACKEND", "auto")).lower()
    if backend not in ("auto", "torch", "flash", "lik"):
        raise ValueError(f"backend must be one of 'auto', 'torch', 'flash', 'lik'; got {backend!r}")
    if backend == "flash":
        raise RuntimeError("backend='flash' requires CUDA tensors; got non-CUDA input (the bridge scores on MLX: "
                           "use backend='auto' or 'torch')")
    if backend == "lik":
        raise RuntimeError("backend='lik' requires CUDA or MPS tensors; got a CPU/non-tensor input (the bridge "
                           "scores on MLX: use backend='auto' or 'torch')")


@like_inputs
def colbert_scores(queries_embeddings, documents_embeddings, queries_mask=None, documents_mask=None, backend=None):
    _check_backend(backend)
    return _colbert.colbert_scores(queries_embeddings, documents_embeddings, queries_mask, documents_mask)


@like_inputs
def colbert_scores_pairwise(queries_embeddings, documents_embeddings, backend=None):
    _check_backend(backend)
    return _colbert.colbert_scores_pairwise(queries_embeddings, documents_embeddings)


@like_inputs
def colbert_kd_scores(queries_embeddings, documents_embeddings, queries_mask=None, documents_mask=None, backend=None):
    _check_backend(backend)
    return _colbert.colbert_kd_scores(queries_embeddings, documents_embeddings, queries_mask, documents_mask)


class ColBERTScores(_colbert.ColBERTScores):
    """(Q, Lq, H) x (D, N, Ld, H) -> (Q, D*N), query-major (the positive of query i at column i*N)."""

    def __call__(self, queries_embeddings, documents_embeddings, queries_mask=None, documents_mask=None,
                 backend=None):
        _check_backend(backend)
        scores = like_inputs(lambda *arrays: _colbert.ColBERTScores.__call__(self, *arrays))
        return scores(queries_embeddings, documents_embeddings, queries_mask, documents_mask)


class XTRScores:
    """PyLate's XTR contrastive scores: per query token, the top ``k`` of all Q*N in-batch document
    tokens; (Q, Q*N) query-major. ``document_chunk_size`` only bounds torch's memory: same scores."""

    def __init__(self, k: int = 256, document_chunk_size: int | None = None):
        self.k = k
        self.document_chunk_size = document_chunk_size

    def compile(self, *args, **kwargs):  # PyLate wraps _score in torch.compile; MLX needs nothing
        return None

    def __call__(self, queries_embeddings, documents_embeddings, queries_mask=None, documents_mask=None):
        return like_inputs(pylate_xtr_scores)(queries_embeddings, documents_embeddings, queries_mask,
                                              documents_mask, k=self.k)


class XTRKDScores(XTRScores):
    """:class:`XTRScores` keeping each query's own N documents: (Q, N), for ``losses.Distillation``."""

    def __call__(self, queries_embeddings, documents_embeddings, queries_mask=None, documents_mask=None):
        return like_inputs(pylate_xtr_kd_scores)(queries_embeddings, documents_embeddings, queries_mask,
                                                 documents_mask, k=self.k)


xtr_scores = XTRScores()
xtr_kd_scores = XTRKDScores()

__all__ = ["colbert_scores", "colbert_scores_pairwise", "colbert_kd_scores", "ColBERTScores", "XTRScores",
           "XTRKDScores", "xtr_scores", "xtr_kd_scores", "SimilarityFunction"]

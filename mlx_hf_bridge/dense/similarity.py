"""sentence-transformers' dense similarity functions on MLX (``util.similarity``, ST 5.3 and 6.2).

Every function takes lists, numpy arrays or ``mx.array`` (1-D inputs become a batch of one, half
floats are computed in float32 as ST 6 does) and returns an ``mx.array``. The losses, the
evaluators and ``SentenceTransformer.similarity`` all use these: each similarity exists once.
"""

from __future__ import annotations

from enum import Enum
from typing import Callable

import mlx.core as mx
import numpy as np

from ..colbert.loss_common import normalize as _l2_normalize


def _as_float(a) -> mx.array:
    if not isinstance(a, mx.array):
        if isinstance(a, (list, tuple)) and a and isinstance(a[0], mx.array):
            a = mx.stack(list(a))
        else:
            a = mx.array(np.asarray(a))
    if mx.issubdtype(a.dtype, mx.floating):
        return a.astype(mx.float32) if a.dtype in (mx.float16, mx.bfloat16) else a
    return a.astype(mx.float32)


def _as_batch(a) -> mx.array:
    a = _as_float(a)
    return a[None] if a.ndim == 1 else a


def normalize_embeddings(embeddings) -> mx.array:
    """``torch.nn.functional.normalize(x, p=2, dim=-1)`` (eps 1e-12), as ST's ``normalize_embeddings``."""
    return _l2_normalize(_as_float(embeddings))


def truncate_embeddings(embeddings, truncate_dim: int | None):
    """The first ``truncate_dim`` dimensions (all when None), as ST's ``truncate_embeddings``."""
    return embeddings[..., :truncate_dim]


def cos_sim(a, b) -> mx.array:
    """``res[i][j] = cos(a[i], b[j])``.

    >>> import mlx_hf_bridge
    >>> cos_sim([[1.0, 0.0]], [[1.0, 1.0], [0.0, 2.0]]).round(4).tolist()
    [[0.7071, 0.0]]
    """
    return normalize_embeddings(_as_batch(a)) @ normalize_embeddings(_as_batch(b)).T


def pairwise_cos_sim(a, b) -> mx.array:
    """``res[i] = cos(a[i], b[i])``."""
    return pairwise_dot_score(normalize_embeddings(a), normalize_embeddings(b))


def dot_score(a, b) -> mx.array:
    """``res[i][j] = a[i] · b[j]``."""
    return _as_batch(a) @ _as_batch(b).T


def pairwise_dot_score(a, b) -> mx.array:
    """``res[i] = a[i] · b[i]``."""
    return (_as_float(a) * _as_float(b)).sum(axis=-1)


def manhattan_sim(a, b) -> mx.array:
    """``res[i][j] = -||a[i] - b[j]||_1`` (negative distance, so larger is more similar)."""
    a, b = _as_batch(a), _as_batch(b)
    return -mx.abs(a[:, None, :] - b[None, :, :]).sum(axis=-1)


def pairwise_manhattan_sim(a, b) -> mx.array:
    """``res[i] = -||a[i] - b[i]||_1``."""
    return -mx.abs(_as_float(a) - _as_float(b)).sum(axis=-1)


def euclidean_sim(a, b) -> mx.array:
    """``res[i][j] = -||a[i] - b[j]||_2`` (``-torch.cdist(a, b)``, from the differences: exact at 0)."""
    a, b = _as_batch(a), _as_batch(b)
    return -mx.sqrt(mx.square(a[:, None, :] - b[None, :, :]).sum(axis=-1))


def pairwise_euclidean_sim(a, b) -> mx.array:
    """``res[i] = -||a[i] - b[i]||_2``."""
    return -mx.sqrt(mx.square(_as_float(a) - _as_float(b)).sum(axis=-1))


def pairwise_angle_sim(x, y) -> mx.array:
    """AnglE's pairwise angle similarity (ST's ``pairwise_angle_sim``): ``|cos(x, y) + sin(x, y)|`` with
    the first half of each L2-normalised vector as the real part and the second half as the imaginary
    part (an odd width is padded with one 0, as ST does)."""
    x, y = _as_float(x), _as_float(y)
    if x.shape[1] % 2:
        x, y = (mx.pad(t, [(0, 0), (0, 1)]) for t in (x, y))
    x, y = normalize_embeddings(x), normalize_embeddings(y)
    cosines = (x * y).sum(axis=1)
    first_x, last_x = mx.split(x, 2, axis=1)
    first_y, last_y = mx.split(y, 2, axis=1)
    sines = (last_x * first_y - first_x * last_y).sum(axis=1)
    return mx.abs(cosines + sines)


class SimilarityFunction(Enum):
    """ST's ``SimilarityFunction`` (the dense members; ``maxsim`` / ``meanmaxsim`` belong to the
    multi-vector family, ``MultiVectorEncoder.similarity``)."""

    COSINE = "cosine"
    DOT_PRODUCT = "dot"
    DOT = "dot"  # alias, as in ST
    EUCLIDEAN = "euclidean"
    MANHATTAN = "manhattan"
    MAXSIM = "maxsim"
    MEAN_MAXSIM = "meanmaxsim"

    @staticmethod
    def _lookup(similarity_function, table: dict) -> Callable:
        similarity_function = SimilarityFunction(similarity_function)
        if similarity_function in table:
            return table[similarity_function]
        if similarity_function in (SimilarityFunction.MAXSIM, SimilarityFunction.MEAN_MAXSIM):
            from ..colbert import scores

            pairs = {SimilarityFunction.MAXSIM: (scores.maxsim, scores.maxsim_pairwise),
                     SimilarityFunction.MEAN_MAXSIM: (scores.mean_maxsim, scores.mean_maxsim_pairwise)}
            return pairs[similarity_function][0 if table is _MATRIX else 1]
        raise ValueError(
            f"The provided function {similarity_function} is not supported. "
            f"Use one of the supported values: {SimilarityFunction.possible_values()}."
        )

    @staticmethod
    def to_similarity_fn(similarity_function) -> Callable:
        return SimilarityFunction._lookup(similarity_function, _MATRIX)

    @staticmethod
    def to_similarity_pairwise_fn(similarity_function) -> Callable:
        return SimilarityFunction._lookup(similarity_function, _PAIRWISE)

    @staticmethod
    def possible_values() -> list[str]:
        return [m.value for m in SimilarityFunction]


_MATRIX = {
    SimilarityFunction.COSINE: cos_sim, SimilarityFunction.DOT_PRODUCT: dot_score,
    SimilarityFunction.MANHATTAN: manhattan_sim, SimilarityFunction.EUCLIDEAN: euclidean_sim,
}
_PAIRWISE = {
    SimilarityFunction.COSINE: pairwise_cos_sim, SimilarityFunction.DOT_PRODUCT: pairwise_dot_score,
    SimilarityFunction.MANHATTAN: pairwise_manhattan_sim, SimilarityFunction.EUCLIDEAN: pairwise_euclidean_sim,
}

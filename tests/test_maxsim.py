"""ColBERT MaxSim scores (CPU kernel and MLX ops) against real PyLate on torch: values and gradients.

PyLate masks multiplicatively (a masked similarity is 0), so a document whose best real
similarity is negative scores 0 for that query token and gives its embeddings no gradient; the
kernel's backward routes each maximum's gradient to one document token only.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
import torch
from pylate.scores import colbert_scores as pylate_colbert_scores

from mlx_hf_bridge import kernels
from mlx_hf_bridge.colbert.scores import colbert_scores


@pytest.fixture(params=["kernel", "mlx-ops"])
def path(request, monkeypatch):
    if request.param == "mlx-ops":
        monkeypatch.setattr(kernels, "applies", lambda *arrays: False)
    elif not kernels.available():  # built wherever setup builds them: test_cpu_kernels asserts that
        pytest.skip(kernels.status())
    return request.param


def _normalized(rng, shape):
    x = rng.normal(size=shape).astype(np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.mark.parametrize("with_query_mask", [False, True])
def test_colbert_scores_and_gradients_match_pylate(path, with_query_mask):
    rng = np.random.default_rng(0)
    A, S, B, T, H = 3, 7, 5, 11, 16
    q, d = _normalized(rng, (A, S, H)), _normalized(rng, (B, T, H))
    d_mask = (rng.random((B, T)) > 0.3).astype(np.float32)
    d_mask[0] = 0.0  # a document with no real token: every maximum is a masked 0
    d_mask[1, :] = 1.0  # one without padding
    q[:, 0] = -d[2, 0]  # a query token whose best similarity with document 2 may be negative
    q_mask = (rng.random((A, S)) > 0.2).astype(np.float32) if with_query_mask else None
    g = rng.normal(size=(A, B)).astype(np.float32)

    def ours(q, d):
        return colbert_scores(q, d, None if q_mask is None else mx.array(q_mask), mx.array(d_mask))

    (scores,), (dq, dd) = mx.vjp(ours, [mx.array(q), mx.array(d)], [mx.array(g)])
    tq, td = (torch.tensor(x, requires_grad=True) for x in (q, d))
    ref = pylate_colbert_scores(tq, td, None if q_mask is None else torch.tensor(q_mask), torch.tensor(d_mask),
                                backend="torch")
    ref.backward(torch.tensor(g))
    np.testing.assert_allclose(np.array(scores), ref.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.array(dq), tq.grad.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.array(dd), td.grad.numpy(), rtol=1e-5, atol=1e-6)
    assert np.all(np.array(dd)[0] == 0.0)  # the all-masked document gets no gradient


def test_maxsim_kernel_shapes_are_checked():
    if not kernels.available():
        pytest.skip(kernels.status())
    module = kernels._load()
    with pytest.raises(ValueError, match="maxsim: sims"):
        module.maxsim(mx.zeros((2, 3, 4, 5)), mx.ones((2, 3)), mx.ones((4, 6)))

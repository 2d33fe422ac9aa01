"""The compiled CPU kernels (softmax, exact GELU, GeGLU, LayerNorm) against torch, forward and VJP.

Ground truth is torch in float64 on the same inputs; the kernels compute in float32, so tolerances
are float32-sized. The MLX fallback path (GPU, other dtypes, kernels not built) is checked against
the same reference, so both paths a user can hit are covered.
"""

from __future__ import annotations

import platform
import sys

import mlx.core as mx
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mlx_hf_bridge import kernels
from mlx_hf_bridge.models.base import LayerNorm, geglu_exact, gelu_exact


def test_kernels_are_built_where_setup_builds_them():
    if sys.platform.startswith("linux") and platform.machine() == "x86_64":
        assert kernels.available(), kernels.status()
    assert kernels.status()


def test_a_module_built_for_another_mlx_is_not_imported(tmp_path, monkeypatch):
    stamp = tmp_path / "_cpu_kernels.mlx-version"
    stamp.write_text("0.0.1\nsources 0123456789abcdef\n")
    monkeypatch.setattr(kernels, "STAMP", stamp)
    monkeypatch.setattr(kernels, "module_path", lambda: stamp)  # "built"
    assert "built for mlx 0.0.1, running mlx " + mx.__version__ in kernels._stamp_problem()
    assert "kernels.build" in kernels._stamp_problem()
    monkeypatch.setattr(kernels, "module_path", lambda: tmp_path / "absent.so")
    assert kernels._stamp_problem().startswith("not built")


@pytest.fixture(params=["kernels", "mlx-fallback"])
def path(request, monkeypatch):
    if request.param == "mlx-fallback":
        monkeypatch.setattr(kernels, "applies", lambda *arrays: False)
    return request.param


def _random(shape, seed, scale=1.0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32) * scale


def _vjp(fn, inputs, cotangent):
    out, grads = mx.vjp(fn, [mx.array(a) for a in inputs], [mx.array(cotangent)])
    return np.array(out[0]), [np.array(g) for g in grads]


def _torch_vjp(fn, inputs, cotangent):
    ts = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in inputs]
    out = fn(*ts)
    out.backward(torch.tensor(cotangent, dtype=torch.float64))
    return out.detach().numpy(), [t.grad.numpy() for t in ts]


def _close(got, ref, rtol=2e-5, atol=2e-6):
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=atol)


@pytest.mark.parametrize("shape", [(3, 7, 37), (2, 4, 96, 200)])
def test_softmax_matches_torch(path, shape):
    x = _random(shape, 0, 3.0)
    x[..., ::5] = -1e9  # masked keys (additive attention bias)
    x[(0,) * (len(shape) - 1)] = -1e9  # a row with every key masked: uniform, as torch
    g = _random(shape, 1)
    out, (dx,) = _vjp(kernels.softmax, [x], g)
    ref, (rdx,) = _torch_vjp(lambda t: torch.softmax(t, -1), [x], g)
    _close(out, ref)
    _close(dx, rdx)
    assert np.all(out[..., -1, ::5] == 0.0)  # masked keys get exactly 0


def test_softmax_of_a_non_contiguous_view(path):
    x = _random((6, 40, 33), 2)
    view = mx.array(x).swapaxes(0, 1)  # strided input is made contiguous first
    _close(np.array(kernels.softmax(view)), torch.softmax(torch.tensor(x, dtype=torch.float64).transpose(0, 1), -1).numpy())


def test_gelu_matches_torch(path):
    x = _random((5, 333), 3, 4.0)
    x[0, :5] = [-10.0, -4.0, 0.0, 4.0, 10.0]
    g = _random(x.shape, 4)
    out, (dx,) = _vjp(gelu_exact, [x], g)
    ref, (rdx,) = _torch_vjp(F.gelu, [x], g)
    _close(out, ref)
    _close(dx, rdx)


def test_geglu_matches_torch(path):
    hg = _random((3, 5, 2 * 37), 5, 3.0)
    g = _random((3, 5, 37), 6)
    out, (dhg,) = _vjp(geglu_exact, [hg], g)

    def torch_geglu(t):
        h, gate = t.chunk(2, dim=-1)
        return F.gelu(h) * gate

    ref, (rdhg,) = _torch_vjp(torch_geglu, [hg], g)
    _close(out, ref)
    _close(dhg, rdhg)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("n, eps", [(37, 1e-12), (768, 1e-5)])
def test_layer_norm_matches_torch(path, bias, n, eps):
    x = _random((4, 129, n), 7, 2.0) + 0.5
    w, b = _random((n,), 8), _random((n,), 9)
    g = _random(x.shape, 10)
    inputs = [x, w, b] if bias else [x, w]
    out, grads = _vjp(lambda *a: kernels.layer_norm(a[0], a[1], a[2] if bias else None, eps), inputs, g)
    ref, rgrads = _torch_vjp(lambda *t: F.layer_norm(t[0], (n,), t[1], t[2] if bias else None, eps), inputs, g)
    _close(out, ref, atol=1e-5)
    for got, want in zip(grads, rgrads):  # dw / db sum over 516 rows: absolute error scales with it
        _close(got, want, rtol=1e-4, atol=1e-4)


def test_layer_norm_module_keeps_hf_parameter_names():
    norm = LayerNorm(16, eps=1e-5, bias=False)
    assert set(dict(norm.parameters())) == {"weight"}
    x = mx.array(_random((2, 3, 16), 11))
    _close(np.array(norm(x)), np.array(mx.fast.layer_norm(x, norm.weight, None, 1e-5)))


def test_other_dtypes_fall_back_to_mlx():
    x = mx.array(_random((4, 40), 12)).astype(mx.float16)
    out = kernels.softmax(x)
    assert out.dtype == mx.float16
    _close(np.array(out.astype(mx.float32)), np.array(mx.softmax(x, axis=-1).astype(mx.float32)), atol=1e-3)


def test_results_are_deterministic_and_compile():
    x, w, g = mx.array(_random((64, 300, 128), 13)), mx.array(_random((128,), 14)), mx.array(_random((64, 300, 128), 15))

    def loss(x, w):
        return (kernels.layer_norm(x, w, None, 1e-5) * g).sum()

    grads = [mx.grad(loss, argnums=(0, 1))(x, w) for _ in range(2)]
    compiled = mx.compile(mx.grad(loss, argnums=(0, 1)))(x, w)
    for a, b, c in zip(grads[0], grads[1], compiled):
        assert np.array_equal(np.array(a), np.array(b))  # threaded partial sums in a fixed order
        _close(np.array(c), np.array(a))


@pytest.mark.parametrize("folder", ["tiny_bert_dir", "tiny_modernbert_dir"])
def test_whole_encoder_same_with_and_without_kernels(folder, request, monkeypatch):
    """Hidden states and parameter gradients of a training-mode encoder (dropout 0) agree between
    the kernel path and the MLX-ops path; transformers parity itself is in test_models_parity."""
    import mlx.nn as nn
    from mlx.utils import tree_flatten

    from mlx_hf_bridge.transformers import AutoModel

    model = AutoModel.from_pretrained(str(request.getfixturevalue(folder)))
    for module in model.modules():  # BERT's dropout would draw different masks per path
        if isinstance(module, nn.Dropout):
            module._p_1 = 1.0
    model.train()
    ids = mx.array(np.random.default_rng(16).integers(5, 90, size=(3, 300)))
    mask = mx.array((np.arange(300)[None, :] < np.array([[300], [170], [40]])).astype(np.int32))
    run = nn.value_and_grad(model, lambda: (model(ids, mask) * mask[..., None]).square().sum())
    results = {}
    for path in ("kernels", "mlx-ops"):
        with monkeypatch.context() as patch:
            if path == "mlx-ops":
                patch.setattr(kernels, "applies", lambda *arrays: False)
            hidden = model(ids, mask)
            _, grads = run()
            results[path] = (np.array(hidden), {n: np.array(g) for n, g in tree_flatten(grads)})
    (hk, gk), (hm, gm) = results["kernels"], results["mlx-ops"]
    _close(hk[np.array(mask, bool)], hm[np.array(mask, bool)], rtol=1e-4, atol=1e-5)
    scale = max(float(np.abs(g).max()) for g in gm.values())
    for name, g in gm.items():
        assert np.abs(gk[name] - g).max() <= 1e-4 * scale, name

"""Vectorised CPU kernels for the ops that dominate an encoder step, with MLX fallbacks.

MLX's x86 CPU backend runs transcendental elementwise ops one scalar at a time on one thread
(``mx.exp`` ~76 M elements/s on the 2-core benchmark machine), so softmax, the exact GELU and
LayerNorm cost more than the encoder's GEMMs (``benchmarks/op_profile.py``). ``cpu_kernels.cpp``
implements them, the whole encoder attention core (``attention.h``) and ColBERT MaxSim
(``maxsim.h``) as MLX primitives with vectorised, multi-threaded loops, built on the user's machine
by ``python -m mlx_hf_bridge.kernels.build`` (``scripts/setup.sh`` does it on Linux).

Every function here is a drop-in for the MLX expression named in its docstring, with the same
gradients (``mx.custom_function``). The kernels are used only for float32 on the CPU device; on a
GPU (Metal, CUDA), for other dtypes, when the module is not built, or with
``MLX_HF_BRIDGE_KERNELS=0``, the MLX expression runs instead.
"""

from __future__ import annotations

import importlib
import math
import os
import sys
import sysconfig
import warnings
from pathlib import Path

import mlx.core as mx

HERE = Path(__file__).resolve().parent
STAMP = HERE / "_cpu_kernels.mlx-version"  # the mlx version the module was compiled against


def module_path() -> Path:
    return HERE / f"_cpu_kernels{sysconfig.get_config_var('EXT_SUFFIX')}"


_SQRT1_2 = 1.0 / math.sqrt(2.0)
_state: dict = {"module": None, "status": None}


def _stamp_problem() -> str | None:
    """Why the compiled module must not be imported (not built, or built for another mlx), or None."""
    rebuild = "run `python -m mlx_hf_bridge.kernels.build`"
    if not module_path().exists():
        return f"not built; {rebuild} (needs cmake and a C++ compiler)"
    built_for = STAMP.read_text().split("\n", 1)[0] if STAMP.exists() else None
    if built_for != mx.__version__:
        # Never import an extension compiled against another libmlx: the ABI is not stable.
        return f"built for mlx {built_for or '(unknown)'}, running mlx {mx.__version__}; {rebuild}"
    from .build import _fingerprint

    try:
        current = _fingerprint()
    except OSError:  # an install without the C++ sources: nothing to compare against
        return None
    if STAMP.read_text() != current:  # an older build: its entry points may not match this package's calls
        return f"built from other kernel sources than these; {rebuild}"
    return None


def _load():
    if _state["status"] is not None:
        return _state["module"]
    if os.environ.get("MLX_HF_BRIDGE_KERNELS", "1").lower() in ("0", "false", "no", "off"):
        _state["status"] = "disabled (MLX_HF_BRIDGE_KERNELS=0)"
        return None
    _state["status"] = _stamp_problem()
    if _state["status"] is None:
        try:
            _state["module"] = importlib.import_module("._cpu_kernels", __name__)
            _state["status"] = f"active ({_state['module'].threads()} threads)"
        except ImportError as err:
            _state["status"] = f"failed to import ({err}); run `python -m mlx_hf_bridge.kernels.build`"
    if _state["module"] is None and sys.platform.startswith("linux") and mx.default_device() == mx.cpu:
        warnings.warn(
            f"mlx_hf_bridge CPU kernels {_state['status']}; softmax, GELU and LayerNorm run on MLX's "
            "scalar CPU ops instead (an encoder training step ~1.5x slower).",
            stacklevel=3,
        )
    return _state["module"]


def available() -> bool:
    """True when the compiled kernels are loaded (they still run only for float32 on the CPU)."""
    return _load() is not None


def status() -> str:
    """One line for ``mlx-hf-bridge env``: active, disabled, or what to run to build them."""
    _load()
    return _state["status"]


def applies(*arrays) -> bool:
    """Whether the kernels run for these arrays: built, CPU device, float32, not empty."""
    return (
        _load() is not None
        and mx.default_device() == mx.cpu
        and all(a.dtype == mx.float32 and a.ndim >= 1 and a.size > 0 for a in arrays)
    )


def _one_input_kernel(forward: str, backward: str, backward_reads_output: bool = False):
    """A compiled kernel with its gradient: ``backward(x or output, cotangent)``."""

    @mx.custom_function
    def apply(x):
        return getattr(_state["module"], forward)(x)

    # (a one-argument custom function receives its primal as the bare array, not a tuple)
    @apply.vjp
    def apply_vjp(x, cotangent, output):
        return getattr(_state["module"], backward)(output if backward_reads_output else x, cotangent)

    return apply


_softmax = _one_input_kernel("softmax", "softmax_backward", backward_reads_output=True)
_gelu = _one_input_kernel("gelu", "gelu_backward")
_geglu = _one_input_kernel("geglu", "geglu_backward")


def softmax(x: mx.array) -> mx.array:
    """``mx.softmax(x, axis=-1, precise=True)`` over the last axis. Keys masked with a large negative
    bias get exactly 0, and the result is closer to float64 than MLX's (4.6e-7 vs 3.0e-6 max rel.)."""
    return _softmax(x) if applies(x) else mx.softmax(x, axis=-1, precise=True)


def gelu_exact(x: mx.array) -> mx.array:
    """HF's ``"gelu"``: ``0.5 * x * (1 + erf(x / sqrt(2)))`` (not the tanh approximation)."""
    if applies(x):
        return _gelu(x)
    return 0.5 * x * (1.0 + mx.erf(x * _SQRT1_2))


def geglu_exact(hg: mx.array, fallback) -> mx.array:
    """``gelu_exact(h) * gate`` for ``h, gate = split(hg, 2, axis=-1)``, read straight from the
    fused projection (no split copies). ``fallback(h, gate)`` computes it with MLX ops."""
    if applies(hg):
        return _geglu(hg)
    h, gate = mx.split(hg, 2, axis=-1)
    return fallback(h, gate)


# --- LayerNorm over the last axis ----------------------------------------------------------

_layer_norms: dict = {}


def _layer_norm_function(eps: float, with_bias: bool):
    """One custom function per (eps, bias or not): eps stays a Python float, so this also traces
    under ``mx.compile``."""
    key = (eps, with_bias)
    if key not in _layer_norms:

        @mx.custom_function
        def forward(x, weight, *bias):
            return _state["module"].layer_norm(x, weight, bias[0] if bias else None, eps)

        @forward.vjp
        def backward(primals, cotangent, output):
            x, weight = primals[0], primals[1]
            return tuple(_state["module"].layer_norm_backward(x, weight, cotangent, with_bias, eps))

        _layer_norms[key] = forward
    return _layer_norms[key]


def layer_norm(x: mx.array, weight: mx.array, bias: mx.array | None, eps: float) -> mx.array:
    """``mx.fast.layer_norm(x, weight, bias, eps)`` (biased variance, as torch)."""
    n = x.shape[-1] if x.ndim else 0
    affine = [weight] + ([] if bias is None else [bias])
    if not applies(x, *affine) or any(a.shape != (n,) for a in affine):
        return mx.fast.layer_norm(x, weight, bias, eps)
    if bias is None:
        return _layer_norm_function(float(eps), False)(x, weight)
    return _layer_norm_function(float(eps), True)(x, weight, bias)


# --- Fused attention ------------------------------------------------------------------------

_attentions: dict = {}


def _attention_function(heads: int, window: int, theta: float, dropout: float):
    """One custom function per (heads, window, RoPE theta, dropout): the kernel's static parameters."""
    key = (heads, window, theta, dropout)
    if key not in _attentions:

        @mx.custom_function
        def forward(qkv, key_mask, segments, seed):
            return tuple(_state["module"].attention(qkv, key_mask, segments, seed, heads, window, theta, dropout))

        @forward.vjp
        def backward(primals, cotangents, outputs):
            qkv, key_mask, segments, seed = primals
            d_qkv = _state["module"].attention_backward(qkv, key_mask, segments, seed, *outputs, cotangents[0],
                                                        heads, window, theta, dropout)
            return d_qkv, mx.zeros_like(key_mask), mx.zeros_like(segments), mx.zeros_like(seed)

        _attentions[key] = forward
    return _attentions[key]


def attention_applies(x: mx.array, head_dim: int) -> bool:
    """Whether :func:`attention` runs for activations ``x`` (the kernels apply; head_dim a
    multiple of 16, the widest vector the kernel tiles by)."""
    return applies(x) and head_dim % 16 == 0


def attention(qkv: mx.array, key_mask: mx.array, heads: int, window: int, rope_theta: float | None,
              segments: mx.array | None = None, dropout: float = 0.0) -> mx.array:
    """The attention core of an encoder layer from its fused projection ``qkv`` (B, L, 3·H·D),
    laid out [q | k | v], each (H, D): HF's rotate-half RoPE with base ``rope_theta`` (None: no
    RoPE) on q and k, ``softmax(q kᵀ / sqrt(D))`` over the keys where ``key_mask`` (B, L) is
    non-zero and, for ``window >= 0``, ``|i - j| <= window``; returns ``P v`` as (B, L, H·D).
    ``segments`` (B, L): ids of sequences packed end to end in a row (each id's tokens
    contiguous); a token attends only within its segment, and RoPE positions restart at each
    segment's first token. None: one sequence per row. A query that sees no key outputs 0
    (torch SDPA's rule). ``dropout`` > 0: attention-probability dropout (each probability zeroed
    with that chance, the rest scaled by 1 / (1 - dropout), as ``nn.Dropout`` on the probabilities),
    the mask drawn from MLX's random state (``mx.random.seed`` repeats it); the backward reuses it.
    Call only where :func:`attention_applies`; the gradient flows to ``qkv``."""
    if not attention_applies(qkv, qkv.shape[-1] // (3 * heads)):
        raise ValueError(f"the fused attention kernel does not apply here ({status()}); check attention_applies first")
    theta = 0.0 if rope_theta is None else float(rope_theta)
    key_mask = key_mask.astype(mx.float32)
    segments = mx.zeros_like(key_mask) if segments is None else segments.astype(mx.float32)
    dropout = float(dropout)
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"attention dropout must be in [0, 1), got {dropout}")
    # two 16-bit halves of the mask's 32-bit key, as float32 (exact below 2^24)
    seed = mx.random.randint(0, 1 << 16, (2,)).astype(mx.float32) if dropout > 0 else mx.zeros((2,))
    out, _ = _attention_function(int(heads), int(window), theta, dropout)(qkv, key_mask, segments, seed)
    return out


# --- MaxSim ---------------------------------------------------------------------------------


@mx.custom_function
def _maxsim(q, d, q_mask, d_mask):
    sims = (q.reshape(-1, q.shape[-1]) @ d.reshape(-1, d.shape[-1]).T).reshape(
        q.shape[0], q.shape[1], d.shape[0], d.shape[1])  # (A, S, B, T): one GEMM, no transpose copy
    return tuple(_state["module"].maxsim(sims, q_mask, d_mask))  # (maxima, argmax)


@_maxsim.vjp
def _maxsim_vjp(primals, cotangents, outputs):
    q, d, q_mask, d_mask = primals
    dq, dd = _state["module"].maxsim_backward(q, d, outputs[1], cotangents[0], q_mask, d_mask)
    return dq, dd, mx.zeros_like(q_mask), mx.zeros_like(d_mask)


def maxsim(q: mx.array, d: mx.array, q_mask: mx.array | None, d_mask: mx.array | None) -> mx.array | None:
    """ColBERT's per-query-token maxima ``max_t (q[a, s] . d[b, t]) * q_mask[a, s] * d_mask[b, t]`` as
    (A, S, B), for q (A, S, H) and d (B, T, H): PyLate's multiplicative masking (a masked
    similarity is 0). The gradient reaches only each maximum's document token. None when the
    kernels do not apply (the caller composes MLX ops)."""
    if not applies(q, d) or q.ndim != 3 or d.ndim != 3 or d.shape[1] == 0:
        return None
    q_mask = mx.ones(q.shape[:2]) if q_mask is None else q_mask.astype(mx.float32)
    d_mask = mx.ones(d.shape[:2]) if d_mask is None else d_mask.astype(mx.float32)
    return _maxsim(q, d, q_mask, d_mask)[0]


# --- AdamW ---------------------------------------------------------------------------------

def sum_squares(x: mx.array) -> mx.array | None:
    """``(x ** 2).sum()`` as a float32 scalar, accumulated in double in one threaded pass, or None
    when the kernel does not apply (the caller uses ``mx.linalg.norm``)."""
    if not applies(x):
        return None
    return _state["module"].sum_squares(x)


def adamw(param, grad, exp_avg, exp_avg_sq, betas, decay_factor, step_size, bias_correction2_sqrt, eps,
          grad_scale=None):
    """One torch.optim.AdamW step for one tensor in a single pass, or None when the kernel does not
    apply (the caller then runs the same update with MLX ops). Moments of None start at zero, as
    torch's. ``grad_scale`` (a scalar array, e.g. the clipping coefficient) multiplies the gradient
    first, as ``clip_grad_norm_`` does in place. Returns ``(param, exp_avg, exp_avg_sq)``."""
    if not applies(param, grad) or param.dtype != mx.float32:
        return None
    exp_avg = mx.zeros_like(param) if exp_avg is None else exp_avg
    exp_avg_sq = mx.zeros_like(param) if exp_avg_sq is None else exp_avg_sq
    grad_scale = mx.array(1.0) if grad_scale is None else grad_scale.astype(mx.float32)
    return tuple(
        _state["module"].adamw(param, grad, exp_avg, exp_avg_sq, grad_scale, betas[0], betas[1], decay_factor,
                               step_size, bias_correction2_sqrt, eps)
    )

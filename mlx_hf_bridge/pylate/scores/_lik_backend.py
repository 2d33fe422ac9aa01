"""``pylate.scores._lik_backend`` as PyLate 1.6 has it, for code that probes it.

PyLate routes torch CUDA / MPS tensors to late-interaction-kernels' fused MaxSim. The bridge scores on
MLX whatever the input, so that route never applies: :func:`is_available` is False and the kernel
entry points raise :class:`LIKUnsupported` (PyLate's fall-back sentinel). The input checks
(``_lik_device``, ``_mask_as_bool``) are PyLate's, duck-typed so no torch import is needed.
"""

_KERNEL_MAX_HEAD_DIM = 256
_KERNEL_SUPPORTED_DTYPES = frozenset({"torch.float16", "torch.bfloat16", "torch.float32"})


class LIKUnsupported(Exception):
    """The LIK backend cannot run on these inputs; PyLate's ``auto`` falls back on this exception only."""


def is_available() -> bool:
    """False: the bridge computes scores on MLX, never through late-interaction-kernels."""
    return False


def _mask_as_bool(mask):
    """PyLate masks are float (0/1), bool or None; LIK takes bool."""
    if mask is None:
        return None
    if str(mask.dtype) == "torch.bool":
        return mask
    return mask != 0


def _lik_device(query, doc) -> str:
    """PyLate's input gate; with no accelerator route on the bridge, even valid inputs end in
    :class:`LIKUnsupported` naming why."""
    if query.numel() == 0 or doc.numel() == 0:
        raise LIKUnsupported("empty input tensor")
    if query.device != doc.device:
        raise LIKUnsupported("queries and documents on different devices")
    if str(query.dtype) not in _KERNEL_SUPPORTED_DTYPES:
        raise LIKUnsupported(f"unsupported dtype {query.dtype}")
    head_dim = query.shape[-1]
    if head_dim < 8 or head_dim > _KERNEL_MAX_HEAD_DIM or head_dim % 8 != 0:
        raise LIKUnsupported(f"unsupported head dim {head_dim}")
    raise LIKUnsupported("LIK backend requires CUDA or MPS inputs through torch; the bridge scores on MLX")


def _unsupported(*args, **kwargs):
    raise LIKUnsupported("late-interaction-kernels are not used by the bridge (it scores on MLX)")


colbert_scores_lik = colbert_scores_pairwise_lik = colbert_kd_scores_lik = _unsupported

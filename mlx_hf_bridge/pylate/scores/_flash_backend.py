"""``pylate.scores._flash_backend`` as PyLate 1.6 has it, for code that probes it.

PyLate sends torch CUDA tensors to flash-maxsim. The bridge scores on MLX whatever the input, so
:func:`is_available` is False and the kernel entry points raise :class:`FlashUnsupported` (PyLate's
fall-back sentinel). No torch import.
"""


class FlashUnsupported(Exception):
    """The flash backend cannot run on these inputs; PyLate's ``auto`` falls back on this exception only."""


def is_available() -> bool:
    """False: the bridge computes scores on MLX, never through flash-maxsim."""
    return False


def _next_pow2(n: int) -> int:
    """Smallest power of two at or above ``n`` (clamped to >= 1), PyLate's query-length bucket."""
    n = max(int(n), 1)
    return 1 << (n - 1).bit_length()


def _unsupported(*args, **kwargs):
    raise FlashUnsupported("flash-maxsim is not used by the bridge (it scores on MLX)")


colbert_scores_flash = colbert_scores_pairwise_flash = colbert_kd_scores_flash = _unsupported

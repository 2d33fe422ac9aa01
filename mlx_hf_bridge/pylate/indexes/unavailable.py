"""PyLate 1.6 indexes the bridge does not provide: constructing one says so and what to use."""

from __future__ import annotations

import importlib.util


def _unavailable(name: str, why: str):
    class Unavailable:
        is_end_to_end_index = False

        def __init__(self, *args, **kwargs):
            raise NotImplementedError(f"pylate.indexes.{name} is not available on mlx_hf_bridge: {why} "
                                      f"Use indexes.PLAID (MLX-native) or indexes.Voyager instead.")

    Unavailable.__name__ = Unavailable.__qualname__ = name
    return Unavailable


def _scann_reason() -> str:
    if importlib.util.find_spec("scann") is None:  # not imported here: it loads TensorFlow's runtime
        return "the `scann` package is not installed (it needs TensorFlow's runtime and ships Linux x86_64 wheels only)."
    return "the bridge has no ScaNN wrapper yet (the `scann` package is installed)."


ScaNN = _unavailable("ScaNN", _scann_reason())
TachiomIndex = _unavailable("TachiomIndex", "it needs the tachiom package and torch.")
WARP = _unavailable("WARP", "it needs xtr-warp's torch C++ extensions.")

"""Drop-in for ``pylate``: ``from mlx_hf_bridge.pylate import evaluation, losses, models, utils``.

Submodules load lazily so that ``import`` stays cheap and a missing piece fails where it is used.
"""

import importlib

from .. import __version__

_SUBMODULES = ("evaluation", "indexes", "losses", "models", "rank", "retrieve", "scores", "server", "utils")
__all__ = [*_SUBMODULES, "__version__"]


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(
        f"mlx_hf_bridge {__version__} does not provide pylate.{name}. "
        f"Available: {', '.join(_SUBMODULES)}."
    )

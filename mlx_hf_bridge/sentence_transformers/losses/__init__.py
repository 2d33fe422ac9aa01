"""``sentence_transformers.losses`` (ST 5.3's path, kept by ST 6 as a shim) on MLX: the dense losses
of ``mlx_hf_bridge.losses``."""

from ...losses import __all__, __dir__, __getattr__  # noqa: F401

"""``sentence_transformers.sentence_transformer.losses`` (ST 6.2's path) on MLX: the dense losses of
``mlx_hf_bridge.losses``."""

from ....losses import __all__, __dir__, __getattr__  # noqa: F401

"""transformers-shaped entry points backed by MLX modules."""

from .auto import AutoModel

__all__ = ["AutoModel"]

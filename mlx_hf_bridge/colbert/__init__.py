"""Late-interaction (ColBERT) models on MLX: the core the ``pylate`` façade re-exports."""

from .model import ColBERT
from .modules import Dense, Transformer

__all__ = ["ColBERT", "Dense", "Transformer"]

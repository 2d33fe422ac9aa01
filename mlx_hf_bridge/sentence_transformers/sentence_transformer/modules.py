"""``sentence_transformers.sentence_transformer.modules`` (ST 6.2): the dense family's module kinds on
MLX, one implementation each in :mod:`mlx_hf_bridge.modules` (Pooling with ST 6.2's semantics)."""

from ...modules import Dense, Normalize, Transformer
from ...modules.pooling import Pooling
from ...modules.router import Router
from ...modules.static_embedding import StaticEmbedding

Asym = Router  # ST 6.2 keeps the old name

__all__ = ["Asym", "Dense", "Normalize", "Pooling", "Router", "StaticEmbedding", "Transformer"]

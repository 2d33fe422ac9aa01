"""``sentence_transformers.base.modules`` (ST 6): the module kinds a multi-vector or dense pipeline is
built from. One implementation each, in :mod:`mlx_hf_bridge.modules`."""

from ...modules import Dense, Normalize, Transformer
from ...modules.router import Router

__all__ = ["Dense", "Normalize", "Router", "Transformer"]

"""``pylate.models`` on MLX."""

from ..colbert.model import ColBERT
from ..colbert.modules import Dense

__all__ = ["ColBERT", "Dense"]

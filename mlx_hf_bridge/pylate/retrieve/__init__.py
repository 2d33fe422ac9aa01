"""``pylate.retrieve`` on MLX: ColBERT and XTR retrievers over ``pylate.indexes``."""

from __future__ import annotations

from .colbert import ColBERT
from .xtr import XTR

__all__ = ["ColBERT", "XTR"]

"""``pylate.indexes`` on MLX: PLAID (native MLX + numpy), Voyager (the voyager package)."""

from __future__ import annotations

from ...indexes import IndexCorruptedError
from .base import Base
from .plaid import PLAID
from .unavailable import WARP, ScaNN, TachiomIndex
from .voyager import Voyager

__all__ = ["Base", "Voyager", "PLAID", "ScaNN", "TachiomIndex", "WARP", "IndexCorruptedError"]

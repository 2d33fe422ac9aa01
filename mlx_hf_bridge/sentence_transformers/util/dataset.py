"""``sentence_transformers.util.dataset`` (ST 6.2): ``resolve_ids``, implemented in ``engine.resolve_ids``."""

from ...engine.resolve_ids import LABEL_COLUMNS as DEFAULT_LABEL_COLUMNS
from ...engine.resolve_ids import resolve_ids

__all__ = ["DEFAULT_LABEL_COLUMNS", "resolve_ids"]

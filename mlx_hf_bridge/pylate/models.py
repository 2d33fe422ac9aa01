"""``pylate.models`` on MLX: ``ColBERT`` with PyLate 1.6's metadata after loading, and ``Dense``.

What PyLate (through sentence-transformers 5) sets on every load, whatever the checkpoint layout:
* ``model_card_data`` is a :class:`PylateModelCardData` (``library_name == "PyLate"``);
  ``base_model`` / ``base_model_revision`` are filled only when the Hub answers ``model_info`` for a
  Hub id (ST's ``set_base_model``): offline, or with ``local_files_only=True``, they stay None, as in
  PyLate;
* ``max_seq_length`` of a checkpoint without ``sentence_bert_config.json`` (Stanford / plain HF) is
  ST's rule ``min(max_position_embeddings, tokenizer.model_max_length)`` (512 for BERT).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..colbert.model import ColBERT as _ColBERT
from ..colbert.modules import Dense
from ..model_card.card_data import SentenceTransformerModelCardData


@dataclass
class PylateModelCardData(SentenceTransformerModelCardData):
    """PyLate 1.6's card data: ST's user fields, PyLate's task and tags, ``library_name="PyLate"``."""

    task_name: str = (
        "semantic textual similarity, semantic search, paraphrase mining, text classification, clustering, "
        "and more"
    )
    tags: list[str] = field(default_factory=lambda: [
        "ColBERT", "PyLate", "sentence-transformers", "sentence-similarity", "feature-extraction"])
    base_model: str | None = field(default=None, init=False)
    base_model_revision: str | None = field(default=None, init=False)
    pipeline_tag: str = field(default="sentence-similarity", init=False)
    library_name: str = field(default="PyLate", init=False)

    def set_base_model(self, model_id: str, revision: str | None = None) -> bool:
        """ST's rule: only a model the Hub confirms (``model_info``) becomes the base model."""
        from huggingface_hub import constants, model_info

        if self.local_files_only or constants.HF_HUB_OFFLINE:
            return False
        try:
            info = model_info(model_id)
        except Exception:  # no network, unknown id, outage: ST leaves the fields unset too
            return False
        self.base_model = info.id
        self.base_model_revision = info.sha if revision in (None, "main") else revision
        return True


def _st_max_seq_length(transformer) -> int | None:
    config = getattr(transformer.auto_model, "args", None) or getattr(transformer.auto_model, "config", None)
    positions = getattr(config, "max_position_embeddings", None)
    tokenizer_max = getattr(transformer.tokenizer, "model_max_length", None)
    if positions is None or tokenizer_max is None:
        return None
    return int(min(positions, tokenizer_max))


class ColBERT(_ColBERT):
    __doc__ = _ColBERT.__doc__

    def __init__(self, model_name_or_path=None, *args, model_card_data=None, revision=None,
                 local_files_only=False, **kwargs):
        card = model_card_data if model_card_data is not None else PylateModelCardData(
            local_files_only=local_files_only)
        super().__init__(model_name_or_path, *args, model_card_data=card, revision=revision,
                         local_files_only=local_files_only, **kwargs)
        if self.transformer.max_seq_length is None:
            self.transformer.max_seq_length = _st_max_seq_length(self.transformer)
        if model_name_or_path is not None and not os.path.isdir(os.path.expanduser(str(model_name_or_path))):
            if hasattr(card, "set_base_model") and not local_files_only:
                card.set_base_model(str(model_name_or_path), revision=revision)


__all__ = ["ColBERT", "Dense", "PylateModelCardData"]

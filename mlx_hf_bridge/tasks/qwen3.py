"""Qwen3 heads: ``Qwen3ForSequenceClassification`` and ``Qwen3ForTokenClassification``, transformers'
generic decoder heads (``tasks/decoder.py``) on the Qwen3 backbone."""

from __future__ import annotations

from ..models import qwen3 as arch
from . import register_head
from .decoder import heads_for

HEADS = heads_for(arch, "Qwen3")
Qwen3ForSequenceClassification = HEADS["sequence-classification"]
Qwen3ForTokenClassification = HEADS["token-classification"]

for _task, _cls in HEADS.items():
    register_head("qwen3", _task, _cls)

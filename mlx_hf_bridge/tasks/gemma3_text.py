"""Gemma 3 text heads: ``Gemma3TextForSequenceClassification``, transformers' generic sequence head
(``tasks/decoder.py``) on the Gemma 3 text backbone. transformers (5.3 and 5.24) has no Gemma 3
token-classification or masked-LM class, so the bridge has none either (``head_class`` names that)."""

from __future__ import annotations

from ..models import gemma3_text as arch
from . import register_head
from .decoder import heads_for

# Gemma's RMSNorm scales by (1 + weight): _init_weights sets the weights to 0
HEADS = heads_for(arch, "Gemma3Text", norm_init=0.0, tasks=("sequence-classification",))
Gemma3TextForSequenceClassification = HEADS["sequence-classification"]

register_head("gemma3_text", "sequence-classification", Gemma3TextForSequenceClassification)

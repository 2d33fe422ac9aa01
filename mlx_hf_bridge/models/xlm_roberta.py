"""XLM-RoBERTa encoder (HF ``model_type: xlm-roberta``): transformers' ``XLMRobertaModel`` is
``RobertaModel`` under another name (same layers, position ids, parameter names), so this is
``roberta.py``'s model with XLM-R's defaults and export name."""

from __future__ import annotations

from dataclasses import dataclass

from . import roberta


@dataclass
class ModelArgs(roberta.ModelArgs):
    model_type: str = "xlm-roberta"
    vocab_size: int = 30522  # XLMRobertaConfig's default (real checkpoints set 250002)


class Model(roberta.Model):
    NAME = "XLM-RoBERTa"


HF_ARCHITECTURE = "XLMRobertaModel"

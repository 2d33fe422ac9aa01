"""XLM-RoBERTa heads: transformers' ``XLMRobertaFor*`` are the RoBERTa heads (same ``roberta.`` /
``classifier`` / ``lm_head`` names and maths) on the XLM-R backbone, saved under their own names."""

from __future__ import annotations

from ..models import xlm_roberta as arch
from . import register_head
from . import roberta as heads


def _xlmr(cls):
    name = cls.hf_architecture.replace("Roberta", "XLMRoberta", 1)
    return type(name, (cls,), {"arch": arch, "hf_architecture": name, "__doc__": f"transformers' ``{name}``."})


XLMRobertaForSequenceClassification = _xlmr(heads.RobertaForSequenceClassification)
XLMRobertaForTokenClassification = _xlmr(heads.RobertaForTokenClassification)
XLMRobertaForMaskedLM = _xlmr(heads.RobertaForMaskedLM)

register_head("xlm-roberta", "sequence-classification", XLMRobertaForSequenceClassification)
register_head("xlm-roberta", "token-classification", XLMRobertaForTokenClassification)
register_head("xlm-roberta", "masked-lm", XLMRobertaForMaskedLM)

"""T5Gemma heads in transformers' encoder-only mode (``is_encoder_decoder=False``):
``T5GemmaForSequenceClassification`` and ``T5GemmaForTokenClassification`` = ``model.encoder.*`` (the
``T5GemmaEncoderModel`` backbone) + ``score`` (``T5GemmaClassificationHead``: dropout
``classifier_dropout_rate``, then ``out_proj`` with a bias). Sequence classification pools as
transformers' generic head (``tasks/decoder.py``: the last token != pad_token_id of ``input_ids``).

With ``is_encoder_decoder=True`` (``T5GemmaConfig``'s default, a full checkpoint's) transformers runs
the decoder on the right-shifted inputs and classifies its states; the bridge has no T5Gemma decoder,
so that is refused before any weights are read."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from ..models import t5gemma as arch
from . import register_head
from .decoder import DecoderForSequenceClassification, DecoderForTokenClassification


class T5GemmaClassificationHead(nn.Module):
    def __init__(self, hidden_size: int, num_labels: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(hidden_size, num_labels)

    def __call__(self, x):
        return self.out_proj(self.dropout(x))


class _T5GemmaTask:
    arch = arch
    norm_init = 0.0  # Gemma's (1 + weight) RMSNorms

    def _build_head(self, config):
        if getattr(config, "is_encoder_decoder", True):
            raise ValueError(
                f"{self.hf_architecture} with is_encoder_decoder=True classifies from T5Gemma's decoder (run on the "
                "right-shifted inputs), which mlx_hf_bridge does not implement: it runs the encoder only. Load with "
                "is_encoder_decoder=False (from_pretrained(path, is_encoder_decoder=False), as transformers' own "
                "argument) to classify from the encoder, or run the encoder-decoder head with transformers on torch.")
        encoder = config.encoder
        return T5GemmaClassificationHead(encoder.hidden_size, config.num_labels,
                                         float(getattr(config, "classifier_dropout_rate", 0.1) or 0.0))

    def init_parameter(self, name: str, shape: tuple) -> mx.array:
        """``T5GemmaPreTrainedModel._init_weights``: the generic rules (``initializer_range``, the pad row 0,
        norms 0), and ``score.out_proj.weight`` ~ N(0, initializer_range / sqrt(num_labels))."""
        if name == "score.out_proj.weight":
            return mx.random.normal(shape) * float(self.config.initializer_range) * shape[0] ** -0.5
        return super().init_parameter(name, shape)


class T5GemmaForSequenceClassification(_T5GemmaTask, DecoderForSequenceClassification):
    hf_architecture = "T5GemmaForSequenceClassification"

    def __init__(self, config):
        head = self._build_head(config)
        super(DecoderForSequenceClassification, self).__init__(config)
        self.score = head


class T5GemmaForTokenClassification(_T5GemmaTask, DecoderForTokenClassification):
    hf_architecture = "T5GemmaForTokenClassification"

    def __init__(self, config):
        head = self._build_head(config)
        super(DecoderForTokenClassification, self).__init__(config)
        self.score = head

    def head_logits(self, hidden, attention_mask, labels=None):
        return self["score"](hidden)  # the head's own dropout


register_head("t5gemma", "sequence-classification", T5GemmaForSequenceClassification)
register_head("t5gemma", "token-classification", T5GemmaForTokenClassification)

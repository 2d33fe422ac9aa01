"""X-MOD encoder (HF ``model_type: xmod``, e.g. the backbone of antoinelouis/colbert-xm) with HF
parameter names: RoBERTa (``roberta.py``: embeddings, position ids, attention) plus a bottleneck
adapter per language after each layer's feed-forward block, and an optional pre-norm layout.

As transformers' ``XmodModel``: each row runs its language's adapter (``lang_ids``, indices into
``config.languages``); without ``lang_ids`` every row runs ``default_language`` (sentence-transformers
and PyLate never pass ``lang_ids``), and with neither the call is refused as transformers refuses it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from . import bert, roberta
from .base import LayerNorm, activation


@dataclass
class ModelArgs(roberta.ModelArgs):
    model_type: str = "xmod"
    vocab_size: int = 30522
    pre_norm: bool = False
    adapter_reduction_factor: float = 2
    adapter_layer_norm: bool = False
    adapter_reuse_layer_norm: bool = True
    ln_before_adapter: bool = True
    languages: list = field(default_factory=lambda: ["en_XX"])
    default_language: str | None = None

    def __post_init__(self):
        super().__post_init__()
        self.languages = [str(language) for language in self.languages]
        if not self.languages:
            raise ValueError("X-MOD config lists no languages: each layer needs one adapter per language.")
        if self.default_language is not None and self.default_language not in self.languages:
            raise ValueError(
                f"X-MOD default_language={self.default_language!r} has no adapter; the config's languages are "
                f"{self.languages}. Set default_language in config.json to one of them."
            )


class XmodAdapter(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        bottleneck = int(args.hidden_size // args.adapter_reduction_factor)
        self.dense1 = nn.Linear(args.hidden_size, bottleneck)
        self.dense2 = nn.Linear(bottleneck, args.hidden_size)
        self.act = activation(args.hidden_act)

    def __call__(self, x):
        return self.dense2(self.act(self.dense1(x)))


class XmodOutput(nn.Module):
    """The feed-forward output, its residual, then the language adapter with its own residual."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.dense = nn.Linear(args.intermediate_size, args.hidden_size)
        self.LayerNorm = LayerNorm(args.hidden_size, eps=args.layer_norm_eps)
        self.dropout = nn.Dropout(args.hidden_dropout_prob)
        if args.adapter_layer_norm:
            self.adapter_layer_norm = LayerNorm(args.hidden_size, eps=args.layer_norm_eps)
        self.reuse_layer_norm = args.adapter_reuse_layer_norm
        self.ln_before_adapter = args.ln_before_adapter
        self.adapter_modules = {language: XmodAdapter(args) for language in args.languages}

    def __call__(self, h, residual, languages):
        x = self.dropout(self.dense(h)) + residual
        adapter_residual = x
        if "adapter_layer_norm" in self:
            x = self.adapter_layer_norm(x)
        elif self.reuse_layer_norm:
            x = self.LayerNorm(x)
        if self.ln_before_adapter:
            adapter_residual = x
        return self.dropout(languages.apply(self.adapter_modules, x)) + adapter_residual


class XmodAttention(bert.BertAttention):
    def __init__(self, args: ModelArgs):
        super().__init__(args)
        self.pre_norm = args.pre_norm

    def __call__(self, x, bias):
        if not self.pre_norm:
            return super().__call__(x, bias)  # LayerNorm(dropout(dense(attention)) + x), as BERT
        h = self.self(self.output.LayerNorm(x), bias)
        return self.output.dropout(self.output.dense(h)) + x


class XmodLayer(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.attention = XmodAttention(args)
        self.intermediate = bert.BertIntermediate(args)
        self.output = XmodOutput(args)
        self.pre_norm = args.pre_norm

    def __call__(self, x, bias, languages):
        a = self.attention(x, bias)
        h = self.output.LayerNorm(a) if self.pre_norm else a
        y = self.output(self.intermediate(h), a, languages)
        return y if self.pre_norm else self.output.LayerNorm(y)


class Languages:
    """Which adapter each row runs: one language for the whole batch, or per-row ``lang_ids``."""

    def __init__(self, names: list, lang_ids=None, default: str | None = None):
        if lang_ids is None:
            if default is None:
                raise ValueError(
                    "X-MOD input language unknown: pass lang_ids (one index into config.languages per row) or set "
                    f"default_language in config.json to one of {names} (transformers raises here too)."
                )
            self.rows = [(default, None)]
            return
        ids = np.asarray(lang_ids).reshape(-1)
        # rows of an index with no adapter get a zero adapter output, as transformers' zero fill
        self.rows = [(names[int(i)], mx.array(ids == i)[:, None, None]) for i in np.unique(ids) if 0 <= i < len(names)]

    def apply(self, adapters: dict, x):
        if len(self.rows) == 1 and self.rows[0][1] is None:
            return adapters[self.rows[0][0]](x)
        out = mx.zeros_like(x)
        for name, rows in self.rows:
            out = mx.where(rows, adapters[name](x), out)
        return out


class Model(roberta.Model):
    """``XmodModel``: ``model(input_ids, attention_mask, lang_ids=None)`` -> last hidden state; see the
    module docstring for the languages. Packed rows (``pack_sequences``) run where one language
    covers the batch (the adapters are token-wise)."""

    NAME = "X-MOD"

    def __init__(self, args: ModelArgs, add_pooling_layer: bool = True):
        super().__init__(args, add_pooling_layer)
        self.encoder.layer = [XmodLayer(args) for _ in range(args.num_hidden_layers)]
        if args.pre_norm:
            self.encoder.LayerNorm = LayerNorm(args.hidden_size, eps=args.layer_norm_eps)

    def __call__(self, input_ids, attention_mask=None, token_type_ids=None, output_hidden_states: bool = False,
                 lang_ids=None):
        languages = Languages(self.args.languages, lang_ids, self.args.default_language)
        return self._forward(input_ids, attention_mask, token_type_ids, output_hidden_states, (languages,),
                             can_pack=lang_ids is None)

    def _first_tokens(self, *args):
        return None  # the language adapters and pre-norm residuals run on every row

    def _final_norm(self, x):
        return self.encoder.LayerNorm(x) if "LayerNorm" in self.encoder else x


HF_ARCHITECTURE = "XmodModel"

"""RoBERTa encoder (HF ``model_type: roberta``) with HF parameter names, so saving is exporting.

BERT's layers (imported from ``bert.py``); what differs is the embeddings: position ids count the
non-pad tokens of each row and start at ``pad_token_id + 1`` (transformers'
``create_position_ids_from_input_ids``; a pad token gets position ``pad_token_id``), and, as
torch's ``nn.Embedding(padding_idx=...)``, the pad rows of the word and position tables get no
gradient. XLM-RoBERTa (``xlm_roberta.py``) is this model under another name.

Packed batches (``pack_sequences``) run as in ``bert.py``: the embeddings, with these position ids,
are computed on the padded batch before packing.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import numpy as np

from . import bert


@dataclass
class ModelArgs(bert.ModelArgs):
    model_type: str = "roberta"
    vocab_size: int = 50265
    pad_token_id: int | None = 1
    is_decoder: bool = False
    add_cross_attention: bool = False
    auto_map: dict | None = None

    def __post_init__(self):
        name = self.model_type
        if self.position_embedding_type not in (None, "absolute"):
            code = (self.auto_map or {}).get("AutoModel", self.auto_map)
            custom = f"; the config's auto_map names custom (torch) code for it ({code}), which cannot run on MLX" \
                if self.auto_map else ""
            raise ValueError(
                f"{name} position_embedding_type={self.position_embedding_type!r} is not supported: the built-in "
                f"{name} computes absolute position embeddings only{custom}. Run this model with the torch library."
            )
        if self.pad_token_id is None:
            raise ValueError(
                f"{name} config has pad_token_id=None: its position ids are counted from the pad token "
                "(create_position_ids_from_input_ids), so transformers cannot run it either. Set pad_token_id in "
                "config.json (1 for RoBERTa / XLM-RoBERTa checkpoints)."
            )
        if self.is_decoder or self.add_cross_attention:
            raise ValueError(
                f"{name} config has is_decoder={self.is_decoder}, add_cross_attention={self.add_cross_attention}: "
                "mlx_hf_bridge runs the bidirectional encoder only. Set both to false in config.json to use it as "
                "an encoder."
            )


class RobertaEmbeddings(bert.BertEmbeddings):
    def __init__(self, args: ModelArgs):
        super().__init__(args)
        self.padding_idx = int(args.pad_token_id)

    def __call__(self, input_ids, token_type_ids=None):
        is_token = input_ids != self.padding_idx
        positions = mx.cumsum(is_token.astype(mx.int32), axis=1) * is_token + self.padding_idx
        if token_type_ids is None:
            token_type_ids = mx.zeros_like(input_ids)
        looked_up = self.word_embeddings(input_ids) + self.position_embeddings(positions)
        # torch's padding_idx: the pad rows of both tables (word pad_token_id, position pad_token_id) get no gradient
        looked_up = mx.where(is_token[..., None], looked_up, mx.stop_gradient(looked_up))
        x = looked_up + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(x))


class Model(bert.Model):
    """``RobertaModel``: ``model(input_ids, attention_mask)`` -> last hidden state (B, L, H); with
    ``output_hidden_states=True`` -> ``(last, hidden_states)`` as transformers (``num_hidden_layers + 1``
    entries). Padded rows are computed as transformers computes them (positions ``pad_token_id``)."""

    NAME = "RoBERTa"

    def __init__(self, args: ModelArgs, add_pooling_layer: bool = True):
        super().__init__(args, add_pooling_layer)
        self.embeddings = RobertaEmbeddings(args)

    @property
    def max_positions(self) -> int:
        """The most real (non-pad) tokens a row may hold: positions run from ``pad_token_id + 1``."""
        return int(self.args.max_position_embeddings) - int(self.args.pad_token_id) - 1

    def _check_length(self, input_ids):
        if input_ids.shape[1] <= self.max_positions:
            return
        # torch counts only non-pad tokens: a wide batch is fine while every row's count fits
        longest = int(np.asarray(mx.sum(input_ids != self.args.pad_token_id, axis=1).max()))
        if longest > self.max_positions:
            raise ValueError(
                f"Input of {longest} tokens is longer than {self.NAME}'s position table allows "
                f"(max_position_embeddings={self.args.max_position_embeddings}, positions start at pad_token_id + 1 = "
                f"{self.args.pad_token_id + 1}: at most {self.max_positions} tokens); truncate it, e.g. "
                f"tokenizer(..., truncation=True, max_length={self.max_positions})."
            )

    @staticmethod
    def sanitize(weights: dict) -> dict:
        """HF checkpoint keys (``RobertaModel``, or ``roberta.``-prefixed task / MLM models) -> ours."""
        out = {}
        for key, value in weights.items():
            if key.startswith("roberta."):
                key = key[len("roberta.") :]
            elif key.startswith(("lm_head.", "classifier.", "qa_outputs.", "linear.")):
                continue  # MLM / task / ColBERT heads are not part of the encoder
            if key.endswith(("position_ids", "token_type_ids")) and "embeddings." in key:
                continue  # buffers in old checkpoints
            # legacy names, which transformers 5.3 also writes back when it saves a model it loaded
            key = key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
            out[key] = value
        return out


HF_ARCHITECTURE = "RobertaModel"

"""What every transformers-style task model shares: HF outputs, the torch-like parameter views,
embedding freezing, and ``save_pretrained`` / ``push_to_hub``. Heads live in one file per
architecture family (``tasks/bert.py``, ``tasks/modernbert.py``) and register themselves."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from .losses import IGNORE_INDEX, _host_values
from .params import ModuleView, named_parameter_handles, wrap


class TaskOutput(dict):
    """transformers' ``ModelOutput`` shape: ``out.loss`` / ``out.logits`` / ``out["logits"]``; ``out[0]``
    is the first field that is set (the loss when labels were given), as in HF's tuple view."""

    def __init__(self, loss=None, logits=None):
        super().__init__((k, v) for k, v in (("loss", loss), ("logits", logits)) if v is not None)

    def __getattr__(self, name):
        if name in ("loss", "logits"):
            return self.get(name)
        raise AttributeError(name)

    def __getitem__(self, key):
        if isinstance(key, (int, slice)):
            return self.to_tuple()[key]
        return super().__getitem__(key)

    def to_tuple(self):
        return tuple(self.values())


class OutputProjection(nn.Module):
    """An MLM decoder's own tensors (``weight`` when untied, ``bias`` when the family has one); a tied
    decoder reads the input embedding table instead, so the two can never drift apart."""

    def __init__(self, vocab_size: int, hidden_size: int, own_weight: bool, bias: bool):
        super().__init__()
        if own_weight:
            self.weight = mx.zeros((vocab_size, hidden_size))
        if bias:
            self.bias = mx.zeros((vocab_size,))

    def __call__(self, x, tied_weight=None, bias=None):
        weight = self["weight"] if "weight" in self else tied_weight
        bias = self["bias"] if "bias" in self else bias
        out = x @ weight.T
        return out if bias is None else out + bias


# forward arguments of transformers' heads that change nothing here (the output is always a dict-like
# TaskOutput); any other one set (position_ids, inputs_embeds, output_hidden_states=True, ...) is refused
_NO_EFFECT = {"return_dict", "use_cache"}
_NO_EFFECT_WHEN_FALSE = {"output_attentions", "output_hidden_states"}


def _refuse_unsupported(kwargs: dict):
    bad = sorted(k for k, v in kwargs.items()
                 if v is not None and k not in _NO_EFFECT and not (k in _NO_EFFECT_WHEN_FALSE and v is False))
    if bad:
        raise TypeError(
            f"The bridge's task models do not support {', '.join(bad)} (they take input_ids, attention_mask, "
            "token_type_ids, labels, num_items_in_batch). Drop the argument, or run this with transformers on torch.")


class TaskModel(nn.Module):
    """A backbone (under ``base_model_prefix``, HF's attribute name) plus a head with HF's names.

    Subclasses set ``task``, ``hf_architecture``, ``base_model_prefix`` and implement
    ``head_logits(hidden, attention_mask)`` and ``loss(logits, labels)``. Calling the model runs
    ``backbone -> head -> loss`` and returns a :class:`TaskOutput`.

    ``padding_free=True`` runs the backbone packed where it can (the CPU kernels' fused attention:
    real tokens only, each row attending to itself), and per-token heads (token classification,
    MLM: ``per_token``) run on the real tokens only, their logits 0 at padding. At real tokens everything equals the padded forward, so losses
    do too as long as padded positions carry label -100 (HF's collators do; anything else is
    refused in this mode). Default: on for sequence-level heads (their logits and losses are the
    padded ones), off for per-token heads (transformers returns logits at padded positions too).

    Heads that read only the first token (``reads_first_token``: BERT's pooler, RoBERTa's
    classification head) get the backbone's last layer for that token only (keys and values still
    from every token): the same logits, without the last layer's work on rows nobody reads.
    """

    task: str = ""
    hf_architecture: str = ""
    base_model_prefix: str = ""
    per_token: bool = False
    reads_first_token: bool = False
    # transformers' heads whose loss reads num_items_in_batch (its loss_function); the others ignore it
    uses_num_items_in_batch: bool = False

    def __init__(self, config, backbone: nn.Module):
        super().__init__()
        self.config = config
        self.padding_free = not self.per_token
        setattr(self, self.base_model_prefix, backbone)

    # --- forward -------------------------------------------------------------------------------
    def __call__(self, input_ids, attention_mask=None, token_type_ids=None, labels=None, num_items_in_batch=None,
                 **kwargs):
        _refuse_unsupported(kwargs)
        input_ids = mx.array(input_ids)
        attention_mask = None if attention_mask is None else mx.array(attention_mask)
        token_type_ids = None if token_type_ids is None else mx.array(token_type_ids)
        labels = None if labels is None else mx.array(labels)
        hidden = self._backbone_hidden(input_ids, attention_mask, token_type_ids)
        mask = None if attention_mask is None or not (self.padding_free and self.per_token) else \
            _host_values(attention_mask)
        if mask is not None and not mask.all():
            logits = self._real_token_logits(hidden, mask.astype(bool), labels)
        else:
            logits = self.head_logits(hidden, attention_mask, labels)
        loss = None
        if labels is not None:
            extra = {"num_items_in_batch": num_items_in_batch} if self.uses_num_items_in_batch else {}
            loss = self.loss(logits, self._labels_for_loss(labels), **extra)
        return TaskOutput(loss=loss, logits=logits)

    def _real_token_logits(self, hidden, mask: np.ndarray, labels):
        """The per-token head on real tokens only, scattered back with 0 at padded positions."""
        if labels is not None:
            at_padding = _host_values(labels)
            if at_padding is not None and (at_padding[~mask] != IGNORE_INDEX).any():
                raise ValueError(
                    "padding_free=True computes no logits at padded positions, but some padded positions carry "
                    "labels other than -100. Pad labels with -100 (label_pad_token_id=-100, HF's default) or set "
                    "model.padding_free = False.")
        B, L = mask.shape
        real = np.flatnonzero(mask.reshape(-1))
        logits = self.head_logits(hidden.reshape(B * L, -1)[mx.array(real.astype(np.int32))], None, None)
        index = np.full(B * L, real.size, np.int32)  # padded positions read the zero row appended at the end
        index[real] = np.arange(real.size, dtype=np.int32)
        rows = mx.concatenate([logits, mx.zeros((1, logits.shape[-1]), dtype=logits.dtype)])
        return rows[mx.array(index)].reshape(B, L, -1)

    def _backbone_hidden(self, input_ids, attention_mask, token_type_ids):
        backbone = self[self.base_model_prefix]
        switches = {}
        # packing plans read the mask on the host, which mx.compile does not allow: a compiled step runs padded
        if self.padding_free and hasattr(type(backbone), "pack_sequences") and \
                (attention_mask is None or _host_values(attention_mask) is not None):
            switches["pack_sequences"] = True
        # a head that reads only the first token gets (B, 1, H): the last layer's other rows are never used
        if self.reads_first_token and hasattr(type(backbone), "first_token_only"):
            switches["first_token_only"] = True
        for name, value in switches.items():
            setattr(backbone, name, value)
        try:
            return backbone(input_ids, attention_mask, token_type_ids)
        finally:
            for name in switches:
                delattr(backbone, name)

    def _labels_for_loss(self, labels):
        return labels

    def head_logits(self, hidden, attention_mask, labels=None):
        raise NotImplementedError

    def loss(self, logits, labels):
        raise NotImplementedError

    @property
    def num_labels(self) -> int:
        return int(self.config.num_labels)

    # --- torch-like parameter access -----------------------------------------------------------
    def __getattr__(self, key):
        value = super().__getattr__(key)
        return wrap(value, key) if isinstance(value, (nn.Module, list)) else value

    @property
    def base_model(self) -> ModuleView:
        return ModuleView(self[self.base_model_prefix], self.base_model_prefix)

    def named_parameters(self, prefix: str = "", recurse: bool = True):
        yield from ModuleView(self).named_parameters(prefix, recurse)

    def requires_grad_(self, requires_grad: bool = True):
        (self.unfreeze if requires_grad else self.freeze)()
        return self

    def num_parameters(self, only_trainable: bool = False) -> int:
        return sum(h.numel() for _, h in named_parameter_handles(self) if h.requires_grad or not only_trainable)

    def freeze_embeddings(self, freeze: bool = True):
        """The bridge's one-liner for ``for p in model.base_model.embeddings.parameters():
        p.requires_grad = False``. With a tied MLM decoder the decoder is frozen too (same tensor)."""
        self.base_model.embeddings.requires_grad_(not freeze)
        return self

    def get_input_embeddings(self) -> nn.Embedding:
        return self[self.base_model_prefix].get_input_embeddings()

    # --- persistence ---------------------------------------------------------------------------
    def save_pretrained(self, save_directory, **kwargs):
        from .loading import save_task_model

        save_task_model(self, save_directory, **kwargs)

    # the engine's checkpoint contract: ``save(path)`` writes the model folder, ``load_checkpoint`` reloads it
    def save(self, path):
        self.save_pretrained(path)

    def load_checkpoint(self, path):
        from .loading import load_task_model

        self.update(load_task_model(self.task, str(path), config=self.config).parameters())
        mx.eval(self.parameters())

    def push_to_hub(self, repo_id: str, **kwargs) -> str:
        from ..hub import push_to_hub

        return push_to_hub(self.save_pretrained, repo_id, model_class=self.hf_architecture, **kwargs)

    # --- new-head initialisation (HF's _init_weights for the family) -----------------------------
    def init_parameter(self, name: str, shape: tuple) -> mx.array:
        raise NotImplementedError

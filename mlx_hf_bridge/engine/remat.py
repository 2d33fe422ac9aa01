"""Gradient checkpointing that really recomputes, and keeps dropout masks identical.

mlx-lm's recipe: patch ``type(layer).__call__`` (Python looks ``__call__`` up on the type, so an
instance-level patch is never called) with ``mx.checkpoint``; the layer's own parameters are
passed in so gradients flow to them. mx.checkpoint re-runs the Python function during the
backward pass, so a plain ``nn.Dropout`` would draw *new* masks there and the gradients would be
wrong. We therefore draw one key per layer call in the forward pass, close over it, and while
the patch is active ``nn.Dropout`` takes its masks from that key: forward and recompute match.
"""

from __future__ import annotations

import contextlib
import re

import mlx.core as mx
import mlx.nn as nn

_LAYER_PATH = re.compile(r"(?:^|\.)(?:layers?|blocks?|h)\.\d+$")
_keys: list = []  # stack of per-layer-call dropout keys (non-empty only inside a checkpointed layer)
_MARK = "_mlx_hf_bridge_checkpointed"


def find_layer_class(model: nn.Module):
    """The class of the repeated encoder blocks (``...layer.0`` / ``...layers.0``), or None."""
    for name, module in model.named_modules():
        if _LAYER_PATH.search(name):
            return type(module)
    return None


def _dropout_call(self, x):
    if self._p_1 == 1 or not self.training:
        return x
    if not _keys:
        return _ORIGINAL_DROPOUT(self, x)
    key, sub = mx.random.split(_keys[-1])
    _keys[-1] = key
    mask = mx.random.bernoulli(self._p_1, x.shape, key=sub)
    return (mask * x) * (1 / self._p_1)


_ORIGINAL_DROPOUT = nn.Dropout.__call__


def _checkpointed(original):
    def call(self, *args, **kwargs):
        key = mx.random.randint(0, 2**31 - 1, (2,)).astype(mx.uint32) if self.training else None

        def inner(params, *args, **kwargs):
            self.update(params)
            if key is None:
                return original(self, *args, **kwargs)
            _keys.append(key)
            try:
                return original(self, *args, **kwargs)
            finally:
                _keys.pop()

        return mx.checkpoint(inner)(self.trainable_parameters(), *args, **kwargs)

    setattr(call, _MARK, original)
    return call


@contextlib.contextmanager
def gradient_checkpointing(model: nn.Module, layer_class=None):
    """Checkpoint every instance of the encoder layer class for the duration of the block.

    The patch is class-level (all instances, all models of that class in the process), so it is
    always undone on exit. Yields the patched class, or None if no layer class was found.
    """
    cls = layer_class or find_layer_class(model)
    if cls is None or getattr(cls.__call__, _MARK, None) is not None:
        yield cls
        return
    original = cls.__call__
    cls.__call__ = _checkpointed(original)
    nn.Dropout.__call__ = _dropout_call
    try:
        yield cls
    finally:
        cls.__call__ = original
        nn.Dropout.__call__ = _ORIGINAL_DROPOUT

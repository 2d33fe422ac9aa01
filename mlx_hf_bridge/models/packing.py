"""Sequence packing: the rows of a right-padded batch laid end to end in one row, no padding.

The encoder's token-wise parts (embeddings, norms, MLPs, projections) then run on real tokens
only, and attention keeps each token inside its own sequence (segment ids; RoPE positions restart
per sequence), so every real token's output is the one the padded batch gives. The packed row is
padded to a multiple of ``MULTIPLE`` tokens (few distinct shapes); those tail tokens see no key
and are dropped when unpacking. Unpacked outputs are 0 at padded positions.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np

MULTIPLE = 32


class SequencePacking:
    """How one (B, L) batch is packed: ``pack`` (B, L, H) -> (1, T, H), ``unpack`` back."""

    def __init__(self, gather, unpack_index, key_mask, segments, shape, first=None):
        self.gather, self.unpack_index = gather, unpack_index
        self.key_mask, self.segments = key_mask, segments  # (1, T) each: the attention kernel's inputs
        self.shape = shape
        self.first = first  # (B,) each sequence's first packed index; None when a row is empty

    @classmethod
    def plan(cls, attention_mask) -> "SequencePacking | None":
        """The packing of a right-padded ``attention_mask`` (B, L), or None where packing saves
        nothing (no padding to remove) or the rows are not right-padded."""
        mask = np.asarray(attention_mask).astype(bool)
        B, L = mask.shape
        lengths = mask.sum(axis=1)
        if not np.array_equal(mask, np.arange(L)[None, :] < lengths[:, None]):
            return None
        n = int(lengths.sum())
        T = max(MULTIPLE, -(-n // MULTIPLE) * MULTIPLE)
        if T >= B * L:
            return None
        rows, cols = np.nonzero(mask)  # row-major: each sequence's tokens stay contiguous, in order
        tail = T - n
        gather = np.concatenate([rows * L + cols, np.zeros(tail, np.int64)]).astype(np.int32)
        segments = np.concatenate([rows, np.full(tail, B)]).astype(np.float32)  # the tail: a segment of its own
        key_mask = np.concatenate([np.ones(n), np.zeros(tail)]).astype(np.float32)  # ... that nobody attends to
        unpack_index = np.full(B * L, T, np.int32)  # padded positions read the zero row appended at T
        unpack_index[rows * L + cols] = np.arange(n, dtype=np.int32)
        first = None if (lengths == 0).any() else mx.array((np.cumsum(lengths) - lengths).astype(np.int32))
        return cls(mx.array(gather), mx.array(unpack_index), mx.array(key_mask[None]), mx.array(segments[None]), (B, L),
                   first)

    def pack(self, x: mx.array) -> mx.array:
        B, L = self.shape
        return x.reshape(B * L, -1)[self.gather][None]

    def unpack(self, y: mx.array) -> mx.array:
        B, L = self.shape
        rows = mx.concatenate([y[0], mx.zeros((1, y.shape[-1]), dtype=y.dtype)])
        return rows[self.unpack_index].reshape(B, L, -1)

"""PyLate's ``utils.distributed`` on ``mx.distributed``: rank, world size and the two all-gathers.

With no distributed group of size > 1 (the usual single-machine case) every helper is a no-op:
``get_rank() == 0``, ``get_world_size() == 1`` and the gathers return ``[tensor]`` after logging one
warning, exactly like PyLate without ``torch.distributed``.

>>> import mlx_hf_bridge, mlx.core as mx
>>> get_rank(), get_world_size()
(0, 1)
>>> [x.tolist() for x in all_gather(mx.array([1, 2]))]
[[1, 2]]
"""

from __future__ import annotations

import logging

import mlx.core as mx

from ..engine import distributed as _engine

logger = logging.getLogger(__name__)

_has_warned_dist_not_initialized = False
_NOT_INITIALIZED = """
            Trying to gather while mlx.distributed is not available or has no group of size > 1,
             returning the original (local) tensor. This is expected if you are
             only using one device; consider not using gathering to remove this warning.
       """


def group():
    """The world group when one of size > 1 exists, else ``None`` (the engine's, so ``local_only`` applies)."""
    return _engine.group()


def get_rank() -> int:
    """This process's rank (0 without a distributed group)."""
    world = group()
    return world.rank() if world is not None else 0


def get_world_size() -> int:
    """Number of processes (1 without a distributed group)."""
    world = group()
    return world.size() if world is not None else 1


def _warn_once():
    global _has_warned_dist_not_initialized
    if not _has_warned_dist_not_initialized:
        logger.warning(_NOT_INITIALIZED)
        _has_warned_dist_not_initialized = True


_gather_raw = _engine._gather_raw


def _split(gathered: mx.array, world_size: int) -> list[mx.array]:
    n = gathered.shape[0] // world_size
    return [gathered[r * n : (r + 1) * n] for r in range(world_size)]


def all_gather(tensor: mx.array) -> list[mx.array]:
    """One tensor per rank; only the local one (the input itself) carries gradients."""
    world = group()
    if world is None:
        _warn_once()
        return [tensor]
    parts = _split(mx.stop_gradient(_gather_raw(tensor, world)), world.size())
    parts[world.rank()] = tensor
    return parts


def gather_with_gradients(tensor: mx.array, world) -> mx.array:
    """``all_gather`` concatenated along axis 0 whose backward sums the cotangents of every rank
    for the local slice (torch's ``distributed.nn.all_gather``): the engine's ``all_gather_with_grad``."""
    return _engine.all_gather_with_grad(tensor, world)


def all_gather_with_gradients(tensor: mx.array) -> list[mx.array]:
    """One tensor per rank; all of them carry gradients back to their owners."""
    world = group()
    if world is None:
        _warn_once()
        return [tensor]
    return _split(gather_with_gradients(tensor, world), world.size())


__all__ = ["all_gather", "all_gather_with_gradients", "get_rank", "get_world_size", "group"]

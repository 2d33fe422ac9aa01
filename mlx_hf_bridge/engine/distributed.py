"""Data parallel on ``mx.distributed`` (``mlx.launch``: ring / JACCL / MPI / NCCL), as torch DDP + accelerate.

Every rank holds the same weights (rank 0's are broadcast at the start, as DDP does), reads its own
shard of each global batch (:class:`ShardedBatchSampler`, accelerate's ``BatchSamplerShard``), and
averages the gradients with one ``all_sum`` per bucket before clipping and the optimizer update,
so the update is identical everywhere. With no group of size > 1 every helper is the identity.

``all_gather_with_grad`` is the gather every ``gather_across_devices`` path uses: MLX's own
``all_gather`` VJP hands back only this rank's slice of its *own* cotangent, so in-batch negatives
from other ranks would get no gradient from their loss; here the backward sums the cotangents of
every rank first (torch's ``distributed.nn.all_gather``: reduce-scatter with SUM).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time

import mlx.core as mx

_local_only = threading.local()
BUCKET_BYTES = 32 << 20  # gradients are all-reduced in flat fp32 buckets of at most this size (as mlx-lm)


class DistributedError(RuntimeError):
    """A collective failed: another rank died (connection lost) or did not answer in time."""


# --- the group -------------------------------------------------------------------------------------
def group():
    """The world group when one of size > 1 exists (and no :func:`local_only` block is active), else None."""
    if getattr(_local_only, "depth", 0) or not mx.distributed.is_available():
        return None
    world = mx.distributed.init()
    return world if world.size() > 1 else None


def rank() -> int:
    world = group()
    return world.rank() if world is not None else 0


def world_size() -> int:
    world = group()
    return world.size() if world is not None else 1


def is_main_process() -> bool:
    return rank() == 0


@contextlib.contextmanager
def local_only():
    """Inside: every helper acts as on one process (no gathering), e.g. evaluation run in full on each rank."""
    _local_only.depth = getattr(_local_only, "depth", 0) + 1
    try:
        yield
    finally:
        _local_only.depth -= 1


# --- gathering with gradients ------------------------------------------------------------------------
def _gather_raw(x: mx.array, world) -> mx.array:
    if x.dtype == mx.bool_:  # collectives work on numbers
        return mx.distributed.all_gather(x.astype(mx.uint8), group=world).astype(mx.bool_)
    return mx.distributed.all_gather(x, group=world)


def all_gather_with_grad(x: mx.array, world=None) -> mx.array:
    """Every rank's ``x`` concatenated along axis 0 (same shape on every rank); the backward gives this
    rank the sum over ranks of the cotangents of its rows. One process: ``x`` itself."""
    world = world if world is not None else group()
    if world is None:
        return x

    @mx.custom_function
    def gather(a):
        return _gather_raw(a, world)

    @gather.vjp
    def gather_vjp(primals, cotangent, output):
        a = primals[0] if isinstance(primals, (tuple, list)) else primals
        n, r = a.shape[0], world.rank()
        return (mx.distributed.all_sum(cotangent, group=world)[r * n : (r + 1) * n],)

    return gather(x)


def all_gather_padded(x: mx.array, mask: mx.array, world=None) -> tuple[mx.array, mx.array]:
    """ST 6's ``all_gather_padded``: ``(B, T, D)`` token embeddings and their ``(B, T)`` mask from every
    rank, the token axis first padded (zeros / False) to the widest rank's ``T`` (ranks pad each batch to
    its own longest text). Embeddings keep gradients (:func:`all_gather_with_grad`); the mask has none."""
    world = world if world is not None else group()
    if world is None:
        return x, mask
    widest = int(mx.distributed.all_gather(mx.array([x.shape[1]], dtype=mx.int32), group=world).max().item())
    if x.shape[1] < widest:
        x = mx.pad(x, [(0, 0), (0, widest - x.shape[1]), (0, 0)])
        mask = mx.pad(mask, [(0, 0), (0, widest - mask.shape[1])])
    return all_gather_with_grad(x, world), mx.stop_gradient(_gather_raw(mask, world))


# --- gradients, weights, barrier -------------------------------------------------------------------
class Reducer:
    """Averages a step's loss and gradients over the ranks (DDP's mean) in flat fp32 buckets."""

    def __init__(self, world, bucket_bytes: int = BUCKET_BYTES):
        self.world, self.bucket_bytes = world, bucket_bytes
        self.bytes_per_step = 0  # what the last call all-reduced (the benchmark reports it)

    def average(self, loss: mx.array, grads: dict) -> tuple[mx.array, dict]:
        n = self.world.size()
        items = [("", loss.reshape(1))] + [(k, g) for k, g in grads.items()]
        out, bucket, size, total = {}, [], 0, 0

        def flush():
            nonlocal bucket, size
            flat = mx.concatenate([a.reshape(-1).astype(mx.float32) for _, a in bucket])
            summed = mx.distributed.all_sum(flat, group=self.world) / n
            start = 0
            for key, a in bucket:
                out[key] = summed[start : start + a.size].reshape(a.shape)
                start += a.size
            bucket, size = [], 0

        for key, a in items:
            if bucket and size + a.size * 4 > self.bucket_bytes:
                flush()
            bucket.append((key, a))
            size += a.size * 4
            total += a.size * 4
        flush()
        self.bytes_per_step = total
        return out.pop("")[0], out


def broadcast_from_zero(arrays: dict, world) -> dict:
    """Rank 0's values on every rank (DDP's start-up broadcast): an all_sum where the others add zeros."""
    if world is None:
        return arrays
    keep = world.rank() == 0
    out = {}
    for k, v in arrays.items():
        if not mx.issubdtype(v.dtype, mx.floating):
            out[k] = v
            continue
        out[k] = mx.distributed.all_sum(v if keep else mx.zeros_like(v), group=world)
    return out


def barrier(world, what: str = "a barrier", timeout: float | None = None):
    """Wait for every rank (a 1-element all_sum); raises DistributedError, or stops after ``timeout``."""
    if world is None:
        return
    with guard(world, what, timeout):
        mx.eval(mx.distributed.all_sum(mx.array([1.0]), group=world))


def agree(world, values: list[float], what: str, timeout: float | None = None) -> list[list[float]]:
    """Every rank's ``values`` (rank-major): ranks compare what they resolved (checkpoint, sizes)."""
    if world is None:
        return [list(values)]
    with guard(world, what, timeout):
        gathered = mx.distributed.all_gather(mx.array([list(values)], dtype=mx.float32), group=world)
        return gathered.tolist()


# --- failures: a dead peer raises, a hung one trips the watchdog -------------------------------------
EXIT_TIMEOUT, EXIT_PEER_DIED = 124, 125


class _Watchdog:
    """One daemon thread: stops the process when a guarded collective runs past its deadline. The main
    thread is then blocked inside MLX's C++ collective, where no Python exception can reach it, so the
    watchdog writes the error and ends the process with exit code 124 (no file is half-written: every
    checkpoint is written to a temp path and renamed)."""

    def __init__(self):
        self.deadline, self.message, self.died_message, self._thread = None, "", "", None
        self.generation = 0
        self._lock = threading.Lock()

    def arm(self, seconds: float, message: str, died_message: str = ""):
        with self._lock:
            self.deadline, self.message, self.died_message = time.monotonic() + seconds, message, died_message
            self.generation += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="mlx-hf-bridge-ddp-watchdog", daemon=True)
                self._thread.start()

    def disarm(self):
        with self._lock:
            self.deadline = None

    def _watch(self):
        from . import distributed_heartbeat

        while True:
            time.sleep(0.2)
            with self._lock:
                armed, generation = self.deadline is not None, self.generation
                late = armed and time.monotonic() > self.deadline
                message = self.message
            if late:
                self._stop(message, EXIT_TIMEOUT)
            beat = distributed_heartbeat.current()
            dead = beat.poll() if armed and beat is not None else []
            if dead:
                time.sleep(1.0)  # a peer that exits right after the last collective is no failure
                with self._lock:
                    still = self.deadline is not None and self.generation == generation
                    message = self.died_message.replace("<dead>", _ranks(dead))
                if still:
                    self._stop(message, EXIT_PEER_DIED)

    @staticmethod
    def _stop(message: str, code: int):
        sys.stderr.write(f"\nmlx_hf_bridge: {message}\n")
        sys.stderr.flush()
        os._exit(code)


_watchdog = _Watchdog()
DEFAULT_TIMEOUT = 1800.0  # HF's ddp_timeout default (seconds)


def _ranks(ranks) -> str:
    return f"rank {ranks[0]}" if len(ranks) == 1 else f"ranks {sorted(ranks)}"


def _peers(world) -> str:
    others = [r for r in range(world.size()) if r != world.rank()]
    return f"rank {others[0]}" if len(others) == 1 else f"one of ranks {others}"


@contextlib.contextmanager
def guard(world, what: str, timeout: float | None = None):
    """Around work that ends in a collective: a lost connection becomes a DistributedError naming the
    ranks; no answer within ``timeout`` seconds stops this process (see :class:`_Watchdog`)."""
    if world is None:
        yield
        return
    from . import distributed_heartbeat

    seconds = float(timeout if timeout is not None else DEFAULT_TIMEOUT)
    me = f"rank {world.rank()} of {world.size()}"
    after = ("No checkpoint was written for the unfinished step; after fixing the cause, relaunch every rank "
             "with resume_from_checkpoint=True.")
    beat = distributed_heartbeat.current()
    dead = beat.poll() if beat is not None else []
    if dead:  # known before waiting: a clean exception on this thread
        raise DistributedError(f"{me}: cannot start {what}: {_ranks(dead)} died (its process ended). {after}")
    _watchdog.arm(seconds, f"{me}: {what} did not complete within ddp_timeout={seconds:g} s: {_peers(world)} "
                           f"died or hangs. Stopping this rank. {after}",
                  f"{me}: <dead> died (its process ended) during {what}. Stopping this rank. {after}")
    try:
        yield
    except RuntimeError as err:
        if str(err).lstrip().startswith(("[ring]", "[jaccl]", "[mpi]", "[nccl]")):  # MLX's backends' errors
            raise DistributedError(f"{me}: {what} failed: {_peers(world)} stopped answering ({err}); it probably "
                                   f"died (see its log). {after}") from err
        raise
    finally:
        _watchdog.disarm()


__all__ = ["DistributedError", "Reducer", "agree", "all_gather_padded", "all_gather_with_grad", "barrier", "broadcast_from_zero",
           "group", "guard", "is_main_process", "local_only", "rank", "world_size"]

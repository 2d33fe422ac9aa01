"""The score functions' type rule: torch in -> torch out, numpy in -> numpy out, mx (or lists) -> mx.

PyLate returns torch tensors, so a user script does ``torch.cat([...scores...])``. The MLX path never
imports torch: an input is recognised as torch by its type's module name, and torch is then taken from
``sys.modules`` (it is there, since the caller made the tensor). A torch input that requires grad gets
a result wired into torch's autograd whose backward is MLX's ``mx.vjp`` of the same function, so
``loss.backward()`` in a torch script reaches the inputs.
"""

from __future__ import annotations

import functools
import sys

import mlx.core as mx
import numpy as np


def _is_torch(x) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def _first_tensor(args):
    for a in args:
        if isinstance(a, (list, tuple)) and a and not isinstance(a[0], (int, float)):
            a = a[0]
        if a is not None and not isinstance(a, (list, tuple)):
            return a
    return None


def _to_mx(x):
    if x is None or isinstance(x, mx.array):
        return x
    if _is_torch(x):
        x = x.detach().cpu()
        x = x.float().numpy() if x.is_floating_point() else x.numpy()
    if isinstance(x, (list, tuple)):
        if not x:
            return mx.array(np.asarray(x, dtype=np.float32))
        if not isinstance(x[0], (int, float)):
            return mx.stack([_to_mx(e) for e in x])
    return mx.array(np.asarray(x))


def _to_torch(result: mx.array, like):
    torch = sys.modules["torch"]
    return torch.from_numpy(np.array(result)).to(like.device)


def _autograd(fn, args, like):
    """Run ``fn`` on MLX with a torch autograd node around it (grads for floating torch inputs)."""
    torch = sys.modules["torch"]
    diff = [i for i, a in enumerate(args) if _is_torch(a) and a.is_floating_point() and a.requires_grad]

    class _MLXFunction(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *tensors):
            ctx.mx_args = [_to_mx(a) for a in args]
            return _to_torch(fn(*ctx.mx_args), like)

        @staticmethod
        def backward(ctx, grad):
            def of_diff(*values):
                full = list(ctx.mx_args)
                for i, v in zip(diff, values):
                    full[i] = v
                return fn(*full)

            _, grads = mx.vjp(of_diff, [ctx.mx_args[i] for i in diff], [mx.array(grad.detach().cpu().numpy())])
            return tuple(_to_torch(g, args[i]).to(args[i].dtype) for i, g in zip(diff, grads))

    return _MLXFunction.apply(*[args[i] for i in diff])


def like_inputs(fn):
    """Wrap an MLX score function ``fn(*arrays)`` with the type rule above."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        first = _first_tensor(args)
        if first is not None and _is_torch(first):
            if any(_is_torch(a) and a.requires_grad for a in args):
                return _autograd(lambda *a: fn(*a, **kwargs), args, first)
            return _to_torch(fn(*[_to_mx(a) for a in args], **kwargs), first)
        result = fn(*[_to_mx(a) for a in args], **kwargs)
        return np.array(result) if isinstance(first, np.ndarray) else result

    return wrapper

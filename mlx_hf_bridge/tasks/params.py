"""A torch-like view of MLX modules for the freezing idioms people write with transformers.

MLX keeps ``Module.parameters()`` for itself (a nested dict the engine and ``mx.eval`` rely on),
so the torch spellings live on views: ``model.base_model`` and every child reached as an attribute
of a task model (``model.bert.embeddings``) is a :class:`ModuleView` whose ``parameters()`` yields
:class:`ParameterHandle` objects. Setting ``handle.requires_grad = False`` freezes that one leaf
(``Module.freeze(keys=...)`` on its owner), so the engine, which trains
``model.trainable_parameters()``, gives it no gradient, no optimizer state and no update.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten


class ParameterHandle:
    """One leaf parameter: ``requires_grad`` (get / set), ``data``, ``shape``, ``dtype``, ``numel()``."""

    def __init__(self, owner: nn.Module, key: str, name: str):
        self._owner, self._key, self.name = owner, key, name

    @property
    def data(self) -> mx.array:
        return self._owner[self._key]

    @property
    def shape(self):
        return tuple(self.data.shape)

    @property
    def dtype(self):
        return self.data.dtype

    def numel(self) -> int:
        return int(self.data.size)

    @property
    def requires_grad(self) -> bool:
        return self._key not in self._owner._no_grad

    @requires_grad.setter
    def requires_grad(self, value: bool):
        if value:
            self._owner.unfreeze(recurse=False, keys=[self._key])
        else:
            self._owner.freeze(recurse=False, keys=[self._key])

    def requires_grad_(self, requires_grad: bool = True) -> "ParameterHandle":
        self.requires_grad = requires_grad
        return self

    def __repr__(self):
        return f"ParameterHandle({self.name!r}, shape={self.shape}, requires_grad={self.requires_grad})"


def named_parameter_handles(module: nn.Module, prefix: str = ""):
    """``(name, handle)`` for every array leaf under ``module``, in MLX's (= HF's) naming."""
    for path, owner in module.named_modules():
        for key, value in owner.items():
            if isinstance(value, mx.array):
                name = ".".join(part for part in (prefix, path, key) if part)
                yield name, ParameterHandle(owner, key, name)
            elif isinstance(value, (list, tuple, dict)):  # modules inside are visited by named_modules
                leaves = [v for _, v in tree_flatten(value, is_leaf=lambda v: isinstance(v, nn.Module))]
                if any(isinstance(v, mx.array) for v in leaves):  # MLX freezes such a container only as a whole
                    raise TypeError(f"{'.'.join(p for p in (prefix, path, key) if p)}: arrays held in a plain "
                                    "list / dict cannot be frozen one by one; hold them in an nn.Module")


def wrap(value, prefix: str):
    """Modules (and lists of modules, e.g. ``encoder.layer``) as views; anything else unchanged."""
    if isinstance(value, nn.Module):
        return ModuleView(value, prefix)
    if isinstance(value, list) and value and all(isinstance(v, nn.Module) for v in value):
        return [ModuleView(v, f"{prefix}.{i}") for i, v in enumerate(value)]
    return value


class ModuleView:
    """Torch-style access to an MLX module: ``parameters()``, ``named_parameters()``,
    ``requires_grad_()``, ``modules()``, ``named_children()``; attributes and calls pass through
    (children come back as views, arrays and methods as they are)."""

    def __init__(self, module: nn.Module, prefix: str = ""):
        object.__setattr__(self, "_module", module)
        object.__setattr__(self, "_prefix", prefix)

    @property
    def module(self) -> nn.Module:
        """The MLX module itself (for MLX APIs: ``nn.value_and_grad``, ``freeze``, ...)."""
        return self._module

    def parameters(self, recurse: bool = True):
        for _, handle in self.named_parameters(recurse=recurse):
            yield handle

    def named_parameters(self, prefix: str = "", recurse: bool = True):
        """Names relative to this module, as torch's ``module.named_parameters()``."""
        for name, handle in named_parameter_handles(self._module, prefix):
            if recurse or name.count(".") == prefix.count(".") + bool(prefix):
                yield name, handle

    def requires_grad_(self, requires_grad: bool = True) -> "ModuleView":
        (self._module.unfreeze if requires_grad else self._module.freeze)()
        return self

    def named_children(self):
        for key, value in self._module.children().items():
            yield key, wrap(value, f"{self._prefix}.{key}" if self._prefix else key)

    def children(self):
        for _, child in self.named_children():
            yield child

    def modules(self):
        for name, module in self._module.named_modules():
            yield ModuleView(module, ".".join(p for p in (self._prefix, name) if p))

    def __getattr__(self, name):
        return wrap(getattr(self._module, name), f"{self._prefix}.{name}" if self._prefix else name)

    def __setattr__(self, name, value):
        setattr(self._module, name, value.module if isinstance(value, ModuleView) else value)

    def __getitem__(self, key):
        return wrap(self._module[key], f"{self._prefix}.{key}" if self._prefix else key)

    def __call__(self, *args, **kwargs):
        return self._module(*args, **kwargs)

    def __repr__(self):
        return f"ModuleView({type(self._module).__name__} at {self._prefix or '<root>'!r})"

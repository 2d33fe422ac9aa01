"""LoRA on the MLX backbones, as PEFT's ``lora.Linear``: ``y = base(x) + B(A(dropout(x))) * scaling``.

Module paths are the HF ones (the backbones use HF parameter names), so PEFT's ``target_modules`` and its
saved keys (``base_model.model.<module>.lora_A.weight``) mean the same modules here as on torch.
"""

from __future__ import annotations

import math
import re

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from .config import DEFAULT_TARGETS, LoraSettings

PEFT_PREFIX = "base_model.model."


class LoraLinear(nn.Module):
    """A frozen ``nn.Linear`` (``base_layer``, PEFT's name) plus the trainable low-rank pair."""

    def __init__(self, base: nn.Linear, settings: LoraSettings):
        super().__init__()
        out_features, in_features = base.weight.shape
        self.base_layer = base
        self.lora_A = nn.Linear(in_features, settings.r, bias=False)
        self.lora_B = nn.Linear(settings.r, out_features, bias=False)
        # PEFT's default init: kaiming_uniform_(a=sqrt(5)) on A (bound 1/sqrt(fan_in)), B zeros (a no-op at start)
        bound = 1.0 / math.sqrt(in_features)
        self.lora_A.weight = mx.random.uniform(-bound, bound, (settings.r, in_features))
        self.lora_B.weight = mx.zeros((out_features, settings.r))
        self.lora_dropout = nn.Dropout(settings.lora_dropout) if settings.lora_dropout > 0 else None
        self.scaling = settings.scaling
        self.adapter_enabled = True
        self.base_layer.freeze()

    def __call__(self, x):
        out = self.base_layer(x)
        if not self.adapter_enabled:
            return out
        h = self.lora_dropout(x) if self.lora_dropout is not None else x
        return out + self.lora_B(self.lora_A(h)) * self.scaling

    def merged_linear(self) -> nn.Linear:
        """The base layer with ``scaling * B @ A`` added to its weight (PEFT's merge)."""
        base = self.base_layer
        delta = (self.lora_B.weight @ self.lora_A.weight) * self.scaling
        base.weight = base.weight + delta.astype(base.weight.dtype)
        return base


def _matches(pattern, key: str) -> bool:
    if isinstance(pattern, str):
        return re.fullmatch(pattern, key) is not None
    return key in pattern or any(key.endswith(f".{name}") for name in pattern)


def _linear_paths(backbone) -> dict:
    return {path: m for path, m in backbone.named_modules() if isinstance(m, nn.Linear) and path}


def target_paths(backbone, settings: LoraSettings) -> list[str]:
    """The module paths PEFT would wrap, in the backbone's order; errors name what is wrong."""
    targets, model_type = settings.target_modules, getattr(getattr(backbone, "config", None), "model_type", None)
    if targets is None:
        if model_type not in DEFAULT_TARGETS:
            raise ValueError(
                f"target_modules=None: PEFT has no default target modules for model_type {model_type!r}; "
                "pass target_modules (e.g. ['Wqkv', 'Wo'] or 'all-linear')."
            )
        targets = DEFAULT_TARGETS[model_type]
    linears = _linear_paths(backbone)
    if targets == "all-linear" or targets == ["all-linear"]:
        matched = list(linears)  # a base model has no output (LM head) layer for PEFT to leave out
    else:
        everything = {path: m for path, m in backbone.named_modules() if path}
        matched = [p for p in everything if _matches(targets, p)]
        others = [p for p in matched if p not in linears and not isinstance(everything[p], LoraLinear)]
        if others:
            kinds = sorted({type(everything[p]).__name__ for p in others})
            raise ValueError(
                f"target_modules={targets!r} matches {others[:3]} ({', '.join(kinds)}): the bridge's LoRA wraps "
                "Linear layers only; name Linear modules (e.g. the attention projections)."
            )
    if settings.exclude_modules:
        matched = [p for p in matched if not _matches(settings.exclude_modules, p)]
    if any(isinstance(m, LoraLinear) for _, m in backbone.named_modules()):
        raise ValueError("The backbone already carries a LoRA adapter; the bridge holds one adapter "
                         "('default'). merge_and_unload() or load a fresh model first.")
    if not matched:
        sample = sorted({p.rsplit(".", 1)[-1] for p in linears})
        raise ValueError(
            f"Target modules {targets!r} not found in the base model ({model_type}). Please check the target "
            f"modules and try again: its Linear layers are named {sample}."
        )
    return sorted(matched, key=list(dict(backbone.named_modules())).index)


def _set_child(root, path: str, module):
    *parents, last = path.split(".")
    node = root
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else getattr(node, part)
    if isinstance(node, list):
        node[int(last)] = module
    else:
        setattr(node, last, module)


def inject(backbone, settings: LoraSettings) -> list[str]:
    """Freeze the backbone (PEFT freezes the whole base model) and wrap the target Linear layers."""
    paths = target_paths(backbone, settings)
    linears = dict(backbone.named_modules())
    backbone.freeze()
    for path in paths:
        layer = LoraLinear(linears[path], settings)
        layer.train(linears[path].training)  # new MLX modules start in training mode: keep the model's mode
        if settings.inference_mode:
            layer.freeze()
        _set_child(backbone, path, layer)
    mx.eval(backbone.parameters())
    return paths


def lora_layers(backbone) -> dict:
    return {path: m for path, m in backbone.named_modules() if isinstance(m, LoraLinear)}


def adapter_state(backbone) -> dict:
    """PEFT's saved tensors: ``base_model.model.<module>.lora_A.weight`` / ``lora_B.weight``."""
    state = {}
    for path, layer in lora_layers(backbone).items():
        state[f"{PEFT_PREFIX}{path}.lora_A.weight"] = layer.lora_A.weight
        state[f"{PEFT_PREFIX}{path}.lora_B.weight"] = layer.lora_B.weight
    return state


def embedding_key(backbone) -> str:
    """PEFT's saved name of the input embedding table (saved beside the adapter when the vocab was resized)."""
    table = backbone.get_input_embeddings()
    path = next(p for p, m in backbone.named_modules() if m is table)
    return f"{PEFT_PREFIX}{path}.weight"


def set_embedding_table(backbone, weight: mx.array):
    """A saved (resized) input embedding table, e.g. PyLate's [Q] / [D] rows added to the base vocab."""
    table = nn.Embedding(*weight.shape)
    table.weight = weight.astype(mx.float32)
    table.freeze()  # PEFT trains only the adapter; a saved table is a base weight
    backbone.set_input_embeddings(table)
    backbone.args.vocab_size = backbone.config.vocab_size = int(weight.shape[0])


def load_adapter_state(backbone, tensors: dict, source: str):
    """Put PEFT-named tensors into the wrapped layers; every key must match one, with its shape."""
    tensors = dict(tensors)
    table = tensors.pop(embedding_key(backbone), None)
    if table is not None:
        set_embedding_table(backbone, table)
    mine = adapter_state(backbone)
    names = {k.replace(".default.", "."): k for k in tensors}  # PEFT saves without the adapter name
    missing, unexpected = sorted(set(mine) - set(names)), sorted(set(names) - set(mine))
    if missing or unexpected:
        raise ValueError(
            f"{source}: the adapter's tensors do not match its target modules (missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}); the adapter_config.json and adapter_model.safetensors must come from one save."
        )
    layers = lora_layers(backbone)
    for key, original in names.items():
        value = tensors[original]
        if value.shape != mine[key].shape:
            raise ValueError(f"{source}: {original} has shape {tuple(value.shape)}, the model needs {tuple(mine[key].shape)}.")
        path, which = key[len(PEFT_PREFIX):].rsplit(".", 2)[0], key.rsplit(".", 2)[1]
        getattr(layers[path], which).weight = value.astype(mx.float32)
    mx.eval(backbone.parameters())


def set_enabled(backbone, enabled: bool):
    for layer in lora_layers(backbone).values():
        layer.adapter_enabled = enabled


def merge_and_unload(backbone) -> list[str]:
    """Fold every adapter into its base weight and put the plain Linear back (HF names again)."""
    layers = lora_layers(backbone)
    for path, layer in layers.items():
        merged = layer.merged_linear() if layer.adapter_enabled else layer.base_layer
        _set_child(backbone, path, merged)
    mx.eval(backbone.parameters())
    return list(layers)


def unload(backbone) -> list[str]:
    """Drop the adapters, keeping the base weights unchanged."""
    layers = lora_layers(backbone)
    for path, layer in layers.items():
        _set_child(backbone, path, layer.base_layer)
    return list(layers)


def base_state(backbone) -> dict:
    """The backbone's own parameters under HF names (LoRA pairs left out, ``base_layer`` folded away)."""
    return {k.replace(".base_layer.", "."): v for k, v in tree_flatten(backbone.parameters())
            if ".lora_A." not in k and ".lora_B." not in k}

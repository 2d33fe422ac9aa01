"""AdamW with HF's weight-decay groups, torch's exact update, global-norm clipping, HF schedules.

The optimizer is functional (``update(params, grads, lr_factor) -> params``) over flat
``{dotted name: array}`` dicts, so one step is a single lazy graph that can be evaluated once.
"""

from __future__ import annotations

import math
import re

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from .. import kernels

# transformers' Trainer.get_decay_parameter_names: matched on the lower-cased dotted name.
NO_DECAY_PATTERNS = [r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)"]
_NORM_TYPES = tuple(t for t in (nn.LayerNorm, getattr(nn, "RMSNorm", None)) if t is not None)


def decay_parameter_names(model: nn.Module) -> list[str]:
    """Trainable parameter names that get weight decay (HF rule: not bias, not in/named like a norm)."""
    norm_prefixes = [name + "." for name, m in model.named_modules() if isinstance(m, _NORM_TYPES) and name]
    patterns = [re.compile(p) for p in NO_DECAY_PATTERNS]
    names = []
    for name, _ in tree_flatten(model.trainable_parameters()):
        if any(name.startswith(p) for p in norm_prefixes):
            continue
        if any(p.search(name.lower()) for p in patterns):
            continue
        names.append(name)
    return names


def _tensor_norm(g: mx.array) -> mx.array:
    g = g.astype(mx.float32)
    squares = kernels.sum_squares(g)  # one threaded pass (MLX's CPU reduction runs on one core)
    return mx.sqrt(squares) if squares is not None else mx.linalg.norm(g.reshape(-1))


def global_norm(grads: dict) -> mx.array:
    """torch.nn.utils.clip_grad_norm_'s total norm: the 2-norm of the per-tensor 2-norms (fp32)."""
    norms = [_tensor_norm(g) for g in grads.values()]
    return mx.linalg.norm(mx.stack(norms)) if norms else mx.array(0.0)


def clip_coefficient(norm: mx.array, max_norm: float | None) -> mx.array | None:
    """torch's clipping coefficient ``max_norm / (norm + 1e-6)`` capped at 1; None without clipping."""
    if max_norm is None or max_norm <= 0:
        return None
    return mx.minimum(max_norm / (norm + 1e-6), 1.0)


def clip_by_global_norm(grads: dict, max_norm: float):
    """Return (clipped grads, pre-clip norm). The trainer instead hands the coefficient to
    :meth:`AdamW.compute` (``grad_scale``), which applies it inside the update pass."""
    norm = global_norm(grads)
    coef = clip_coefficient(norm, max_norm)
    if coef is None:
        return grads, norm
    return {k: _scaled(g, coef) for k, g in grads.items()}, norm


def _scaled(g: mx.array, coef: mx.array) -> mx.array:
    return (g * coef).astype(g.dtype)


class AdamW:
    """torch.optim.AdamW semantics (decoupled decay ``p -= lr*wd*p``, bias correction) with param groups.

    ``groups`` is a list of ``{"params": [names], "lr": float, "weight_decay": float}`` like torch's
    ``param_groups``; the learning rate used at a step is ``group lr * lr_factor`` (the schedule's
    lambda), as with ``LambdaLR``. State is fp32 and keyed by parameter name.
    """

    def __init__(self, groups, betas=(0.9, 0.999), eps=1e-8):
        self.groups = [dict(g, params=list(g["params"])) for g in groups]
        self.betas = tuple(float(b) for b in betas)
        self.eps = float(eps)
        self.step = 0  # number of updates applied (torch's state["step"])
        self.exp_avg: dict[str, mx.array] = {}
        self.exp_avg_sq: dict[str, mx.array] = {}
        self._group_of = {n: i for i, g in enumerate(self.groups) for n in g["params"]}

    @classmethod
    def for_model(cls, model, learning_rate, weight_decay=0.0, betas=(0.9, 0.999), eps=1e-8, lr_mapping=None):
        """HF's two groups (decay / no decay), plus one pair per ``learning_rate_mapping`` regex (as ST)."""
        names = [n for n, _ in tree_flatten(model.trainable_parameters())]
        decay = set(decay_parameter_names(model))
        assigned: dict[str, float] = {}
        for pattern, lr in (lr_mapping or {}).items():
            hits = [n for n in names if re.search(pattern, n) and n not in assigned]
            if not hits and not any(re.search(pattern, n) for n in names):
                raise ValueError(
                    f"learning_rate_mapping: no parameter matches {pattern!r}. Parameter names look like "
                    f"{names[:3]}; fix the regular expression."
                )
            assigned.update({n: float(lr) for n in hits})
        groups = [
            {"params": [n for n in names if n in decay and n not in assigned], "lr": learning_rate,
             "weight_decay": weight_decay},
            {"params": [n for n in names if n not in decay and n not in assigned], "lr": learning_rate,
             "weight_decay": 0.0},
        ]
        for lr in dict.fromkeys(assigned.values()):
            for wd, in_decay in ((weight_decay, True), (0.0, False)):
                params = [n for n in names if assigned.get(n) == lr and (n in decay) == in_decay]
                if params:
                    groups.append({"params": params, "lr": lr, "weight_decay": wd})
        return cls(groups, betas=betas, eps=eps)

    def group_lrs(self, lr_factor: float) -> list[float]:
        return [g["lr"] * lr_factor for g in self.groups]

    def compute(self, params: dict, grads: dict, lr_factor: float, grad_scale: mx.array | None = None):
        """One AdamW step, lazily: returns (new params, new moments) and changes nothing yet.

        ``grad_scale`` (the clipping coefficient from :func:`clip_coefficient`) multiplies every
        gradient first: the same values as clipping beforehand, without a pass of its own.
        Nothing is committed until :meth:`commit`, so a step with a NaN loss can be discarded.
        """
        b1, b2 = self.betas
        t = self.step + 1
        # Host-side doubles, like torch's single-tensor path (step is a Python number there).
        bc1, bc2_sqrt = 1 - b1**t, math.sqrt(1 - b2**t)
        scalars = []
        for g in self.groups:
            lr = g["lr"] * lr_factor
            scalars.append((1 - lr * g["weight_decay"], lr / bc1))
        new_params, new_m, new_v = {}, {}, {}
        for name, p in params.items():
            if name not in self._group_of:
                raise KeyError(f"parameter {name!r} is in no optimizer group (unfrozen after the optimizer was built?)")
            decay_factor, step_size = scalars[self._group_of[name]]
            g, scale = grads[name], grad_scale
            if scale is not None and g.dtype != mx.float32:
                g, scale = _scaled(g, scale), None  # clipped in the gradient's own dtype first
            g = g.astype(mx.float32)
            m, v = self.exp_avg.get(name), self.exp_avg_sq.get(name)
            fused = kernels.adamw(p, g, m, v, self.betas, decay_factor, step_size, bc2_sqrt, self.eps, scale)
            if fused is not None:  # the same ops in one pass (MLX's CPU backend runs ~8 here)
                new_params[name], new_m[name], new_v[name] = fused
                continue
            if scale is not None:
                g = g * scale
            m = (1 - b1) * g if m is None else m + (1 - b1) * (g - m)  # torch: exp_avg.lerp_(grad, 1-b1)
            v = (1 - b2) * (g * g) if v is None else b2 * v + (1 - b2) * (g * g)
            if decay_factor != 1.0:
                p = p * decay_factor
            new_params[name] = p - step_size * (m / (mx.sqrt(v) / bc2_sqrt + self.eps))
            new_m[name], new_v[name] = m, v
        return new_params, (new_m, new_v)

    def commit(self, moments):
        self.exp_avg, self.exp_avg_sq = moments
        self.step += 1

    def update(self, params: dict, grads: dict, lr_factor: float = 1.0) -> dict:
        """compute + commit in one call (for code that does not need the NaN guard)."""
        new_params, moments = self.compute(params, grads, lr_factor)
        self.commit(moments)
        return new_params

    def arrays(self) -> list[mx.array]:
        return list(self.exp_avg.values()) + list(self.exp_avg_sq.values())

    # --- persistence (safetensors + JSON: no pickle) ------------------------------------------
    def state_tensors(self) -> dict[str, mx.array]:
        out = {f"exp_avg.{k}": v for k, v in self.exp_avg.items()}
        out.update({f"exp_avg_sq.{k}": v for k, v in self.exp_avg_sq.items()})
        return out

    def state_json(self) -> dict:
        return {"format": "mlx_hf_bridge.AdamW/1", "step": self.step, "betas": list(self.betas), "eps": self.eps,
                "param_groups": [dict(g) for g in self.groups]}

    def load_state(self, meta: dict, tensors: dict[str, mx.array]):
        if meta.get("format") != "mlx_hf_bridge.AdamW/1":
            raise ValueError(f"optimizer state has format {meta.get('format')!r}; expected mlx_hf_bridge.AdamW/1")
        saved = [sorted(g["params"]) for g in meta["param_groups"]]
        if saved != [sorted(g["params"]) for g in self.groups]:
            raise ValueError(
                "The checkpoint's optimizer groups do not match this model's trainable parameters "
                "(different model, frozen layers or learning_rate_mapping?). Resume with the same setup."
            )
        self.step = int(meta["step"])
        self.exp_avg = {k[len("exp_avg."):]: v for k, v in tensors.items() if k.startswith("exp_avg.")}
        self.exp_avg_sq = {k[len("exp_avg_sq."):]: v for k, v in tensors.items() if k.startswith("exp_avg_sq.")}


# --- learning-rate schedules (transformers.optimization lambdas, same numbers) ----------------

def _linear(step, warmup, total, **_):
    if step < warmup:
        return float(step) / float(max(1, warmup))
    return max(0.0, float(total - step) / float(max(1, total - warmup)))


def _cosine(step, warmup, total, num_cycles=0.5, **_):
    if step < warmup:
        return float(step) / float(max(1, warmup))
    progress = float(step - warmup) / float(max(1, total - warmup))
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * float(num_cycles) * 2.0 * progress)))


def _cosine_restarts(step, warmup, total, num_cycles=1, **_):
    if step < warmup:
        return float(step) / float(max(1, warmup))
    progress = float(step - warmup) / float(max(1, total - warmup))
    if progress >= 1.0:
        return 0.0
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * ((float(num_cycles) * progress) % 1.0))))


def _constant(step, warmup, total, **_):
    return 1.0


def _constant_warmup(step, warmup, total, **_):
    if step < warmup:
        return float(step) / float(max(1.0, warmup))
    return 1.0


def _polynomial(step, warmup, total, lr_init=1.0, lr_end=1e-7, power=1.0, **_):
    if not lr_init > lr_end:
        raise ValueError(f"lr_end ({lr_end}) must be smaller than the initial lr ({lr_init})")
    if step < warmup:
        return float(step) / float(max(1, warmup))
    if step > total:
        return lr_end / lr_init
    remaining = 1 - (step - warmup) / (total - warmup)
    return ((lr_init - lr_end) * remaining**power + lr_end) / lr_init


SCHEDULES = {
    "linear": _linear,
    "cosine": _cosine,
    "cosine_with_restarts": _cosine_restarts,
    "polynomial": _polynomial,
    "constant": _constant,
    "constant_with_warmup": _constant_warmup,
}


def warmup_steps_for(warmup_steps, num_training_steps: int) -> int:
    """TrainingArguments.get_warmup_steps: an int >= 1 is steps, a float < 1 is a ratio (ceil)."""
    if warmup_steps >= 1:
        return int(warmup_steps)
    return math.ceil(num_training_steps * warmup_steps)


class Schedule:
    """``factor(step)`` = the LambdaLR multiplier for optimizer step ``step`` (0-based), as HF."""

    def __init__(self, name, num_warmup_steps: int, num_training_steps: int, base_lr: float = 1.0, **kwargs):
        name = getattr(name, "value", name)
        if name not in SCHEDULES:
            raise ValueError(
                f"lr_scheduler_type={name!r} is not available on MLX; use one of {sorted(SCHEDULES)}."
            )
        self.name, self.kwargs = name, dict(kwargs)
        if name == "polynomial":
            self.kwargs.setdefault("lr_init", base_lr)
        self.num_warmup_steps, self.num_training_steps = int(num_warmup_steps), int(num_training_steps)

    def factor(self, step: int) -> float:
        return SCHEDULES[self.name](step, self.num_warmup_steps, self.num_training_steps, **self.kwargs)

    def state_json(self, step: int, base_lrs: list[float]) -> dict:
        f = self.factor(step)
        return {"name": self.name, "num_warmup_steps": self.num_warmup_steps,
                "num_training_steps": self.num_training_steps, "kwargs": self.kwargs,
                "base_lrs": base_lrs, "last_epoch": step, "_step_count": step + 1,
                "_last_lr": [lr * f for lr in base_lrs]}


# torch.optim.AdamW's defaults, used where optimizer_cls_and_kwargs leaves them out (as torch would)
TORCH_ADAMW_DEFAULTS = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8}
# AdamW keywords that only choose a torch kernel: same update
SPEED_ONLY_KWARGS = ("foreach", "fused", "capturable", "differentiable")


def adamw_from_cls_and_kwargs(optimizer_cls_and_kwargs, model, args) -> AdamW:
    """``(AdamW class, kwargs)`` -> the engine's AdamW with the same update. transformers builds
    ``optimizer_cls(param_groups, **kwargs)`` with groups carrying ``args.weight_decay`` (0 for
    biases and norms), so weight decay comes from ``args`` and lr / betas / eps from ``kwargs``."""
    optimizer_cls, kwargs = optimizer_cls_and_kwargs
    kwargs = dict(kwargs or {})
    name = getattr(optimizer_cls, "__name__", type(optimizer_cls).__name__)
    if name != "AdamW":
        raise ValueError(
            f"optimizer_cls_and_kwargs=({name}, ...): the MLX engine trains with AdamW only (torch optimizers "
            "cannot drive MLX parameters). Pass (torch.optim.AdamW, {...}) or leave it out and set "
            "learning_rate / weight_decay / adam_beta1 / adam_beta2 / adam_epsilon in the training arguments."
        )
    unsupported = sorted(k for k, v in kwargs.items() if k not in (*TORCH_ADAMW_DEFAULTS, "weight_decay", *SPEED_ONLY_KWARGS)
                         and v not in (False, None))
    if unsupported:
        raise ValueError(
            f"optimizer_cls_and_kwargs: AdamW option(s) {unsupported} are not reproduced on MLX; remove them "
            "(supported: lr, betas, eps, weight_decay)."
        )
    settings = {**TORCH_ADAMW_DEFAULTS, **{k: kwargs[k] for k in TORCH_ADAMW_DEFAULTS if k in kwargs}}
    return AdamW.for_model(model, float(settings["lr"]), args.weight_decay, tuple(settings["betas"]),
                           float(settings["eps"]), lr_mapping=getattr(args, "learning_rate_mapping", None))

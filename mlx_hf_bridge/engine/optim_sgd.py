"""``optim="sgd"``: torch.optim.SGD's update on the engine's optimizer interface (the AdamW one).

transformers builds ``torch.optim.SGD(groups, lr=learning_rate, **optim_args)`` with its two groups
(``weight_decay`` for weights, 0 for biases and norms). torch's SGD decays by L2 (``g + wd * p``),
not decoupled as AdamW; momentum / dampening / nesterov come from ``optim_args`` as in transformers.
"""

from __future__ import annotations

import mlx.core as mx

from .optim import AdamW

FORMAT = "mlx_hf_bridge.SGD/1"


def parse_optim_args(optim_args: str | None) -> dict:
    """transformers' ``optim_args`` string ``"momentum=0.9,nesterov=True"`` -> SGD keywords."""
    out = {}
    for item in (optim_args or "").replace(" ", "").split(","):
        if not item:
            continue
        key, _, value = item.partition("=")
        if key in ("momentum", "dampening", "weight_decay"):
            out[key] = float(value)
        elif key == "nesterov":
            out[key] = value.lower() in ("true", "1", "yes")
        else:
            raise ValueError(f"optim_args: {key!r} is not an SGD option on MLX (momentum, dampening, weight_decay, "
                             "nesterov).")
    return out


class SGD(AdamW):
    """torch.optim.SGD semantics with HF's parameter groups; state = momentum buffers (fp32)."""

    def __init__(self, groups, momentum=0.0, dampening=0.0, nesterov=False):
        super().__init__(groups)
        self.momentum, self.dampening, self.nesterov = float(momentum), float(dampening), bool(nesterov)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening (torch's rule).")
        self.buffers: dict[str, mx.array] = {}

    @classmethod
    def for_model(cls, model, learning_rate, weight_decay=0.0, optim_args=None, lr_mapping=None):
        options = parse_optim_args(optim_args)
        if "weight_decay" in options:  # transformers passes it as a default; its groups keep their own
            options.pop("weight_decay")
        groups = AdamW.for_model(model, learning_rate, weight_decay, lr_mapping=lr_mapping).groups
        return cls(groups, **options)

    def compute(self, params, grads, lr_factor, grad_scale=None):
        new_params, new_buffers = {}, {}
        for name, p in params.items():
            group = self.groups[self._group_of[name]]
            g = grads[name].astype(mx.float32)
            if grad_scale is not None:
                g = g * grad_scale
            if group["weight_decay"]:
                g = g + group["weight_decay"] * p
            if self.momentum:
                buf = self.buffers.get(name)
                buf = g if buf is None else self.momentum * buf + (1 - self.dampening) * g
                new_buffers[name] = buf
                g = g + self.momentum * buf if self.nesterov else buf
            new_params[name] = p - (group["lr"] * lr_factor) * g
        return new_params, new_buffers

    def commit(self, buffers):
        self.buffers = buffers
        self.step += 1

    def arrays(self):
        return list(self.buffers.values())

    def state_tensors(self):
        return {f"momentum_buffer.{k}": v for k, v in self.buffers.items()}

    def state_json(self):
        return {"format": FORMAT, "step": self.step, "momentum": self.momentum, "dampening": self.dampening,
                "nesterov": self.nesterov, "param_groups": [dict(g) for g in self.groups]}

    def load_state(self, meta, tensors):
        if meta.get("format") != FORMAT:
            raise ValueError(f"optimizer state has format {meta.get('format')!r}; expected {FORMAT} (optim='sgd')")
        if [sorted(g["params"]) for g in meta["param_groups"]] != [sorted(g["params"]) for g in self.groups]:
            raise ValueError("The checkpoint's optimizer groups do not match this model's trainable parameters; "
                             "resume with the same setup.")
        self.step = int(meta["step"])
        prefix = "momentum_buffer."
        self.buffers = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

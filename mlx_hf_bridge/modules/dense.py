"""sentence-transformers 6's ``base.modules.Dense`` on MLX: PyLate's Dense plus ST 6's feature names."""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx
import mlx.nn as nn

from ..colbert.modules import ACTIVATIONS, IDENTITY
from ..colbert.modules import Dense as _PyLateDense
from ..errors import read_json
from ..loading import check_weights_match, load_weights
from .normalize import write_module_config

TANH = "torch.nn.modules.activation.Tanh"
_MLX_ACTIVATIONS = {id(mx.tanh): TANH, id(nn.relu): "torch.nn.modules.activation.ReLU",
                    id(nn.gelu): "torch.nn.modules.activation.GELU", id(mx.sigmoid): "torch.nn.modules.activation.Sigmoid",
                    id(nn.silu): "torch.nn.modules.activation.SiLU"}
CONFIG_KEYS = ("in_features", "out_features", "bias", "activation_function", "module_input_name",
               "module_output_name", "use_residual")


def activation_name(activation) -> str:
    """ST 6 accepts an activation module; the bridge keeps torch's dotted name (as saved in config.json)."""
    if activation is None:
        return IDENTITY
    if isinstance(activation, str):
        name = activation
    elif id(activation) in _MLX_ACTIVATIONS:
        name = _MLX_ACTIVATIONS[id(activation)]
    else:  # e.g. torch.nn.Tanh() from a script: its class names the same function
        cls = type(activation)
        name = f"{cls.__module__}.{cls.__name__}"
        name = {"mlx.nn.layers.activations.Tanh": TANH}.get(name, name)
    if name not in ACTIVATIONS:
        raise ValueError(f"Unsupported Dense activation {name!r}; supported on MLX: {sorted(ACTIVATIONS)}.")
    return name


class Dense(_PyLateDense):
    """``Dense(in_features, out_features, bias=True, activation_function=Tanh, ..., module_input_name=
    "sentence_embedding", module_output_name=None, use_residual=False)`` with ST 6's defaults."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation_function=TANH,
        init_weight=None,
        init_bias=None,
        module_input_name: str = "sentence_embedding",
        module_output_name: str | None = None,
        use_residual: bool = False,
    ):
        super().__init__(in_features, out_features, bias, activation_name(activation_function),
                         init_weight, init_bias, use_residual)
        self.module_input_name = module_input_name
        self.module_output_name = module_output_name if module_output_name is not None else module_input_name

    def __call__(self, features: dict, task=None) -> dict:
        x = features[self.module_input_name]
        out = ACTIVATIONS[self.activation_function](self.linear(x))
        if self.use_residual:
            out = out + (self.residual(x) if "residual" in self else x)
        return {**features, self.module_output_name: out}

    def get_embedding_dimension(self) -> int:
        return self.out_features

    def get_config_dict(self) -> dict:
        config = {**super().get_config_dict(), "module_input_name": self.module_input_name,
                  "module_output_name": self.module_output_name}
        if not self.use_residual:  # ST 6 omits it at its default
            config.pop("use_residual")
        return {k: config[k] for k in CONFIG_KEYS if k in config}

    def _write_config(self, folder):
        # inside PyLate Dense's atomic save (weights under linear.* / residual.*, as ST 6 names them)
        write_module_config(folder, self.get_config_dict())

    @staticmethod
    def load(input_path, init_defaults=None, drop_unknown: bool = False) -> "Dense":
        """A saved Dense folder; ``init_defaults`` fill keys the config lacks (ST 6's hook). Unknown
        keys are refused, or dropped with ``drop_unknown`` (ST 6 drops them from legacy saves)."""
        input_path = Path(input_path)
        config = dict(read_json(input_path / "config.json", "the Dense module's settings"))
        unknown = sorted(set(config) - set(CONFIG_KEYS))
        if unknown and drop_unknown:
            config = {k: v for k, v in config.items() if k in CONFIG_KEYS}
        elif unknown:
            raise ValueError(
                f"{input_path / 'config.json'}: unknown Dense setting(s) {unknown}; ST 6's Dense accepts {list(CONFIG_KEYS)}."
            )
        for key, value in (init_defaults or {}).items():
            config.setdefault(key, value)
        config.setdefault("activation_function", TANH)  # ST 6's default when the key is absent
        dense = Dense(**config)
        weights = load_weights(input_path)
        check_weights_match(dense, weights, input_path, config_name="the Dense config.json")
        dense.load_weights([(k, v.astype(mx.float32)) for k, v in weights.items()], strict=True)
        return dense

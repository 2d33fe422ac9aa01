"""sentence-transformers 6's ``base.modules.Normalize``: L2 over the last axis of one feature."""

from __future__ import annotations

import json
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn

from ..colbert.loss_common import normalize
from ..errors import read_json


def write_module_config(output_path, config: dict):
    """A module's ``config.json`` as ST 6's ``Module.save_config`` writes it (indent 4)."""
    Path(output_path).mkdir(parents=True, exist_ok=True)
    (Path(output_path) / "config.json").write_text(json.dumps(config, indent=4))


class Normalize(nn.Module):
    """``Normalize(module_input_name="sentence_embedding", module_output_name=None)``.

    As in ST 6, a missing input feature is a no-op (a multi-vector model has no ``sentence_embedding``)."""

    def __init__(self, module_input_name: str = "sentence_embedding", module_output_name: str | None = None):
        super().__init__()
        self.module_input_name = module_input_name
        self.module_output_name = module_output_name if module_output_name is not None else module_input_name

    def __call__(self, features: dict, task=None) -> dict:
        x = features.get(self.module_input_name)
        if x is None:
            return features
        # torch's F.normalize, with its zero (not NaN) gradient at all-zero rows (packed padding)
        return {**features, self.module_output_name: normalize(x)}

    def get_config_dict(self) -> dict:
        return {"module_input_name": self.module_input_name, "module_output_name": self.module_output_name}

    def save(self, output_path):
        write_module_config(output_path, self.get_config_dict())

    @staticmethod
    def load(input_path) -> "Normalize":
        path = Path(input_path) / "config.json"
        # ST 6 builds the default Normalize when the folder has no config (e.g. a Hub repo without the empty folder)
        config = read_json(path, "the Normalize module's settings") if path.exists() else {}
        unknown = sorted(set(config) - {"module_input_name", "module_output_name"})
        if unknown:
            raise ValueError(f"{path}: unknown Normalize setting(s) {unknown}; ST 6 accepts module_input_name, module_output_name.")
        return Normalize(**config)

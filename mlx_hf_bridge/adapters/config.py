"""LoRA settings under PEFT's ``LoraConfig`` field names, from a peft ``LoraConfig`` (duck-typed: peft is
never imported here), a plain dict (an ``adapter_config.json``) or :class:`LoraConfig` below.

What the bridge reproduces: ``r``, ``lora_alpha``, ``lora_dropout``, ``use_rslora``, ``target_modules``
(list / set = suffix match, str = full regex match, ``"all-linear"``, ``None`` = PEFT's per-architecture
default), ``exclude_modules``, ``init_lora_weights=True``, ``bias="none"``, ``inference_mode``. Every other
option PEFT offers is refused by name when set away from its default (never silently ignored).
"""

from __future__ import annotations

import dataclasses
import math

# PEFT's TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING for the bridge's backbones (peft 0.21)
DEFAULT_TARGETS = {
    "bert": ["query", "value"], "roberta": ["query", "value"], "xlm-roberta": ["query", "value"],
    "qwen3": ["q_proj", "v_proj"], "gemma3_text": ["q_proj", "v_proj"],
}

# options the bridge does not implement, with the value that means "off" in PEFT
_OFF = {
    "fan_in_fan_out": False, "bias": "none", "modules_to_save": None, "layers_to_transform": None,
    "layers_pattern": None, "rank_pattern": {}, "alpha_pattern": {}, "use_dora": False, "lora_bias": False,
    "target_parameters": None, "layer_replication": None, "trainable_token_indices": None, "use_qalora": False,
    "loftq_config": {}, "eva_config": None, "corda_config": None, "megatron_config": None, "use_bdlora": None,
    "alora_invocation_tokens": None, "arrow_config": None, "kasa_config": None, "lora_ga_config": None,
    "velora_config": None, "monteclora_config": None,
}
# accepted and carried into adapter_config.json, no effect on the math
_PASSIVE = ("task_type", "peft_type", "auto_mapping", "peft_version", "base_model_name_or_path", "revision",
            "megatron_core", "runtime_config", "qalora_group_size", "ensure_weight_tying")
_USED = ("r", "lora_alpha", "lora_dropout", "use_rslora", "target_modules", "exclude_modules",
         "init_lora_weights", "inference_mode")


@dataclasses.dataclass
class LoraConfig:
    """PEFT's ``LoraConfig`` fields the bridge implements (same names, same defaults)."""

    r: int = 8
    lora_alpha: float = 8
    lora_dropout: float = 0.0
    target_modules: list | str | None = None
    exclude_modules: list | str | None = None
    use_rslora: bool = False
    init_lora_weights: bool = True
    inference_mode: bool = False
    bias: str = "none"
    task_type: str | None = None
    base_model_name_or_path: str | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class LoraSettings:
    r: int
    lora_alpha: float
    lora_dropout: float
    use_rslora: bool
    target_modules: list | str | None
    exclude_modules: list | str | None
    inference_mode: bool
    saved: dict  # everything, as adapter_config.json writes it

    @property
    def scaling(self) -> float:
        return self.lora_alpha / (math.sqrt(self.r) if self.use_rslora else self.r)


def _as_dict(config) -> dict:
    if isinstance(config, dict):
        return dict(config)
    if dataclasses.is_dataclass(config):  # peft's LoraConfig and ours are dataclasses
        return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    raise TypeError(f"adapter config: expected peft's LoraConfig, mlx_hf_bridge.adapters.LoraConfig or a dict, "
                    f"got {type(config).__name__}.")


def _plain(value):
    if isinstance(value, (set, frozenset, tuple)):
        return sorted(value)
    value = getattr(value, "value", value)  # peft's enums (PeftType.LORA, TaskType...)
    return value


def lora_settings(config) -> LoraSettings:
    """Validate ``config`` and return what the LoRA layers need; a clear error for anything else."""
    data = {k: _plain(v) for k, v in _as_dict(config).items()}
    peft_type = data.get("peft_type", "LORA")
    if peft_type not in (None, "LORA"):
        raise ValueError(f"adapter config: peft_type={peft_type!r}; the bridge implements LoRA only (peft_type 'LORA').")
    unknown = sorted(set(data) - set(_OFF) - set(_PASSIVE) - set(_USED))
    if unknown:
        raise ValueError(f"adapter config: unknown LoRA option(s) {unknown}; the bridge knows PEFT's LoraConfig fields.")
    for key, off in _OFF.items():
        value = data.get(key, off)
        if value not in (off, None) and not (off is None and value in ({}, [])):
            raise ValueError(
                f"adapter config: {key}={value!r} is not supported on MLX (the bridge's LoRA implements r, lora_alpha, "
                f"lora_dropout, use_rslora, target_modules, exclude_modules); set {key}={off!r} or remove it."
            )
    r = data.get("r", 8)
    if not isinstance(r, int) or isinstance(r, bool) or r <= 0:
        raise ValueError(f"adapter config: r={r!r}; the LoRA rank must be a positive int (e.g. r=8).")
    alpha = data.get("lora_alpha", 8)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise ValueError(f"adapter config: lora_alpha={alpha!r} must be a number (e.g. lora_alpha=16).")
    dropout = data.get("lora_dropout", 0.0)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"adapter config: lora_dropout={dropout!r} must be a probability in [0, 1).")
    init = data.get("init_lora_weights", True)
    if init is not True:
        raise ValueError(
            f"adapter config: init_lora_weights={init!r} is not supported on MLX; the bridge initialises as PEFT's "
            "default (True: A kaiming-uniform, B zeros). Set init_lora_weights=True and load other weights with "
            "load_adapter()."
        )
    targets = data.get("target_modules")
    if isinstance(targets, list) and not all(isinstance(t, str) for t in targets):
        raise ValueError(f"adapter config: target_modules={targets!r} must be module names (str).")
    data["target_modules"], data["exclude_modules"] = targets, data.get("exclude_modules")
    data.pop("runtime_config", None)  # peft's runtime-only settings, which its save leaves out too
    data.setdefault("peft_type", "LORA")
    return LoraSettings(r, alpha, float(dropout), bool(data.get("use_rslora", False)), targets,
                        data["exclude_modules"], bool(data.get("inference_mode", False)), data)

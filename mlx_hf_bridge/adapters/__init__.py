"""LoRA / PEFT adapters on the MLX backbones (PEFT's names, files and math)."""

from .config import LoraConfig, lora_settings
from .lora import LoraLinear
from .mixin import AdapterMixin, has_adapter

__all__ = ["AdapterMixin", "LoraConfig", "LoraLinear", "has_adapter", "lora_settings"]

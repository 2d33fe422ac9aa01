"""sentence-transformers' PEFT spelling (``PeftAdapterMixin``) on the bridge's models whose backbone is
``self.transformer.auto_model``: dense ``SentenceTransformer``, ST 6 ``MultiVectorEncoder``, PyLate ``ColBERT``.

One adapter, named ``"default"`` as PEFT names it. ``add_adapter`` freezes the whole backbone as PEFT does
(heads such as Dense stay trainable, as in ST, where PEFT wraps only the transformers model).
"""

from __future__ import annotations

from . import files, lora
from .config import lora_settings

ADAPTER_NAME = "default"


def has_adapter(backbone) -> bool:
    return getattr(backbone, "_lora_config", None) is not None


def attach_adapter_folder(backbone, folder) -> None:
    files.load_adapter_folder(backbone, folder)
    object.__setattr__(backbone, "_lora_config", files.read_adapter_config(folder))


class AdapterMixin:
    def _adapter_backbone(self):
        transformer = getattr(self, "transformer", None)
        backbone = getattr(transformer, "auto_model", None)
        if backbone is None:
            raise ValueError(
                f"{type(self).__name__}: adapters need a Transformer backbone as the first module (this model starts "
                f"with {type(transformer).__name__}); PEFT adapters wrap a transformers model's Linear layers."
            )
        return backbone

    def _check_adapter_name(self, adapter_name):
        if adapter_name not in (None, ADAPTER_NAME):
            raise ValueError(f"adapter_name={adapter_name!r}: the bridge holds one adapter, named {ADAPTER_NAME!r}.")

    def add_adapter(self, adapter_config, adapter_name: str | None = None) -> None:
        """A fresh LoRA adapter (peft's ``LoraConfig``, a dict of its fields, or ``mlx_hf_bridge.adapters.LoraConfig``)."""
        self._check_adapter_name(adapter_name)
        backbone = self._adapter_backbone()
        settings = lora_settings(adapter_config)  # every check before the model changes
        if has_adapter(backbone):
            raise ValueError(f"Adapter with name {ADAPTER_NAME} already exists. Please use a different name.")
        lora.inject(backbone, settings)
        saved = dict(settings.saved)
        if not saved.get("base_model_name_or_path"):
            saved["base_model_name_or_path"] = getattr(self.transformer, "model_name_or_path", None) or getattr(
                self, "model_name_or_path", None)
        object.__setattr__(backbone, "_lora_config", saved)

    def load_adapter(self, peft_model_id=None, adapter_name: str | None = None, **_hub) -> None:
        """A saved PEFT adapter folder (``adapter_config.json`` + ``adapter_model.safetensors``) onto this model."""
        from ..loading import resolve_path

        self._check_adapter_name(adapter_name)
        backbone = self._adapter_backbone()
        if has_adapter(backbone):
            raise ValueError(f"Adapter with name {ADAPTER_NAME} already exists; the bridge holds one adapter.")
        attach_adapter_folder(backbone, resolve_path(peft_model_id, _hub.get("revision"), _hub.get("token")))

    def active_adapters(self) -> list[str]:
        backbone = self._adapter_backbone()
        if not has_adapter(backbone):
            raise ValueError("No adapter loaded. Please load an adapter first.")
        enabled = any(layer.adapter_enabled for layer in lora.lora_layers(backbone).values())
        return [ADAPTER_NAME] if enabled else []

    def set_adapter(self, adapter_name) -> None:
        self._check_adapter_name(adapter_name)
        self.enable_adapters()

    def enable_adapters(self) -> None:
        self._require_adapter()
        lora.set_enabled(self._adapter_backbone(), True)

    def disable_adapters(self) -> None:
        self._require_adapter()
        lora.set_enabled(self._adapter_backbone(), False)

    def get_adapter_state_dict(self, adapter_name: str | None = None) -> dict:
        """PEFT's tensors, keyed as ``adapter_model.safetensors`` stores them."""
        self._check_adapter_name(adapter_name)
        self._require_adapter()
        return lora.adapter_state(self._adapter_backbone())

    def merge_and_unload(self):
        """Fold the adapter into the base weights (PEFT's ``merge_and_unload``); the model then saves as a plain
        folder. As with PEFT, the base parameters stay frozen: ``model.transformer.auto_model.unfreeze()`` to train them."""
        self._require_adapter()
        backbone = self._adapter_backbone()
        lora.merge_and_unload(backbone)
        object.__setattr__(backbone, "_lora_config", None)
        return self

    def unload(self):
        """Drop the adapter, base weights unchanged (PEFT's ``unload``; the base stays frozen, as there)."""
        self._require_adapter()
        backbone = self._adapter_backbone()
        lora.unload(backbone)
        object.__setattr__(backbone, "_lora_config", None)
        return self

    def _require_adapter(self):
        if not has_adapter(self._adapter_backbone()):
            raise ValueError("No adapter loaded. Please load an adapter first (add_adapter / load_adapter).")

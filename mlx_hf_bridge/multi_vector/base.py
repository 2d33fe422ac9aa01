"""The sequential-model surface PyLate's ``ColBERT`` and ST 6's ``MultiVectorEncoder`` share: a
Transformer first, then per-token modules. Each subclass names its modules in ``_module_list``."""

from __future__ import annotations

import mlx.core as mx


class MultiVectorModule:
    """Mixed in before ``nn.Module``: indexing, length, tokenizer, device and state-dict access."""

    def _module_list(self) -> list:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self._module_list())

    def __getitem__(self, idx):
        if isinstance(idx, str):  # nn.Module is a dict: keep key access working
            return super().__getitem__(idx)
        return self._module_list()[idx]

    def _first_module(self):
        return self._module_list()[0]

    @property
    def tokenizer(self):
        return self.transformer.tokenizer

    @property
    def max_seq_length(self):
        return self.transformer.max_seq_length

    @property
    def device(self) -> str:
        from ..backend import device_name

        return device_name()  # "cpu" / "gpu", with torch.device's .type for autocast

    def to(self, *args, **kwargs):
        return self  # MLX arrays live in unified memory; there is nothing to move

    def half(self):
        return self

    def state_dict(self) -> dict:
        from mlx.utils import tree_flatten

        return dict(tree_flatten(self.parameters()))

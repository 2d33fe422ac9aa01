"""``AutoModel.from_pretrained(path)`` -> an MLX encoder with ``save_pretrained``."""

from __future__ import annotations

import types

from ..loading import load_encoder, save_encoder


class AutoModel:
    """Mirror of ``transformers.AutoModel`` for the encoder architectures in :mod:`mlx_hf_bridge.models`.

    The returned module is called as ``model(input_ids, attention_mask)`` and gives the last hidden
    state ``(B, L, H)``; ``model.save_pretrained(path)`` writes a folder ``transformers.AutoModel``
    loads; ``model.tokenizer`` is the folder's tokenizer.
    """

    def __init__(self):
        raise OSError("Use AutoModel.from_pretrained(path).")

    @classmethod
    def from_pretrained(cls, name_or_path, revision=None, token=None, cache_dir=None, local_files_only=False,
                        trust_remote_code=False):
        model, _config, tokenizer, _folder = load_encoder(
            name_or_path, revision=revision, token=token, cache_folder=cache_dir, local_files_only=local_files_only,
            trust_remote_code=trust_remote_code,
        )
        model.tokenizer = tokenizer
        model.save_pretrained = types.MethodType(
            lambda self, path: save_encoder(self, path, self.tokenizer), model
        )
        return model

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


class _AutoTaskModel:
    """``transformers.AutoModelFor<Task>.from_pretrained`` on MLX: the head for the folder's
    ``model_type`` (``mlx_hf_bridge.tasks``), HF's keyword arguments (``num_labels``, ``id2label``,
    ``label2id``, ``problem_type``, ``classifier_pooling``, any config field)."""

    task = ""

    def __init__(self):
        raise OSError(f"Use {type(self).__name__}.from_pretrained(path).")

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        from ..tasks.loading import load_task_model

        return load_task_model(cls.task, pretrained_model_name_or_path, *model_args, **kwargs)

    @classmethod
    def from_config(cls, config):
        """A randomly initialised model (HF's ``_init_weights`` distributions), as ``from_config``."""
        from ..tasks import head_class
        from ..tasks.loading import initialise_all

        return initialise_all(head_class(config.model_type, cls.task)(config))


class AutoModelForSequenceClassification(_AutoTaskModel):
    task = "sequence-classification"


class AutoModelForMaskedLM(_AutoTaskModel):
    task = "masked-lm"


class AutoModelForTokenClassification(_AutoTaskModel):
    task = "token-classification"

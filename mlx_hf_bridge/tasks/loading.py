"""``from_pretrained`` / ``save_pretrained`` for the task models, as transformers does them.

Loading maps a checkpoint's keys onto the task model (a base ``BertModel`` / ``ModernBertModel``
folder, another head's folder or this head's own), drops keys the head does not have (HF's
"unexpected"), and initialises missing *head* weights (and BERT's pooler) the way the family's
``_init_weights`` does, with one warning listing them (HF's "newly initialized" report). A missing
backbone weight or a shape mismatch is an error naming the keys and the fix (HF would silently
re-initialise encoder layers, or fail on shapes).
"""

from __future__ import annotations

import logging
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten

from ..io_utils import save_folder, write_safetensors
from ..loading import load_config, load_weights, resolve_path
from ..models import get_architecture
from . import head_class

logger = logging.getLogger("mlx_hf_bridge.transformers")
NEWLY_INITIALIZED = (
    "Some weights of {cls} were not initialized from the model checkpoint at {path} and are newly initialized: "
    "{keys}\nYou should probably TRAIN this model on a down-stream task to be able to use it for predictions and inference."
)


def _config_for(folder: Path, config, trust_remote_code: bool, config_kwargs: dict):
    load_config(folder, trust_remote_code=trust_remote_code)  # the bridge's checks (model_type, remote code)
    if config is not None:
        for key, value in config_kwargs.items():
            setattr(config, key, value)
        return config
    from transformers import AutoConfig

    config, unused = AutoConfig.from_pretrained(str(folder), return_unused_kwargs=True, **config_kwargs)
    if unused:
        raise TypeError(
            f"from_pretrained got keyword arguments that are neither config fields nor loading options: "
            f"{sorted(unused)}. transformers passes these to the model's __init__, which rejects them too; remove them."
        )
    return config


def checkpoint_to_task_keys(model, weights: dict) -> dict:
    """Checkpoint tensors under the task model's names (``bert.`` / ``model.`` + backbone, head keys)."""
    arch = get_architecture(model.config.model_type)
    prefix = model.base_model_prefix
    head_roots = {name.split(".", 1)[0] for name, _ in tree_flatten(model.parameters())} - {prefix}
    out = {f"{prefix}.{k}": v for k, v in arch.Model.sanitize(weights).items()}
    for key, value in weights.items():
        if key.split(".", 1)[0] in head_roots:
            out[key] = value
    return out


def load_task_model(task: str, name_or_path, *model_args, config=None, revision=None, token=None, cache_dir=None,
                    local_files_only=False, trust_remote_code=False, dtype=None, torch_dtype=None, **config_kwargs):
    # dtype / torch_dtype are accepted and the weights kept in float32: they are the engine's master weights
    # (half-precision compute is the training arguments' bf16 / fp16)
    if model_args:
        raise TypeError(f"from_pretrained takes the path and keyword arguments only, got extra {model_args!r}.")
    folder = resolve_path(name_or_path, revision=revision, token=token, cache_folder=cache_dir,
                          local_files_only=local_files_only)
    for ignored in ("device_map", "attn_implementation", "low_cpu_mem_usage"):
        config_kwargs.pop(ignored, None)  # torch placement options: meaningless on MLX
    config = _config_for(folder, config, trust_remote_code, config_kwargs)
    cls = head_class(config.model_type, task)
    model = cls(config)
    weights = checkpoint_to_task_keys(model, load_weights(folder))
    expected = dict(tree_flatten(model.parameters()))
    tied = getattr(model, "tied_keys", {})
    for ckpt_key, target in tied.items():  # old checkpoints store only the tied copy
        if target in expected and target not in weights and ckpt_key in weights:
            weights[target] = weights[ckpt_key]
    wrong = [f"{k}: {tuple(v.shape)} in the checkpoint, {tuple(expected[k].shape)} for this model"
             for k, v in weights.items() if k in expected and tuple(v.shape) != tuple(expected[k].shape)]
    if wrong:
        raise ValueError(
            f"The weights in {folder} do not fit {cls.hf_architecture} built from its config ({'; '.join(wrong[:4])}). "
            "A classifier trained with another num_labels cannot be loaded as is: pass the checkpoint's num_labels, "
            "or load its base model and train a new head."
        )
    missing = [k for k in expected if k not in weights]
    backbone_missing = [k for k in missing if k.startswith(model.base_model_prefix + ".")
                        and not k.startswith(f"{model.base_model_prefix}.pooler.")]
    if backbone_missing:
        raise ValueError(
            f"{folder} lacks encoder weights {cls.hf_architecture} needs: {', '.join(backbone_missing[:5])}"
            f"{' ...' if len(backbone_missing) > 5 else ''}. The config and the weights must come from the same "
            "model: restore the original files or re-save the model."
        )
    for key in missing:
        weights[key] = model.init_parameter(key, tuple(expected[key].shape))
    if missing:
        logger.warning(NEWLY_INITIALIZED.format(cls=cls.hf_architecture, path=name_or_path, keys=sorted(missing)))
    weights = {k: weights[k].astype(mx.float32) if mx.issubdtype(weights[k].dtype, mx.floating) else weights[k]
               for k in expected}
    model.load_weights(list(weights.items()), strict=True)
    model.config._name_or_path = str(name_or_path)
    model.eval()  # like transformers' from_pretrained
    mx.eval(model.parameters())
    object.__setattr__(model, "newly_initialized_keys", sorted(missing))  # a plain attribute, not an MLX child
    return model


def task_state(model) -> dict:
    """HF's saved tensors: every parameter under its HF name (a tied decoder has none of its own,
    exactly the keys transformers writes)."""
    return dict(tree_flatten(model.parameters()))


def save_task_model(model, save_directory, state_dict=None, safe_serialization=True, **_ignored):
    from ..engine.step import refuse_if_damaged

    if not safe_serialization:
        raise ValueError("save_pretrained writes safetensors only (torch pickles are not written on MLX); "
                         "drop safe_serialization=False.")
    refuse_if_damaged(model, save_directory)
    state = dict(state_dict) if state_dict is not None else task_state(model)

    def write(folder: Path):
        config = model.config
        config.architectures = [model.hf_architecture]
        config.vocab_size = int(model.get_input_embeddings().weight.shape[0])
        config.save_pretrained(str(folder))
        write_safetensors(Path(folder) / "model.safetensors", state, metadata={"format": "pt"})

    save_folder(save_directory, write, size_hint=sum(int(v.nbytes) for v in state.values()))


def initialise_all(model):
    """Every parameter drawn as the family's ``_init_weights`` draws it (``from_config``); embeddings
    and encoder weights ~ N(0, initializer_range) (BERT) or the family's truncated normal."""
    fresh = {k: model.init_parameter(k, tuple(v.shape)) for k, v in tree_flatten(model.parameters())}
    model.load_weights(list(fresh.items()), strict=True)
    model.eval()
    mx.eval(model.parameters())
    return model

"""``SentenceTransformerTrainingArguments`` / ``MultiVectorEncoderTrainingArguments`` for MLX.

The fields are exactly those of the *installed* transformers' ``TrainingArguments`` (read from its
source by ``hf_fields``, without importing torch: see there why) plus sentence-transformers' own,
with the same defaults. So a script written for transformers 5.3 or 5.24 gets the arguments that
version has: 5.24's ``activation_checkpointing`` works (and, like 5.24, keeps the deprecated
``gradient_checkpointing`` mirrored, which is what the engine reads), while ``logging_dir``, removed
in 5.24, raises TypeError with the fix. ``__post_init__`` repeats the real classes' normalisation and
validation that does not depend on torch devices (strategies, step multiples for
``load_best_model_at_end``, fp16 + bf16, ...); tests/test_st_trainer_args.py checks each against the
real classes on both tested transformers.

Fields the MLX engine acts on are used; torch/accelerate/hub knobs are accepted and stored so
existing scripts run unchanged, and a few that would change results warn once when set. Arguments
transformers 5 removed (``no_cuda``, ``use_mps_device``, ``overwrite_output_dir``,
``evaluation_strategy``) are accepted with a one-line warning instead of a TypeError.
``MultiVectorEncoderTrainingArguments`` (ST 6) subclasses ours, so the trainer accepts it; in ST 6
both subclass ``BaseTrainingArguments`` instead (``base.training_args`` spells that name too).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import os
import warnings
from enum import Enum

from .hf_fields import FieldSpec, installed_fields, transformers_version

logger = logging.getLogger(__name__)


class BatchSamplers(str, Enum):
    BATCH_SAMPLER = "batch_sampler"
    NO_DUPLICATES = "no_duplicates"
    NO_DUPLICATES_HASHED = "no_duplicates_hashed"
    GROUP_BY_LABEL = "group_by_label"

    def __str__(self):
        return self.value


class MultiDatasetBatchSamplers(str, Enum):
    ROUND_ROBIN = "round_robin"
    PROPORTIONAL = "proportional"

    def __str__(self):
        return self.value


REMOVED = {  # transformers 5 removed these; old PyLate scripts still pass them
    "no_cuda": "no_cuda was removed in transformers 5; use use_cpu=True (ignored here).",
    "use_mps_device": "use_mps_device was removed in transformers 5; MLX picks the GPU itself (ignored).",
    "overwrite_output_dir": "overwrite_output_dir was removed in transformers 5 (ignored; existing checkpoints are kept).",
    "evaluation_strategy": "evaluation_strategy was renamed eval_strategy in transformers 5; using it as eval_strategy.",
}
# Removed later in 5.x: the real class raises TypeError, and so do we, with the replacement.
GONE = {
    "logging_dir": "transformers deprecated it in 5.x (5.3 still accepts it) and has since removed it; set the "
                   "TENSORBOARD_LOGGING_DIR environment variable instead",
}
# Accepted but without an MLX equivalent; these would change results, so setting them warns.
WARN_IF_SET = {
    "label_smoothing_factor": 0.0, "neftune_noise_alpha": None, "auto_find_batch_size": False,
    "use_liger_kernel": False, "deepspeed": None, "fsdp": None, "optim_target_modules": None,
    "push_to_hub": False, "average_tokens_across_devices": True, "optim_args": None,
}
# sentence-transformers' own fields (ST 5.3 and 6.2 alike); warmup_ratio is ST's re-added copy.
ST_FIELDS = (
    FieldSpec("prompts", "str | dict | None", default=None),
    FieldSpec("batch_sampler", "BatchSamplers | str | Callable", default=BatchSamplers.BATCH_SAMPLER),
    FieldSpec("multi_dataset_batch_sampler", "MultiDatasetBatchSamplers | str | Callable",
              default=MultiDatasetBatchSamplers.PROPORTIONAL),
    FieldSpec("router_mapping", "str | dict | None", default_factory=dict),
    FieldSpec("learning_rate_mapping", "str | dict | None", default_factory=dict),
    FieldSpec("warmup_ratio", "float | None", default=None),
)
MULTI_VECTOR_FIELDS = (FieldSpec("max_length", "int | dict[str, int] | None", default=None),)
_DICT_FIELDS = ("accelerator_config", "fsdp_config", "deepspeed", "gradient_checkpointing_kwargs",
                "activation_checkpointing_kwargs", "lr_scheduler_kwargs", "learning_rate_mapping", "prompts",
                "router_mapping", "max_length")
_STRATEGIES = {"logging_strategy": ("no", "steps", "epoch"), "eval_strategy": ("no", "steps", "epoch"),
               "save_strategy": ("no", "steps", "epoch", "best")}


def _make_fields(name: str, specs, base=None) -> type:
    """A dataclass of transformers' fields in their order, ST's replacing or following them."""
    merged = {} if base else {s.name: s for s in installed_fields() if s.init}
    merged.update({s.name: s for s in specs})
    fields = [(s.name, s.annotation, s.as_field()) for s in merged.values()]
    cls = dataclasses.make_dataclass(name, fields, bases=(base,) if base else ())
    cls.__module__ = __name__
    return cls


# transformers <= 5.3 turned an unset ``fsdp`` into [] (a list of options); 5.24 types it ``str | None``
# and leaves it unset.
_FSDP_IS_A_LIST = "list" in {s.name: s.annotation for s in installed_fields()}.get("fsdp", "")
_Fields = _make_fields("_Fields", ST_FIELDS)
_MultiVectorFields = _make_fields("_MultiVectorFields", MULTI_VECTOR_FIELDS, base=_Fields)


class SentenceTransformerTrainingArguments(_Fields):
    """Drop-in for ``sentence_transformers.SentenceTransformerTrainingArguments`` on MLX."""

    def __init__(self, *args, **kwargs):
        names = {f.name for f in dataclasses.fields(self)}
        legacy = {k: kwargs.pop(k) for k in list(kwargs) if k in REMOVED and k not in names}
        unknown = [k for k in kwargs if k not in names]
        if unknown:
            prefix = f"{type(self).__name__}.__init__() got an unexpected keyword argument {unknown[0]!r}"
            if unknown[0] in GONE:
                raise TypeError(f"{prefix}: {GONE[unknown[0]]} (installed: transformers {transformers_version()}).")
            hint = difflib.get_close_matches(unknown[0], sorted(names), n=1)
            raise TypeError(prefix + (f"; did you mean {hint[0]!r}?" if hint else ""))
        for name in legacy:
            logger.warning(REMOVED[name])
        if "evaluation_strategy" in legacy and "eval_strategy" not in kwargs:
            kwargs["eval_strategy"] = legacy["evaluation_strategy"]
        super().__init__(*args, **kwargs)
        self.__post_init__()

    def __post_init__(self):
        # ST: on transformers 5 a warmup_ratio folds into warmup_steps (a float < 1 is a ratio)
        if self.warmup_ratio is not None and self.warmup_steps == 0:
            logger.warning("warmup_ratio is deprecated in Transformers v5+; use warmup_steps (as a float) instead.")
            self.warmup_steps, self.warmup_ratio = self.warmup_ratio, None
        if self.output_dir is None:
            self.output_dir = "trainer_output"
        self.output_dir = os.path.expanduser(self.output_dir)
        for name in _DICT_FIELDS:
            value = getattr(self, name, None)
            if isinstance(value, str) and value.startswith("{"):
                setattr(self, name, json.loads(value))
        self._resolve_checkpointing_alias()
        if self.disable_tqdm is None:
            self.disable_tqdm = logging.getLogger("transformers").getEffectiveLevel() > logging.WARNING
        if isinstance(self.include_num_input_tokens_seen, bool):
            self.include_num_input_tokens_seen = "all" if self.include_num_input_tokens_seen else "no"
        for name in ("lr_scheduler_type", "optim", "hub_strategy", *_STRATEGIES):
            value = getattr(self, name)
            setattr(self, name, str(getattr(value, "value", value)))
        for name, allowed in _STRATEGIES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r} is not valid; use one of {list(allowed)}.")
        self.debug = self.debug.split() if isinstance(self.debug, str) else list(self.debug or [])
        if self.eval_strategy != "no":
            self.do_eval = True
        if self.eval_strategy == "steps" and not self.eval_steps:
            if self.logging_steps <= 0:
                raise ValueError("eval_strategy='steps' requires eval_steps or a positive logging_steps.")
            self.eval_steps = self.logging_steps
        needs_metric = self.load_best_model_at_end or self.lr_scheduler_type in ("reduce_lr_on_plateau", "greedy")
        if needs_metric and self.metric_for_best_model is None:
            self.metric_for_best_model = "loss"
        if self.greater_is_better is None and self.metric_for_best_model is not None:
            self.greater_is_better = not self.metric_for_best_model.endswith("loss")
        self._normalise_report_to()
        self._validate()
        if (self.torch_compile_mode is not None or self.torch_compile_backend is not None) and not self.torch_compile:
            self.torch_compile = True
        if self.use_cpu:
            self.dataloader_pin_memory = False
        if not self.fsdp and _FSDP_IS_A_LIST:
            self.fsdp = []
        for name, default in WARN_IF_SET.items():
            value = getattr(self, name, default)  # a field a later transformers dropped is simply absent
            if value != default and value not in ([], ""):
                logger.warning("%s=%r has no effect on MLX and is ignored.", name, value)
        self._sentence_transformers_post_init()
        if self.use_cpu:
            from .. import backend

            backend.use_cpu()

    def _resolve_checkpointing_alias(self):
        """transformers >= 5.24: ``gradient_checkpointing*`` are deprecated aliases of ``activation_checkpointing*``."""
        if not hasattr(self, "activation_checkpointing"):
            return
        for old, new in (("gradient_checkpointing", "activation_checkpointing"),
                         ("gradient_checkpointing_kwargs", "activation_checkpointing_kwargs")):
            if getattr(self, new) is None and getattr(self, old) is not None:
                warnings.warn(f"`{old}` is deprecated and will be removed in v6. Use `{new}` instead.", FutureWarning)
                setattr(self, new, getattr(self, old))
            setattr(self, old, getattr(self, new))
        if self.activation_checkpointing is None:
            self.activation_checkpointing = self.gradient_checkpointing = False

    def _normalise_report_to(self):
        """transformers' rule ("all": every installed integration); the engine builds the callbacks."""
        from ..engine.integrations import normalise_report_to

        self.report_to = normalise_report_to(self.report_to)

    def _validate(self):
        """transformers' ``_validate_args`` (the checks that do not depend on torch devices)."""
        if self.torch_empty_cache_steps is not None and not (
            isinstance(self.torch_empty_cache_steps, int) and self.torch_empty_cache_steps > 0
        ):
            raise ValueError(f"torch_empty_cache_steps must be an integer > 0, got {self.torch_empty_cache_steps}.")
        if self.logging_strategy == "steps" and self.logging_steps == 0:
            raise ValueError("logging_strategy='steps' requires a non-zero logging_steps.")
        for strategy, steps in (("logging_strategy", "logging_steps"), ("eval_strategy", "eval_steps"),
                                ("save_strategy", "save_steps")):
            value = getattr(self, steps)
            if getattr(self, strategy) == "steps" and value > 1:
                if value != int(value):
                    raise ValueError(f"{steps}={value}: use an integer when it is bigger than 1 (a float < 1 is a ratio).")
                setattr(self, steps, int(value))
        if self.load_best_model_at_end and self.save_strategy != "best":
            if self.eval_strategy != self.save_strategy:
                raise ValueError(
                    "load_best_model_at_end requires the save and eval strategy to match (or save_strategy='best'), "
                    f"got eval_strategy={self.eval_strategy!r} and save_strategy={self.save_strategy!r}."
                )
            if self.eval_strategy == "steps" and not _is_multiple(self.save_steps, self.eval_steps):
                raise ValueError(
                    f"load_best_model_at_end requires save_steps ({self.save_steps}) to be a round multiple of "
                    f"eval_steps ({self.eval_steps}); both as steps or both as ratios. Set e.g. "
                    f"save_steps={self.eval_steps}."
                )
        if self.fp16 and self.bf16:
            raise ValueError("At most one of fp16 and bf16 can be True, but not both.")
        if self.fp16_full_eval and self.bf16_full_eval:
            raise ValueError("At most one of fp16_full_eval and bf16_full_eval can be True, but not both.")
        if self.lr_scheduler_type in ("reduce_lr_on_plateau", "greedy") and self.eval_strategy == "no":
            raise ValueError(f"lr_scheduler_type={self.lr_scheduler_type!r} requires an eval_strategy other than 'no'.")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps={self.warmup_steps}: use an integer >= 0 or a ratio in [0, 1).")
        if self.dataloader_num_workers == 0 and self.dataloader_prefetch_factor is not None:
            raise ValueError("dataloader_prefetch_factor can only be set with dataloader_num_workers > 0.")
        if self.gradient_accumulation_steps < 1:
            raise ValueError(f"gradient_accumulation_steps={self.gradient_accumulation_steps} must be >= 1.")

    def _sentence_transformers_post_init(self):
        if isinstance(self.batch_sampler, str) and not isinstance(self.batch_sampler, BatchSamplers):
            self.batch_sampler = BatchSamplers(self.batch_sampler)
        if isinstance(self.multi_dataset_batch_sampler, str) and not isinstance(
            self.multi_dataset_batch_sampler, MultiDatasetBatchSamplers
        ):
            self.multi_dataset_batch_sampler = MultiDatasetBatchSamplers(self.multi_dataset_batch_sampler)
        for name in ("router_mapping", "learning_rate_mapping"):
            value = getattr(self, name)
            value = {} if value is None else value
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except json.JSONDecodeError:
                    value = None
            if not isinstance(value, dict):
                raise ValueError(f"{name} must be a dict (a JSON string of a dict also works), got {getattr(self, name)!r}.")
            setattr(self, name, value)
        self.prediction_loss_only = True  # as ST: losses give no logits
        self.ddp_broadcast_buffers = False

    # --- transformers' helpers ---------------------------------------------------------------
    @property
    def train_batch_size(self) -> int:
        return self.per_device_train_batch_size

    @property
    def eval_batch_size(self) -> int:
        return self.per_device_eval_batch_size

    @property
    def should_save(self) -> bool:
        return True

    def get_warmup_steps(self, num_training_steps: int) -> int:
        from ..engine.optim import warmup_steps_for

        return warmup_steps_for(self.warmup_steps, num_training_steps)

    def to_dict(self) -> dict:
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Enum):
                value = value.value
            elif callable(value) and not isinstance(value, (dict, list)):
                value = f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', repr(value))}"
            if f.name.endswith("_token") and value is not None:
                value = f"<{f.name.upper()}>"
            out[f.name] = value
        return out

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)

    def __repr__(self):
        body = ",\n".join(f"{k}={v!r}" for k, v in self.to_dict().items())
        return f"{type(self).__name__}(\n{body}\n)"

    __str__ = __repr__


def _is_multiple(save_steps, eval_steps) -> bool:
    """transformers' rule: both steps, or both ratios, compared after scaling by 1e6 as transformers does
    (0.3 % 0.1 is not 0 in floats, 300000.0 % 100000.0 is)."""
    if save_steps % eval_steps == 0:
        return True
    if eval_steps < 1 and save_steps < 1:
        return (save_steps * 1_000_000) % (eval_steps * 1_000_000) == 0
    return False


class MultiVectorEncoderTrainingArguments(SentenceTransformerTrainingArguments, _MultiVectorFields):
    """Drop-in for ST 6's ``MultiVectorEncoderTrainingArguments``: adds ``max_length`` (an int or
    ``{"query": n, "document": m}``), the cap applied when the trainer tokenizes training batches."""

    def __post_init__(self):
        super().__post_init__()
        if self.max_length is not None and not isinstance(self.max_length, (int, dict)):
            raise ValueError(f"max_length must be an int or a dict of task -> int, got {self.max_length!r}.")


BaseTrainingArguments = SentenceTransformerTrainingArguments  # ST 6's common base (see the module docstring)

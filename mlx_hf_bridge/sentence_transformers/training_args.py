"""``SentenceTransformerTrainingArguments`` for MLX: every field of ST 5.3 / transformers 5.3, same defaults.

Fields the MLX engine acts on are listed in ``USED``; torch/accelerate/hub knobs are accepted and
stored so existing scripts run unchanged, and a few that would change results warn once when set.
Arguments transformers 5 removed (``no_cuda``, ``use_mps_device``, ``overwrite_output_dir``,
``evaluation_strategy``) are accepted with a one-line warning instead of a TypeError.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

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
# Accepted but without an MLX equivalent; these would change results, so setting them warns.
WARN_IF_SET = {
    "label_smoothing_factor": 0.0, "neftune_noise_alpha": None, "auto_find_batch_size": False,
    "use_liger_kernel": False, "deepspeed": None, "fsdp": None, "optim_target_modules": None,
    "push_to_hub": False, "average_tokens_across_devices": True, "optim_args": None,
}


@dataclass
class _Fields:
    output_dir: str | None = None
    per_device_train_batch_size: int = 8
    num_train_epochs: float = 3.0
    max_steps: int = -1
    learning_rate: float = 5e-05
    lr_scheduler_type: str = "linear"
    lr_scheduler_kwargs: dict | str | None = None
    warmup_steps: float = 0
    optim: str = "adamw_torch_fused"
    optim_args: str | None = None
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-08
    optim_target_modules: Any = None
    gradient_accumulation_steps: int = 1
    average_tokens_across_devices: bool = True
    max_grad_norm: float = 1.0
    label_smoothing_factor: float = 0.0
    bf16: bool = False
    fp16: bool = False
    bf16_full_eval: bool = False
    fp16_full_eval: bool = False
    tf32: bool | None = None
    gradient_checkpointing: bool = False
    gradient_checkpointing_kwargs: dict | str | None = None
    torch_compile: bool = False  # on MLX: mx.compile the gradient step
    torch_compile_backend: str | None = None
    torch_compile_mode: str | None = None
    use_liger_kernel: bool = False
    liger_kernel_config: dict | None = None
    use_cache: bool = False
    neftune_noise_alpha: float | None = None
    torch_empty_cache_steps: int | None = None
    auto_find_batch_size: bool = False
    logging_strategy: str = "steps"
    logging_steps: float = 500
    logging_first_step: bool = False
    log_on_each_node: bool = True
    logging_nan_inf_filter: bool = True
    include_num_input_tokens_seen: str | bool = "no"
    log_level: str = "passive"
    log_level_replica: str = "warning"
    disable_tqdm: bool | None = None
    report_to: str | list[str] | None = "none"
    run_name: str | None = None
    project: str = "huggingface"
    trackio_space_id: str | None = "trackio"
    eval_strategy: str = "no"
    eval_steps: float | None = None
    eval_delay: float = 0
    per_device_eval_batch_size: int = 8
    prediction_loss_only: bool = False
    eval_on_start: bool = False
    eval_do_concat_batches: bool = True
    eval_use_gather_object: bool = False
    eval_accumulation_steps: int | None = None
    include_for_metrics: list[str] = field(default_factory=list)
    batch_eval_metrics: bool = False
    save_only_model: bool = False
    save_strategy: str = "steps"
    save_steps: float = 500
    save_on_each_node: bool = False
    save_total_limit: int | None = None
    enable_jit_checkpoint: bool = False
    push_to_hub: bool = False
    hub_token: str | None = None
    hub_private_repo: bool | None = None
    hub_model_id: str | None = None
    hub_strategy: str = "every_save"
    hub_always_push: bool = False
    hub_revision: str | None = None
    load_best_model_at_end: bool = False
    metric_for_best_model: str | None = None
    greater_is_better: bool | None = None
    ignore_data_skip: bool = False
    restore_callback_states_from_checkpoint: bool = False
    full_determinism: bool = False
    seed: int = 42
    data_seed: int | None = None
    use_cpu: bool = False
    accelerator_config: Any = None
    parallelism_config: Any = None
    dataloader_drop_last: bool = False
    dataloader_num_workers: int = 0
    dataloader_pin_memory: bool = True
    dataloader_persistent_workers: bool = False
    dataloader_prefetch_factor: int | None = None
    remove_unused_columns: bool = True
    label_names: list[str] | None = None
    train_sampling_strategy: str = "random"
    length_column_name: str = "length"
    ddp_find_unused_parameters: bool | None = None
    ddp_bucket_cap_mb: int | None = None
    ddp_broadcast_buffers: bool | None = None
    ddp_backend: str | None = None
    ddp_timeout: int = 1800
    fsdp: Any = None
    fsdp_config: Any = None
    deepspeed: Any = None
    debug: Any = ""
    skip_memory_metrics: bool = True
    do_train: bool = False
    do_eval: bool = False
    do_predict: bool = False
    resume_from_checkpoint: str | None = None
    warmup_ratio: float | None = None
    logging_dir: str | None = None
    local_rank: int = -1
    # sentence-transformers extras
    prompts: Any = None
    batch_sampler: Any = BatchSamplers.BATCH_SAMPLER
    multi_dataset_batch_sampler: Any = MultiDatasetBatchSamplers.PROPORTIONAL
    router_mapping: Any = field(default_factory=dict)
    learning_rate_mapping: Any = field(default_factory=dict)


_FIELD_NAMES = [f.name for f in dataclasses.fields(_Fields)]
_DICT_FIELDS = ("lr_scheduler_kwargs", "gradient_checkpointing_kwargs", "prompts", "router_mapping", "learning_rate_mapping")
_STRATEGIES = {"logging_strategy": ("no", "steps", "epoch"), "eval_strategy": ("no", "steps", "epoch"),
               "save_strategy": ("no", "steps", "epoch", "best")}


class SentenceTransformerTrainingArguments(_Fields):
    """Drop-in for ``sentence_transformers.SentenceTransformerTrainingArguments`` on MLX."""

    def __init__(self, *args, **kwargs):
        legacy = {k: kwargs.pop(k) for k in list(kwargs) if k in REMOVED}
        unknown = [k for k in kwargs if k not in _FIELD_NAMES]
        if unknown:
            hint = difflib.get_close_matches(unknown[0], _FIELD_NAMES, n=1)
            raise TypeError(
                f"{type(self).__name__}.__init__() got an unexpected keyword argument {unknown[0]!r}"
                + (f"; did you mean {hint[0]!r}?" if hint else "")
            )
        for name in legacy:
            logger.warning(REMOVED[name])
        if "evaluation_strategy" in legacy and "eval_strategy" not in kwargs:
            kwargs["eval_strategy"] = legacy["evaluation_strategy"]
        super().__init__(*args, **kwargs)
        self.__post_init__()

    def __post_init__(self):
        if self.output_dir is None:
            self.output_dir = "trainer_output"
        for name in ("lr_scheduler_type", "optim", "hub_strategy", *_STRATEGIES):
            value = getattr(self, name)
            setattr(self, name, str(getattr(value, "value", value)))
        for name, allowed in _STRATEGIES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r} is not valid; use one of {list(allowed)}.")
        for name in _DICT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, str) and value.strip().startswith("{"):
                setattr(self, name, json.loads(value))
        # ST 5.3 on transformers 5: warmup_ratio folds into warmup_steps (a float < 1 is a ratio)
        if self.warmup_ratio is not None and self.warmup_steps == 0:
            logger.warning("warmup_ratio is deprecated in Transformers v5+; use warmup_steps (as a float) instead.")
            self.warmup_steps, self.warmup_ratio = self.warmup_ratio, None
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps={self.warmup_steps}: use an integer >= 0 or a ratio in [0, 1).")
        if self.gradient_accumulation_steps < 1:
            raise ValueError(f"gradient_accumulation_steps={self.gradient_accumulation_steps} must be >= 1.")
        if self.logging_strategy == "steps" and self.logging_steps <= 0:
            raise ValueError(f"logging strategy 'steps' requires a positive logging_steps, got {self.logging_steps}.")
        if self.eval_strategy == "steps" and not self.eval_steps:
            if self.logging_steps <= 0:
                raise ValueError("eval_strategy='steps' requires eval_steps or a positive logging_steps.")
            self.eval_steps = self.logging_steps
        if self.load_best_model_at_end:
            if self.metric_for_best_model is None:
                self.metric_for_best_model = "loss"
            if self.save_strategy != "best" and self.eval_strategy != self.save_strategy:
                raise ValueError(
                    "load_best_model_at_end requires the save and eval strategy to match, got "
                    f"eval_strategy={self.eval_strategy!r} and save_strategy={self.save_strategy!r}."
                )
        if self.greater_is_better is None and self.metric_for_best_model is not None:
            self.greater_is_better = not self.metric_for_best_model.endswith("loss")
        if self.disable_tqdm is None:
            self.disable_tqdm = logging.getLogger("transformers").getEffectiveLevel() > logging.WARNING
        if isinstance(self.report_to, str):
            self.report_to = [self.report_to]
        self.report_to = [] if self.report_to in (None, ["none"]) else list(self.report_to)
        if self.report_to and self.report_to != ["all"]:
            logger.warning("report_to=%s: MLX training logs to the console and log_history only.", self.report_to)
        self.report_to = [] if self.report_to == ["all"] else self.report_to
        self.fsdp = [] if not self.fsdp else self.fsdp
        self.debug = [] if not self.debug else self.debug
        for name, default in WARN_IF_SET.items():
            value = getattr(self, name)
            if value != default and value not in ([], ""):
                logger.warning("%s=%r has no effect on MLX and is ignored.", name, value)
        if not isinstance(self.batch_sampler, BatchSamplers) and isinstance(self.batch_sampler, str):
            self.batch_sampler = BatchSamplers(self.batch_sampler)
        if not isinstance(self.multi_dataset_batch_sampler, MultiDatasetBatchSamplers) and isinstance(
            self.multi_dataset_batch_sampler, str
        ):
            self.multi_dataset_batch_sampler = MultiDatasetBatchSamplers(self.multi_dataset_batch_sampler)
        self.router_mapping = {} if self.router_mapping is None else self.router_mapping
        self.learning_rate_mapping = {} if self.learning_rate_mapping is None else self.learning_rate_mapping
        for name in ("router_mapping", "learning_rate_mapping"):
            if not isinstance(getattr(self, name), dict):
                raise ValueError(f"{name} must be a dict (a JSON string of a dict also works).")
        self.prediction_loss_only = True  # as ST: losses give no logits
        self.ddp_broadcast_buffers = False
        if self.use_cpu:
            from .. import backend

            backend.use_cpu()

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
        for name in _FIELD_NAMES:
            value = getattr(self, name)
            if isinstance(value, Enum):
                value = value.value
            elif callable(value) and not isinstance(value, (dict, list)):
                value = f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', repr(value))}"
            if name.endswith("_token") and value is not None:
                value = f"<{name.upper()}>"
            out[name] = value
        return out

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)

    def __repr__(self):
        body = ",\n".join(f"{k}={v!r}" for k, v in self.to_dict().items())
        return f"{type(self).__name__}(\n{body}\n)"

    __str__ = __repr__

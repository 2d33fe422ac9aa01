"""The one MLX training engine every façade (sentence-transformers, PyLate) runs on."""

from .callbacks import CallbackHandler, DefaultFlowCallback, PrinterCallback, ProgressCallback, TrainerCallback
from .optim import AdamW, Schedule, clip_by_global_norm, decay_parameter_names, global_norm, warmup_steps_for
from .remat import gradient_checkpointing
from .state import TrainerControl, TrainerState, TrainOutput
from .step import NonFiniteLossError, StepRunner
from .trainer import Trainer

__all__ = [
    "AdamW", "CallbackHandler", "DefaultFlowCallback", "NonFiniteLossError", "PrinterCallback",
    "ProgressCallback", "Schedule", "StepRunner", "Trainer", "TrainerCallback", "TrainerControl",
    "TrainerState", "TrainOutput", "clip_by_global_norm", "decay_parameter_names", "global_norm",
    "gradient_checkpointing", "warmup_steps_for",
]

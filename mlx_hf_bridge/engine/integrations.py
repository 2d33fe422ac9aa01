"""``report_to``: transformers' experiment-tracking callbacks, for every trainer on the engine.

The same names, the same "all" rule, the same tags, params and environment variables as
``transformers.integrations.integration_utils`` (installed 5.3 and 5.24 agree for these four), written
through each tracker's own client. No torch: TensorBoard events are written with tensorboardX when it
is installed (transformers' fallback), else with tensorboard's own ``EventFileWriter`` and the exact
protos torch's ``SummaryWriter`` writes (``add_scalar``: ``simple_value``; ``add_text``: the text
plugin's ``<tag>/text_summary`` string tensor). Only rank 0 logs (``state.is_world_process_zero``).

HF's other integrations (comet_ml, neptune, clearml, ...) are refused by name, before training.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time

from .callbacks import TrainerCallback

logger = logging.getLogger(__name__)

SUPPORTED = ("mlflow", "tensorboard", "wandb", "trackio")  # HF's order in get_available_reporting_integrations
# transformers' INTEGRATION_TO_CALLBACK names the bridge does not implement (-> module HF looks for)
NOT_IMPLEMENTED = {
    "azure_ml": "azureml.core.run", "comet_ml": "comet_ml", "dagshub": "dagshub", "dvclive": "dvclive",
    "neptune": "neptune", "codecarbon": "codecarbon", "clearml": "clearml", "swanlab": "swanlab",
    "flyte": "flytekit", "kubeflow": None,
}
PIP_NAMES = {"mlflow": "mlflow", "tensorboard": "tensorboard", "wandb": "wandb", "trackio": "trackio"}
# logged once as run summary by wandb (and skipped by trackio), as HF's single_value_scalars
SINGLE_VALUE_SCALARS = ("train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss",
                        "total_flos")


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package is missing
        return False


def is_available(name: str) -> bool:
    """transformers' ``is_<name>_available`` rules."""
    if name == "mlflow":
        return os.getenv("DISABLE_MLFLOW_INTEGRATION", "FALSE").upper() != "TRUE" and _has("mlflow")
    if name == "tensorboard":
        return _has("tensorboard") or _has("tensorboardX")
    if name == "wandb":
        if not _has("wandb"):
            return False
        import wandb

        return hasattr(wandb, "run")  # HF: leftover files after an uninstall import without ``run``
    if name == "trackio":
        return _has("trackio")
    if name == "kubeflow":
        return (os.getenv("DISABLE_KUBEFLOW_INTEGRATION", "FALSE").upper() != "TRUE"
                and os.getenv("KUBEFLOW_TRAINER_SERVER_URL") is not None)
    if name == "azure_ml":
        return _has("azureml.core.run") and not is_available("mlflow")
    if name == "dagshub":
        return _has("dagshub") and _has("mlflow")
    return _has(NOT_IMPLEMENTED[name])


def available_integrations() -> list[str]:
    """``report_to="all"``: every installed integration, in transformers' order (comet_ml is counted
    when installed; HF also requires its API key to be configured)."""
    order = ("azure_ml", "comet_ml", "dagshub", "dvclive", "mlflow", "neptune", "tensorboard", "wandb",
             "codecarbon", "clearml", "swanlab", "trackio")
    return [name for name in order if is_available(name)]


def normalise_report_to(value) -> list[str]:
    """TrainingArguments' rule: None/"none" -> [], "all" -> the installed ones, a name -> [name]."""
    if value is None or value in ("none", ["none"]):
        return []
    if value in ("all", ["all"]):
        return available_integrations()
    return list(value) if isinstance(value, (list, tuple)) else [value]


def reporting_callbacks(report_to) -> list[TrainerCallback]:
    """``get_reporting_integration_callbacks`` + each callback's own check, before any training."""
    names = normalise_report_to(report_to)
    for name in names:
        if name in NOT_IMPLEMENTED:
            raise ValueError(
                f"report_to={name!r} is a transformers integration the MLX bridge does not implement; use one of "
                f"{list(SUPPORTED)}, or pass your own TrainerCallback (report_to='all' lists every installed "
                "integration, as in transformers: name the ones you want instead).")
        if name not in SUPPORTED:
            raise ValueError(f"{name} is not supported, only {', '.join(SUPPORTED)} are supported.")
        if not is_available(name):
            raise RuntimeError(f"report_to={name!r} requires the {name} package: run `pip install "
                               f"{PIP_NAMES[name]}`." + (" (tensorboardX works too.)" if name == "tensorboard" else ""))
    from . import integrations_trackers as trackers

    classes = {"tensorboard": TensorBoardCallback, "wandb": trackers.WandbCallback,
               "mlflow": trackers.MLflowCallback, "trackio": trackers.TrackioCallback}
    return [classes[name]() for name in names]


def rewrite_logs(d: dict) -> dict:
    """HF's ``rewrite_logs``: ``eval_x`` -> ``eval/x``, ``test_x`` -> ``test/x``, else ``train/x``."""
    out = {}
    for k, v in d.items():
        if k.startswith("eval_"):
            out["eval/" + k[5:]] = v
        elif k.startswith("test_"):
            out["test/" + k[5:]] = v
        else:
            out["train/" + k] = v
    return out


def scalar_value(v):
    """A python number HF would log; a one-element MLX/numpy array counts (HF: a 1-element tensor)."""
    if isinstance(v, (int, float)):
        return v
    if getattr(v, "size", None) == 1 and hasattr(v, "item"):
        return v.item()
    return None


def model_config_dict(model) -> dict | None:
    config = getattr(model, "config", None)
    if config is None:
        return None
    if isinstance(config, dict):
        return config
    return config.to_dict() if hasattr(config, "to_dict") else None


def default_logdir() -> str:
    """Same default as PyTorch's SummaryWriter (and HF): runs/<Mon DD_HH-MM-SS>_<host>."""
    import socket
    from datetime import datetime

    return os.path.join("runs", datetime.now().strftime("%b%d_%H-%M-%S") + "_" + socket.gethostname())


class EventWriter:
    """The subset of torch's ``SummaryWriter`` HF uses, on tensorboard's EventFileWriter (no torch)."""

    def __init__(self, log_dir=None):
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self.log_dir = str(log_dir) if log_dir is not None else default_logdir()
        self._writer = EventFileWriter(self.log_dir, 10, 120, "")  # SummaryWriter's max_queue / flush_secs

    def _add(self, summary, step):
        from tensorboard.compat.proto.event_pb2 import Event

        event = Event(summary=summary, wall_time=time.time())
        if step is not None:
            event.step = int(step)
        self._writer.add_event(event)

    def add_scalar(self, tag, value, global_step=None):
        from tensorboard.compat.proto.summary_pb2 import Summary

        self._add(Summary(value=[Summary.Value(tag=tag, simple_value=float(value))]), global_step)

    def add_text(self, tag, text, global_step=None):
        from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
        from tensorboard.compat.proto.tensor_pb2 import TensorProto
        from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
        from tensorboard.plugins.text.plugin_data_pb2 import TextPluginData

        metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(
            plugin_name="text", content=TextPluginData(version=0).SerializeToString()))
        tensor = TensorProto(dtype="DT_STRING", string_val=[text.encode("utf_8")],
                             tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=1)]))
        self._add(Summary(value=[Summary.Value(tag=tag + "/text_summary", metadata=metadata, tensor=tensor)]),
                  global_step)

    def flush(self):
        self._writer.flush()

    def close(self):
        self._writer.close()


def _summary_writer_class():
    if _has("tensorboardX"):  # transformers' fallback when torch.utils.tensorboard is absent
        from tensorboardX import SummaryWriter

        return SummaryWriter
    return EventWriter


class TensorBoardCallback(TrainerCallback):
    """transformers' TensorBoardCallback: ``TENSORBOARD_LOGGING_DIR`` or ``<output_dir>/runs/<date>_<host>``.

    As transformers 5.3 does, ``args.logging_dir`` is not read (it is deprecated there and removed in
    5.24); setting it warns here with the fix, since the files would otherwise land elsewhere.
    """

    def __init__(self, tb_writer=None):
        if not is_available("tensorboard"):
            raise RuntimeError("TensorBoardCallback requires tensorboard (or tensorboardX): `pip install tensorboard`.")
        self._SummaryWriter = _summary_writer_class()
        self.tb_writer = tb_writer
        self.logging_dir = os.getenv("TENSORBOARD_LOGGING_DIR", None)
        if self.logging_dir is not None:
            self.logging_dir = os.path.expanduser(self.logging_dir)

    def _init_summary_writer(self, args):
        self.tb_writer = self._SummaryWriter(log_dir=self.logging_dir)

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        if getattr(args, "logging_dir", None) and self.logging_dir is None:
            logger.warning("logging_dir=%r is ignored by TensorBoard, as in transformers 5.x (deprecated there); "
                           "set the TENSORBOARD_LOGGING_DIR environment variable instead.", args.logging_dir)
        if state.is_hyper_param_search and state.trial_name is not None:
            self.logging_dir = os.path.join(args.output_dir, default_logdir(), state.trial_name)
        if self.logging_dir is None:
            self.logging_dir = os.path.join(args.output_dir, default_logdir())
        if self.tb_writer is None:
            self._init_summary_writer(args)
        self.tb_writer.add_text("args", args.to_json_string())
        config = getattr(kwargs.get("model"), "config", None)
        if config is not None and hasattr(config, "to_json_string"):
            self.tb_writer.add_text("model_config", config.to_json_string())

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero:
            return
        if self.tb_writer is None:
            self._init_summary_writer(args)
        for k, v in rewrite_logs(logs or {}).items():
            if isinstance(v, str):
                self.tb_writer.add_text(k, v, state.global_step)
            elif scalar_value(v) is not None:
                self.tb_writer.add_scalar(k, scalar_value(v), state.global_step)
            else:
                logger.warning('Trainer is attempting to log a value of "%s" of type %s for key "%s" as a scalar. '
                               "This invocation of Tensorboard's writer.add_scalar() is incorrect so we dropped "
                               "this attribute.", v, type(v), k)
        self.tb_writer.flush()

    def on_train_end(self, args, state, control, **kwargs):
        if self.tb_writer:
            self.tb_writer.close()
            self.tb_writer = None

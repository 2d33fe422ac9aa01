"""transformers' WandbCallback / MLflowCallback / TrackioCallback on the engine (see integrations.py).

Line for line the same calls, names and environment variables as
``transformers.integrations.integration_utils``; what needs a torch model is refused before training:
``WANDB_LOG_MODEL=end|checkpoint`` (HF saves through a torch ``transformers.Trainer``),
``WANDB_WATCH`` (``wandb.watch`` hooks torch modules) and ``HF_MLFLOW_LOG_ARTIFACTS`` (HF logs a
``mlflow.pyfunc`` torch model).
"""

from __future__ import annotations

import json
import logging
import os
import re

from .callbacks import TrainerCallback
from .integrations import SINGLE_VALUE_SCALARS, is_available, model_config_dict, rewrite_logs, scalar_value

logger = logging.getLogger(__name__)

ENV_VARS_TRUE_VALUES = {"1", "ON", "YES", "TRUE"}


def _combined_config(args, model) -> dict:
    """HF: model config, then args over it, then ``peft_config`` in front when the model has one."""
    combined = {**args.to_dict()}
    config = model_config_dict(model)
    if config is not None:
        combined = {**config, **combined}
    peft_config = getattr(model, "peft_config", None)
    if peft_config is not None:
        combined = {"peft_config": peft_config, **combined}
    return combined


def _num_parameters(model):
    try:
        return model.num_parameters()
    except AttributeError:
        return None


class WandbCallback(TrainerCallback):
    """``WANDB_PROJECT`` (default "huggingface"), ``WANDB_MODE``/``WANDB_DIR`` (read by wandb itself),
    ``run_name`` -> run name; metrics as ``train/...``/``eval/...`` against ``train/global_step``."""

    def __init__(self):
        if not is_available("wandb"):
            raise RuntimeError("WandbCallback requires wandb to be installed. Run `pip install wandb`.")
        log_model = os.getenv("WANDB_LOG_MODEL", "false")
        if log_model in ("end", "checkpoint"):
            raise ValueError(f"WANDB_LOG_MODEL={log_model!r}: transformers uploads a model saved by a torch "
                             "transformers.Trainer, which MLX training does not have. Unset WANDB_LOG_MODEL and log "
                             "the saved output_dir yourself with wandb.log_artifact after training.")
        if log_model != "false":  # HF's WandbLogModel._missing_
            logger.warning("Received unrecognized `WANDB_LOG_MODEL` setting value=%s; so disabling "
                           "`WANDB_LOG_MODEL`", log_model)
        if os.getenv("WANDB_WATCH", "false") in ("all", "parameters", "gradients"):
            raise ValueError(f"WANDB_WATCH={os.getenv('WANDB_WATCH')!r}: wandb.watch hooks torch modules; MLX "
                             "models have none. Unset WANDB_WATCH.")
        import wandb

        self._wandb = wandb
        self._initialized = False

    def setup(self, args, state, model, **kwargs):
        self._initialized = True
        if not state.is_world_process_zero:
            return
        combined = _combined_config(args, model)
        init_args = {}
        if state.trial_name is not None:
            init_args["name"] = state.trial_name
            init_args["group"] = args.run_name or args.output_dir
        elif args.run_name is not None:
            init_args["name"] = args.run_name
            if args.run_name == args.output_dir:
                self._wandb.termwarn(
                    "The `run_name` is currently set to the same value as `TrainingArguments.output_dir`. If this "
                    "was not intended, please specify a different run name by setting the "
                    "`TrainingArguments.run_name` parameter.", repeat=False)
        if self._wandb.run is None:
            self._wandb.init(project=os.getenv("WANDB_PROJECT", "huggingface"), **init_args)
        self._wandb.config.update(combined or {}, allow_val_change=True)  # the run may have been made by hand
        if getattr(self._wandb, "define_metric", None):
            self._wandb.define_metric("train/global_step")
            self._wandb.define_metric("*", step_metric="train/global_step", step_sync=True)
        self._wandb.run._label(code="transformers_trainer")
        n = _num_parameters(model)
        if n is not None:
            self._wandb.config["model/num_parameters"] = n

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if state.is_hyper_param_search:
            self._wandb.finish()
            self._initialized = False
            args.run_name = None
        if not self._initialized:
            self.setup(args, state, model, **kwargs)

    def on_log(self, args, state, control, model=None, logs=None, **kwargs):
        if not self._initialized:
            self.setup(args, state, model)
        if not state.is_world_process_zero:
            return
        logs = logs or {}
        for k, v in logs.items():
            if k in SINGLE_VALUE_SCALARS:
                self._wandb.run.summary[k] = v
        rest = rewrite_logs({k: v for k, v in logs.items() if k not in SINGLE_VALUE_SCALARS})
        self._wandb.log({**rest, "train/global_step": state.global_step})

    def on_predict(self, args, state, control, metrics=None, **kwargs):
        if not self._initialized:
            self.setup(args, state, kwargs.get("model"))
        if state.is_world_process_zero:
            self._wandb.log(rewrite_logs(metrics or {}))


class MLflowCallback(TrainerCallback):
    """``MLFLOW_TRACKING_URI``, ``MLFLOW_EXPERIMENT_NAME``, ``MLFLOW_RUN_ID``, ``MLFLOW_TAGS``,
    ``MLFLOW_NESTED_RUN``, ``MLFLOW_FLATTEN_PARAMS``, ``MLFLOW_MAX_LOG_PARAMS``; params = model config +
    args (values over 250 characters dropped, as HF); metrics under their own names at ``global_step``."""

    def __init__(self):
        if not is_available("mlflow"):
            raise RuntimeError("MLflowCallback requires mlflow to be installed. Run `pip install mlflow`.")
        if os.getenv("HF_MLFLOW_LOG_ARTIFACTS", "FALSE").upper() in ENV_VARS_TRUE_VALUES:
            raise ValueError("HF_MLFLOW_LOG_ARTIFACTS: transformers logs each checkpoint as an mlflow.pyfunc torch "
                             "model, which MLX checkpoints are not. Unset it and log the saved folders with "
                             "mlflow.log_artifacts(output_dir) after training.")
        import mlflow
        import mlflow.utils.validation as validation

        self._MAX_PARAM_VAL_LENGTH = validation.MAX_PARAM_VAL_LENGTH
        self._MAX_PARAMS_TAGS_PER_BATCH = validation.MAX_PARAMS_TAGS_PER_BATCH
        self._initialized = False
        self._auto_end_run = False
        self._ml_flow = mlflow

    def setup(self, args, state, model):
        self._nested_run = os.getenv("MLFLOW_NESTED_RUN", "FALSE").upper() in ENV_VARS_TRUE_VALUES
        self._tracking_uri = os.getenv("MLFLOW_TRACKING_URI", None)
        self._experiment_name = os.getenv("MLFLOW_EXPERIMENT_NAME", None)
        self._flatten_params = os.getenv("MLFLOW_FLATTEN_PARAMS", "FALSE").upper() in ENV_VARS_TRUE_VALUES
        self._run_id = os.getenv("MLFLOW_RUN_ID", None)
        self._max_log_params = os.getenv("MLFLOW_MAX_LOG_PARAMS", None)
        from packaging.version import parse

        self._async_log = parse(self._ml_flow.__version__) >= parse("2.8.0")  # "synchronous" exists from 2.8
        if state.is_world_process_zero:
            if not self._ml_flow.is_tracking_uri_set() and self._tracking_uri:
                self._ml_flow.set_tracking_uri(self._tracking_uri)
            if self._ml_flow.active_run() is None or self._nested_run or self._run_id:
                if self._experiment_name:
                    self._ml_flow.set_experiment(self._experiment_name)  # created when missing
                # mlflow itself reads MLFLOW_RUN_ID here and resumes that run (HF relies on it)
                self._ml_flow.start_run(run_name=args.run_name, nested=self._nested_run)
                self._auto_end_run = True
            combined = args.to_dict()
            config = model_config_dict(model)
            if config is not None:
                combined = {**config, **combined}
            if self._flatten_params:
                combined = _flatten_dict(combined)
            for name, value in list(combined.items()):
                if len(str(value)) > self._MAX_PARAM_VAL_LENGTH:
                    logger.warning(
                        'Trainer is attempting to log a value of "%s" for key "%s" as a parameter. MLflow\'s '
                        "log_param() only accepts values no longer than 250 characters so we dropped this attribute. "
                        "You can use `MLFLOW_FLATTEN_PARAMS` environment variable to flatten the parameters and "
                        "avoid this message.", value, name)
                    del combined[name]
            items = list(combined.items())
            if self._max_log_params and self._max_log_params.isdigit():
                items = items[:int(self._max_log_params)]
            for i in range(0, len(items), self._MAX_PARAMS_TAGS_PER_BATCH):  # at most 100 per call
                batch = dict(items[i:i + self._MAX_PARAMS_TAGS_PER_BATCH])
                if self._async_log:
                    self._ml_flow.log_params(batch, synchronous=False)
                else:
                    self._ml_flow.log_params(batch)
            tags = os.getenv("MLFLOW_TAGS", None)
            if tags:
                self._ml_flow.set_tags(json.loads(tags))
        self._initialized = True

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if not self._initialized:
            self.setup(args, state, model)

    def on_log(self, args, state, control, logs=None, model=None, **kwargs):
        if not self._initialized:
            self.setup(args, state, model)
        if not state.is_world_process_zero:
            return
        metrics = {}
        for k, v in (logs or {}).items():
            if scalar_value(v) is not None:
                metrics[k] = scalar_value(v)
            else:
                logger.warning('Trainer is attempting to log a value of "%s" of type %s for key "%s" as a metric. '
                               "MLflow's log_metric() only accepts float and int types so we dropped this "
                               "attribute.", v, type(v), k)
        sanitized = {re.sub(r"[^0-9A-Za-z_\-\.\ :/]", "_", k): v for k, v in metrics.items()}
        if self._async_log:
            self._ml_flow.log_metrics(metrics=sanitized, step=state.global_step, synchronous=False)
        else:
            self._ml_flow.log_metrics(metrics=sanitized, step=state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        if self._initialized and state.is_world_process_zero and self._auto_end_run and self._ml_flow.active_run():
            self._ml_flow.end_run()

    def __del__(self):
        # a run left open blocks the next start_run in this process (HF does the same)
        if (getattr(self, "_auto_end_run", False) and callable(getattr(self._ml_flow, "active_run", None))
                and self._ml_flow.active_run() is not None):
            self._ml_flow.end_run()


def _flatten_dict(d, parent_key="", delimiter="/"):
    """transformers.utils.flatten_dict."""
    out = {}
    for k, v in d.items():
        key = f"{parent_key}{delimiter}{k}" if parent_key else str(k)
        if v and isinstance(v, dict):
            out.update(_flatten_dict(v, key, delimiter))
        else:
            out[key] = v
    return out


class TrackioCallback(TrainerCallback):
    """``args.project`` / ``run_name`` / ``trackio_space_id`` / ``hub_private_repo`` (and 5.24's
    ``trackio_bucket_id``) -> ``trackio.init``; the local store is trackio's (``TRACKIO_DIR``)."""

    def __init__(self):
        if not is_available("trackio"):
            raise RuntimeError("TrackioCallback requires trackio to be installed. Run `pip install trackio`.")
        import trackio

        self._trackio = trackio
        self._initialized = False

    def setup(self, args, state, model, **kwargs):
        if state.is_world_process_zero:
            combined = _combined_config(args, model)
            extra = {"bucket_id": args.trackio_bucket_id} if hasattr(args, "trackio_bucket_id") else {}
            self._trackio.init(project=args.project, name=args.run_name, space_id=args.trackio_space_id,
                               resume="allow", private=args.hub_private_repo, **extra)
            self._trackio.config.update(combined, allow_val_change=True)
            n = _num_parameters(model)
            if n is not None:
                self._trackio.config["model/num_parameters"] = n
        self._initialized = True

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if not self._initialized:
            self.setup(args, state, model, **kwargs)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if state.is_world_process_zero and self._initialized:
            try:
                self._trackio.finish()
            finally:
                if hasattr(args, "trackio_bucket_id"):  # 5.24: a later train() starts a new run
                    self._initialized = False

    def on_log(self, args, state, control, model=None, logs=None, **kwargs):
        if not self._initialized:
            self.setup(args, state, model)
        if state.is_world_process_zero:
            rest = rewrite_logs({k: v for k, v in (logs or {}).items() if k not in SINGLE_VALUE_SCALARS})
            self._trackio.log({**rest, "train/global_step": state.global_step})

    def on_predict(self, args, state, control, metrics=None, **kwargs):
        if not self._initialized:
            self.setup(args, state, kwargs.get("model"))
        if state.is_world_process_zero:
            self._trackio.log(rewrite_logs(metrics or {}))

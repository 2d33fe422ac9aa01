"""The generic MLX training loop behind every façade, with transformers' Trainer semantics.

A façade subclasses :class:`Trainer` and provides the data side: ``get_train_batch_sampler()``
(index batches, re-seeded per epoch), ``collate(indices) -> inputs``, ``loss_inputs(inputs) ->
(loss, features, labels)``, ``evaluate()`` and ``validate_train_setup()``. This class owns the
rest: AdamW + schedule, accumulation, clipping, precision, gradient checkpointing, logging,
callbacks, checkpoints and exact resume.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from itertools import islice
from pathlib import Path

from .. import backend
from . import checkpoint as ckpt
from . import health, lock, resume_args
from .distributed import local_only
from .distributed_run import WORLD_FILE, DataParallel, ProcessZeroMixin
from .callbacks import CallbackHandler, DefaultFlowCallback, PrinterCallback, ProgressCallback
from .integrations import reporting_callbacks
from .optim import AdamW, Schedule, warmup_steps_for
from .remat import gradient_checkpointing
from .state import TrainerControl, TrainerState, TrainOutput
from .step import NonFiniteLossError, StepRunner, model_is_damaged, refuse_if_damaged, resolve_compute_dtype

logger = logging.getLogger(__name__)


def _plain(value):
    return getattr(value, "value", value)


class Trainer(ProcessZeroMixin):
    def __init__(self, model, args, callbacks=None, optimizers=(None, None), processing_class=None):
        self.model, self.args = model, args
        self.state, self.control = TrainerState(), TrainerControl()
        self.optimizer, self.lr_scheduler = optimizers if optimizers is not None else (None, None)
        if self.optimizer is not None and not hasattr(self.optimizer, "compute"):
            raise TypeError(
                "optimizers=(optimizer, scheduler) must hold an mlx_hf_bridge.engine.AdamW (and a Schedule); "
                f"got {type(self.optimizer).__name__}. torch optimizers cannot drive MLX parameters."
            )
        report = ProgressCallback() if not getattr(args, "disable_tqdm", False) else PrinterCallback()
        trackers = reporting_callbacks(getattr(args, "report_to", None))  # HF: right after DefaultFlowCallback
        self.callback_handler = CallbackHandler(
            [DefaultFlowCallback(), *trackers, report, *(callbacks or [])],
            model=model, processing_class=processing_class,
            optimizer=self.optimizer, lr_scheduler=self.lr_scheduler, train_dataloader=None, eval_dataloader=None,
        )
        self.is_in_train = False
        backend.seed_everything(args.seed)  # as HF's Trainer.__init__ (train() seeds again)
        self._created_scheduler = False
        self.runner: StepRunner | None = None
        self._last_lr = None
        self.control = self._event("on_init_end")

    # --- hooks a façade implements ----------------------------------------------------------
    def validate_train_setup(self):
        """Raise clear errors about the data/loss before any expensive work."""

    def get_train_batch_sampler(self):
        raise NotImplementedError

    def collate(self, indices):
        raise NotImplementedError

    def loss_inputs(self, inputs):
        raise NotImplementedError

    def num_examples(self) -> int:
        raise NotImplementedError

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval") -> dict:
        return {}

    # --- callbacks / logging -------------------------------------------------------------------
    def _event(self, name, **kwargs):
        return self.callback_handler.call_event(name, self.args, self.state, self.control, **kwargs)

    def add_callback(self, callback):
        self.callback_handler.add_callback(callback)

    def pop_callback(self, callback):
        return self.callback_handler.pop_callback(callback)

    def remove_callback(self, callback):
        self.callback_handler.pop_callback(callback)

    def log(self, logs: dict, start_time=None):
        if self.state.epoch is not None:
            logs["epoch"] = self.state.epoch
        self.state.log_history.append({**logs, "step": self.state.global_step})
        self.control = self._event("on_log", logs=logs)

    # --- set-up ----------------------------------------------------------------------------------
    def _resolve_resume(self, resume_from_checkpoint):
        return health.resolve_resume(resume_from_checkpoint, self.args.output_dir)

    def trained_module(self):
        """The module whose trainable parameters the optimizer steps: the model, or an object that holds
        it under ``.model`` plus parameters of its own (a loss with a classifier, as ST's SoftmaxLoss)."""
        return self.model

    def carries_loss_gradients(self) -> bool:
        """Whether the gradients of parameters outside the model add up over steps (a library quirk a
        subclass reproduces); the engine clears every gradient each step."""
        return False

    def create_optimizer_and_scheduler(self, num_training_steps: int):
        args = self.args
        if self.optimizer is None:
            optim = str(getattr(args.optim, "value", args.optim))
            if not optim.startswith("adamw"):
                raise ValueError(f"optim={optim!r} is not available on MLX; use 'adamw_torch' (the default AdamW).")
            self.optimizer = AdamW.for_model(
                self.trained_module(), args.learning_rate, args.weight_decay, (args.adam_beta1, args.adam_beta2),
                args.adam_epsilon, lr_mapping=getattr(args, "learning_rate_mapping", None),
            )
        if self.lr_scheduler is None or self._created_scheduler:  # HF rebuilds its own scheduler per train()
            self._created_scheduler = True
            warmup = warmup_steps_for(args.warmup_steps, num_training_steps)
            self.lr_scheduler = Schedule(args.lr_scheduler_type, warmup, num_training_steps, base_lr=args.learning_rate,
                                         **(args.lr_scheduler_kwargs or {}))
        self.callback_handler.refs.update(optimizer=self.optimizer, lr_scheduler=self.lr_scheduler)

    # --- training --------------------------------------------------------------------------------
    def train(self, resume_from_checkpoint=None, trial=None, ignore_keys_for_eval=None, **kwargs):
        if kwargs:
            raise TypeError(f"train() got unexpected keyword arguments: {', '.join(kwargs)}")
        args = self.args
        save_only = bool(getattr(args, "save_only_model", False))
        self._dp = dp = DataParallel(args)  # rank 0 alone checks, locks and writes output_dir
        if dp.is_main:
            lock.check_output_dir(args.output_dir, lock.checkpoint_bytes(self.model, save_only),
                                  will_save=str(_plain(args.save_strategy)) != "no")
        with lock.output_dir_lock(args.output_dir) if dp.is_main else contextlib.nullcontext():
            return self._train_locked(resume_from_checkpoint, ignore_keys_for_eval)

    def _train_locked(self, resume_from_checkpoint, ignore_keys_for_eval):
        args = self.args
        # first: a checkpoint swap a kill interrupted is put back before resume picks a checkpoint
        self._dp.on_main("cleaning output_dir", ckpt.clean_stale_temps, args.output_dir)
        resume = self._resolve_resume(resume_from_checkpoint)
        self._dp.check_resume(resume)
        damage = model_is_damaged(self.model)
        if damage is not None and resume is None:
            raise ValueError(f"The model's weights are not finite ({damage}). Fix: resume_from_checkpoint=True "
                             "(the latest good checkpoint) or load the model again.")
        self.validate_train_setup()
        backend.seed_everything(args.seed)
        sampler = self._dp.shard(self.get_train_batch_sampler(), self.num_examples())
        steps_in_epoch = len(sampler)
        if steps_in_epoch == 0:
            raise ValueError(
                f"The training data gives 0 batches per epoch (dataset smaller than per_device_train_batch_size="
                f"{args.per_device_train_batch_size} with dataloader_drop_last=True). Lower the batch size or set "
                "dataloader_drop_last=False."
            )
        ga = int(args.gradient_accumulation_steps)
        nups = max(steps_in_epoch // ga + int(steps_in_epoch % ga > 0), 1)
        total_batch = args.per_device_train_batch_size * ga * self._dp.size
        if args.max_steps > 0:
            max_steps = int(args.max_steps)
            num_epochs = max_steps // nups + int(max_steps % nups > 0)
            num_samples = max_steps * total_batch
        else:
            max_steps = math.ceil(args.num_train_epochs * nups)
            num_epochs = math.ceil(args.num_train_epochs)
            num_samples = self.num_examples() * args.num_train_epochs

        self.state = TrainerState(max_steps=max_steps, num_train_epochs=num_epochs,
                                  train_batch_size=args.per_device_train_batch_size)
        if resume is not None:
            resume_args.warn_if_args_changed(resume, self._args_dict())
            self.state = ckpt.load_trainer_state(resume)
            self.state.max_steps, self.state.num_train_epochs = max_steps, num_epochs
            self.state.train_batch_size = args.per_device_train_batch_size
        self.state.compute_steps(args, max_steps)
        self.create_optimizer_and_scheduler(max_steps)
        if resume is not None:
            ckpt.load_model_weights(self.model, resume)
            ckpt.load_extra_parameters(self.trained_module(), resume)
            ckpt.load_optimizer(resume, self.optimizer)
        self._unverified = resume  # the next step's loss tells whether its weights can be trained from
        trained = self.trained_module()
        self.runner = StepRunner(trained, self.optimizer, args.max_grad_norm,
                                 resolve_compute_dtype(args.bf16, args.fp16),
                                 compile=bool(getattr(args, "torch_compile", False)),
                                 clip_prefix=None if trained is self.model else "model.")
        self.runner.accumulate_outside_prefix = trained is not self.model and self.carries_loss_gradients()
        self._dp.start(self.runner, self.state)
        epochs_trained = self.state.global_step // nups
        skip_batches = (self.state.global_step % nups) * ga if resume is not None and not args.ignore_data_skip else 0

        self.is_in_train = True
        self._tr_loss, self._total_loss, self._session_steps = 0.0, 0.0, 0
        self._last_logged = self.state.global_step
        self.control = self._event("on_train_begin")
        if args.eval_on_start and resume is None:
            self._evaluate(ignore_keys_for_eval)
        start = time.time()
        remat = self._remat()
        self.model.train()
        try:
            with remat:
                if resume is not None:
                    ckpt.load_rng(resume)  # last, so nothing above consumes the restored streams
                for epoch in range(epochs_trained, num_epochs):
                    self._run_epoch(sampler, epoch, steps_in_epoch, nups, ga,
                                    skip_batches if epoch == epochs_trained else 0, ignore_keys_for_eval)
                    if self.control.should_training_stop:
                        break
        finally:
            self.is_in_train = False
            self.model.eval()
        return self._finalize(start, num_samples)

    @property
    def max_steps(self) -> int:
        return self.state.max_steps

    def _run_epoch(self, sampler, epoch, steps_in_epoch, nups, ga, skip, ignore_keys):
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        batches = list(islice(iter(sampler), steps_in_epoch))
        self.control = self._event("on_epoch_begin")
        remainder = steps_in_epoch % ga or ga
        step = skip - 1
        for update in range(skip // ga, nups):
            window = batches[update * ga : update * ga + (ga if update != nups - 1 else remainder)]
            if not window:
                break
            self.control = self._event("on_step_begin")
            loss, grad_norm = self._optimizer_step(window)
            step += len(window)
            self._tr_loss += loss
            self._session_steps += 1
            self.state.global_step += 1
            self.state.epoch = epoch + (step + 1) / steps_in_epoch
            self.control = self._event("on_step_end")
            self._maybe_log_save_evaluate(grad_norm, ignore_keys)
            if self.control.should_epoch_stop or self.control.should_training_stop:
                break
        self.control = self._event("on_epoch_end")
        self._maybe_log_save_evaluate(self._last_grad_norm, ignore_keys)

    def _optimizer_step(self, window):
        factor = self.lr_scheduler.factor(self.state.global_step)
        micro = ((self.loss_inputs(self.collate(idx))) for idx in window)
        step = self.state.global_step + 1
        try:
            with self._dp.guard(f"step {step}"):
                loss, grad_norm = self.runner.step(micro, factor, on_substep_end=self._substep_end)
        except NonFiniteLossError as err:
            # a weights overflow comes after a finite loss: the checkpoint trained fine from its weights
            self._verify_checkpoint(step, err.loss, err.grad_norm, ok=err.cause == "weights")
            raise type(err)(health.stop_message(err, step, self.state.epoch or 0, self.args),
                            err.cause, err.loss, err.grad_norm, err.applied) from None
        self._verify_checkpoint(step, loss, grad_norm, ok=True)
        self.control = self._event("on_pre_optimizer_step")
        self.control = self._event("on_optimizer_step")
        self._last_lr = self.optimizer.groups[0]["lr"] * factor  # the lr this step used (what HF logs)
        self._last_grad_norm = grad_norm
        return loss, grad_norm

    _last_grad_norm = None
    _dp = DataParallel.single()
    _unverified = None  # the checkpoint the next step starts from, until that step ran

    def _verify_checkpoint(self, step, loss, grad_norm, ok):
        if self._unverified is not None:
            if self._dp.is_main:
                health.record_next_step(self._unverified, step, loss, grad_norm, ok)
            self._unverified = None

    def _substep_end(self):
        self.control = self._event("on_substep_end")

    def _remat(self):
        if not self.args.gradient_checkpointing:
            return contextlib.nullcontext()
        from .remat import find_layer_class

        if find_layer_class(self.model) is None:
            logger.warning("gradient_checkpointing=True, but %s has no repeated '...layer(s).N' blocks to "
                           "checkpoint; training without it.", type(self.model).__name__)
        return gradient_checkpointing(self.model)

    def _maybe_log_save_evaluate(self, grad_norm, ignore_keys):
        if self.control.should_log and self.state.global_step > self._last_logged:
            logs = {"loss": self._tr_loss / (self.state.global_step - self._last_logged)}
            if grad_norm is not None:
                logs["grad_norm"] = grad_norm
            logs["learning_rate"] = self._last_lr
            self._total_loss += self._tr_loss
            self._tr_loss, self._last_logged = 0.0, self.state.global_step
            self.log(logs)
        if self.control.should_evaluate:
            metrics = self._evaluate(ignore_keys)
            is_best = self._update_best(metrics)
            if self.args.save_strategy == "best":
                self.control.should_save = is_best
        if self.control.should_save:
            self._save_checkpoint()
            self.control = self._event("on_save")

    def _evaluate(self, ignore_keys=None):
        with local_only():  # every rank evaluates in full, alone: the same metrics and decisions everywhere
            metrics = self.evaluate(ignore_keys=ignore_keys)
        if self.is_in_train:
            self.model.train()
        return metrics

    def _update_best(self, metrics) -> bool:
        name = self.args.metric_for_best_model
        if name is None or not metrics:
            return False
        key = name if name.startswith("eval_") else f"eval_{name}"
        if key not in metrics:
            raise KeyError(
                f"metric_for_best_model={name!r} not found in the evaluation metrics {sorted(metrics)}; "
                "set it to one of them."
            )
        value = metrics[key]
        greater = self.args.greater_is_better
        best = self.state.best_metric
        if best is None or (value > best if greater else value < best):
            self.state.best_metric, self.state.best_global_step = value, self.state.global_step
            return True
        return False

    def _save_checkpoint(self):
        out = Path(self.args.output_dir)
        path = out / f"{ckpt.PREFIX}-{self.state.global_step}"
        if self.state.best_global_step is not None:
            best = out / f"{ckpt.PREFIX}-{self.state.best_global_step}"
            if best == path or best.exists():
                self.state.best_model_checkpoint = str(best)
        self.state.stateful_callbacks["TrainerControl"] = self.control.state()
        self._dp.on_main(f"writing {path.name}", self._write_checkpoint, out, path)
        self._unverified = path
        return path

    def _write_checkpoint(self, out, path):
        sched = self.lr_scheduler.state_json(self.state.global_step, [g["lr"] for g in self.optimizer.groups])
        extra = {health.HEALTH_FILE: health.weights_record(self.model, self.state.global_step),
                 **({WORLD_FILE: self._dp.world_record()} if self._dp.active else {})}
        ckpt.save_checkpoint(path, self.model, self.optimizer, sched, self.state, self._args_dict(),
                             extra_parameters=ckpt.extra_parameters(self.trained_module()),
                             save_only_model=bool(getattr(self.args, "save_only_model", False)),
                             _before_commit=getattr(self, "_before_commit_hook", None), extra_json=extra)
        ckpt.rotate_checkpoints(out, self.args.save_total_limit,
                                keep=health.rotation_keeps(out, self.state.best_model_checkpoint))

    def _args_dict(self) -> dict:
        to_dict = getattr(self.args, "to_dict", None)
        return to_dict() if to_dict else dict(vars(self.args))

    def _finalize(self, start, num_samples):
        runtime = max(time.time() - start, 1e-9)
        self._total_loss += self._tr_loss
        # mean over the steps run by this call (HF divides by global_step, which is off after a resume)
        train_loss = self._total_loss / max(self._session_steps, 0.001)
        metrics = {
            "train_runtime": round(runtime, 4),
            "train_samples_per_second": round(num_samples / runtime, 3),
            "train_steps_per_second": round(self.state.max_steps / runtime, 3),
            "train_loss": train_loss,
        }
        self.log(dict(metrics))
        if self.args.load_best_model_at_end and self.state.best_model_checkpoint:
            ckpt.load_model_weights(self.model, self.state.best_model_checkpoint)
            self.runner.reload_from_model()
        self.control = self._event("on_train_end")
        return TrainOutput(self.state.global_step, train_loss, metrics)

    # --- saving ----------------------------------------------------------------------------------
    def save_model(self, output_dir=None, _internal_call: bool = False):
        """Write the model folder (``model.save``) plus ``training_args.json`` into ``output_dir``.

        As ST / transformers: the layout's files are overwritten and everything else in the folder
        (``checkpoint-*/``, the user's files) is left alone; crash-safe as ``io_utils.save_folder``.
        """
        from ..io_utils import save_folder

        target = Path(output_dir if output_dir is not None else self.args.output_dir)
        refuse_if_damaged(self.model, target)
        dp = DataParallel(self.args)
        if not dp.is_main:  # rank 0 writes (HF: args.should_save); the others wait for it
            return dp.barrier(f"waiting for rank 0 to save {target}")

        def write(folder):
            self.model.save(str(folder))
            ckpt._write_json(folder / "training_args.json", self._args_dict())

        save_folder(target, write)
        dp.barrier(f"rank 0 saving {target}")

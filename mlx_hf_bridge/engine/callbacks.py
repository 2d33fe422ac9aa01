"""HF-style callbacks, duck-typed: real ``transformers.TrainerCallback`` subclasses work unchanged."""

from __future__ import annotations

import inspect

EVENTS = (
    "on_init_end", "on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end", "on_step_begin",
    "on_pre_optimizer_step", "on_optimizer_step", "on_substep_end", "on_step_end", "on_evaluate",
    "on_predict", "on_save", "on_log", "on_prediction_step",
)


class TrainerCallback:
    """Base class with every event as a no-op (same names and signatures as transformers')."""


for _event in EVENTS:
    setattr(TrainerCallback, _event, lambda self, args, state, control, **kwargs: None)


class DefaultFlowCallback(TrainerCallback):
    """When to log / evaluate / save, exactly as transformers' DefaultFlowCallback."""

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 1 and args.logging_first_step:
            control.should_log = True
        if args.logging_strategy == "steps" and state.global_step % state.logging_steps == 0:
            control.should_log = True
        if (args.eval_strategy == "steps" and state.global_step % state.eval_steps == 0
                and args.eval_delay <= state.global_step):
            control.should_evaluate = True
        if args.save_strategy == "steps" and state.save_steps > 0 and state.global_step % state.save_steps == 0:
            control.should_save = True
        if state.global_step >= state.max_steps:
            control.should_training_stop = True
            if args.save_strategy == "steps":  # HF saves the final step
                control.should_save = True
        return control

    def on_epoch_end(self, args, state, control, **kwargs):
        if args.logging_strategy == "epoch":
            control.should_log = True
        if args.eval_strategy == "epoch" and args.eval_delay <= state.epoch:
            control.should_evaluate = True
        if args.save_strategy == "epoch":
            control.should_save = True
        return control


def _fmt(logs: dict) -> dict:
    return {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in logs.items() if k != "total_flos"}


class ProgressCallback(TrainerCallback):
    """tqdm bar over optimizer steps; logs are written above it (HF's ProgressCallback)."""

    def __init__(self):
        self.training_bar = None
        self.current_step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:  # as HF: only rank 0 shows progress
            return
        from tqdm.auto import tqdm

        self.training_bar = tqdm(total=state.max_steps, initial=state.global_step, dynamic_ncols=True)
        self.current_step = state.global_step

    def on_step_end(self, args, state, control, **kwargs):
        if self.training_bar is not None:
            self.training_bar.update(state.global_step - self.current_step)
            self.current_step = state.global_step

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.training_bar is not None:  # as HF: outside train() the bar (and its log lines) is off
            self.training_bar.write(str(_fmt(logs or {})))

    def on_train_end(self, args, state, control, **kwargs):
        if self.training_bar is not None:
            self.training_bar.close()
            self.training_bar = None


class PrinterCallback(TrainerCallback):
    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero:
            print(_fmt(logs or {}))


class CallbackHandler:
    """Calls each event on every callback; a returned control replaces the current one (HF rule)."""

    def __init__(self, callbacks, **refs):
        self.callbacks = []
        for cb in callbacks or []:
            self.add_callback(cb)
        self.refs = refs  # model, optimizer, lr_scheduler, ... passed as keyword arguments

    def add_callback(self, callback):
        cb = callback() if inspect.isclass(callback) else callback
        self.callbacks.append(cb)

    def pop_callback(self, callback):
        for cb in list(self.callbacks):
            if cb is callback or (inspect.isclass(callback) and isinstance(cb, callback)):
                self.callbacks.remove(cb)
                return cb
        return None

    def call_event(self, event, args, state, control, **kwargs):
        if event == "on_train_begin":
            control.should_training_stop = False
        elif event == "on_epoch_begin":
            control.should_epoch_stop = False
        elif event == "on_step_begin":
            control._new_step()
        elif event == "on_evaluate":
            control.should_evaluate = False
        elif event == "on_save":
            control.should_save = False
        elif event == "on_log":
            control.should_log = False
        for cb in self.callbacks:
            fn = getattr(cb, event, None)
            if fn is None:
                continue
            result = fn(args, state, control, **self.refs, **kwargs)
            if result is not None:
                control = result
        return control

"""``transformers.Trainer`` on MLX: transformers' data flow on top of :class:`mlx_hf_bridge.engine.Trainer`.

The engine owns the loop (AdamW / SGD + schedule, accumulation, clipping, logging, callbacks,
checkpoints, resume); this façade supplies transformers' data side:

- ``remove_unused_columns``: rows keep the columns of the model's forward signature (transformers'
  head signatures, ``trainer_data.FORWARD_ARGUMENTS``) plus ``label`` / ``label_ids`` / ``label_names``;
- the default collator: ``DataCollatorWithPadding(processing_class)`` with a tokenizer, else
  ``default_data_collator``;
- ``train_sampling_strategy`` "random" (torch's exact order for the seed), "sequential", "group_by_length"
  (transformers draws it from torch's *global* generator, seeded at Trainer construction: reproduced
  while nothing else draws from it, i.e. with dropout 0 every epoch, with dropout the first epoch only;
  5.3's evaluation order under it is refused, 5.24's seeded one is reproduced);
- ``num_items_in_batch``: counted over each accumulation window (labels != -100) and passed to the
  model, as transformers does for models whose forward takes ``**kwargs`` (all its heads).

Data parallel under ``mlx.launch`` (the engine's: per-rank shards of each global batch, averaged
gradients, rank 0 alone writes): ``evaluate`` / ``predict`` are sharded and gathered as accelerate does
(``trainer_eval_dp``), and with ``average_tokens_across_devices`` (default) ``num_items_in_batch`` is
summed over the ranks and compute_loss multiplies the loss by their number, as transformers does, also
for heads that ignore the count (BERT's: 2 ranks log, evaluate and step with 2 x the loss).

Gradient accumulation quirks, reproduced (``reproduce_ga_loss_scaling = False`` gives the window mean
for loss and gradient instead). transformers then skips its ``1 / gradient_accumulation_steps``
scaling, also for the heads that ignore ``num_items_in_batch`` (every BERT head, ModernBERT's
classification heads), so their logged loss is the *sum* of the window's batch means. What the
gradient gets differs by version: up to 5.3 accelerate's ``backward`` still divides by
``gradient_accumulation_steps`` (mean gradient for those heads, but 1/steps of it for ModernBERT's
MLM, which did normalise); later versions (5.24) set accelerate's steps to 1 (the *sum* gradient for
those heads, the right one for the MLM). Which applies is read from the installed transformers.
"""

from __future__ import annotations

import functools
import inspect
import logging

import mlx.core as mx
import numpy as np

from ..engine import distributed
from ..engine.trainer import Trainer as EngineTrainer
from ..tasks.losses import label_smoothed_loss
from . import trainer_checks, trainer_data as TD
from .trainer_eval import EvaluationMixin
from ..engine.optim_sgd import SGD
from .training_args import TrainingArguments

logger = logging.getLogger(__name__)


class _ModelLoss:
    """The engine's loss protocol (``loss(features, labels) -> scalar``) over the Trainer's compute_loss."""

    def __init__(self, trainer):
        self.trainer = trainer
        self.model = trainer.model

    def __call__(self, features, labels=None):
        t, window = self.trainer, features["window"]
        n_items = features["num_items_in_batch"]
        loss = t.compute_loss(t.model, dict(features["inputs"]), num_items_in_batch=n_items)
        # transformers' step loss r = loss, or loss / window when not scaled for accumulation; its backward
        # takes r / accelerate_steps. The engine differentiates (what this returns) / window.
        if t._scaled_for_ga(n_items):
            loss = loss * window
        return loss / t._accelerate_steps() if t._accelerate_steps() != 1 else loss


def _is_torch_module(model) -> bool:
    return any(c.__module__.startswith("torch.") for c in type(model).__mro__)


class Trainer(EvaluationMixin, EngineTrainer):
    """Drop-in for ``transformers.Trainer`` (5.x signature, positional order) with MLX task models."""

    reproduce_ga_loss_scaling = True  # False: loss and gradient are the window's mean (see the module docstring)
    loss_is_scaled_for_ga = None  # transformers >= 5.24's override of the rule below (None: the rule)

    def __init__(self, model=None, args=None, data_collator=None, train_dataset=None, eval_dataset=None,
                 processing_class=None, model_init=None, compute_loss_func=None, compute_metrics=None,
                 callbacks=None, optimizers=(None, None), optimizer_cls_and_kwargs=None,
                 preprocess_logits_for_metrics=None, tokenizer=None):
        if tokenizer is not None:  # transformers 5 removed it; old scripts still pass it
            if processing_class is not None and processing_class is not tokenizer:
                raise ValueError("Pass either `processing_class` or `tokenizer` (its old name), not both.")
            logger.warning("`tokenizer` was renamed `processing_class` in transformers 5; using it as that.")
            processing_class = tokenizer
        if args is None:
            args = TrainingArguments(output_dir="trainer_output")
        elif not isinstance(args, TrainingArguments):
            raise ValueError("Please use `TrainingArguments` imported from `mlx_hf_bridge.transformers` "
                             f"(got {type(args).__module__}.{type(args).__name__}).")
        if model is None:
            if model_init is None:
                raise RuntimeError("`Trainer` requires either a `model` or `model_init` argument")
            model = model_init()
        self.model_init = model_init
        if _is_torch_module(model):
            raise TypeError(f"{type(model).__name__} is a torch model; the MLX Trainer trains MLX models. Load it with "
                            "mlx_hf_bridge.transformers.AutoModelFor...from_pretrained(path).")
        self.processing_class = self.tokenizer = processing_class
        if data_collator is None:
            from .data_collator import DataCollatorWithPadding, default_data_collator

            is_tokenizer = processing_class is not None and hasattr(processing_class, "pad")
            data_collator = DataCollatorWithPadding(processing_class) if is_tokenizer else default_data_collator
        self.data_collator = data_collator
        if optimizer_cls_and_kwargs is not None:
            if optimizers is not None and optimizers[0] is not None:
                raise RuntimeError("Passing both `optimizers` and `optimizer_cls_and_kwargs` arguments is "
                                   "incompatible.")
            from ..engine.optim import adamw_from_cls_and_kwargs

            optimizers = (adamw_from_cls_and_kwargs(optimizer_cls_and_kwargs, model, args), optimizers[1])
        self.optimizer_cls_and_kwargs = optimizer_cls_and_kwargs
        super().__init__(model, args, callbacks=callbacks, optimizers=optimizers, processing_class=processing_class)
        self.compute_loss_func, self.compute_metrics = compute_loss_func, compute_metrics
        self.preprocess_logits_for_metrics = preprocess_logits_for_metrics
        self.model_accepts_loss_kwargs = self._accepts_loss_kwargs(model)
        self.label_names = list(args.label_names) if args.label_names is not None else self._default_label_names(model)
        self.can_return_loss = False  # transformers' heads take no return_loss argument
        self.label_smoother = None  # transformers' attribute: the smoothing factor here, when active
        if args.label_smoothing_factor != 0:
            if getattr(getattr(model, "config", None), "problem_type", None) == "multi_label_classification":
                logger.warning("Label smoothing is not compatible with multi-label classification. Disabling label "
                               "smoothing for this training run.")
            else:
                self.label_smoother = float(args.label_smoothing_factor)
        for split, ds in (("train", train_dataset), ("eval", eval_dataset)):
            if ds is not None and not isinstance(ds, dict):
                TD.check_dataset(ds, split)
        self.train_dataset, self.eval_dataset = train_dataset, eval_dataset
        self._loss = _ModelLoss(self)
        self._pending: list = []
        # as transformers: rank 0 alone prints (PrinterCallback) and reports, from the start (evaluate() too)
        self.state.is_world_process_zero = self.is_world_process_zero()
        self.state.is_local_process_zero = self.is_local_process_zero()

    # --- model introspection (transformers' rules) --------------------------------------------------
    @staticmethod
    def _accepts_loss_kwargs(model) -> bool:
        if hasattr(model, "accepts_loss_kwargs"):
            return bool(model.accepts_loss_kwargs)
        if getattr(model, "hf_architecture", "") in TD.FORWARD_ARGUMENTS:
            return True  # transformers' heads all take **kwargs
        params = inspect.signature(model.__call__).parameters.values()
        return any(p.kind == p.VAR_KEYWORD for p in params)

    @staticmethod
    def _default_label_names(model) -> list[str]:
        """transformers' find_labels: the forward's 'label'-named arguments ('labels' for every head)."""
        names = TD.forward_arguments(model)
        found = [p for p in names if "label" in p]
        return found or []

    # --- data -----------------------------------------------------------------------------------------
    def _kept_columns(self, dataset):
        if not self.args.remove_unused_columns:
            return None
        keep = TD.signature_columns(self.model, self.label_names)
        cols = TD.column_names(dataset)
        if cols is not None and hasattr(dataset, "column_names") and not any(c in keep for c in cols):
            raise ValueError(
                f"No columns in the dataset match the model's forward method signature: ({', '.join(keep)}). The "
                f"following columns have been ignored: [{', '.join(cols)}]. Please check the dataset and model. You "
                "may need to set `remove_unused_columns=False` in `TrainingArguments`.")
        return set(keep)

    def collate_rows(self, dataset, indices) -> dict:
        rows = TD.rows(dataset, indices, self._kept_columns(dataset))
        return TD.to_numpy(self.data_collator(rows))

    def model_inputs(self, batch: dict) -> dict:
        return {k: mx.array(v) if isinstance(v, np.ndarray) else v for k, v in batch.items()}

    def items_in(self, batches):
        counts = self.model_accepts_loss_kwargs or self.compute_loss_func is not None
        return TD.count_items(batches) if counts else None

    def _scaled_for_ga(self, num_items_in_batch) -> bool:
        """transformers: a loss given ``num_items_in_batch`` (or from compute_loss_func) is not divided by
        the accumulation steps, whether the head used it or not (see the module docstring)."""
        if self.loss_is_scaled_for_ga is not None:
            return bool(self.loss_is_scaled_for_ga)
        if not self.reproduce_ga_loss_scaling:
            used = getattr(self.model, "uses_num_items_in_batch", False) and num_items_in_batch is not None
            return used or self.compute_loss_func is not None
        return (self.model_accepts_loss_kwargs and num_items_in_batch is not None) or self.compute_loss_func is not None

    def _averages_tokens(self) -> bool:
        """transformers' average_tokens_across_devices under data parallel (mlx.launch): num_items_in_batch
        is summed over the ranks and compute_loss multiplies the loss by their number (DDP then averages
        the gradients). For heads that ignore num_items_in_batch (BERT's) this doubles the loss and its
        gradient on 2 ranks, in training and in evaluation: reproduced (transformers on torch DDP shows it,
        tests/test_distributed_transformers.py); average_tokens_across_devices=False gives one process's."""
        uses = self.model_accepts_loss_kwargs or self.compute_loss_func is not None
        return bool(distributed.world_size() > 1 and self.args.average_tokens_across_devices and uses)

    def _accelerate_steps(self) -> int:
        """What accelerate's backward divides every loss by: gradient_accumulation_steps up to transformers
        5.3, 1 once transformers handles accumulation alone (read from the installed source)."""
        if not self.reproduce_ga_loss_scaling or accelerate_handles_nothing():
            return 1
        return int(self.args.gradient_accumulation_steps)

    def num_examples(self) -> int:
        return len(self.train_dataset)

    def _sampling_strategy(self) -> str:
        return str(getattr(self.args, "train_sampling_strategy", "random"))

    def _seed(self) -> int:
        return self.args.data_seed if self.args.data_seed is not None else self.args.seed

    def get_train_batch_sampler(self):
        n, bs = len(self.train_dataset), self.args.per_device_train_batch_size
        strategy = self._sampling_strategy()
        if strategy == "sequential":
            order = lambda epoch: np.arange(n)  # noqa: E731
        elif strategy == "group_by_length":
            lengths = self._lengths(self.train_dataset)
            group = bs * self.args.gradient_accumulation_steps
            stream = TD.TorchGenerator(self.args.seed)  # transformers: torch's global generator, seeded at init

            def order(epoch):
                stream.draws(GLOBAL_DRAWS_BEFORE_SAMPLER)
                return TD.length_grouped_indices(lengths, group, stream.randperm(n))
        else:
            order = lambda epoch: TD.torch_randperm(n, self._seed() + epoch)  # noqa: E731
        return TD.EpochSampler(n, bs, self.args.dataloader_drop_last, order)

    def _lengths(self, dataset):
        name = None
        if self.processing_class is not None:
            name = (getattr(self.processing_class, "model_input_names", None) or [None])[0]
        return TD.dataset_lengths(dataset, self.args.length_column_name, name)

    def eval_order(self, dataset):
        if self._sampling_strategy() != "group_by_length":
            return list(range(len(dataset)))
        from ..sentence_transformers.hf_fields import transformers_version

        lengths = self._lengths(dataset)
        major_minor = tuple(int(x) for x in transformers_version().split(".")[:2])
        if major_minor < (5, 24):  # 5.3 draws the eval order from torch's global generator: not reproducible here
            raise ValueError("train_sampling_strategy='group_by_length' with transformers < 5.24 shuffles evaluation "
                             "rows with torch's global random state, which the MLX Trainer cannot reproduce. Evaluate "
                             "with train_sampling_strategy='random' or upgrade to transformers >= 5.24.")
        perm = TD.torch_randperm(len(dataset), self._seed())
        return TD.length_grouped_indices(lengths, self.args.eval_batch_size, perm)

    def collate(self, indices):
        if self._pending:
            return self._pending.pop(0)
        batch = self.collate_rows(self.train_dataset, indices)
        return {"batch": batch, "num_items_in_batch": self.items_in([batch]), "window": 1}

    def _optimizer_step(self, window):
        """Collate the whole accumulation window first: transformers counts num_items_in_batch over it."""
        batches = [self.collate_rows(self.train_dataset, idx) for idx in window]
        n_items = self.items_in(batches)
        if n_items is not None and self._averages_tokens():  # the count over every rank's window
            counts = distributed.agree(self._dp.world, [n_items], "counting num_items_in_batch", self._dp.timeout)
            n_items = int(sum(c[0] for c in counts))
        self._pending = [{"batch": b, "num_items_in_batch": n_items, "window": len(window)} for b in batches]
        try:
            loss, grad_norm = super()._optimizer_step(window)
        finally:
            self._pending = []
        return loss * self._accelerate_steps(), grad_norm  # transformers logs the loss before that division

    def loss_inputs(self, inputs):
        features = {"inputs": self.model_inputs(inputs["batch"]), "num_items_in_batch": inputs["num_items_in_batch"],
                    "window": inputs["window"]}
        return self._loss, features, None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """transformers' compute_loss: the model's loss (or ``compute_loss_func(outputs, labels,
        num_items_in_batch=...)``), ``num_items_in_batch`` passed when the model takes loss kwargs."""
        pops = self.compute_loss_func is not None or self.label_smoother is not None
        labels = inputs.pop("labels") if pops and "labels" in inputs else None
        if self.model_accepts_loss_kwargs and num_items_in_batch is not None:
            inputs = {**inputs, "num_items_in_batch": num_items_in_batch}
        outputs = model(**inputs)
        if self.compute_loss_func is not None:
            loss = self.compute_loss_func(outputs, labels, num_items_in_batch=num_items_in_batch)
        elif labels is not None:
            n_items = num_items_in_batch if smoother_takes_num_items() else None
            loss = label_smoothed_loss(outputs["logits"], labels, self.label_smoother, n_items)
        else:
            if isinstance(outputs, dict) and "loss" not in outputs:
                raise ValueError("The model did not return a loss from the inputs, only the following keys: "
                                 f"{','.join(outputs.keys())}. For reference, the inputs it received are "
                                 f"{','.join(inputs.keys())}.")
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs[0]
        if num_items_in_batch is not None and self._averages_tokens():  # transformers: loss *= num_processes
            loss = loss * distributed.world_size()
        return (loss, outputs) if return_outputs else loss

    # --- set-up -------------------------------------------------------------------------------------
    def train(self, resume_from_checkpoint=None, trial=None, ignore_keys_for_eval=None, **kwargs):
        if self.model_init is not None:  # transformers: seed, then a fresh model and optimizer per train()
            from .. import backend

            backend.seed_everything(self.args.seed)
            self.model = self._loss.model = self.model_init()
            self.callback_handler.refs["model"] = self.model
            self.optimizer, self.lr_scheduler = None, None
        return super().train(resume_from_checkpoint, trial, ignore_keys_for_eval, **kwargs)

    def validate_train_setup(self):
        if self.train_dataset is None:
            raise ValueError("Trainer: training requires a train_dataset.")
        if self.args.per_device_train_batch_size < 1:
            raise ValueError(f"per_device_train_batch_size={self.args.per_device_train_batch_size} must be >= 1.")
        trainer_checks.check_training_labels(self.model, self.train_dataset, self.label_names)
        trainer_checks.refuse_save_on_each_node(self.args)
        if self.eval_dataset is not None and not isinstance(self.eval_dataset, dict):
            trainer_checks.check_training_labels(self.model, self.eval_dataset, self.label_names, split="eval")
            if str(self.args.eval_strategy) != "no":
                self.eval_order(self.eval_dataset)  # a refused evaluation order fails now, not at the first eval
        self.collate_rows(self.train_dataset, range(min(2, len(self.train_dataset))))  # collator errors now
        self._model_prepared = True  # transformers' train() prepares the model: later evaluations report no
        # eval_model_preparation_time (unless an evaluation before training did)

    def _evaluate(self, ignore_keys=None):
        """Sharded over the ranks and gathered, as transformers under accelerate (the engine's default runs
        the whole set on every rank)."""
        metrics = self.evaluate(ignore_keys=ignore_keys)
        if self.is_in_train:
            self.model.train()
        return metrics

    def is_world_process_zero(self) -> bool:
        return self.args.process_index == 0

    def is_local_process_zero(self) -> bool:
        return self.args.local_process_index == 0

    def create_optimizer_and_scheduler(self, num_training_steps: int):
        args = self.args
        if self.optimizer is None and str(args.optim) == "sgd":
            self.optimizer = SGD.for_model(self.model, args.learning_rate, args.weight_decay, args.optim_args)
        super().create_optimizer_and_scheduler(num_training_steps)

    def save_model(self, output_dir=None, _internal_call: bool = False):
        super().save_model(output_dir, _internal_call)
        target = output_dir if output_dir is not None else self.args.output_dir
        if self.processing_class is not None and hasattr(self.processing_class, "save_pretrained") \
                and self.is_world_process_zero():
            self.processing_class.save_pretrained(str(target))


@functools.lru_cache(maxsize=None)
def _installed_source(module: str) -> str:
    """The installed transformers' ``<module>.py`` text (read, not imported: importing it imports torch)."""
    from ..sentence_transformers.hf_fields import training_args_source

    return (training_args_source().parent / f"{module}.py").read_text(encoding="utf-8")


def accelerate_handles_nothing() -> bool:
    """Whether the installed transformers sets accelerate's accumulation steps to 1 (5.24: it divides
    nothing in backward) rather than to gradient_accumulation_steps (5.3)."""
    return 'grad_acc_kwargs["num_steps"] = 1' in _installed_source("trainer")


def smoother_takes_num_items() -> bool:
    """Whether the installed LabelSmoother normalises by num_items_in_batch (5.24) or per batch (5.3)."""
    return "def __call__(self, model_output, labels, shift_labels=False, num_items_in_batch=None)" in \
        _installed_source("trainer_pt_utils")


# transformers' DataLoader draws a 64-bit base seed (two 32-bit outputs) from torch's global generator
# before its sampler runs, each epoch (checked against transformers in tests/test_transformers_trainer.py)
GLOBAL_DRAWS_BEFORE_SAMPLER = 2

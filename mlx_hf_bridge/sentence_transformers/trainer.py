"""``SentenceTransformerTrainer`` on MLX: ST's data flow on top of :class:`mlx_hf_bridge.engine.Trainer`."""

from __future__ import annotations

import inspect
import logging
import math
import os
import time

import mlx.core as mx
import mlx.nn as nn

from ..engine import data as D
from ..engine import sampling
from ..engine.trainer import Trainer
from ..modules.router import Router
from . import hub
from .evaluation import SequentialEvaluator
from .training_args import BatchSamplers, MultiDatasetBatchSamplers, SentenceTransformerTrainingArguments

logger = logging.getLogger(__name__)

# What known losses need, when the loss does not say (``loss.expected_inputs``):
# (min text columns, max text columns or None, needs labels, the roles in column order)
LOSS_INPUTS = {
    "Contrastive": (2, None, False, "query, positive[, negative, ...]"),
    "CachedContrastive": (2, None, False, "query, positive[, negative, ...]"),
    "Distillation": (2, 2, True, "query, documents (a list per query) and a 'scores' label column"),
    "MultipleNegativesRankingLoss": (2, None, False, "anchor, positive[, negative, ...]"),
    "CachedMultipleNegativesRankingLoss": (2, None, False, "anchor, positive[, negative, ...]"),
    "CoSENTLoss": (2, 2, True, "sentence1, sentence2 and a 'score' label column"),
    "CosineSimilarityLoss": (2, 2, True, "sentence1, sentence2 and a 'score' label column"),
}


def _is_loss_dict(loss) -> bool:
    """``{dataset_name: loss}``; a loss that is an ``mlx.nn.Module`` (a dict subclass) is one loss."""
    return isinstance(loss, dict) and not isinstance(loss, nn.Module)


def _own_parameters(loss, model) -> bool:
    """Whether ``loss`` is an ``nn.Module`` holding ``model`` and trainable parameters besides it. Another
    model the loss holds (a teacher or guide: anything with ``encode``) is frozen first: ST computes it
    without gradients, so torch's optimizer never moves it (here a zero gradient would still decay it)."""
    if not isinstance(loss, nn.Module) or getattr(loss, "model", None) is not model:
        return False
    from mlx.utils import tree_flatten

    for name, child in loss.children().items():
        if name != "model" and isinstance(child, nn.Module) and hasattr(child, "encode"):
            child.freeze()
    return any(not k.startswith("model.") for k, _ in tree_flatten(loss.trainable_parameters()))


def _modules(model) -> list:
    """The model's top-level modules (ST checks ``model.children()`` for a Router)."""
    try:
        return list(model)
    except TypeError:
        return []


def _loss_spec(loss):
    spec = getattr(loss, "expected_inputs", None)
    if spec is not None:
        lo, hi, labels = spec[:3]
        return lo, hi, labels, spec[3] if len(spec) > 3 else "see the loss's documentation"
    return LOSS_INPUTS.get(type(loss).__name__)


class SentenceTransformerTrainer(Trainer):
    """Drop-in for ``sentence_transformers.SentenceTransformerTrainer``: ST 5.3's signature (positional order)
    plus ST 6.2's ``processing_class`` and ``optimizer_cls_and_kwargs`` keywords, so scripts of either
    version run. Without ``loss``, a dense ``SentenceTransformer`` trains with ``CoSENTLoss`` (ST's default)."""

    def __init__(self, model=None, args=None, train_dataset=None, eval_dataset=None, loss=None, evaluator=None,
                 data_collator=None, tokenizer=None, model_init=None, compute_metrics=None, callbacks=None,
                 optimizers=(None, None), preprocess_logits_for_metrics=None, processing_class=None,
                 optimizer_cls_and_kwargs=None):
        if processing_class is not None:
            if tokenizer is not None and tokenizer is not processing_class:
                raise ValueError("Pass either `processing_class` (ST 6) or `tokenizer` (ST 5), not both.")
            tokenizer = processing_class
        if args is None:
            args = SentenceTransformerTrainingArguments(output_dir="tmp_trainer")
        elif not isinstance(args, SentenceTransformerTrainingArguments):
            raise ValueError(
                "Please use `SentenceTransformerTrainingArguments` imported from `mlx_hf_bridge.sentence_transformers` "
                f"(got {type(args).__module__}.{type(args).__name__})."
            )
        if model is None:
            if model_init is None:
                raise RuntimeError("`Trainer` requires either a `model` or `model_init` argument")
            model = model_init()
        self.model_init = model_init
        if compute_metrics is not None:
            logger.warning("`compute_metrics` is not supported by the SentenceTransformerTrainer; use `evaluator`.")
        if eval_dataset is None and evaluator is None and args.eval_strategy != "no":
            raise ValueError(
                f"You have set `args.eval_strategy` to {args.eval_strategy}, but you didn't provide an `eval_dataset` "
                "or an `evaluator`. Either provide an `eval_dataset` or an `evaluator` to `SentenceTransformerTrainer`, "
                "or set `args.eval_strategy='no'` to skip evaluation."
            )
        if tokenizer is None:
            tokenizer = getattr(model, "tokenizer", None)
        if data_collator is None:
            if not hasattr(model, "tokenize"):
                raise TypeError(f"{type(model).__name__} has no tokenize(); pass data_collator=... to the trainer.")
            if any(isinstance(module, Router) for module in _modules(model)) and not args.router_mapping:
                raise ValueError(
                    "You are using a Router module in your model, but you did not provide a `router_mapping` in the "
                    "training arguments. This means that the Router module will not be able to route the inputs to "
                    "the correct submodules. Please provide a `router_mapping` that maps column names to routes, "
                    "e.g. {'column_one': 'query', 'column_two': 'document', 'column_three': 'document'}."
                )
            data_collator = D.DefaultCollator(model.tokenize, router_mapping=args.router_mapping, prompts=args.prompts,
                                              stamp_task=getattr(model, "generation", None) == "st6")
        self.data_collator = data_collator
        self.tokenizer = self.processing_class = tokenizer
        if optimizer_cls_and_kwargs is not None:
            if optimizers is not None and optimizers[0] is not None:
                raise RuntimeError("Passing both `optimizers` and `optimizer_cls_and_kwargs` arguments is incompatible.")
            from ..engine.optim import adamw_from_cls_and_kwargs

            optimizers = (adamw_from_cls_and_kwargs(optimizer_cls_and_kwargs, model, args),
                          optimizers[1] if optimizers else None)
        self.optimizer_cls_and_kwargs = optimizer_cls_and_kwargs
        super().__init__(model, args, callbacks=callbacks, optimizers=optimizers, processing_class=tokenizer)

        if loss is None:
            loss = self.get_default_loss(model)
        if _is_loss_dict(loss):
            self.loss = {name: self._prepare_loss(fn, model) for name, fn in loss.items()}
            trains_own = [name for name, fn in self.loss.items() if _own_parameters(fn, model)]
            if trains_own:
                raise ValueError(
                    f"The losses for {trains_own} train parameters of their own (e.g. SoftmaxLoss's classifier); in a "
                    "loss dict the MLX trainer cannot train them yet. Train those datasets in a run of their own."
                )
            for split, ds in (("train", train_dataset), ("eval", eval_dataset)):
                if ds is None:
                    continue
                if not isinstance(ds, dict):
                    raise ValueError(
                        f"If the provided `loss` is a dict, then the `{split}_dataset` must be a `DatasetDict`."
                    )
                if missing := set(ds) - set(loss):
                    raise ValueError(f"The {split} dataset(s) {sorted(missing)} have no loss in the `loss` dict; add them.")
        else:
            self.loss = self._prepare_loss(loss, model)
        if evaluator is not None and isinstance(evaluator, (list, tuple)):
            evaluator = SequentialEvaluator(evaluator)
        self.evaluator = evaluator
        # the datasets as given (HF/ST attributes) and their indexable views
        self.train_dataset, self.eval_dataset = train_dataset, eval_dataset
        self._train = self._source(train_dataset, "train")
        self._eval = self._source(eval_dataset, "eval")

    # --- set-up helpers ------------------------------------------------------------------------
    def trained_module(self):
        """The loss itself when it trains parameters of its own beside the model (SoftmaxLoss's classifier,
        MSELoss's projection): ST's trainer optimises the loss's parameters, which include the model's."""
        return self.loss if _own_parameters(self.loss, self.model) else self.model

    # ST 5.3 with transformers' loop never zeroes the loss's own gradients (SoftmaxLoss's classifier
    # gradient sums over all steps so far); ST 6.2 does. Reproduced where ST 5 is installed; set this to
    # False for the fixed behaviour.
    reproduce_st5_loss_gradient_accumulation = True

    def carries_loss_gradients(self) -> bool:
        from ..modules.pooling import installed_generation

        return self.reproduce_st5_loss_gradient_accumulation and installed_generation() == "st5"

    def get_default_loss(self, model):
        """ST's default: ``CoSENTLoss(model)`` for a dense SentenceTransformer. A ColBERT model has no
        default in PyLate / ST 5 (ST would build CoSENT over its token embeddings), so it is refused."""
        from ..dense.model import SentenceTransformer

        if not isinstance(model, SentenceTransformer):
            raise ValueError(
                f"loss=None: a {type(model).__name__} has no default loss here (ST's CoSENTLoss default is for dense "
                "SentenceTransformer models). Pass one, e.g. loss=mlx_hf_bridge.pylate.losses.Contrastive(model)."
            )
        from ..losses import CoSENTLoss

        logger.info("No `loss` passed, using `CoSENTLoss` as a default option.")
        return CoSENTLoss(model)

    def _prepare_loss(self, loss, model):
        if isinstance(loss, type) or (not hasattr(loss, "model") and callable(loss)):
            try:
                required = [p for p in inspect.signature(loss).parameters.values() if p.default is p.empty]
            except (TypeError, ValueError):
                required = []
            if len(required) == 1:  # ST accepts a factory (or a loss class) ``model -> loss``
                loss = loss(model)
        if not hasattr(loss, "model") or not callable(loss):
            raise TypeError(
                f"{type(loss).__name__} is not a loss for this trainer: it needs `.model` and "
                "`__call__(sentence_features, labels) -> scalar mx.array` (see mlx_hf_bridge.pylate.losses)."
            )
        if loss.model is not model:
            raise ValueError(
                f"{type(loss).__name__} was built on a different model object than the one given to the trainer; "
                "build the loss with the same model: loss = Loss(model)."
            )
        return loss

    def _source(self, dataset, split):
        if dataset is None:
            return None
        prompts, routes = self.args.prompts, self.args.router_mapping
        add_name = isinstance(dataset, dict) and (
            _is_loss_dict(self.loss) or isinstance(prompts, dict)
            or bool(routes and isinstance(next(iter(routes.values())), dict))
        )
        source = D.Source(dataset, split, add_dataset_name=add_name)
        labels = getattr(self.data_collator, "valid_label_columns", D.ST_LABEL_COLUMNS)
        for name, ds in source.parts:
            D.check_label_types(ds, labels, split, name)
        return source

    def _loss_for(self, dataset_name):
        if _is_loss_dict(self.loss):
            if dataset_name not in self.loss:
                raise KeyError(f"No loss for dataset {dataset_name!r}; the loss dict has {sorted(self.loss)}.")
            return self.loss[dataset_name]
        return self.loss

    def validate_train_setup(self):
        """Bad input fails here, before the optimizer or any forward pass: a dry-run of the collator."""
        if self._train is None:
            raise ValueError("Training requires specifying a train_dataset to the SentenceTransformerTrainer.")
        args, bs = self.args, self.args.per_device_train_batch_size
        if bs < 1:
            raise ValueError(f"per_device_train_batch_size={bs} must be >= 1.")
        for name, ds in self._train.parts:
            where = "train dataset" + (f" {name!r}" if name else "")
            if len(ds) < bs:
                if args.dataloader_drop_last:
                    raise ValueError(
                        f"The {where} has {len(ds)} rows, fewer than per_device_train_batch_size={bs}, and "
                        "dataloader_drop_last=True drops every batch. Lower the batch size or set "
                        "dataloader_drop_last=False."
                    )
                logger.warning("The %s has %d rows < per_device_train_batch_size=%d: each epoch is one smaller "
                               "batch.",
                               where, len(ds), bs)
            self._check_columns(ds, name, "train")
        if self._eval is not None:
            for name, ds in self._eval.parts:
                self._check_columns(ds, name, "eval")

    def _check_columns(self, ds, name, split):
        rows = D.Source({name: ds} if name else ds, split, add_dataset_name=bool(name)).rows(range(min(2, len(ds))))
        inputs = D.to_mx(self.data_collator(rows))
        features, labels = self.collect_features(inputs)
        where = f"{split} dataset" + (f" {name!r}" if name else "")
        cols = [c for c in ds.column_names]
        if not features:
            raise ValueError(
                f"The {where} has no text columns (columns: {cols}); the loss needs at least one. Text columns are "
                "every column except the label ('label'/'scores') and, with ColBERTCollator, names containing '_id'."
            )
        loss = self._loss_for(inputs.get("dataset_name"))
        spec = _loss_spec(loss)
        if spec is None:
            return
        lo, hi, needs_labels, roles = spec
        n = len(features)
        if n < lo or (hi is not None and n > hi):
            want = f"{lo}" if hi == lo else f"at least {lo}" if hi is None else f"{lo} to {hi}"
            raise ValueError(
                f"{type(loss).__name__} expects {want} text columns ({roles}) but the {where} gives {n} "
                f"(columns: {cols}). Columns are used by position, not by name: reorder/select them with "
                "dataset.select_columns([...]) or rename_column(...)."
            )
        if needs_labels and labels is None:
            raise ValueError(
                f"{type(loss).__name__} needs a label column ({roles}) but the {where} has none (columns: {cols}). "
                f"Name it one of {getattr(self.data_collator, 'valid_label_columns', D.ST_LABEL_COLUMNS)}."
            )
        check = getattr(loss, "check_labels", None)
        if check is not None:  # a loss's own label checks (dtype, shape), on the first rows, before training
            check(labels, where)

    # --- data -----------------------------------------------------------------------------------
    def get_batch_sampler(self, dataset, batch_size, drop_last, valid_label_columns=None, generator=None, seed=0):
        choice = self.args.batch_sampler
        kwargs = dict(batch_size=batch_size, drop_last=drop_last, valid_label_columns=valid_label_columns,
                      generator=generator, seed=seed)
        if callable(choice) and not isinstance(choice, BatchSamplers):
            return choice(dataset, **kwargs)
        return sampling.BATCH_SAMPLERS[BatchSamplers(choice).value](dataset, **kwargs)

    def get_multi_dataset_batch_sampler(self, dataset, batch_samplers, generator=None, seed=0):
        choice = self.args.multi_dataset_batch_sampler
        if callable(choice) and not isinstance(choice, MultiDatasetBatchSamplers):
            return choice(dataset=dataset, batch_samplers=batch_samplers, generator=generator, seed=seed)
        cls = sampling.MULTI_DATASET_SAMPLERS[MultiDatasetBatchSamplers(choice).value]
        return cls(dataset.sizes, batch_samplers, seed=seed)

    def get_train_batch_sampler(self):
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        labels = getattr(self.data_collator, "valid_label_columns", D.ST_LABEL_COLUMNS)
        samplers = [
            self.get_batch_sampler(ds, self.args.per_device_train_batch_size, self.args.dataloader_drop_last,
                                   valid_label_columns=labels, seed=seed)
            for _, ds in self._train.parts
        ]
        if not self._train.is_multi:
            return samplers[0]
        return self.get_multi_dataset_batch_sampler(self._train, samplers, seed=seed)

    def num_examples(self) -> int:
        return len(self._train)

    def collate(self, indices, source=None):
        return D.to_mx(self.data_collator((source or self._train).rows(indices)))

    def collect_features(self, inputs):
        return D.collect_features(inputs)

    def loss_inputs(self, inputs):
        inputs = dict(inputs)
        loss = self._loss_for(inputs.pop("dataset_name", None))
        features, labels = self.collect_features(inputs)
        return loss, features, labels

    def train(self, *args, **kwargs):
        output = super().train(*args, **kwargs)
        # later model.save()/push_to_hub() write a card with the loss, data and training log
        # (object.__setattr__: an MLX Module would store a dict attribute as a child of the tree)
        object.__setattr__(self.model, "card_info", hub.card_info(self))
        return output

    def push_to_hub(self, commit_message="End of training", blocking=True, token=None, revision=None, **kwargs) -> str:
        if self.is_world_process_zero():  # as HF: only rank 0 pushes under mlx.launch
            return hub.push_to_hub(self, commit_message, blocking, token, revision, **kwargs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss_fn, features, labels = self.loss_inputs(inputs)
        loss = loss_fn(features, labels)
        return (loss, {}) if return_outputs else loss

    # --- evaluation -----------------------------------------------------------------------------
    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval") -> dict:
        source = self._source(eval_dataset, "eval") if eval_dataset is not None else self._eval
        self.model.eval()
        start, metrics, n_samples, n_steps = time.time(), {}, 0, 0
        bs = self.args.per_device_eval_batch_size
        if source is not None:
            for name, ds in source.parts:
                prefix = metric_key_prefix + (f"_{name}" if name else "")
                offset = source.offsets[[n for n, _ in source.parts].index(name)]
                total = count = 0.0
                stop = len(ds) - len(ds) % bs if self.args.dataloader_drop_last else len(ds)
                for i in range(0, stop, bs):
                    idx = range(offset + i, offset + min(i + bs, len(ds)))
                    loss = self.compute_loss(self.model, self.collate(idx, source))
                    total += float(loss.astype(mx.float32).item()) * len(idx)
                    count += len(idx)
                    n_steps += 1
                n_samples += int(count)
                if count:
                    metrics[f"{prefix}_loss"] = total / count
        if self.evaluator is not None:
            out_dir = os.path.join(self.args.output_dir, "eval")
            os.makedirs(out_dir, exist_ok=True)
            scores = self.evaluator(self.model, output_path=out_dir, epoch=self.state.epoch, steps=self.state.global_step)
            scores = scores if isinstance(scores, dict) else {"evaluator": scores}
            for key, value in scores.items():
                metrics[key if key.startswith(f"{metric_key_prefix}_") else f"{metric_key_prefix}_{key}"] = value
        runtime = max(time.time() - start, 1e-9)
        metrics[f"{metric_key_prefix}_runtime"] = round(runtime, 4)
        metrics[f"{metric_key_prefix}_samples_per_second"] = round(n_samples / runtime, 3)
        metrics[f"{metric_key_prefix}_steps_per_second"] = round(math.ceil(n_steps) / runtime, 3)
        for key in ignore_keys or []:
            metrics.pop(f"{metric_key_prefix}_{key}", None)
        self.log(dict(metrics))
        self.control = self._event("on_evaluate", metrics=metrics)
        return metrics


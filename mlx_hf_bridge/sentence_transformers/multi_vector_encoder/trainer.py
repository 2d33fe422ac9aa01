"""``MultiVectorEncoderTrainer`` (ST 6.2) on MLX: the ST trainer (``sentence_transformers.trainer``,
the one engine loop underneath) with ST 6's signature, default loss, collator and arguments."""

from __future__ import annotations

import logging

from ...engine.optim import AdamW
from ..trainer import SentenceTransformerTrainer
from ..training_args import MultiVectorEncoderTrainingArguments
from .data_collator import MultiVectorEncoderDataCollator

logger = logging.getLogger(__name__)

# torch.optim.AdamW's defaults, used where optimizer_cls_and_kwargs leaves them out (as torch would)
TORCH_ADAMW_DEFAULTS = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8}
# AdamW keywords that only choose a torch kernel: same update
SPEED_ONLY_KWARGS = ("foreach", "fused", "capturable", "differentiable")


def adamw_from_cls_and_kwargs(optimizer_cls_and_kwargs, model, args) -> AdamW:
    """``(AdamW class, kwargs)`` -> the engine's AdamW with the same update. transformers builds
    ``optimizer_cls(param_groups, **kwargs)`` with groups carrying ``args.weight_decay`` (0 for
    biases and norms), so weight decay comes from ``args`` and lr / betas / eps from ``kwargs``."""
    optimizer_cls, kwargs = optimizer_cls_and_kwargs
    kwargs = dict(kwargs or {})
    name = getattr(optimizer_cls, "__name__", type(optimizer_cls).__name__)
    if name != "AdamW":
        raise ValueError(
            f"optimizer_cls_and_kwargs=({name}, ...): the MLX engine trains with AdamW only (torch optimizers "
            "cannot drive MLX parameters). Pass (torch.optim.AdamW, {...}) or leave it out and set "
            "learning_rate / weight_decay / adam_beta1 / adam_beta2 / adam_epsilon in the training arguments."
        )
    unsupported = sorted(k for k, v in kwargs.items() if k not in (*TORCH_ADAMW_DEFAULTS, "weight_decay", *SPEED_ONLY_KWARGS)
                         and v not in (False, None))
    if unsupported:
        raise ValueError(
            f"optimizer_cls_and_kwargs: AdamW option(s) {unsupported} are not reproduced on MLX; remove them "
            "(supported: lr, betas, eps, weight_decay)."
        )
    settings = {**TORCH_ADAMW_DEFAULTS, **{k: kwargs[k] for k in TORCH_ADAMW_DEFAULTS if k in kwargs}}
    return AdamW.for_model(model, float(settings["lr"]), args.weight_decay, tuple(settings["betas"]),
                           float(settings["eps"]), lr_mapping=getattr(args, "learning_rate_mapping", None))


class MultiVectorEncoderTrainer(SentenceTransformerTrainer):
    """Drop-in for ``sentence_transformers.MultiVectorEncoderTrainer`` (ST 6.2's signature).

    Defaults as ST 6: ``args=MultiVectorEncoderTrainingArguments(output_dir="tmp_trainer")``,
    ``loss=MultiVectorMultipleNegativesRankingLoss(model)``, ``data_collator=
    MultiVectorEncoderDataCollator(model.preprocess, router_mapping=, prompts=, max_length=)`` from
    the arguments, ``processing_class`` the model's tokenizer. ``optimizers`` takes the engine's
    ``(AdamW, Schedule)``; ``optimizer_cls_and_kwargs`` an AdamW class and its keywords.
    """

    training_args_class = MultiVectorEncoderTrainingArguments
    data_collator_class = MultiVectorEncoderDataCollator

    def __init__(self, model=None, args=None, train_dataset=None, eval_dataset=None, loss=None, evaluator=None,
                 data_collator=None, processing_class=None, model_init=None, compute_metrics=None, callbacks=None,
                 optimizers=(None, None), optimizer_cls_and_kwargs=None, preprocess_logits_for_metrics=None,
                 tokenizer=None):
        if tokenizer is not None:  # ST 6's deprecated alias
            logger.warning("The `tokenizer` argument is deprecated; use `processing_class` instead.")
            processing_class = processing_class if processing_class is not None else tokenizer
        if args is None:
            args = self.training_args_class(output_dir="tmp_trainer")
        elif not isinstance(args, self.training_args_class):
            raise ValueError(
                "Please pass an instance of `mlx_hf_bridge.sentence_transformers.MultiVectorEncoderTrainingArguments` "
                f"as the `args` argument (got {type(args).__module__}.{type(args).__name__})."
            )
        if model is None and model_init is not None:
            model = model_init()
        if data_collator is None and model is not None:
            data_collator = self.data_collator_class(
                preprocess_fn=model.preprocess, router_mapping=args.router_mapping, prompts=args.prompts,
                max_length=getattr(args, "max_length", None),
            )
        if loss is None and model is not None:
            loss = self.get_default_loss(model)
        if optimizer_cls_and_kwargs is not None:
            if optimizers is not None and optimizers[0] is not None:
                raise RuntimeError("Passing both `optimizers` and `optimizer_cls_and_kwargs` arguments is incompatible.")
            optimizers = (adamw_from_cls_and_kwargs(optimizer_cls_and_kwargs, model, args),
                          optimizers[1] if optimizers else None)
        self.optimizer_cls_and_kwargs = optimizer_cls_and_kwargs
        super().__init__(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset, loss=loss,
                         evaluator=evaluator, data_collator=data_collator, tokenizer=processing_class,
                         model_init=None, compute_metrics=compute_metrics, callbacks=callbacks,
                         optimizers=optimizers, preprocess_logits_for_metrics=preprocess_logits_for_metrics)
        self.model_init = model_init

    def get_default_loss(self, model):
        from .losses import MultiVectorMultipleNegativesRankingLoss

        logger.info(
            "No `loss` passed, using `MultiVectorMultipleNegativesRankingLoss` as the default. "
            "Provide a different loss via the `loss=` argument if you want to train with knowledge distillation, "
            "margin-MSE, or a cached / large-batch InfoNCE objective."
        )
        return MultiVectorMultipleNegativesRankingLoss(model=model)

"""``MultiVectorEncoderTrainer`` (ST 6.2) on MLX: the ST trainer (``sentence_transformers.trainer``,
the one engine loop underneath) with ST 6's signature, default loss, collator and arguments."""

from __future__ import annotations

import logging

from ..trainer import SentenceTransformerTrainer
from ..training_args import MultiVectorEncoderTrainingArguments
from .data_collator import MultiVectorEncoderDataCollator

logger = logging.getLogger(__name__)

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
        super().__init__(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset, loss=loss,
                         evaluator=evaluator, data_collator=data_collator, processing_class=processing_class,
                         model_init=None, compute_metrics=compute_metrics, callbacks=callbacks,
                         optimizers=optimizers, preprocess_logits_for_metrics=preprocess_logits_for_metrics,
                         optimizer_cls_and_kwargs=optimizer_cls_and_kwargs)
        self.model_init = model_init

    def get_default_loss(self, model):
        from .losses import MultiVectorMultipleNegativesRankingLoss

        logger.info(
            "No `loss` passed, using `MultiVectorMultipleNegativesRankingLoss` as the default. "
            "Provide a different loss via the `loss=` argument if you want to train with knowledge distillation, "
            "margin-MSE, or a cached / large-batch InfoNCE objective."
        )
        return MultiVectorMultipleNegativesRankingLoss(model=model)

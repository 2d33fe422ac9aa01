"""DistillKLDivLoss on reranker-scored MS MARCO rows (query, positive, negatives, a list of teacher scores),
evaluated by an InformationRetrievalEvaluator and NanoBEIR in a SequentialEvaluator — as sentence-transformers
6.2's ``examples/sentence_transformer/training/ms_marco/train_kldiv.py``.

A reconstruction, not a copy (see README.md): the same calls, smaller sizes. ``python train_kldiv.py``.
"""

import logging
import random

import numpy
import torch
from datasets import load_dataset

from sentence_transformers import (
    SentenceTransformer,
    SentenceTransformerModelCardData,
    SentenceTransformerTrainer,
    SentenceTransformerTrainingArguments,
)
from sentence_transformers.sentence_transformer.evaluation import (
    InformationRetrievalEvaluator,
    NanoBEIREvaluator,
    SequentialEvaluator,
)
from sentence_transformers.sentence_transformer.losses import DistillKLDivLoss

logging.basicConfig(format="%(asctime)s - %(message)s", datefmt="%Y-%m-%d %H:%M:%S", level=logging.INFO)
random.seed(12)
torch.manual_seed(12)
numpy.random.seed(12)


def main():
    model = SentenceTransformer(
        "microsoft/mpnet-base",
        model_card_data=SentenceTransformerModelCardData(
            language="en", license="apache-2.0", model_name="mpnet-base finetuned on MSMARCO via distillation",
        ),
        model_kwargs={"torch_dtype": "float32"},
    )
    train_dataset = load_dataset("tomaarsen/msmarco-Qwen3-Reranker-0.6B", split="train").select(range(32))
    eval_dataset = load_dataset("tomaarsen/msmarco-Qwen3-Reranker-0.6B", split="eval").select(range(8))
    loss = DistillKLDivLoss(model=model)  # the "score" column: one teacher score per document column

    run_name = "mpnet-base-msmarco-kldiv"
    args = SentenceTransformerTrainingArguments(
        output_dir=f"models/{run_name}",
        num_train_epochs=1,
        per_device_train_batch_size=8,
        per_device_eval_batch_size=8,
        learning_rate=4e-5,
        warmup_steps=0.1,
        fp16=False,
        bf16=True,
        eval_strategy="steps",
        eval_steps=2,
        save_strategy="steps",
        save_steps=2,
        save_total_limit=5,
        logging_steps=1,
        run_name=run_name,
    )

    # every eval query against the eval positives: query i's relevant document is document i
    queries = eval_dataset["query"]
    ir_evaluator = InformationRetrievalEvaluator(
        queries=dict(enumerate(queries)),
        corpus=dict(enumerate(eval_dataset["positive"])),
        relevant_docs={i: [i] for i in range(len(queries))},
        batch_size=8,
        name="msmarco-eval",
    )
    nano = NanoBEIREvaluator(dataset_names=["msmarco", "nfcorpus", "nq"], batch_size=8)
    dev_evaluator = SequentialEvaluator([ir_evaluator, nano])

    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset, loss=loss,
        evaluator=dev_evaluator,
    )
    trainer.train()
    print("AFTER", dev_evaluator(model))

    model.save_pretrained(f"models/{run_name}/final")
    print("SAVED", f"models/{run_name}/final")
    model.push_to_hub(run_name)
    print("PUSHED", run_name)


if __name__ == "__main__":
    main()

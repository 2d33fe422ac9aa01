"""MarginMSELoss on MS MARCO (query, positive, negative, teacher margin) with NanoBEIR evaluation — as
sentence-transformers 6.2's ``examples/sentence_transformer/training/ms_marco/train_bi_encoder_margin_mse.py``.

A reconstruction, not a copy (see README.md): the same calls (``import torch`` for seeds, dtype and
``torch.autocast`` around the evaluator, ``SentenceTransformerModelCardData``, ``model_kwargs`` /
``processor_kwargs`` / ``similarity_fn_name="dot"``, ids mapped to texts with ``dataset.map(batched=True)``,
fractional ``eval_steps`` / ``save_steps`` / ``logging_steps``, ``bf16=True``, ``NanoBEIREvaluator``,
``save_pretrained`` and ``push_to_hub``), smaller sizes. ``python train_bi_encoder_margin_mse.py``.
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
from sentence_transformers.sentence_transformer.evaluation import NanoBEIREvaluator
from sentence_transformers.sentence_transformer.losses import MarginMSELoss

logging.basicConfig(format="%(asctime)s - %(message)s", datefmt="%Y-%m-%d %H:%M:%S", level=logging.INFO)
random.seed(12)
torch.manual_seed(12)
numpy.random.seed(12)


def main():
    base = "distilbert/distilbert-base-uncased"
    batch_size = 8
    short = base.split("/")[-1]
    model = SentenceTransformer(
        base,
        model_card_data=SentenceTransformerModelCardData(
            language="en", license="apache-2.0", model_name=f"{short} finetuned on MSMARCO with MarginMSELoss",
        ),
        model_kwargs={"torch_dtype": torch.float32},
        processor_kwargs={"model_max_length": 64},
        similarity_fn_name="dot",  # MarginMSE fits raw dot-product margins
    )

    corpus = load_dataset("sentence-transformers/msmarco", "corpus", split="train")
    corpus = dict(zip(corpus["passage_id"], corpus["passage"]))
    queries = load_dataset("sentence-transformers/msmarco", "queries", split="train")
    queries = dict(zip(queries["query_id"], queries["query"]))
    dataset = load_dataset("sentence-transformers/msmarco", "bert-ensemble-margin-mse", split="train").select(range(32))

    def to_texts(batch):
        return {
            "query": [queries[qid] for qid in batch["query_id"]],
            "positive": [corpus[pid] for pid in batch["positive_id"]],
            "negative": [corpus[pid] for pid in batch["negative_id"]],
            "score": batch["score"],
        }

    dataset = dataset.map(to_texts, batched=True, remove_columns=["query_id", "positive_id", "negative_id"])
    loss = MarginMSELoss(model)

    run_name = f"{short}-msmarco-margin-mse"
    args = SentenceTransformerTrainingArguments(
        output_dir=f"models/{run_name}",
        num_train_epochs=1,
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size,
        learning_rate=5e-5,
        warmup_ratio=0.1,
        fp16=False,
        bf16=True,
        eval_strategy="steps",
        eval_steps=0.5,
        save_strategy="steps",
        save_steps=0.5,
        save_total_limit=2,
        logging_steps=0.25,
        run_name=run_name,
    )
    dev_evaluator = NanoBEIREvaluator(dataset_names=["msmarco", "nfcorpus", "nq"], batch_size=batch_size)
    with torch.autocast(device_type=model.device.type, dtype=torch.bfloat16):
        print("BEFORE", dev_evaluator(model))

    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=loss, evaluator=dev_evaluator)
    trainer.train()
    with torch.autocast(device_type=model.device.type, dtype=torch.bfloat16):
        print("AFTER", dev_evaluator(model))

    final_dir = f"models/{run_name}/final"
    model.save_pretrained(final_dir)
    print("SAVED", final_dir)
    try:
        model.push_to_hub(run_name)
        print("PUSHED", run_name)
    except Exception:
        logging.error(f"Upload to the Hugging Face Hub failed; load {final_dir!r} and push it by hand.")


if __name__ == "__main__":
    main()

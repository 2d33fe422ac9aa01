"""Contrastive ColBERT training, as in PyLate's ``examples/train/contrastive.py`` (PyLate 1.6 era).

A reconstruction, not a copy (see README.md): the same PyLate / sentence-transformers calls with the same
arguments, including ``torch.compile(model)`` and ``fp16=True``. Model and dataset ids can be swapped for
local paths with PYLATE_EXAMPLE_MODEL / PYLATE_EXAMPLE_DATA.
"""

from __future__ import annotations

import os

import torch
from datasets import load_dataset
from sentence_transformers import (
    SentenceTransformerTrainer,
    SentenceTransformerTrainingArguments,
)

from pylate import evaluation, losses, models, utils

base_model = os.environ.get("PYLATE_EXAMPLE_MODEL", "bert-base-uncased")
triplets_repo = os.environ.get("PYLATE_EXAMPLE_DATA", "sentence-transformers/msmarco-bm25")

batch_size = 32
epochs = 1
run_name = "contrastive-bert-base-uncased"
output_dir = f"output/{run_name}"

# Plain encoders get a [Q]/[D]-aware ColBERT head (a linear projection to 128 dims).
model = models.ColBERT(model_name_or_path=base_model)
model = torch.compile(model)

# (query, positive, negative) triplets; 1% of them is kept aside for evaluation.
triplets = load_dataset(triplets_repo, "triplet", split="train")
parts = triplets.train_test_split(test_size=0.01)
train_dataset, eval_dataset = parts["train"], parts["test"]

loss = losses.Contrastive(model=model)
evaluator = evaluation.ColBERTTripletEvaluator(
    anchors=eval_dataset["query"],
    positives=eval_dataset["positive"],
    negatives=eval_dataset["negative"],
)

args = SentenceTransformerTrainingArguments(
    output_dir=output_dir,
    num_train_epochs=epochs,
    per_device_train_batch_size=batch_size,
    per_device_eval_batch_size=batch_size,
    fp16=True,
    bf16=False,
    run_name=run_name,
    learning_rate=3e-6,
)

trainer = SentenceTransformerTrainer(
    model=model,
    args=args,
    train_dataset=train_dataset,
    eval_dataset=eval_dataset,
    loss=loss,
    evaluator=evaluator,
    data_collator=utils.ColBERTCollator(model.tokenize),
)
trainer.train()

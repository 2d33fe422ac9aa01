"""Knowledge distillation of ColBERT from teacher scores, as in PyLate's
``examples/train/knowledge_distillation.py`` (PyLate 1.6 era).

A reconstruction, not a copy (see README.md): the same calls with the same arguments, including the three
``load_dataset(path=..., name=...)`` DatasetDicts, ``set_transform(KDProcessing(...).transform)``,
``torch.compile(model)`` and ``fp16=True``. Ids can be swapped for local paths with PYLATE_EXAMPLE_MODEL /
PYLATE_EXAMPLE_DATA.
"""

import os

import torch
from datasets import load_dataset
from sentence_transformers import (
    SentenceTransformerTrainer,
    SentenceTransformerTrainingArguments,
)

from pylate import losses, models, utils

kd_repo = os.environ.get("PYLATE_EXAMPLE_DATA", "lightonai/ms-marco-en-bge")
base_model = os.environ.get("PYLATE_EXAMPLE_MODEL", "bert-base-uncased")

# Rows hold (query_id, document_ids, teacher scores); texts come from the queries / documents configs.
train = load_dataset(path=kd_repo, name="train")
queries = load_dataset(path=kd_repo, name="queries")
documents = load_dataset(path=kd_repo, name="documents")
train.set_transform(utils.KDProcessing(queries=queries, documents=documents).transform)

batch_size = 16
epochs = 1
run_name = "knowledge-distillation-bert-base"
output_dir = f"output/{run_name}"

model = models.ColBERT(model_name_or_path=base_model)
model = torch.compile(model)

args = SentenceTransformerTrainingArguments(
    output_dir=output_dir,
    num_train_epochs=epochs,
    per_device_train_batch_size=batch_size,
    fp16=True,
    bf16=False,
    run_name=run_name,
    learning_rate=1e-5,
)

loss = losses.Distillation(model=model)

trainer = SentenceTransformerTrainer(
    model=model,
    args=args,
    train_dataset=train,
    loss=loss,
    data_collator=utils.ColBERTCollator(tokenize_fn=model.tokenize),
)
trainer.train()

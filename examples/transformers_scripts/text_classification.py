"""Fine-tune a sequence classifier, in the style of transformers' "Text classification" task guide
(``docs/source/en/tasks/sequence_classification.md``): datasets + tokenizer ``.map``, dynamic padding,
``AutoModelForSequenceClassification`` with ``id2label`` / ``label2id``, ``Trainer`` with a NumPy
``compute_metrics`` (the guide's ``evaluate.load("accuracy")`` written out, so nothing is downloaded).

    python text_classification.py                         # torch + transformers
    mlx-hf-bridge run text_classification.py              # the same file on MLX

The guide's model and dataset are the defaults; ``--model`` / ``--dataset`` take local folders.
"""

import argparse

import numpy as np
from datasets import load_dataset
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)

parser = argparse.ArgumentParser()
parser.add_argument("--model", default="google-bert/bert-base-uncased")
parser.add_argument("--dataset", default="stanfordnlp/imdb")
parser.add_argument("--output_dir", default="my_awesome_model")
parser.add_argument("--train_rows", type=int, default=None)
parser.add_argument("--eval_rows", type=int, default=None)
parser.add_argument("--epochs", type=float, default=2)
parser.add_argument("--batch_size", type=int, default=16)
args = parser.parse_args()

imdb = load_dataset(args.dataset)
tokenizer = AutoTokenizer.from_pretrained(args.model)


def preprocess_function(examples):
    return tokenizer(examples["text"], truncation=True)


tokenized_imdb = imdb.map(preprocess_function, batched=True)
data_collator = DataCollatorWithPadding(tokenizer=tokenizer)

train_dataset, eval_dataset = tokenized_imdb["train"], tokenized_imdb["test"]
if args.train_rows:
    train_dataset = train_dataset.shuffle(seed=42).select(range(args.train_rows))
if args.eval_rows:
    eval_dataset = eval_dataset.shuffle(seed=42).select(range(args.eval_rows))


def compute_metrics(eval_pred):
    predictions, labels = eval_pred
    predictions = np.argmax(predictions, axis=1)
    return {"accuracy": float((predictions == labels).mean())}


id2label = {0: "NEGATIVE", 1: "POSITIVE"}
label2id = {"NEGATIVE": 0, "POSITIVE": 1}

model = AutoModelForSequenceClassification.from_pretrained(
    args.model, num_labels=2, id2label=id2label, label2id=label2id
)

training_args = TrainingArguments(
    output_dir=args.output_dir,
    learning_rate=2e-5,
    per_device_train_batch_size=args.batch_size,
    per_device_eval_batch_size=args.batch_size,
    num_train_epochs=args.epochs,
    weight_decay=0.01,
    eval_strategy="epoch",
    save_strategy="epoch",
    load_best_model_at_end=True,
    push_to_hub=False,
    seed=42,
    report_to="none",
)

trainer = Trainer(
    model=model,
    args=training_args,
    train_dataset=train_dataset,
    eval_dataset=eval_dataset,
    processing_class=tokenizer,
    data_collator=data_collator,
    compute_metrics=compute_metrics,
)

trainer.train()
metrics = trainer.evaluate()
print("EVAL", metrics)
trainer.save_model(f"{args.output_dir}/final")
print("SAVED", f"{args.output_dir}/final")

"""CoSENTLoss on STSb scores — as the STS example of the sentence-transformers 3-5 era
(``examples/training/sts/training_stsbenchmark.py``, ST 5.3 import paths, which ST 6 keeps as shims).

A reconstruction, not a copy (see README.md): the same calls (``losses.CoSENTLoss``,
``evaluation.EmbeddingSimilarityEvaluator`` with ``main_similarity``, ``SentenceTransformerTrainer`` with an
eval dataset and evaluator, ``model.save``, ``push_to_hub``), smaller sizes. ``python training_stsbenchmark.py [model]``.
"""

import logging
import sys
import traceback
from datetime import datetime

from datasets import load_dataset

from sentence_transformers import SentenceTransformer, losses
from sentence_transformers.evaluation import EmbeddingSimilarityEvaluator, SimilarityFunction
from sentence_transformers.trainer import SentenceTransformerTrainer
from sentence_transformers.training_args import SentenceTransformerTrainingArguments

logging.basicConfig(format="%(asctime)s - %(message)s", datefmt="%Y-%m-%d %H:%M:%S", level=logging.INFO)

base = sys.argv[1] if len(sys.argv) > 1 else "distilbert/distilbert-base-uncased"
output_dir = f"output/training_stsbenchmark_{base.replace('/', '-')}-{datetime.now().strftime('%Y-%m-%d_%H-%M-%S')}"

model = SentenceTransformer(base)
train_dataset = load_dataset("sentence-transformers/stsb", split="train")
eval_dataset = load_dataset("sentence-transformers/stsb", split="validation")
test_dataset = load_dataset("sentence-transformers/stsb", split="test")

train_loss = losses.CoSENTLoss(model=model)  # (sentence1, sentence2) with a float score in [0, 1]

dev_evaluator = EmbeddingSimilarityEvaluator(
    sentences1=eval_dataset["sentence1"],
    sentences2=eval_dataset["sentence2"],
    scores=eval_dataset["score"],
    main_similarity=SimilarityFunction.COSINE,
    name="sts-dev",
)

args = SentenceTransformerTrainingArguments(
    output_dir=output_dir,
    num_train_epochs=2,
    per_device_train_batch_size=16,
    per_device_eval_batch_size=16,
    warmup_ratio=0.1,
    fp16=True,
    bf16=False,
    eval_strategy="steps",
    eval_steps=4,
    save_strategy="steps",
    save_steps=4,
    save_total_limit=2,
    logging_steps=2,
    run_name="sts",
)
trainer = SentenceTransformerTrainer(
    model=model,
    args=args,
    train_dataset=train_dataset,
    eval_dataset=eval_dataset,
    loss=train_loss,
    evaluator=dev_evaluator,
)
trainer.train()

test_evaluator = EmbeddingSimilarityEvaluator(
    sentences1=test_dataset["sentence1"],
    sentences2=test_dataset["sentence2"],
    scores=test_dataset["score"],
    main_similarity=SimilarityFunction.COSINE,
    name="sts-test",
)
print("TEST", test_evaluator(model))

final_dir = f"{output_dir}/final"
model.save(final_dir)
print("SAVED", final_dir)
short = base.split("/")[-1]
try:
    model.push_to_hub(f"{short}-sts")
    print("PUSHED", f"{short}-sts")
except Exception:
    logging.error(f"Upload to the Hugging Face Hub failed:\n{traceback.format_exc()}Load {final_dir!r} and push it by hand.")

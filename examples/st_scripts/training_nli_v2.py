"""MultipleNegativesRankingLoss on AllNLI triplets, evaluated on STSb — as sentence-transformers 6.2's
``examples/sentence_transformer/training/nli/training_nli_v2.py``.

A reconstruction, not a copy (see README.md): the same sentence-transformers calls with the same arguments
(ST 6.2 import paths, ``fp16=True``, ``BatchSamplers.NO_DUPLICATES``, evaluation before and after training,
``model.save`` and ``push_to_hub``), with smaller sizes. ``python training_nli_v2.py [model]``.
"""

import logging
import sys
import traceback
from datetime import datetime

from datasets import load_dataset

from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
from sentence_transformers.sentence_transformer.trainer import SentenceTransformerTrainer
from sentence_transformers.sentence_transformer.training_args import (
    BatchSamplers,
    SentenceTransformerTrainingArguments,
)
from sentence_transformers.util.similarity import SimilarityFunction

logging.basicConfig(format="%(asctime)s - %(message)s", datefmt="%Y-%m-%d %H:%M:%S", level=logging.INFO)

base = sys.argv[1] if len(sys.argv) > 1 else "distilbert/distilroberta-base"
batch_size = 16
stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
output_dir = f"output/training_nli_v2_{base.replace('/', '-')}-{stamp}"

# A plain transformer: sentence-transformers adds mean pooling
model = SentenceTransformer(base, model_kwargs={"torch_dtype": "float32"})

train_dataset = load_dataset("sentence-transformers/all-nli", "triplet", split="train").select(range(64))
eval_dataset = load_dataset("sentence-transformers/all-nli", "triplet", split="dev").select(range(16))
loss = MultipleNegativesRankingLoss(model)

sts_dev = load_dataset("sentence-transformers/stsb", split="validation")
dev_evaluator = EmbeddingSimilarityEvaluator(
    sentences1=sts_dev["sentence1"],
    sentences2=sts_dev["sentence2"],
    scores=sts_dev["score"],
    main_similarity=SimilarityFunction.COSINE,
    name="sts-dev",
)
dev_evaluator(model)  # before training

args = SentenceTransformerTrainingArguments(
    output_dir=output_dir,
    num_train_epochs=1,
    per_device_train_batch_size=batch_size,
    per_device_eval_batch_size=batch_size,
    warmup_steps=0.1,
    fp16=True,
    bf16=False,
    batch_sampler=BatchSamplers.NO_DUPLICATES,  # repeated texts in a batch would be false negatives
    eval_strategy="steps",
    eval_steps=2,
    save_strategy="steps",
    save_steps=2,
    save_total_limit=2,
    logging_steps=1,
    run_name="nli-v2",
)
trainer = SentenceTransformerTrainer(
    model=model,
    args=args,
    train_dataset=train_dataset,
    eval_dataset=eval_dataset,
    loss=loss,
    evaluator=dev_evaluator,
)
trainer.train()

sts_test = load_dataset("sentence-transformers/stsb", split="test")
test_evaluator = EmbeddingSimilarityEvaluator(
    sentences1=sts_test["sentence1"],
    sentences2=sts_test["sentence2"],
    scores=sts_test["score"],
    main_similarity=SimilarityFunction.COSINE,
    name="sts-test",
)
print("TEST", test_evaluator(model))

final_dir = f"{output_dir}/final"
model.save(final_dir)
print("SAVED", final_dir)

short = base.split("/")[-1]
try:
    model.push_to_hub(f"{short}-nli-v2")
    print("PUSHED", f"{short}-nli-v2")
except Exception:
    logging.error(f"Upload to the Hugging Face Hub failed:\n{traceback.format_exc()}Load {final_dir!r} and push it by hand.")

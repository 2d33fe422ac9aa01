"""OnlineContrastiveLoss on Quora duplicate pairs, with binary-classification and paraphrase-mining
evaluation — as sentence-transformers 6.2's
``examples/sentence_transformer/training/quora_duplicate_questions/training_online_contrastive_loss.py``.

A reconstruction, not a copy (see README.md): the same calls (``SiameseDistanceMetric.COSINE_DISTANCE``,
margin 0.5, ``train_test_split``, ``BinaryClassificationEvaluator``, ``ParaphraseMiningEvaluator``, a
``SequentialEvaluator`` with ``main_score_function`` called before training with ``epoch=0, steps=0``,
``NO_DUPLICATES``); the BeIR/quora IR evaluator of the original is left out (its data is not stood in).
``python training_online_contrastive_loss.py [model]``.
"""

import logging
import sys
import traceback
from datetime import datetime

from datasets import load_dataset

from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.evaluation import (
    BinaryClassificationEvaluator,
    ParaphraseMiningEvaluator,
    SequentialEvaluator,
)
from sentence_transformers.sentence_transformer.losses import OnlineContrastiveLoss, SiameseDistanceMetric
from sentence_transformers.sentence_transformer.trainer import SentenceTransformerTrainer
from sentence_transformers.sentence_transformer.training_args import (
    BatchSamplers,
    SentenceTransformerTrainingArguments,
)

logging.basicConfig(format="%(asctime)s - %(message)s", datefmt="%Y-%m-%d %H:%M:%S", level=logging.INFO)

base = sys.argv[1] if len(sys.argv) > 1 else "sentence-transformers/stsb-distilbert-base"
model = SentenceTransformer(base, model_kwargs={"torch_dtype": "float32"})
output_dir = "output/training_ocl-" + datetime.now().strftime("%Y-%m-%d_%H-%M-%S")

dataset = load_dataset("sentence-transformers/quora-duplicates", "pair-class", split="train")
dataset = dataset.train_test_split(test_size=16, seed=12)
train_dataset, eval_dataset = dataset["train"], dataset["test"]

loss = OnlineContrastiveLoss(model=model, distance_metric=SiameseDistanceMetric.COSINE_DISTANCE, margin=0.5)

binary = BinaryClassificationEvaluator(
    sentences1=eval_dataset["sentence1"],
    sentences2=eval_dataset["sentence2"],
    labels=eval_dataset["label"],
    name="quora-duplicates",
)
# paraphrase mining over the eval questions: every labelled duplicate pair is a gold pair
questions, duplicates = {}, []
for i, row in enumerate(eval_dataset):
    questions[f"a{i}"], questions[f"b{i}"] = row["sentence1"], row["sentence2"]
    if row["label"] == 1:
        duplicates.append((f"a{i}", f"b{i}"))
mining = ParaphraseMiningEvaluator(questions, duplicates, name="quora-duplicates-dev")
evaluator = SequentialEvaluator([binary, mining], main_score_function=lambda scores: scores[-1])
print("BEFORE", evaluator(model, epoch=0, steps=0))

args = SentenceTransformerTrainingArguments(
    output_dir=output_dir,
    num_train_epochs=1,
    per_device_train_batch_size=16,
    per_device_eval_batch_size=16,
    warmup_steps=0.1,
    fp16=True,
    bf16=False,
    batch_sampler=BatchSamplers.NO_DUPLICATES,
    eval_strategy="steps",
    eval_steps=2,
    save_strategy="steps",
    save_steps=2,
    save_total_limit=2,
    logging_steps=1,
    run_name="online-contrastive-loss",
)
trainer = SentenceTransformerTrainer(
    model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset, loss=loss, evaluator=evaluator,
)
trainer.train()

final_dir = f"{output_dir}/final"
model.save(final_dir)
print("SAVED", final_dir)
short = base.split("/")[-1]
try:
    model.push_to_hub(f"{short}-ocl")
    print("PUSHED", f"{short}-ocl")
except Exception:
    logging.error(f"Upload to the Hugging Face Hub failed:\n{traceback.format_exc()}Load {final_dir!r} and push it by hand.")

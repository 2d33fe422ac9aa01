"""Embedding distillation with MSELoss: a small student learns a teacher's sentence embeddings (teacher
vectors as the "label" column) — as the distillation example of sentence-transformers
(``examples/sentence_transformer/training/distillation/model_distillation.py``, the MSELoss form of the
ST 3-6.2 releases).

A reconstruction, not a copy (see README.md): the same calls (teacher ``encode`` mapped into a ``label``
column with ``dataset.map(batched=True)``, a ``Dense`` projection when the widths differ,
``MSELoss(model=student)``, ``EmbeddingSimilarityEvaluator`` before / after, ``metric_for_best_model`` with
``load_best_model_at_end=True``), smaller sizes. ``python model_distillation.py [teacher] [student]``.
"""

import logging
import sys
import traceback
from datetime import datetime

from datasets import load_dataset

from sentence_transformers import SentenceTransformer
from sentence_transformers.base.modules import Dense
from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator
from sentence_transformers.sentence_transformer.losses import MSELoss
from sentence_transformers.sentence_transformer.trainer import SentenceTransformerTrainer
from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments
from sentence_transformers.util.similarity import SimilarityFunction

logging.basicConfig(format="%(asctime)s - %(message)s", datefmt="%Y-%m-%d %H:%M:%S", level=logging.INFO)

teacher_name = sys.argv[1] if len(sys.argv) > 1 else "sentence-transformers/all-MiniLM-L6-v2"
student_name = sys.argv[2] if len(sys.argv) > 2 else "nreimers/TinyBERT_L-4_H-312_v2"
teacher = SentenceTransformer(teacher_name)
student = SentenceTransformer(student_name, model_kwargs={"torch_dtype": "float32"})
output_dir = "output/model-distillation-" + datetime.now().strftime("%Y-%m-%d_%H-%M-%S")

student_dim = student.get_sentence_embedding_dimension()
teacher_dim = teacher.get_sentence_embedding_dimension()
if student_dim != teacher_dim:  # MSELoss compares vectors of the teacher's width
    student.add_module("projection", Dense(in_features=student_dim, out_features=teacher_dim))


def sentences(split):
    data = load_dataset("sentence-transformers/all-nli", "pair-score", split=split)
    return data.map(lambda b: {"sentence": b["sentence1"] + b["sentence2"]}, batched=True,
                    remove_columns=data.column_names)


def with_teacher_embeddings(batch):
    return {"label": teacher.encode(batch["sentence"], batch_size=32, show_progress_bar=False).tolist()}


train_dataset = sentences("train").select(range(64)).map(with_teacher_embeddings, batched=True, batch_size=64)
eval_dataset = sentences("dev").map(with_teacher_embeddings, batched=True, batch_size=64)

sts_dev = load_dataset("sentence-transformers/stsb", split="validation")
dev_evaluator = EmbeddingSimilarityEvaluator(
    sentences1=sts_dev["sentence1"],
    sentences2=sts_dev["sentence2"],
    scores=sts_dev["score"],
    main_similarity=SimilarityFunction.COSINE,
    name="sts-dev",
)
print("TEACHER", dev_evaluator(teacher))

loss = MSELoss(model=student)
args = SentenceTransformerTrainingArguments(
    output_dir=output_dir,
    num_train_epochs=1,
    per_device_train_batch_size=16,
    per_device_eval_batch_size=16,
    warmup_steps=0.1,
    fp16=True,
    bf16=False,
    metric_for_best_model="eval_sts-dev_spearman_cosine",
    load_best_model_at_end=True,
    learning_rate=1e-4,
    eval_strategy="steps",
    eval_steps=2,
    save_strategy="steps",
    save_steps=2,
    save_total_limit=2,
    logging_steps=1,
    run_name="distillation",
)
trainer = SentenceTransformerTrainer(
    model=student, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset, loss=loss,
    evaluator=dev_evaluator,
)
trainer.train()
print("STUDENT", dev_evaluator(student))

final_dir = f"{output_dir}/final"
student.save(final_dir)
print("SAVED", final_dir)
try:
    student.push_to_hub(f"{student_name.split('/')[-1]}-distilled")
    print("PUSHED")
except Exception:
    logging.error(f"Upload to the Hugging Face Hub failed:\n{traceback.format_exc()}Load {final_dir!r} and push it by hand.")

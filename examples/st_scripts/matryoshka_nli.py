"""MatryoshkaLoss around MultipleNegativesRankingLoss on AllNLI, evaluated per dimension on STSb — as
sentence-transformers 6.2's ``examples/sentence_transformer/training/matryoshka/matryoshka_nli.py``.

A reconstruction, not a copy (see README.md): the same calls (top-level ``sentence_transformers`` imports,
``base.sampler.BatchSamplers``, a ``SequentialEvaluator`` of ``EmbeddingSimilarityEvaluator(truncate_dim=...)``
with ``main_score_function``), smaller sizes and dimensions that fit a tiny model.
``python matryoshka_nli.py [model]``.
"""

import logging
import sys
import traceback
from datetime import datetime

from datasets import load_dataset

from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from sentence_transformers.base.sampler import BatchSamplers
from sentence_transformers.sentence_transformer.evaluation import (
    EmbeddingSimilarityEvaluator,
    SequentialEvaluator,
    SimilarityFunction,
)
from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss, MultipleNegativesRankingLoss

logging.basicConfig(format="%(asctime)s - %(message)s", datefmt="%Y-%m-%d %H:%M:%S", level=logging.INFO)

base = sys.argv[1] if len(sys.argv) > 1 else "distilbert/distilroberta-base"
batch_size = 16
dims = [32, 16, 8]  # the original trains [768, 512, 256, 128, 64] on a 768-d model
output_dir = f"output/matryoshka_nli_{base.replace('/', '-')}-{datetime.now().strftime('%Y-%m-%d_%H-%M-%S')}"

model = SentenceTransformer(base, model_kwargs={"torch_dtype": "float32"})
train_dataset = load_dataset("sentence-transformers/all-nli", "triplet", split="train").select(range(64))
eval_dataset = load_dataset("sentence-transformers/all-nli", "triplet", split="dev")

inner = MultipleNegativesRankingLoss(model)
loss = MatryoshkaLoss(model, inner, matryoshka_dims=dims)


def sts_evaluators(split, prefix):
    data = load_dataset("sentence-transformers/stsb", split=split)
    return [
        EmbeddingSimilarityEvaluator(
            sentences1=data["sentence1"],
            sentences2=data["sentence2"],
            scores=data["score"],
            main_similarity=SimilarityFunction.COSINE,
            name=f"{prefix}-{dim}",
            truncate_dim=dim,
        )
        for dim in dims
    ]


dev_evaluator = SequentialEvaluator(sts_evaluators("validation", "sts-dev"), main_score_function=lambda scores: scores[0])

args = SentenceTransformerTrainingArguments(
    output_dir=output_dir,
    num_train_epochs=1,
    per_device_train_batch_size=batch_size,
    per_device_eval_batch_size=batch_size,
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
    run_name="matryoshka-nli",
)
trainer = SentenceTransformerTrainer(
    model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset, loss=loss, evaluator=dev_evaluator,
)
trainer.train()

print("TEST", SequentialEvaluator(sts_evaluators("test", "sts-test"))(model))
final_dir = f"{output_dir}/final"
model.save(final_dir)
print("SAVED", final_dir)
short = base.split("/")[-1]
try:
    model.push_to_hub(f"{short}-nli-matryoshka")
    print("PUSHED", f"{short}-nli-matryoshka")
except Exception:
    logging.error(f"Upload to the Hugging Face Hub failed:\n{traceback.format_exc()}Load {final_dir!r} and push it by hand.")

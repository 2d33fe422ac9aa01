"""Knowledge distillation of a ColBERT-style multi-vector model from cross-encoder scores on MS MARCO,
as sentence-transformers 6's ``examples/multi_vector_encoder/training/msmarco/training_kd.py``.

A reconstruction, not a copy (see README.md): the same calls as the original (a retrieval backbone with
"min" query expansion, a 128-d projection and a punctuation skiplist in ``MultiVectorMask``;
``print(model)``; ID-only training rows with string-encoded lists joined to their texts on the fly by
``util.resolve_ids`` through ``set_transform``, 32 candidates per query; ``MultiVectorDistillKLDivLoss``
with ``temperature=0.25``; ``max_length=180`` for training only; ``MultiVectorNanoBEIREvaluator`` without
an eval dataset; ``bf16=True``, ``load_best_model_at_end``, save and push), smaller sizes.
"""

import logging
import string
import traceback

from datasets import load_dataset

from sentence_transformers import (
    MultiVectorEncoder,
    MultiVectorEncoderModelCardData,
    MultiVectorEncoderTrainer,
    MultiVectorEncoderTrainingArguments,
)
from sentence_transformers.base.modules import Dense, Normalize, Transformer
from sentence_transformers.multi_vector_encoder.evaluation import MultiVectorNanoBEIREvaluator
from sentence_transformers.multi_vector_encoder.losses import MultiVectorDistillKLDivLoss
from sentence_transformers.multi_vector_encoder.modules import MultiVectorMask
from sentence_transformers.util import resolve_ids

logging.basicConfig(format="%(asctime)s - %(message)s", datefmt="%Y-%m-%d %H:%M:%S", level=logging.INFO)


def main():
    base_model = "Alibaba-NLP/gte-modernbert-base"
    short_name = base_model.split("/")[-1]
    num_rows = 8
    train_batch_size = 4  # each batch holds train_batch_size * 32 documents
    gradient_accumulation_steps = 1

    transformer = Transformer(base_model, model_kwargs={"torch_dtype": "float32"},
                              query_expansion={"strategy": "min", "length": 32})
    projection = Dense(transformer.get_embedding_dimension(), 128, bias=False, activation_function=None,
                       module_input_name="token_embeddings")
    model = MultiVectorEncoder(
        modules=[transformer, projection, MultiVectorMask(skiplist_words=list(string.punctuation)),
                 Normalize(module_input_name="token_embeddings")],
        model_card_data=MultiVectorEncoderModelCardData(
            language="en", license="apache-2.0",
            model_name=f"ColBERT {short_name} distilled from bge-reranker-v2-gemma on MS MARCO",
        ),
    )
    print(model)

    # ids + teacher scores in "train"; the texts in "queries" and "documents"
    train_dataset = load_dataset("lightonai/ms-marco-en-bge-gemma", "train", split="train").select(range(num_rows))
    queries = load_dataset("lightonai/ms-marco-en-bge-gemma", "queries", split="train")
    documents = load_dataset("lightonai/ms-marco-en-bge-gemma", "documents", split="train")
    # query_id -> query, document_ids -> document_1 .. document_32, scores cut to 32 (parsed from strings)
    train_dataset.set_transform(resolve_ids({"query_id": queries, "document_ids": documents}, max_list_length=32))
    logging.info(train_dataset)

    loss = MultiVectorDistillKLDivLoss(model=model, temperature=0.25)
    evaluator = MultiVectorNanoBEIREvaluator(dataset_names=["msmarco", "nq", "fiqa2018"], batch_size=16)
    print("BEFORE", evaluator(model))

    run_name = f"multivector-{short_name}-msmarco-kd"
    args = MultiVectorEncoderTrainingArguments(
        output_dir=f"models/{run_name}",
        num_train_epochs=1,
        per_device_train_batch_size=train_batch_size,
        gradient_accumulation_steps=gradient_accumulation_steps,
        per_device_eval_batch_size=train_batch_size,
        learning_rate=3e-5,
        max_length=180,  # training tokenization only; the saved model keeps the backbone's context
        warmup_steps=0.05,
        fp16=False,
        bf16=True,
        load_best_model_at_end=True,
        metric_for_best_model="eval_NanoBEIR_mean_maxsim_ndcg@10",
        eval_strategy="steps",  # the evaluator brings its own data: no eval_dataset
        eval_steps=0.1,
        save_strategy="steps",
        save_steps=0.1,
        save_total_limit=2,
        logging_steps=0.01,
        run_name=run_name,
        seed=42,
    )
    trainer = MultiVectorEncoderTrainer(model=model, args=args, train_dataset=train_dataset, loss=loss,
                                        evaluator=evaluator)
    trainer.train()

    print("TEST", MultiVectorNanoBEIREvaluator(show_progress_bar=True, batch_size=16)(model))

    final_dir = f"models/{run_name}/final"
    model.save_pretrained(final_dir)
    print("SAVED", final_dir)
    try:
        model.push_to_hub(run_name)
        print("PUSHED", run_name)
    except Exception:
        logging.error(f"Uploading to the Hugging Face Hub failed:\n{traceback.format_exc()}"
                      f"Load {final_dir!r} with MultiVectorEncoder and call push_to_hub({run_name!r}) by hand.")


if __name__ == "__main__":
    main()

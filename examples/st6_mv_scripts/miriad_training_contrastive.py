"""Domain-specific (medical question -> passage) ColBERT-style training with GradCache on MIRIAD, as
sentence-transformers 6's ``examples/multi_vector_encoder/training/miriad/training_contrastive.py``.

A reconstruction, not a copy (see README.md): the same calls as the original (the explicit module stack
with "min" query expansion and a punctuation skiplist, ``print(model)``, a ``DatasetDict`` loaded whole,
``CachedMultiVectorMultipleNegativesRankingLoss(mini_batch_size=...)``, a
``MultiVectorInformationRetrievalEvaluator`` over each split's deduplicated passages with a query cap,
``max_length=1024``, ``bf16=True``, ``BatchSamplers.NO_DUPLICATES``, ``load_best_model_at_end`` on that
evaluator's nDCG@10, full eval / test evaluations, save and push), smaller sizes.
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
from sentence_transformers.base.sampler import BatchSamplers
from sentence_transformers.multi_vector_encoder.evaluation import MultiVectorInformationRetrievalEvaluator
from sentence_transformers.multi_vector_encoder.losses import CachedMultiVectorMultipleNegativesRankingLoss
from sentence_transformers.multi_vector_encoder.modules import MultiVectorMask

logging.basicConfig(format="%(asctime)s - %(message)s", datefmt="%Y-%m-%d %H:%M:%S", level=logging.INFO)


def retrieval_evaluator(split, name: str, max_queries: int | None = None):
    """Each question is a query; the corpus holds the split's distinct passages; one relevant passage each."""
    passage_ids, corpus, queries, relevant = {}, {}, {}, {}
    for row, (question, passage) in enumerate(zip(split["question"], split["passage_text"])):
        if passage not in passage_ids:
            passage_ids[passage] = f"p{len(passage_ids)}"
            corpus[passage_ids[passage]] = passage
        queries[f"q{row}"] = question
        relevant[f"q{row}"] = {passage_ids[passage]}
    if max_queries is not None and len(queries) > max_queries:
        kept = list(queries)[:max_queries]
        queries = {qid: queries[qid] for qid in kept}
        relevant = {qid: relevant[qid] for qid in kept}
    return MultiVectorInformationRetrievalEvaluator(queries=queries, corpus=corpus, relevant_docs=relevant,
                                                    batch_size=8, name=name)


def main():
    base_model = "Alibaba-NLP/gte-modernbert-base"
    short_name = base_model.split("/")[-1]
    num_rows = 32
    train_batch_size = 16  # in-batch negatives come from the whole batch ...
    mini_batch_size = 4  # ... while memory follows the mini-batch (GradCache)

    transformer = Transformer(base_model, model_kwargs={"torch_dtype": "float32"},
                              query_expansion={"strategy": "min", "length": 32})
    projection = Dense(transformer.get_embedding_dimension(), 128, bias=False, activation_function=None,
                       module_input_name="token_embeddings")
    model = MultiVectorEncoder(
        modules=[transformer, projection, MultiVectorMask(skiplist_words=list(string.punctuation)),
                 Normalize(module_input_name="token_embeddings")],
        model_card_data=MultiVectorEncoderModelCardData(
            language="en", license="apache-2.0",
            model_name=f"ColBERT {short_name} trained on MIRIAD medical question-passage pairs",
        ),
    )
    print(model)

    dataset = load_dataset("tomaarsen/miriad-4.4M-split")
    train_dataset = dataset["train"].select(range(num_rows))
    logging.info(train_dataset)

    loss = CachedMultiVectorMultipleNegativesRankingLoss(model=model, mini_batch_size=mini_batch_size)
    evaluator = retrieval_evaluator(dataset["eval"], "miriad_eval", max_queries=8)
    print("BEFORE", evaluator(model))

    run_name = f"multivector-{short_name}-miriad"
    args = MultiVectorEncoderTrainingArguments(
        output_dir=f"models/{run_name}",
        num_train_epochs=1,
        per_device_train_batch_size=train_batch_size,
        per_device_eval_batch_size=8,
        learning_rate=3e-5,
        max_length=1024,  # training tokenization only
        warmup_steps=0.05,
        fp16=False,
        bf16=True,
        batch_sampler=BatchSamplers.NO_DUPLICATES,  # a repeated passage would be its own false negative
        load_best_model_at_end=True,
        metric_for_best_model="eval_miriad_eval_maxsim_ndcg@10",
        eval_strategy="steps",
        eval_steps=0.1,
        save_strategy="steps",
        save_steps=0.1,
        save_total_limit=2,
        logging_steps=0.005,
        run_name=run_name,
        seed=42,
    )
    trainer = MultiVectorEncoderTrainer(model=model, args=args, train_dataset=train_dataset, loss=loss,
                                        evaluator=evaluator)
    trainer.train()

    print("TEST", retrieval_evaluator(dataset["eval"], "miriad_eval_full")(model))
    print("TEST", retrieval_evaluator(dataset["test"], "miriad_test")(model))

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

"""ColBERT-style contrastive training of a multi-vector model on MS MARCO BM25 triplets, as
sentence-transformers 6's ``examples/multi_vector_encoder/training/msmarco/training_contrastive.py``.

A reconstruction, not a copy (see README.md): the same calls with the same arguments (an explicit
``Transformer`` with "min" query expansion to 32 tokens, a 128-d ``Dense`` projection, ``MultiVectorMask``
and ``Normalize``; ``MultiVectorEncoderModelCardData``; ``MultiVectorMultipleNegativesRankingLoss``;
``MultiVectorNanoBEIREvaluator`` before, during and after training; ``bf16=True``,
``BatchSamplers.NO_DUPLICATES``, ``load_best_model_at_end`` on the NanoBEIR nDCG@10, fractional
eval / save / logging steps; ``save_pretrained`` and ``push_to_hub``), smaller sizes.
"""

import logging
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
from sentence_transformers.multi_vector_encoder.evaluation import MultiVectorNanoBEIREvaluator
from sentence_transformers.multi_vector_encoder.losses import MultiVectorMultipleNegativesRankingLoss
from sentence_transformers.multi_vector_encoder.modules import MultiVectorMask

logging.basicConfig(format="%(asctime)s - %(message)s", datefmt="%Y-%m-%d %H:%M:%S", level=logging.INFO)


def main():
    base_model = "answerdotai/ModernBERT-base"
    short_name = base_model.split("/")[-1]
    batch_size = 8

    # token embeddings -> 128-d projection -> scoring mask -> unit length; queries padded with
    # [MASK] tokens to at least 32 positions
    transformer = Transformer(base_model, model_kwargs={"torch_dtype": "float32"},
                              query_expansion={"strategy": "min", "length": 32})
    projection = Dense(transformer.get_embedding_dimension(), 128, bias=False, activation_function=None,
                       module_input_name="token_embeddings")
    model = MultiVectorEncoder(
        modules=[transformer, projection, MultiVectorMask(), Normalize(module_input_name="token_embeddings")],
        model_card_data=MultiVectorEncoderModelCardData(
            language="en", license="apache-2.0", model_name=f"ColBERT {short_name} trained on MS MARCO triplets",
        ),
    )

    triplets = load_dataset("sentence-transformers/msmarco-bm25", "triplet", split="train").select(range(24))
    splits = triplets.train_test_split(test_size=8, seed=12)
    train_dataset, eval_dataset = splits["train"], splits["test"]
    logging.info(train_dataset)

    loss = MultiVectorMultipleNegativesRankingLoss(model=model)
    evaluator = MultiVectorNanoBEIREvaluator(dataset_names=["msmarco", "nq", "fiqa2018"], batch_size=batch_size)
    print("BEFORE", evaluator(model))

    run_name = f"multivector-{short_name}-msmarco-contrastive"
    args = MultiVectorEncoderTrainingArguments(
        output_dir=f"models/{run_name}",
        num_train_epochs=1,
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size,
        learning_rate=3e-5,
        warmup_steps=0.05,
        fp16=False,
        bf16=True,
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        load_best_model_at_end=True,
        metric_for_best_model="eval_NanoBEIR_mean_maxsim_ndcg@10",
        eval_strategy="steps",
        eval_steps=0.1,
        save_strategy="steps",
        save_steps=0.1,
        save_total_limit=2,
        logging_steps=0.01,
        run_name=run_name,
        seed=42,
    )
    trainer = MultiVectorEncoderTrainer(model=model, args=args, train_dataset=train_dataset,
                                        eval_dataset=eval_dataset, loss=loss, evaluator=evaluator)
    trainer.train()

    # the whole NanoBEIR suite on the final model
    print("TEST", MultiVectorNanoBEIREvaluator(show_progress_bar=True, batch_size=batch_size)(model))

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

"""Reason-ModernColBERT: GTE-ModernColBERT-v1 trained with CachedContrastive on ReasonIR hq, as in PyLate's
``examples/train/reason_moderncolbert.py``.

A reconstruction, not a copy (see README.md): the same data mapping (query parts joined with a space;
first positive = its instruction + " " + the BRIGHT text of its id; first negative = its instruction +
" " + its text), the same model / loss / arguments (document_length 8192, query_length 128, no skiplist,
batch 256, GradCache mini-batch 32, gather_across_devices, bf16, 8 workers, 3 epochs, lr 1e-5), the
mapped DatasetDict passed to the trainer, and the final save to ``<output_dir>/final``. Ids can be
swapped for local paths with PYLATE_EXAMPLE_MODEL / PYLATE_EXAMPLE_DATA / PYLATE_EXAMPLE_DOCUMENTS.
"""

import os

from datasets import load_dataset
from sentence_transformers import (
    SentenceTransformerTrainer,
    SentenceTransformerTrainingArguments,
)

from pylate import losses, models, utils


def bright_texts(repo):
    """BRIGHT document id -> text, over every task split of the ``documents`` config."""
    table = load_dataset(repo, "documents")
    texts = {}
    for task in table:
        for row in table[task]:
            texts[str(row["id"])] = row["content"]
    return texts


def to_training_row(row, texts):
    (pos_instruction, pos_id), (neg_instruction, neg_text) = row["pos"][0], row["neg"][0]
    return {
        "query": " ".join(row["query"]),
        "pos": pos_instruction + " " + texts[pos_id],
        "neg": neg_instruction + " " + neg_text,
    }


def main():
    texts = bright_texts(os.environ.get("PYLATE_EXAMPLE_DOCUMENTS", "xlangai/BRIGHT"))
    hq = load_dataset(os.environ.get("PYLATE_EXAMPLE_DATA", "reasonir/reasonir-data"), "hq")
    train_dataset = hq.map(lambda row: to_training_row(row, texts))

    model_name = os.environ.get("PYLATE_EXAMPLE_MODEL", "lightonai/GTE-ModernColBERT-v1")
    short_name = model_name.split("/")[-1]
    run_name = f"{short_name}-ReasonIR"
    output_dir = f"output/{short_name}/{run_name}"

    model = models.ColBERT(
        model_name_or_path=model_name,
        document_length=8192,
        query_length=128,
        skiplist_words=[],
    )
    loss = losses.CachedContrastive(
        model=model,
        mini_batch_size=32,
        gather_across_devices=True,
        temperature=1.0,
    )
    args = SentenceTransformerTrainingArguments(
        output_dir=output_dir,
        num_train_epochs=3,
        per_device_train_batch_size=256,
        per_device_eval_batch_size=256,
        save_steps=500,
        logging_steps=1,
        fp16=False,
        bf16=True,
        run_name=run_name,
        learning_rate=1e-5,
        dataloader_num_workers=8,
    )
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        loss=loss,
        data_collator=utils.ColBERTCollator(model.tokenize),
    )
    trainer.train()
    model.save_pretrained(f"{output_dir}/final")


if __name__ == "__main__":
    main()

"""What the trainer tells the model card, and ``trainer.push_to_hub``."""

from __future__ import annotations

from pathlib import Path


def card_info(trainer) -> dict:
    """Training facts for the PyLate-style card (see ``mlx_hf_bridge.model_card.write_model_card``)."""
    from .training_args import SentenceTransformerTrainingArguments

    args = trainer._args_dict()
    defaults = SentenceTransformerTrainingArguments(output_dir=trainer.args.output_dir).to_dict()
    datasets = trainer.train_dataset if isinstance(trainer.train_dataset, dict) else {"train": trainer.train_dataset}
    train_datasets = []
    for name, ds in datasets.items():
        if ds is None:
            continue
        entry = {"name": name, "size": len(ds)}
        if hasattr(ds, "column_names"):
            entry["columns"] = list(ds.column_names)
        train_datasets.append(entry)
    return {
        "loss": trainer.loss,
        "hyperparameters": args,
        "default_hyperparameters": defaults,
        "log_history": list(trainer.state.log_history),
        "train_datasets": train_datasets,
        "dataset_size": sum(d["size"] for d in train_datasets),
    }


def push_to_hub(trainer, commit_message="End of training", blocking=True, token=None, revision=None, **kwargs) -> str:
    """transformers' ``Trainer.push_to_hub``: the model goes to ``args.hub_model_id`` (default: the
    output folder's name) in PyLate layout, with a card that carries the training facts."""
    args = trainer.args
    repo_id = getattr(args, "hub_model_id", None) or Path(args.output_dir).name
    object.__setattr__(trainer.model, "card_info", card_info(trainer))  # not a child module
    return trainer.model.push_to_hub(
        repo_id,
        token=token or getattr(args, "hub_token", None),
        private=getattr(args, "hub_private_repo", None),
        commit_message=commit_message,
        exist_ok=True,
        revision=revision or getattr(args, "hub_revision", None),
    )

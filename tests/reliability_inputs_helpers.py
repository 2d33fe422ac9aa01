"""Shared pieces of the reliability-input tests: folder hashing, tiny model folders, a trainer
with a step counter (bad input must stop before the first step)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import mlx_hf_bridge  # noqa: F401  (BLAS preload before mlx.core)
import pytest
from conftest import _save_tiny, tiny_bert_config

from mlx_hf_bridge.pylate import losses as mlx_losses
from mlx_hf_bridge.pylate import utils as mlx_utils


def tree_hash(folder) -> dict:
    folder = Path(folder)
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


class Untouched:
    """``with Untouched(folder):`` the folder's files (names and bytes) are the same afterwards."""

    def __init__(self, folder):
        self.folder = Path(folder)

    def __enter__(self):
        self.before = tree_hash(self.folder)
        return self

    def __exit__(self, *exc):
        assert tree_hash(self.folder) == self.before, "the bridge modified the user's folder"
        return False


@pytest.fixture(scope="module")
def short_bert_dir(tmp_path_factory, minilm_dir):
    """A BERT whose position table has 64 rows (written by transformers)."""
    return _save_tiny(tmp_path_factory.mktemp("bert64"), tiny_bert_config(max_position_embeddings=64), minilm_dir, seed=0)


@pytest.fixture(scope="module")
def pylate_dir(tmp_path_factory, tiny_bert_dir):
    """A PyLate folder written by real PyLate (modules.json, 1_Dense/, ...)."""
    import torch
    from pylate import models

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("pylate")
    models.ColBERT(str(tiny_bert_dir), device="cpu", query_length=8, document_length=16).save(str(out))
    return out


def damage(folder: Path, name: str, text: str = '{"model_type": "bert",'):
    (folder / name).write_text(text)


class StepCounter:
    """A trainer callback counting optimizer steps (bad input must stop before the first)."""

    def __new__(cls):
        from mlx_hf_bridge.engine.callbacks import TrainerCallback

        class _Counter(TrainerCallback):
            steps = 0

            def on_step_end(self, args, state, control, **kwargs):
                self.steps += 1

        return _Counter()


def make_trainer(tmp_path, model, dataset, loss=None, **kw):
    from mlx_hf_bridge.sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    args = SentenceTransformerTrainingArguments(**{**dict(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=2, max_steps=2, save_strategy="no",
        logging_steps=1, disable_tqdm=True, learning_rate=1e-3), **kw})
    counter = StepCounter()
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset,
                                         loss=loss or mlx_losses.Contrastive(model),
                                         data_collator=mlx_utils.ColBERTCollator(model.tokenize), callbacks=[counter])
    return trainer, counter

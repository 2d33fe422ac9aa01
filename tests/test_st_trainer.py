"""SentenceTransformerTrainer on MLX: ST's data flow, evaluation, a real ColBERT, samplers, bad input."""

from __future__ import annotations

import logging

import mlx_hf_bridge  # noqa: F401
import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from datasets import Dataset, DatasetDict
from test_engine_standin import TinyContrastive, TinyEncoder, TinyScoreLoss, pairs, weights

from mlx_hf_bridge.engine import sampling
from mlx_hf_bridge.sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from mlx_hf_bridge.sentence_transformers.training_args import BatchSamplers, MultiDatasetBatchSamplers


def args(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, num_train_epochs=1,
                logging_steps=1, save_strategy="no", disable_tqdm=True)
    return SentenceTransformerTrainingArguments(**{**base, **kw})


class MaxSimContrastive:
    """Contrastive over MaxSim (PyLate's Contrastive, minus skiplist), until the losses package lands."""

    def __init__(self, model):
        self.model = model

    def _emb(self, f):
        e = self.model(f)["token_embeddings"]
        return e / mx.maximum(mx.linalg.norm(e, axis=-1, keepdims=True), 1e-12)

    def __call__(self, features, labels=None):
        q = self._emb(features[0])
        d = mx.concatenate([self._emb(f) for f in features[1:]], axis=0)
        dmask = mx.concatenate([f["attention_mask"] for f in features[1:]], axis=0).astype(mx.float32)
        sim = mx.einsum("ash,bth->abst", q, d) * dmask[None, :, None, :]
        scores = sim.max(axis=-1).sum(axis=-1)
        return nn.losses.cross_entropy(scores, mx.arange(q.shape[0]), reduction="mean")


def test_colbert_end_to_end_with_eval_evaluator_and_save(tmp_path, tiny_bert_dir):
    from mlx_hf_bridge.pylate import models

    model = models.ColBERT(str(tiny_bert_dir), query_length=8, document_length=12)
    calls = []

    def evaluator(m, output_path=None, epoch=None, steps=None):
        calls.append((m is model, output_path, epoch, steps))
        return {"accuracy": 0.5}

    before = weights(model)
    trainer = SentenceTransformerTrainer(
        model=model, args=args(tmp_path, eval_strategy="steps", eval_steps=2, learning_rate=1e-3),
        train_dataset=pairs(8, negatives=True), eval_dataset=pairs(4, negatives=True, seed=3),
        loss=MaxSimContrastive(model), evaluator=evaluator,
    )
    out = trainer.train()
    assert out.global_step == 2 and np.isfinite(out.training_loss)
    after = weights(model)
    assert any(not np.array_equal(before[k], after[k]) for k in before)
    evals = [h for h in trainer.state.log_history if "eval_loss" in h]
    assert len(evals) == 1 and {"eval_accuracy", "eval_runtime", "epoch", "step"} <= set(evals[0])
    assert calls == [(True, str(tmp_path / "out" / "eval"), 1.0, 2)]
    assert model.training is False  # back in eval mode after train()
    trainer.save_model(str(tmp_path / "final"))
    reloaded = models.ColBERT(str(tmp_path / "final"))
    for k, v in weights(reloaded).items():
        np.testing.assert_array_equal(v, after[k])
    # real PyLate on torch (subprocess) loads the trained save: embeddings within 1e-5
    from mlx_hf_bridge.verify import verify_folder

    report = verify_folder(tmp_path / "final", tolerance=1e-5, timeout=300)
    assert report["kind"] == "colbert" and report["passed"], report
    metrics = trainer.evaluate()
    assert set(metrics) >= {"eval_loss", "eval_accuracy"}


def test_colbert_checkpoint_resume_and_save_model_keep_checkpoints(tmp_path, tiny_bert_dir):
    from mlx_hf_bridge.pylate import models

    def run(resume=None):
        model = models.ColBERT(str(tiny_bert_dir), query_length=8, document_length=12)
        trainer = SentenceTransformerTrainer(model=model, args=args(tmp_path, save_strategy="steps", save_steps=1,
                                             max_steps=2, per_device_train_batch_size=2),
                                             train_dataset=pairs(4), loss=MaxSimContrastive(model))
        return trainer, trainer.train(resume_from_checkpoint=resume)

    trainer, _ = run()
    final = weights(trainer.model)
    resumed, out = run(resume=str(tmp_path / "out" / "checkpoint-1"))  # ColBERT(checkpoint) -> weights copied
    assert out.global_step == 2
    for k, v in weights(resumed.model).items():
        np.testing.assert_array_equal(v, final[k])
    resumed.save_model()  # into output_dir, next to the checkpoints
    names = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"checkpoint-1", "checkpoint-2", "modules.json", "training_args.json"} <= names


def test_column_order_defines_roles_and_labels(tmp_path):
    model = TinyEncoder()
    seen = []

    class Spy(TinyScoreLoss):
        def __call__(self, features, labels):
            seen.append(([np.array(f["input_ids"][:, 0]).tolist() for f in features], np.array(labels).tolist()))
            return super().__call__(features, labels)

    ds = Dataset.from_dict({"b_text": ["x y", "z w"], "score": [0.5, 1.0], "a_text": ["p q", "r s"]})
    trainer = SentenceTransformerTrainer(model=model, args=args(tmp_path, per_device_train_batch_size=2),
                                         train_dataset=ds, loss=Spy(model))
    inputs = trainer.collate([0, 1])
    assert list(inputs) == ["label", "b_text_input_ids", "b_text_attention_mask", "a_text_input_ids",
                            "a_text_attention_mask"]
    features, labels = trainer.collect_features(inputs)
    assert np.array_equal(np.array(features[0]["input_ids"]), np.array(model.tokenize(["x y", "z w"])["input_ids"]))
    assert np.allclose(np.array(labels), [0.5, 1.0])
    trainer.train()
    assert seen and sorted(seen[0][1]) == [0.5, 1.0]


def test_multi_dataset_loss_dict_and_samplers(tmp_path):
    model = TinyEncoder()
    used = {"a": 0, "b": 0}

    class Named(TinyContrastive):
        def __init__(self, model, name):
            super().__init__(model)
            self.name = name

        def __call__(self, features, labels=None):
            used[self.name] += 1
            return super().__call__(features, labels)

    train = DatasetDict({"a": pairs(8, seed=1), "b": pairs(4, seed=2)})
    for choice, steps in ((MultiDatasetBatchSamplers.PROPORTIONAL, 3), (MultiDatasetBatchSamplers.ROUND_ROBIN, 2)):
        used.update(a=0, b=0)
        trainer = SentenceTransformerTrainer(
            model=model, args=args(tmp_path, multi_dataset_batch_sampler=choice), train_dataset=dict(train),
            loss={"a": Named(model, "a"), "b": Named(model, "b")},
        )
        assert trainer.train().global_step == steps
        assert used == ({"a": 2, "b": 1} if steps == 3 else {"a": 1, "b": 1})


def test_batch_samplers_properties():
    ds = Dataset.from_dict({"q": ["a", "a", "b", "c", "a", "d", "e", "b"], "p": list("pqrstuvw"),
                            "label": [0, 0, 1, 1, 0, 1, 2, 2]})
    nodup = sampling.NoDuplicatesBatchSampler(ds, 3, drop_last=False, valid_label_columns=["label"], seed=1)
    batches = list(nodup)
    assert sorted(i for b in batches for i in b) == list(range(8))
    for b in batches:
        texts = [ds[i]["q"] for i in b] + [ds[i]["p"] for i in b]
        assert len(texts) == len(set(texts))
    nodup.set_epoch(1)
    assert list(nodup) != batches or len(batches) == 1  # re-seeded per epoch
    nodup.set_epoch(0)
    assert list(nodup) == batches  # a pure function of (seed, epoch)
    hashed = sampling.BATCH_SAMPLERS["no_duplicates_hashed"](ds, 3, drop_last=False, valid_label_columns=["label"], seed=1)
    assert list(hashed) == batches
    group = sampling.GroupByLabelBatchSampler(ds, 4, drop_last=False, valid_label_columns=["label"], seed=0)
    for b in group:
        labels = [ds[i]["label"] for i in b]
        assert len(set(labels)) >= 2 and all(labels.count(x) >= 2 for x in set(labels))
    plain = sampling.DefaultBatchSampler(ds, 3, drop_last=True, seed=5)
    assert len(list(plain)) == len(plain) == 2


def test_no_duplicates_from_args(tmp_path):
    model = TinyEncoder()
    ds = Dataset.from_dict({"query": ["a", "a", "b", "c"], "positive": ["x", "y", "z", "x"]})
    trainer = SentenceTransformerTrainer(model=model, args=args(tmp_path, per_device_train_batch_size=2,
                                         batch_sampler=BatchSamplers.NO_DUPLICATES),
                                         train_dataset=ds, loss=TinyContrastive(model))
    sampler = trainer.get_train_batch_sampler()
    assert isinstance(sampler, sampling.NoDuplicatesBatchSampler)
    trainer.train()


# --- bad input: clear errors before any expensive work -----------------------------------------
def _trainer(tmp_path, ds, loss_cls=TinyContrastive, **kw):
    model = TinyEncoder()
    return SentenceTransformerTrainer(model=model, args=args(tmp_path, **kw), train_dataset=ds, loss=loss_cls(model))


def test_too_few_columns_for_the_loss(tmp_path):
    trainer = _trainer(tmp_path, Dataset.from_dict({"query": ["a", "b"]}))
    with pytest.raises(ValueError, match=r"expects at least 2 text columns .*gives 1 .*\['query'\].*select_columns"):
        trainer.train()


def test_no_text_columns(tmp_path):
    trainer = _trainer(tmp_path, Dataset.from_dict({"label": [1, 0]}))
    with pytest.raises(ValueError, match="no text columns"):
        trainer.train()


def test_missing_label_column(tmp_path):
    trainer = _trainer(tmp_path, Dataset.from_dict({"s1": ["a", "b"], "s2": ["c", "d"]}), loss_cls=TinyScoreLoss)
    with pytest.raises(ValueError, match="needs a label column"):
        trainer.train()


def test_empty_dataset(tmp_path):
    with pytest.raises(ValueError, match="train dataset is empty"):
        _trainer(tmp_path, Dataset.from_dict({"query": [], "positive": []}))


def test_labels_of_wrong_type(tmp_path):
    ds = Dataset.from_dict({"s1": ["a", "b"], "s2": ["c", "d"], "label": ["yes", "no"]})
    with pytest.raises(TypeError, match="Column 'label'.*str values.*must be numbers"):
        _trainer(tmp_path, ds, loss_cls=TinyScoreLoss)


def test_reserved_column(tmp_path):
    ds = Dataset.from_dict({"query": ["a"], "positive": ["b"], "dataset_name": ["x"]})
    with pytest.raises(ValueError, match="reserved column"):
        _trainer(tmp_path, ds)


def test_batch_larger_than_dataset(tmp_path, caplog):
    with pytest.raises(ValueError, match="fewer than per_device_train_batch_size=8.*dataloader_drop_last"):
        _trainer(tmp_path / "a", pairs(3), per_device_train_batch_size=8, dataloader_drop_last=True).train()
    with caplog.at_level(logging.WARNING):
        out = _trainer(tmp_path / "b", pairs(3), per_device_train_batch_size=8).train()
    assert out.global_step == 1 and "one smaller batch" in caplog.text


def test_eval_strategy_without_eval_data(tmp_path):
    with pytest.raises(ValueError, match="eval_strategy.*eval_dataset.*evaluator"):
        _trainer(tmp_path, pairs(4), eval_strategy="steps")


def test_loss_on_another_model_and_non_loss(tmp_path):
    model = TinyEncoder()
    with pytest.raises(ValueError, match="different model object"):
        SentenceTransformerTrainer(model=model, args=args(tmp_path), train_dataset=pairs(4),
                                   loss=TinyContrastive(TinyEncoder()))
    with pytest.raises(TypeError, match="needs `.model`"):
        SentenceTransformerTrainer(model=model, args=args(tmp_path), train_dataset=pairs(4), loss=object())
    trainer = SentenceTransformerTrainer(model=model, args=args(tmp_path), train_dataset=pairs(4), loss=TinyContrastive)
    assert isinstance(trainer.loss, TinyContrastive)  # a factory model -> loss, as ST accepts


def test_torch_args_are_rejected_clearly(tmp_path):
    from sentence_transformers import SentenceTransformerTrainingArguments as TorchArgs

    model = TinyEncoder()
    with pytest.raises(ValueError, match="mlx_hf_bridge.sentence_transformers"):
        SentenceTransformerTrainer(model=model, args=TorchArgs(output_dir=str(tmp_path)), train_dataset=pairs(4),
                                   loss=TinyContrastive(model))


def test_evaluator_list_is_sequential(tmp_path):
    model = TinyEncoder()
    evs = [lambda m, output_path=None, epoch=None, steps=None: {"a": 1.0},
           lambda m, output_path=None, epoch=None, steps=None: 0.25]
    trainer = SentenceTransformerTrainer(model=model, args=args(tmp_path), train_dataset=pairs(4),
                                         loss=TinyContrastive(model), evaluator=evs)
    metrics = trainer.evaluate()
    assert metrics["eval_a"] == 1.0 and metrics["eval_evaluator_1"] == 0.25 and metrics["eval_sequential_score"] == 0.25


def test_training_needs_no_torch(tmp_path):
    """The engine and the ST façade train, checkpoint and resume without ever importing torch.

    (torch cannot simply be blocked here: ``datasets`` probes for it; so we check it never loads.)
    """
    import subprocess
    import sys
    from pathlib import Path

    code = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
import mlx_hf_bridge
from test_engine_standin import TinyEncoder, TinyContrastive, pairs
from mlx_hf_bridge.sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
for resume in (None, True):
    m = TinyEncoder()
    a = SentenceTransformerTrainingArguments(output_dir={str(tmp_path / 'o')!r}, max_steps=2 if resume is None else 3,
        save_steps=1, per_device_train_batch_size=2, disable_tqdm=True)
    t = SentenceTransformerTrainer(model=m, args=a, train_dataset=pairs(4), loss=TinyContrastive(m))
    t.train(resume_from_checkpoint=resume)
assert "torch" not in sys.modules and "transformers" not in sys.modules, "torch/transformers imported"
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "o" / "checkpoint-3").is_dir()

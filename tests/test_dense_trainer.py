"""The one ``SentenceTransformerTrainer`` for dense models: its signature covers the installed
sentence-transformers' (ST 5.3's ``tokenizer`` and ST 6.2's ``processing_class`` / ``optimizer_cls_and_kwargs``),
the default loss is ST's (CoSENTLoss for a dense model), and ST 6.2's ``optimizer_cls_and_kwargs`` builds the
engine's AdamW with the same settings."""

from __future__ import annotations

import inspect

import pytest

st = pytest.importorskip("sentence_transformers")

from mlx_hf_bridge.sentence_transformers import SentenceTransformerTrainer  # noqa: E402


def test_signature_covers_the_installed_sentence_transformers():
    ours = inspect.signature(SentenceTransformerTrainer.__init__).parameters
    theirs = inspect.signature(st.SentenceTransformerTrainer.__init__).parameters
    for name, param in theirs.items():
        assert name in ours, name
        if param.default is not param.empty:
            assert ours[name].default == param.default, name
    # ST 5.3's positional order is kept (ST 6.2 scripts pass these by keyword)
    assert list(ours)[:8] == ["self", "model", "args", "train_dataset", "eval_dataset", "loss", "evaluator",
                              "data_collator"]


def _softmax_setup(tiny_bert_dir, tmp_path, steps, **extra):
    from datasets import Dataset

    from mlx_hf_bridge.sentence_transformers import SentenceTransformer, SentenceTransformerTrainingArguments, losses

    import mlx.core as mx

    mx.random.seed(0)  # the classifier's initialisation: the same in every run compared
    model = SentenceTransformer(str(tiny_bert_dir))
    rows = {"premise": [f"premise number {i} about tides" for i in range(16)],
            "hypothesis": [f"hypothesis {i} on the moon" for i in range(16)], "label": [i % 3 for i in range(16)]}
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=8, max_steps=steps, learning_rate=5e-4,
        save_strategy="steps", save_steps=2, logging_steps=1, seed=0, disable_tqdm=True, report_to="none", **extra)
    loss = losses.SoftmaxLoss(model, embedding_dimension=32, num_labels=3)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=Dataset.from_dict(rows), loss=loss)
    # ST 5.3 lets the classifier's gradient add up over steps and a resume starts that sum again (it is no
    # checkpoint state), so an exact resume is only defined with the fixed behaviour (ST 6.2's)
    trainer.reproduce_st5_loss_gradient_accumulation = False
    return trainer, loss


def test_a_loss_with_own_parameters_trains_checkpoints_and_resumes_them(tiny_bert_dir, tmp_path):
    import numpy as np

    full, full_loss = _softmax_setup(tiny_bert_dir, tmp_path / "full", 4)
    before = np.array(full_loss.classifier.weight)
    full.train()
    trained = np.array(full_loss.classifier.weight)
    assert np.abs(trained - before).max() > 1e-4  # the classifier is trained, as ST's trainer does
    assert (tmp_path / "full" / "checkpoint-2" / "loss_parameters.safetensors").exists()

    # a second run resumes from the first's checkpoint-2 (same schedule): steps 3-4 and the classifier equal
    resumed, resumed_loss = _softmax_setup(tiny_bert_dir, tmp_path / "resumed", 4)
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-2"))
    losses = [h["loss"] for h in full.state.log_history if "loss" in h]
    again = [h["loss"] for h in resumed.state.log_history if "loss" in h]
    np.testing.assert_allclose(again, losses, rtol=1e-5)
    np.testing.assert_allclose(np.array(resumed_loss.classifier.weight), trained, rtol=1e-5, atol=1e-6)


def test_a_loss_dict_with_own_parameters_is_refused(tiny_bert_dir, tmp_path):
    from datasets import Dataset

    from mlx_hf_bridge.sentence_transformers import SentenceTransformer, SentenceTransformerTrainingArguments, losses

    model = SentenceTransformer(str(tiny_bert_dir))
    data = {"a": Dataset.from_dict({"s1": ["x y", "y z"], "s2": ["p q", "q r"], "label": [0, 1]})}
    args = SentenceTransformerTrainingArguments(output_dir=str(tmp_path), report_to="none")
    with pytest.raises(ValueError, match="train parameters of their own"):
        SentenceTransformerTrainer(model=model, args=args, train_dataset=data,
                                   loss={"a": losses.SoftmaxLoss(model, embedding_dimension=32, num_labels=2)})


def test_text_labels_are_named_before_training():
    from mlx_hf_bridge.engine.data import DefaultCollator

    collate = DefaultCollator(lambda texts: {"input_ids": [[1]] * len(texts)})
    with pytest.raises(TypeError, match=r"label column 'label' holds text \('entailment'\).*class_encode_column"):
        collate([{"s1": "a", "label": "entailment"}])


def test_kl_divergence_excludes_minus_infinity_teacher_scores_as_torch():
    import mlx.core as mx
    import numpy as np
    import torch

    from mlx_hf_bridge.colbert.losses import _kl_div_log_target

    student = np.log(np.array([[0.5, 0.3, 0.2]], dtype=np.float32))
    teacher = np.array([[np.log(0.6), np.log(0.4), -np.inf]], dtype=np.float32)
    # what ST 6's losses compute for a teacher that excludes a candidate with -inf: probability 0 there,
    # and torch's kl_div treats 0 * log 0 as 0 (log_target=True itself would give NaN)
    expected = torch.nn.functional.kl_div(torch.tensor(student), torch.tensor(teacher).exp(), reduction="sum")
    got = _kl_div_log_target(mx.array(student), mx.array(teacher), "sum")
    assert np.isfinite(got.item()) and abs(got.item() - expected.item()) < 1e-6


def test_a_teacher_model_inside_a_loss_module_is_not_trained():
    import mlx.nn as nn
    from mlx.utils import tree_flatten

    from mlx_hf_bridge.sentence_transformers.trainer import _own_parameters

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(2, 2)

        def encode(self, texts):
            return texts

    class Loss(nn.Module):  # a module holding the student and, frozen by the trainer, a teacher
        def __init__(self, model, teacher, head=False):
            super().__init__()
            self.model, self.teacher = model, teacher
            if head:
                self.head = nn.Linear(2, 3)

    student, teacher = Model(), Model()
    assert not _own_parameters(Loss(student, teacher), student)
    assert not tree_flatten(teacher.trainable_parameters())  # as torch: ST runs a teacher without gradients
    loss = Loss(student, Model(), head=True)
    assert _own_parameters(loss, student)
    assert sorted(k for k, _ in tree_flatten(loss.trainable_parameters()) if not k.startswith("model.")) == [
        "head.bias", "head.weight"]

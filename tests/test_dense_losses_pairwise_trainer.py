"""The pairwise / regression / distillation / triplet losses through the trainers, data flow included
(dataset columns by position, ``label`` / ``score`` columns as numbers, lists and embedding lists):
the installed ST's ``SentenceTransformerTrainer`` on torch against the bridge's on the same tiny BERT
folder and dataset, 10 full-batch steps (the loss is invariant to the row order either sampler picks),
logged losses within 1e-4 relative."""

from __future__ import annotations

import random

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sentence_transformers")
datasets = pytest.importorskip("datasets")

from conftest import ST_MAJOR, random_sentence  # noqa: E402
from mlx_hf_bridge import losses as mlx_losses  # noqa: E402

if ST_MAJOR >= 6:
    from sentence_transformers.sentence_transformer import losses as st_losses
else:
    from sentence_transformers import losses as st_losses

ROWS, STEPS = 8, 10
RECIPE = dict(per_device_train_batch_size=ROWS, max_steps=STEPS, learning_rate=5e-4, logging_steps=1, seed=0,
              save_strategy="no", weight_decay=0.01, lr_scheduler_type="linear")


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def dataset(columns: list[str], label, seed: int):
    rng = random.Random(seed)
    data = {c: [random_sentence(rng, 2, 10, [",", "."]) for _ in range(ROWS)] for c in columns}
    if label is not None:
        data[label[0]] = label[1]
    return datasets.Dataset.from_dict(data)


def _labels(kind, rng):
    return {
        "score": ("score", rng.uniform(0, 1, ROWS).round(3).tolist()),
        "binary": ("label", [1, 0] * (ROWS // 2)),
        "teacher": ("label", rng.normal(scale=0.3, size=(ROWS, 32)).astype(np.float32).tolist()),
        "margins": ("label", rng.normal(size=(ROWS, 2)).round(3).tolist()),
        "scores": ("label", (rng.normal(size=(ROWS, 3)) * 3).round(3).tolist()),
        "groups": ("label", [0, 1, 2, 0, 1, 2, 0, 1]),
        "class": ("label", [0, 1, 2, 0, 1, 2, 0, 1]),
        None: None,
    }[kind]


# SoftmaxLoss owns its classifier: as ST's trainer (which optimises loss.named_parameters()) the engine
# trains it beside the model (SentenceTransformerTrainer.trained_module)
CASES = {
    "cosent": ("CoSENTLoss", ["s1", "s2"], "score", {}),
    "cosine-similarity": ("CosineSimilarityLoss", ["s1", "s2"], "score", {}),
    "mse": ("MSELoss", ["english", "other"], "teacher", {}),
    "margin-mse": ("MarginMSELoss", ["query", "pos", "neg1", "neg2"], "margins", {}),
    "distill-kl-div": ("DistillKLDivLoss", ["query", "pos", "neg1", "neg2"], "scores", {"temperature": 2.0}),
    "triplet": ("TripletLoss", ["anchor", "positive", "negative"], None, {}),
    "online-contrastive": ("OnlineContrastiveLoss", ["s1", "s2"], "binary", {"margin": 1.0}),
    "batch-semi-hard-triplet": ("BatchSemiHardTripletLoss", ["text"], "groups", {"margin": 1.0}),
    "softmax": ("SoftmaxLoss", ["premise", "hypothesis"], "class", {"num_labels": 3}),
}


def _torch_losses(name, kwargs, folder, train, out, shared):
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    model = SentenceTransformer(str(folder), device="cpu")
    args = SentenceTransformerTrainingArguments(output_dir=str(out), report_to="none", disable_tqdm=True,
                                               use_cpu=True, **RECIPE)
    if name == "SoftmaxLoss":
        kwargs = {**kwargs, "embedding_dimension" if ST_MAJOR >= 6 else "sentence_embedding_dimension": 32}
    loss = getattr(st_losses, name)(model, **kwargs)
    if name == "SoftmaxLoss":  # its initial classifier, for the bridge's loss
        shared["classifier"] = (loss.classifier.weight.detach().numpy().copy(), loss.classifier.bias.detach().numpy().copy())
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train, loss=loss)
    trainer.train()
    if name == "SoftmaxLoss":
        shared["trained"] = loss.classifier.weight.detach().numpy()
    return [h["loss"] for h in trainer.state.log_history if "loss" in h]


def _mlx_losses(name, kwargs, folder, train, out, shared):
    from mlx_hf_bridge.dense import SentenceTransformer
    from mlx_hf_bridge.sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    model = SentenceTransformer(str(folder))
    args = SentenceTransformerTrainingArguments(output_dir=str(out), disable_tqdm=True, **RECIPE)
    if name in ("TripletLoss", "OnlineContrastiveLoss"):
        kwargs = {**kwargs, "st_version": "6.2" if ST_MAJOR >= 6 else "5.3"}
    if name == "SoftmaxLoss":
        kwargs = {**kwargs, "embedding_dimension": 32}
    loss = getattr(mlx_losses, name)(model, **kwargs)
    if name == "SoftmaxLoss":
        import mlx.core as mx

        weight, bias = shared["classifier"]
        loss.classifier.update({"weight": mx.array(weight), "bias": mx.array(bias)})
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train, loss=loss)
    trainer.train()
    if name == "SoftmaxLoss":  # the classifier is trained, as in ST
        np.testing.assert_allclose(np.array(loss.classifier.weight), shared["trained"], atol=1e-4)
    return [h["loss"] for h in trainer.state.log_history if "loss" in h]


def _case(value):
    return value.values[0] if hasattr(value, "values") else value


@pytest.mark.parametrize("case", [pytest.param(k, marks=v.marks) if hasattr(v, "marks") else k for k, v in CASES.items()])
def test_trainer_parity(case, tiny_bert_dir, tmp_path):
    name, columns, label_kind, kwargs = _case(CASES[case])
    seed = sorted(CASES).index(case)
    train = dataset(columns, _labels(label_kind, np.random.default_rng(seed)), seed)
    shared = {}
    theirs = _torch_losses(name, kwargs, tiny_bert_dir, train, tmp_path / "torch", shared)
    ours = _mlx_losses(name, kwargs, tiny_bert_dir, train, tmp_path / "mlx", shared)
    assert len(ours) == len(theirs) == STEPS
    rel = max(abs(a - b) / max(abs(a), 1e-6) for a, b in zip(theirs, ours))
    print(f"{case}: logged losses {theirs[0]:.5g} -> {theirs[-1]:.5g}, max rel {rel:.1e}")
    assert rel < 1e-4, (theirs, ours)
    assert abs(theirs[0] - theirs[-1]) > 1e-3 * abs(theirs[0])

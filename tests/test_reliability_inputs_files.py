"""Bad input is refused and named (issue 19, item 5): every parse / load failure names the file (and
key or tensor) and the fix, damaged resume files are named before any step or weight load, and the
losses name the column and the expected shape. Each case also shows what the torch library does on
the same input. Shared helpers: reliability_inputs_helpers.py."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import mlx_hf_bridge  # noqa: F401  (BLAS preload before mlx.core)
import mlx.core as mx
import numpy as np
import pytest
from reliability_inputs_helpers import Untouched, damage, make_trainer, pylate_dir  # noqa: F401 (fixture)

from mlx_hf_bridge import loading
from mlx_hf_bridge.errors import InvalidFileError, read_json
from mlx_hf_bridge.pylate import losses as mlx_losses
from mlx_hf_bridge.pylate import models as mlx_models


# --- 5. every parse / load failure names the file and the fix ---------------------------------------
def test_invalid_config_json(copy_dir, tiny_bert_dir):
    from transformers import AutoConfig

    folder = copy_dir(tiny_bert_dir)
    damage(folder, "config.json")
    with pytest.raises(OSError):  # transformers names the file, not the fix
        AutoConfig.from_pretrained(str(folder))
    with Untouched(folder), pytest.raises(InvalidFileError) as err:
        mlx_models.ColBERT(str(folder))
    message = str(err.value)
    assert f"{folder / 'config.json'} (the model config) is not valid JSON" in message
    assert "line 1 column" in message and "Restore it from the original model" in message
    assert isinstance(err.value, OSError) and isinstance(err.value, ValueError)


def test_config_json_that_is_not_an_object(copy_dir, tiny_bert_dir):
    folder = copy_dir(tiny_bert_dir)
    damage(folder, "config.json", "[1, 2]")
    with Untouched(folder), pytest.raises(InvalidFileError, match=r"config.json \(the model config\) holds a JSON list"):
        mlx_models.ColBERT(str(folder))


@pytest.mark.parametrize("name", ["tokenizer.json", "tokenizer_config.json"])
def test_invalid_tokenizer_file(copy_dir, tiny_bert_dir, name):
    from transformers import AutoTokenizer

    folder = copy_dir(tiny_bert_dir)
    damage(folder, name)
    with pytest.raises(ValueError):  # transformers: a bare JSONDecodeError, no file named
        AutoTokenizer.from_pretrained(str(folder))
    with Untouched(folder), pytest.raises(InvalidFileError, match=rf"{name} \(a tokenizer file\) is not valid JSON.*"
                                          "Copy the tokenizer files of the base model"):
        mlx_models.ColBERT(str(folder))


@pytest.mark.parametrize("name", ["modules.json", "config_sentence_transformers.json", "sentence_bert_config.json",
                                  "1_Dense/config.json"])
def test_invalid_layout_json(tmp_path, pylate_dir, name, monkeypatch):
    from pylate import models

    folder = shutil.copytree(pylate_dir, tmp_path / "colbert")
    damage(folder, name, "{")
    with pytest.raises(ValueError):  # PyLate / ST on torch: a bare JSONDecodeError
        models.ColBERT(str(folder), device="cpu")
    read = []
    monkeypatch.setattr(loading, "load_weights", lambda *a, **k: read.append(a) or {})
    with Untouched(folder), pytest.raises(InvalidFileError, match=rf"{name} \(.*\) is not valid JSON: .*line 1 column 2"):
        mlx_models.ColBERT(str(folder))
    assert not read  # named before any weights were read


def test_invalid_stanford_metadata_named(copy_dir, tiny_bert_dir):
    folder = copy_dir(tiny_bert_dir)
    damage(folder, "artifact.metadata", '{"query_maxlen": 32,')
    with Untouched(folder), pytest.raises(InvalidFileError, match=r"artifact.metadata \(the Stanford ColBERT metadata\) is not valid JSON"):
        mlx_models.ColBERT(str(folder))


def sharded(tmp_path, tiny_bert_dir):
    from transformers import AutoModel as TorchAutoModel

    folder = tmp_path / "sharded"
    TorchAutoModel.from_pretrained(str(tiny_bert_dir)).save_pretrained(str(folder), max_shard_size="200KB")
    for f in tiny_bert_dir.iterdir():
        if "token" in f.name or f.name == "vocab.txt":
            shutil.copy(f, folder / f.name)
    assert (folder / "model.safetensors.index.json").exists()
    return folder


def test_sharded_folder_loads_like_transformers(tmp_path, tiny_bert_dir):
    """The control for the two cases below: a complete sharded folder loads, same weights."""
    folder = sharded(tmp_path, tiny_bert_dir)
    from mlx_hf_bridge.models.bert import Model

    single = Model.sanitize(loading.load_weights(tiny_bert_dir))
    shards = Model.sanitize(loading.load_weights(folder))  # transformers 5 writes LayerNorm.gamma / beta
    assert set(single) == set(shards) and all(np.array_equal(np.array(single[k]), np.array(shards[k])) for k in single)


def test_missing_shard_named(tmp_path, tiny_bert_dir):
    from transformers import AutoModel as TorchAutoModel

    folder = sharded(tmp_path, tiny_bert_dir)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    lost = sorted(set(index["weight_map"].values()))[-1]
    (folder / lost).unlink()
    with pytest.raises(OSError):
        TorchAutoModel.from_pretrained(str(folder))
    with Untouched(folder), pytest.raises(FileNotFoundError, match=rf"lists shard\(s\) that are not in .*{lost}.*fetch the missing"):
        mlx_models.ColBERT(str(folder))


@pytest.mark.parametrize("text,expect", [("{", "is not valid JSON"), ('{"metadata": {}}', "has no 'weight_map' entry")],
                         ids=["invalid", "no-weight-map"])
def test_broken_shard_index_named(tmp_path, tiny_bert_dir, text, expect):
    folder = sharded(tmp_path, tiny_bert_dir)
    damage(folder, "model.safetensors.index.json", text)
    with Untouched(folder), pytest.raises(InvalidFileError, match=rf"model.safetensors.index.json \(the index of the sharded weights\) {expect}"):
        mlx_models.ColBERT(str(folder))


def test_tensor_of_wrong_shape_named(copy_dir, tiny_bert_dir):
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoModel as TorchAutoModel

    folder = copy_dir(tiny_bert_dir)
    tensors = load_file(folder / "model.safetensors")
    name = "encoder.layer.0.attention.self.query.weight"
    tensors[name] = torch.zeros(32, 16)
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(RuntimeError, match="ignore_mismatched_sizes"):
        TorchAutoModel.from_pretrained(str(folder))
    with Untouched(folder), pytest.raises(ValueError) as err:
        mlx_models.ColBERT(str(folder))
    message = str(err.value)
    assert f"{name}: (32, 16) in the file, (32, 32) from config.json" in message
    assert str(folder) in message and "same model" in message


def test_read_json_names_empty_and_non_utf8_files(tmp_path):
    (tmp_path / "x.json").write_text("")
    with pytest.raises(InvalidFileError, match=r"x.json \(a thing\) is not valid JSON: it is empty. Do this"):
        read_json(tmp_path / "x.json", "a thing", "Do this")
    (tmp_path / "y.json").write_bytes(b"\xff\xfe{")
    with pytest.raises(InvalidFileError, match=r"y.json \(a thing\) is not UTF-8 text"):
        read_json(tmp_path / "y.json", "a thing")


# --- resume files ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory, tiny_bert_dir):
    from datasets import Dataset

    tmp = tmp_path_factory.mktemp("ckpt")
    model = mlx_models.ColBERT(str(tiny_bert_dir), query_length=8, document_length=12)
    data = Dataset.from_dict({"query": [f"q {i}" for i in range(4)], "positive": [f"p {i} doc" for i in range(4)]})
    trainer, counter = make_trainer(tmp, model, data, save_strategy="steps", save_steps=2)
    trainer.train()
    assert counter.steps == 2
    return tmp / "out" / "checkpoint-2"


def truncate(path: Path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


RESUME_DAMAGE = {
    "trainer_state.json": ("the trainer state", lambda p: p.write_text('{"global_step": 2,')),
    "optimizer.json": ("the optimizer settings", lambda p: p.write_text("{")),
    "rng_state.json": ("the random-number state", lambda p: p.write_text("[1, 2")),
    "optimizer.safetensors": ("truncated", truncate),
}


@pytest.mark.parametrize("name", list(RESUME_DAMAGE))
def test_damaged_resume_file_named_before_any_step(tmp_path, tiny_bert_dir, checkpoint_dir, name):
    from datasets import Dataset

    work = tmp_path / "run"
    shutil.copytree(checkpoint_dir, work / "out" / "checkpoint-2")
    ckpt = work / "out" / "checkpoint-2"
    what, spoil = RESUME_DAMAGE[name]
    spoil(ckpt / name)
    model = mlx_models.ColBERT(str(tiny_bert_dir), query_length=8, document_length=12)
    before = {k: np.array(v) for k, v in model.state_dict().items()}
    data = Dataset.from_dict({"query": [f"q {i}" for i in range(4)], "positive": [f"p {i} doc" for i in range(4)]})
    trainer, counter = make_trainer(work, model, data, max_steps=4)
    with Untouched(ckpt), pytest.raises(ValueError) as err:
        trainer.train(resume_from_checkpoint=str(ckpt))
    message = str(err.value)
    assert str(ckpt / name) in message and what in message
    assert "Resume from another checkpoint-N folder" in message
    assert counter.steps == 0
    after = model.state_dict()  # nothing was loaded into the model before the damaged file was named
    assert all(np.array_equal(before[k], np.array(after[k])) for k in before)


# --- 6. shape mismatches in the losses name the column and the expected shape ---------------------
def features(model, columns: dict) -> list[dict]:
    """The per-column features the trainer hands a loss (PyLate's and the bridge's tokenize alike)."""
    return [model.tokenize(texts, is_query=name == "query", pad=True) for name, texts in columns.items()]


@pytest.fixture(scope="module")
def model_pair(pylate_dir):
    from pylate import models

    return models.ColBERT(str(pylate_dir), device="cpu"), mlx_models.ColBERT(str(pylate_dir))


@pytest.mark.parametrize("with_negative", [False, True], ids=["positive-only", "with-negative"])
@pytest.mark.parametrize("loss_name", ["Contrastive", "CachedContrastive"])
def test_contrastive_list_valued_column_named(model_pair, loss_name, with_negative):
    from pylate import losses

    ref, model = model_pair
    # the collator flattened a list-valued 'positive' column: 4 documents for 2 queries
    columns = {"query": ["q one", "q two"], "positive": ["a", "b", "c", "d"]}
    if with_negative:
        columns["negative"] = ["n one", "n two"]
    kwargs = {"mini_batch_size": 2} if loss_name == "CachedContrastive" else {}
    torch_loss = getattr(losses, loss_name)(ref, **kwargs)
    if with_negative:
        with pytest.raises(RuntimeError):  # PyLate on torch: a bare shape error from stack
            torch_loss(features(ref, columns), None)
    else:  # PyLate's quirk: it trains, pairing query 1 with "b" (query 0's second document)
        assert math.isfinite(torch_loss(features(ref, columns), None).item())
    loss = getattr(mlx_losses, loss_name)(model)
    with pytest.raises(ValueError) as err:
        loss(features(model, columns))
    message = str(err.value)
    assert f"{loss_name}: text column 1 has 4 rows for 2 queries (2 texts per row: a list-valued column" in message
    assert "expected shape (2,)" in message and "own column" in message


def test_contrastive_too_few_columns_named(model_pair):
    _, model = model_pair
    for loss in (mlx_losses.Contrastive(model), mlx_losses.CachedContrastive(model)):
        with pytest.raises(ValueError, match=r"needs at least 2 text columns .*got 1. Add the positive"):
            loss(features(model, {"query": ["q one", "q two"]}))
    with pytest.raises(ValueError, match=r"needs at least 2 text columns"):
        mlx_losses.CachedContrastive(model).value_and_grad(features(model, {"query": ["q"]}))


@pytest.mark.parametrize("labels", [[[1.0, 0.5, 0.0], [0.2, 0.1, 0.0]], [1.0, 0.5]], ids=["too-many-scores", "1-d"])
def test_distillation_labels_of_wrong_shape_named(model_pair, labels):
    import torch
    from pylate import losses

    ref, model = model_pair
    columns = {"query": ["q one", "q two"], "documents": ["a", "b", "c", "d"]}  # 2 documents per query
    torch_loss = losses.Distillation(ref)
    if np.ndim(labels) == 2:
        with pytest.raises(RuntimeError):  # torch: a bare broadcast error
            torch_loss(features(ref, columns), torch.tensor(labels))
    else:  # PyLate's quirk: (B,) labels broadcast as one row of scores for every query, and it trains
        assert math.isfinite(torch_loss(features(ref, columns), torch.tensor(labels)).item())
    with pytest.raises(ValueError) as err:
        mlx_losses.Distillation(model)(features(model, columns), mx.array(labels))
    message = str(err.value)
    assert f"labels (scores column) have shape {tuple(np.shape(labels))}" in message
    assert "2 queries and 4 documents (column 1); expected labels of shape (2, 2)" in message
    assert "one teacher score per document" in message


def test_distillation_column_count_and_missing_labels_named(model_pair):
    _, model = model_pair
    loss = mlx_losses.Distillation(model)
    three = features(model, {"query": ["q"], "positive": ["a"], "negative": ["b"]})
    with pytest.raises(ValueError, match=r"Distillation takes 2 text columns \(query, documents\).*got 3"):
        loss(three, mx.array([[1.0]]))
    with pytest.raises(ValueError, match=r"needs the teacher scores: a 'scores'"):
        loss(features(model, {"query": ["q"], "documents": ["a", "b"]}), None)


@pytest.mark.parametrize("loss_name", ["Contrastive", "CachedContrastive"])
def test_list_valued_column_stops_training_before_a_step(tmp_path, pylate_dir, loss_name):
    from datasets import Dataset

    model = mlx_models.ColBERT(str(pylate_dir))
    data = Dataset.from_dict({"query": ["q a", "q b", "q c", "q d"],
                              "positive": [["p a", "p a2"], ["p b", "p b2"], ["p c", "p c2"], ["p d", "p d2"]]})
    loss = getattr(mlx_losses, loss_name)(model)
    trainer, counter = make_trainer(tmp_path, model, data, loss=loss)
    with pytest.raises(ValueError, match=rf"{loss_name}: text column 1 has 4 rows for 2 queries"):
        trainer.train()
    assert counter.steps == 0 and not list((tmp_path / "out").glob("checkpoint-*"))

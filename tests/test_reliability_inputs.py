"""Bad input is refused and named, not absorbed (issue 19, items 3 and 5).

Each case: the error type, a message naming the cause (file / key / tensor / column / length) and
the fix, raised before any expensive work (weights read, training step) where that applies, and
the user's folder byte-identical afterwards. Where the torch library raises on the same input, the
test shows it too (that is what justifies refusing); where it silently absorbs it, the test shows
that quirk and why the bridge refuses instead.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import mlx_hf_bridge  # noqa: F401  (BLAS preload before mlx.core)
import mlx.core as mx
import numpy as np
import pytest
from conftest import _save_tiny, tiny_bert_config, tiny_modernbert_config

from mlx_hf_bridge import loading, verify
from mlx_hf_bridge.errors import InvalidFileError, read_json
from mlx_hf_bridge.pylate import losses as mlx_losses
from mlx_hf_bridge.pylate import models as mlx_models
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


# --- 1. lengths beyond the position table --------------------------------------------------------
@pytest.mark.parametrize("name", ["document_length", "query_length"])
def test_length_past_bert_position_table_refused_at_construction(short_bert_dir, name):
    from pylate import models

    # torch PyLate accepts the argument but fails on the first text that long (queries always reach
    # query_length with expansion); MLX would read past the table instead, so the bridge refuses it.
    lengths = {"document_length": 64, "query_length": 32, name: 100}  # the default document_length, 180, is refused too
    ref = models.ColBERT(str(short_bert_dir), device="cpu", **lengths)
    with pytest.raises((RuntimeError, IndexError)):
        ref.encode(["word " * 200], is_query=name == "query_length")
    with Untouched(short_bert_dir), pytest.raises(ValueError) as err:
        mlx_models.ColBERT(str(short_bert_dir), **lengths)
    message = str(err.value)
    assert f"{name}=100" in message and "max_position_embeddings=64" in message
    assert f"pass {name}=64 (or less)" in message


def test_bert_encoder_refuses_input_past_table_like_transformers(short_bert_dir):
    import torch
    from transformers import AutoModel as TorchAutoModel

    from mlx_hf_bridge.transformers import AutoModel

    ids = np.full((1, 65), 2000)
    with pytest.raises((RuntimeError, IndexError)):
        TorchAutoModel.from_pretrained(str(short_bert_dir))(input_ids=torch.tensor(ids))
    with pytest.raises(ValueError, match=r"65 tokens is longer than BERT's position table \(max_position_embeddings=64\).*max_length=64"):
        AutoModel.from_pretrained(str(short_bert_dir))(mx.array(ids))


def test_length_changed_later_refused_at_tokenize(short_bert_dir):
    model = mlx_models.ColBERT(str(short_bert_dir), document_length=64)
    model.document_length = 65
    with pytest.raises(ValueError, match=r"document_length=65 .*max_position_embeddings=64.*model.document_length = 64"):
        model.tokenize(["a document"], is_query=False)


def test_length_at_table_size_matches_pylate(tmp_path, short_bert_dir):
    """The limit itself is allowed and equals PyLate on a text that fills it."""
    from pylate import models

    models.ColBERT(str(short_bert_dir), device="cpu", document_length=64, query_length=64).save(str(tmp_path / "c"))
    ref = models.ColBERT(str(tmp_path / "c"), device="cpu")
    got = mlx_models.ColBERT(str(tmp_path / "c"))
    text = ["word " * 200]
    for is_query in (True, False):
        a = ref.encode(text, is_query=is_query)[0]
        b = got.encode(text, is_query=is_query)[0]
        assert a.shape == b.shape == (64, 128)
        assert np.abs(np.asarray(a) - np.asarray(b)).max() <= 1e-5


def test_modernbert_has_no_position_table_like_transformers(tmp_path, modernbert_tokenizer_dir):
    """RoPE has no table: transformers runs past max_position_embeddings, so the bridge does too (same values)."""
    import torch
    from transformers import AutoModel as TorchAutoModel

    from mlx_hf_bridge.transformers import AutoModel

    folder = _save_tiny(tmp_path / "mb16", tiny_modernbert_config(max_position_embeddings=16), modernbert_tokenizer_dir, seed=0)
    ids = np.random.default_rng(0).integers(5, 1000, size=(1, 40))
    with torch.no_grad():
        ref = TorchAutoModel.from_pretrained(str(folder)).eval()(input_ids=torch.tensor(ids)).last_hidden_state.numpy()
    got = np.array(AutoModel.from_pretrained(str(folder))(mx.array(ids)))
    assert np.isfinite(ref).all() and np.abs(ref - got).max() <= 1e-4
    model = mlx_models.ColBERT(str(folder), document_length=40)  # not refused
    assert model.encode(["word " * 60], is_query=False)[0].shape == (40, 128)


# --- 2. texts that are not strings ----------------------------------------------------------------
NON_STRINGS = [3, None, float("nan"), 2.5]


@pytest.mark.parametrize("bad", NON_STRINGS, ids=["int", "None", "nan", "float"])
def test_non_string_first_text_both_libraries_raise(tiny_bert_dir, bad):
    from pylate import models

    ref = models.ColBERT(str(tiny_bert_dir), device="cpu")
    with pytest.raises((TypeError, IndexError)):
        ref.tokenize([bad, "a text"], is_query=False)
    model = mlx_models.ColBERT(str(tiny_bert_dir))
    with pytest.raises(TypeError) as err:
        model.tokenize([bad, "a text"], is_query=False)
    assert "row 0" in str(err.value) and "expected a string" in str(err.value) and "drop or fill" in str(err.value)


def test_list_text_refused_where_pylate_reads_a_sentence_pair(tiny_bert_dir):
    """ST's tokenize reads a list as a (text, text) pair, and then takes the next rows' first two
    characters as pairs too: "a text" becomes ("a", " "). The bridge refuses the list."""
    from pylate import models

    ids = models.ColBERT(str(tiny_bert_dir), device="cpu").tokenize([["a", "b"], "a text"], is_query=False)["input_ids"]
    assert all((row == 102).sum() == 2 for row in ids.numpy())  # two [SEP]: every row became a pair
    with pytest.raises(TypeError, match=r"row 0: expected a string, got list \['a', 'b'\]"):
        mlx_models.ColBERT(str(tiny_bert_dir)).tokenize([["a", "b"], "a text"], is_query=False)


@pytest.mark.parametrize("bad,shown", [(3, "int 3"), (None, "None"), (float("nan"), "NaN")], ids=["int", "None", "nan"])
def test_non_string_later_text_refused_where_pylate_trains_on_str(tiny_bert_dir, bad, shown):
    """PyLate's quirk: only the first row is type-checked; later ones become "3" / "None" / "nan"
    (shown here). The bridge refuses them, naming the row."""
    from pylate import models

    ref = models.ColBERT(str(tiny_bert_dir), device="cpu")
    absorbed = ref.tokenize(["a text", bad], is_query=False)["input_ids"]
    as_text = ref.tokenize(["a text", str(bad)], is_query=False)["input_ids"]
    assert np.array_equal(absorbed.numpy(), as_text.numpy())
    with pytest.raises(TypeError, match=rf"row 1: expected a string, got .*{shown}"):
        mlx_models.ColBERT(str(tiny_bert_dir)).tokenize(["a text", bad], is_query=False)


def test_encode_refuses_non_string_too(tiny_bert_dir):
    # (encode sorts texts by length first, so the row it names is the batch's, not the caller's)
    with pytest.raises(TypeError, match=r"row \d: expected a string, got int 42"):
        mlx_models.ColBERT(str(tiny_bert_dir)).encode(["a", "b", 42], is_query=False)


@pytest.mark.parametrize("bad,shown", [(7, "int 7"), (None, "None"), (float("nan"), "NaN")], ids=["int", "None", "nan"])
def test_collator_names_column_row_and_type(tiny_bert_dir, bad, shown):
    model = mlx_models.ColBERT(str(tiny_bert_dir))
    collator = mlx_utils.ColBERTCollator(model.tokenize)
    rows = [{"query": "q one", "positive": "p one"}, {"query": "q two", "positive": bad}]
    with pytest.raises(TypeError, match=rf"column 'positive', row 1: expected a string, got .*{shown}"):
        collator(rows)


def test_collator_list_column_names_row_and_item(tiny_bert_dir):
    collator = mlx_utils.ColBERTCollator(mlx_models.ColBERT(str(tiny_bert_dir)).tokenize)
    rows = [{"query": "q", "documents": ["a", "b"], "scores": [1.0, 0.0]},
            {"query": "r", "documents": ["c", None], "scores": [1.0, 0.0]}]
    with pytest.raises(TypeError, match=r"column 'documents', row 1, item 1: expected a string, got None"):
        collator(rows)
    rows[1]["documents"] = "c d"  # a string where row 0 holds a list: PyLate would split it into letters
    with pytest.raises(TypeError, match=r"column 'documents', row 1: expected a list of texts"):
        collator(rows)


def test_collator_ragged_labels_named(tiny_bert_dir):
    collator = mlx_utils.ColBERTCollator(mlx_models.ColBERT(str(tiny_bert_dir)).tokenize)
    rows = [{"query": "q", "documents": ["a", "b"], "scores": [1.0, 0.0]},
            {"query": "r", "documents": ["c", "d"], "scores": [1.0]}]
    with pytest.raises(ValueError, match=r"label column 'scores' cannot form one array .*row lengths \[1, 2\]"):
        collator(rows)


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


def test_none_text_in_dataset_stops_training_before_a_step(tmp_path, tiny_bert_dir):
    from datasets import Dataset

    model = mlx_models.ColBERT(str(tiny_bert_dir), query_length=8, document_length=12)
    data = Dataset.from_dict({"query": ["q a", "q b", "q c", "q d"], "positive": ["p a", None, "p c", "p d"]})
    trainer, counter = make_trainer(tmp_path, model, data)
    with pytest.raises(TypeError, match=r"column 'positive', row \d: expected a string, got None"):
        trainer.train()
    assert counter.steps == 0 and not list((tmp_path / "out").glob("checkpoint-*"))


# --- 3. trust_remote_code and custom modeling code --------------------------------------------------
CUSTOM_CODE = '''from transformers import BertModel


class CustomBertModel(BertModel):
    """Stands for a folder's own modeling code (here: BERT with every output doubled)."""

    def forward(self, *args, **kwargs):
        out = super().forward(*args, **kwargs)
        out.last_hidden_state = out.last_hidden_state * 2
        return out
'''


def with_custom_code(src, dst, model_type="bert"):
    shutil.copytree(src, dst)
    (dst / "modeling_custom.py").write_text(CUSTOM_CODE)
    config = json.loads((dst / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_custom.CustomBertModel"}
    config["model_type"] = model_type
    (dst / "config.json").write_text(json.dumps(config))
    return dst


def test_trust_remote_code_with_auto_map_refused(tmp_path, tiny_bert_dir):
    from transformers import AutoModel as TorchAutoModel

    folder = with_custom_code(tiny_bert_dir, tmp_path / "custom")
    # transformers runs the folder's own (torch) code: a different model than the built-in BERT
    assert type(TorchAutoModel.from_pretrained(str(folder), trust_remote_code=True)).__name__ == "CustomBertModel"
    with Untouched(folder):
        for load in (lambda: mlx_models.ColBERT(str(folder), trust_remote_code=True),
                     lambda: loading.load_encoder(str(folder), trust_remote_code=True)):
            with pytest.raises(ValueError) as err:
                load()
            message = str(err.value)
            assert "modeling_custom.CustomBertModel" in message and "cannot run on MLX" in message
            assert "bert, modernbert" in message and "trust_remote_code=False" in message


def test_trust_remote_code_refused_for_pylate_folder(tmp_path, pylate_dir):
    folder = with_custom_code(pylate_dir, tmp_path / "custom-pylate")
    with Untouched(folder), pytest.raises(ValueError, match=r"auto_map .*CustomBertModel.*cannot run on MLX"):
        mlx_models.ColBERT(str(folder), trust_remote_code=True)


def test_auto_map_without_trust_remote_code_loads_builtin_like_transformers(tmp_path, tiny_bert_dir):
    import torch
    from transformers import AutoModel as TorchAutoModel

    from mlx_hf_bridge.transformers import AutoModel

    folder = with_custom_code(tiny_bert_dir, tmp_path / "custom")
    ref = TorchAutoModel.from_pretrained(str(folder))  # trust_remote_code not set: the built-in class
    assert type(ref).__name__ == "BertModel"
    ids = np.array([[101, 2023, 2003, 1037, 3231, 102]])
    with torch.no_grad():
        expected = ref.eval()(input_ids=torch.tensor(ids)).last_hidden_state.numpy()
    got = np.array(AutoModel.from_pretrained(str(folder))(mx.array(ids)))
    assert np.abs(expected - got).max() <= 1e-5
    mlx_models.ColBERT(str(folder))  # and a ColBERT on it


def test_trust_remote_code_without_custom_code_loads_like_transformers(tiny_bert_dir):
    from transformers import AutoModel as TorchAutoModel

    # no auto_map: the flag has nothing to run, transformers loads the built-in class, so does the bridge
    assert type(TorchAutoModel.from_pretrained(str(tiny_bert_dir), trust_remote_code=True)).__name__ == "BertModel"
    mlx_models.ColBERT(str(tiny_bert_dir), trust_remote_code=True)


def test_auto_map_with_unsupported_model_type_names_custom_code(tmp_path, tiny_bert_dir):
    from transformers import AutoConfig

    folder = with_custom_code(tiny_bert_dir, tmp_path / "custom", model_type="my_custom_bert")
    with pytest.raises(ValueError):  # transformers needs trust_remote_code for an unknown type
        AutoConfig.from_pretrained(str(folder))
    with Untouched(folder), pytest.raises(ValueError) as err:
        mlx_models.ColBERT(str(folder))
    assert "'my_custom_bert'" in str(err.value) and "cannot run on MLX" in str(err.value)
    assert "bert, modernbert" in str(err.value)


# --- 4. verify refuses non-finite models before the torch side ------------------------------------
def poison(path: Path, name: str, value: float):
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(path))
    tensors[name] = tensors[name].copy()
    tensors[name].flat[0] = value
    save_file(tensors, str(path), metadata={"format": "pt"})


def no_torch_side(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the torch side ran for a broken model")

    monkeypatch.setattr(verify, "run_torch_side", fail)


@pytest.mark.parametrize("value", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_verify_fails_on_nonfinite_weights(tmp_path, tiny_bert_dir, monkeypatch, capsys, value):
    folder = shutil.copytree(tiny_bert_dir, tmp_path / "nan")
    poison(folder / "model.safetensors", "encoder.layer.1.output.dense.weight", value)
    no_torch_side(monkeypatch)
    with Untouched(folder):
        assert verify.main([str(folder)]) == verify.EXIT_MISMATCH
    out = capsys.readouterr().out
    kind = "1 NaN, 0 inf" if math.isnan(value) else "0 NaN, 1 inf"
    assert f"model.safetensors: encoder.layer.1.output.dense.weight ({kind}" in out and "FAILED" in out
    assert "earlier checkpoint" in out


def test_verify_fails_on_nonfinite_dense_of_colbert(tmp_path, pylate_dir, monkeypatch):
    folder = shutil.copytree(pylate_dir, tmp_path / "colbert")
    poison(folder / "1_Dense" / "model.safetensors", "linear.weight", float("nan"))
    no_torch_side(monkeypatch)
    report = verify.verify_folder(folder)
    assert report["exit_code"] == 1 and "1_Dense/model.safetensors: linear.weight" in report["message"]


def test_verify_fails_on_nonfinite_outputs_from_finite_weights(tmp_path, tiny_bert_dir, monkeypatch):
    import torch
    from transformers import AutoModel as TorchAutoModel

    folder = shutil.copytree(tiny_bert_dir, tmp_path / "overflow")
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(folder / "model.safetensors"))
    tensors["embeddings.LayerNorm.weight"] = np.full_like(tensors["embeddings.LayerNorm.weight"], 3e38)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with torch.no_grad():  # torch overflows too: both sides would agree on NaN
        hidden = TorchAutoModel.from_pretrained(str(folder)).eval()(input_ids=torch.tensor([[101, 2000, 102]])).last_hidden_state
    assert not torch.isfinite(hidden).all()
    no_torch_side(monkeypatch)
    report = verify.verify_folder(folder)
    assert report["exit_code"] == 1 and "non-finite outputs (last_hidden_state)" in report["message"]


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


def test_read_json_names_empty_file_and_missing_file(tmp_path):
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

    from mlx_hf_bridge.engine.callbacks import TrainerCallback  # noqa: F401

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
    return [model.tokenize(texts, is_query=name == "query", pad=True) for name, texts in columns.items()]


def torch_features(model, columns: dict) -> list[dict]:
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
            torch_loss(torch_features(ref, columns), None)
    else:  # PyLate's quirk: it trains, pairing query 1 with "b" (query 0's second document)
        assert math.isfinite(torch_loss(torch_features(ref, columns), None).item())
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
            torch_loss(torch_features(ref, columns), torch.tensor(labels))
    else:  # PyLate's quirk: (B,) labels broadcast as one row of scores for every query, and it trains
        assert math.isfinite(torch_loss(torch_features(ref, columns), torch.tensor(labels)).item())
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

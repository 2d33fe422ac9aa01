"""Bad input is refused and named, not absorbed (issue 19, items 3 and 5): lengths, texts,
custom code, verify. Files and losses: test_reliability_inputs_files.py.

Each case: the error type, a message naming the cause (file / key / tensor / column / length) and
the fix, raised before any expensive work (weights read, training step) where that applies, and
the user's folder byte-identical afterwards. Where the torch library raises on the same input, the
test shows it too (that is what justifies refusing); where it silently absorbs it, the test shows
that quirk and why the bridge refuses instead.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import mlx_hf_bridge  # noqa: F401  (BLAS preload before mlx.core)
import mlx.core as mx
import numpy as np
import pytest
from conftest import _save_tiny, tiny_modernbert_config
from reliability_inputs_helpers import Untouched, make_trainer, pylate_dir, short_bert_dir  # noqa: F401 (fixtures)

from mlx_hf_bridge import loading, verify
from mlx_hf_bridge.pylate import models as mlx_models
from mlx_hf_bridge.pylate import utils as mlx_utils

from mlx_hf_bridge.models import SUPPORTED_MODEL_TYPES  # noqa: E402

SUPPORTED = ", ".join(SUPPORTED_MODEL_TYPES)  # the error lists every built-in type


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
    # encode sorts texts by length first: the index named must be the caller's, not the sorted batch's
    with pytest.raises(TypeError, match=r"encode\(\) input, text 2: expected a string, got int 42"):
        mlx_models.ColBERT(str(tiny_bert_dir)).encode(["a", "a much longer text than the others", 42], is_query=False)


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
            assert SUPPORTED in message and "trust_remote_code=False" in message


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
    assert SUPPORTED in str(err.value)


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

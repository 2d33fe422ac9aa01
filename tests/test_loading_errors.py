"""Bad input fails early with an error that names the problem and the fix; Stanford checkpoints load."""

import json
import sys
import subprocess

import numpy as np
import pytest

from mlx_hf_bridge.pylate import models as mlx_models
from mlx_hf_bridge.transformers import AutoModel


def test_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        AutoModel.from_pretrained(str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        mlx_models.ColBERT(str(tmp_path / "nope"))


def test_folder_without_weights(copy_dir, tiny_bert_dir):
    folder = copy_dir(tiny_bert_dir)
    (folder / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"No weights in .*model\.safetensors"):
        AutoModel.from_pretrained(str(folder))


def test_truncated_safetensors(copy_dir, tiny_bert_dir):
    folder = copy_dir(tiny_bert_dir)
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or not a safetensors file"):
        AutoModel.from_pretrained(str(folder))


def test_unknown_model_type(copy_dir, tiny_bert_dir):
    folder = copy_dir(tiny_bert_dir)
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "gpt2"
    (folder / "config.json").write_text(json.dumps(config))
    from mlx_hf_bridge.models import SUPPORTED_MODEL_TYPES

    with pytest.raises(ValueError, match="Unsupported model_type 'gpt2'") as err:
        AutoModel.from_pretrained(str(folder))
    assert ", ".join(SUPPORTED_MODEL_TYPES) in str(err.value)  # every supported type is named


def test_tokenizer_missing(copy_dir, tiny_bert_dir):
    folder = copy_dir(tiny_bert_dir)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        (folder / name).unlink(missing_ok=True)
    with pytest.raises(FileNotFoundError, match="No tokenizer in"):
        mlx_models.ColBERT(str(folder))


def test_file_instead_of_folder(tiny_bert_dir):
    with pytest.raises(NotADirectoryError, match="pass the model folder"):
        AutoModel.from_pretrained(str(tiny_bert_dir / "config.json"))


def test_pytorch_bin_loads_without_torch_semantics(copy_dir, tiny_bert_dir):
    """pytorch_model.bin is read with weights_only semantics; a malicious pickle is refused."""
    import pickle

    import torch
    from safetensors.torch import load_file

    folder = copy_dir(tiny_bert_dir)
    state = load_file(folder / "model.safetensors")
    torch.save(state, folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    reference = AutoModel.from_pretrained(str(tiny_bert_dir))
    model = AutoModel.from_pretrained(str(folder))
    ids = np.array([[101, 2000, 3000, 102]])
    import mlx.core as mx

    np.testing.assert_array_equal(np.array(model(mx.array(ids))), np.array(reference(mx.array(ids))))

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, folder / "pytorch_model.bin", pickle_protocol=pickle.DEFAULT_PROTOCOL)
    with pytest.raises(pickle.UnpicklingError, match="refusing to unpickle builtins.print"):
        AutoModel.from_pretrained(str(folder))


def test_stanford_hf_colbert_checkpoint(tmp_path, tiny_bert_dir):
    """Stanford layout: backbone under ``bert.``, projection as root ``linear.weight``, artifact.metadata."""
    import torch
    from pylate import models
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "stanford"
    folder.mkdir()
    for f in tiny_bert_dir.iterdir():
        if f.name != "model.safetensors":
            (folder / f.name).write_bytes(f.read_bytes())
    state = {f"bert.{k}": v for k, v in load_file(tiny_bert_dir / "model.safetensors").items()}
    torch.manual_seed(0)
    state["linear.weight"] = torch.randn(24, 32) * 0.1
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((folder / "config.json").read_text())
    config["architectures"] = ["HF_ColBERT"]
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "artifact.metadata").write_text(json.dumps({"query_maxlen": 20, "doc_maxlen": 64}))
    ref = models.ColBERT(str(folder), device="cpu")
    got = mlx_models.ColBERT(str(folder))
    assert (got.query_prefix, got.document_prefix) == (ref.query_prefix, ref.document_prefix) == ("[unused0]", "[unused1]")
    assert (got.query_length, got.document_length) == (ref.query_length, ref.document_length) == (20, 64)
    assert got.dense[0].get_config_dict() == ref[1].get_config_dict()
    docs = ["a stanford colbert document.", "another one"]
    for a, b in zip(ref.encode(docs, is_query=False), got.encode(docs, is_query=False)):
        assert np.abs(a - b).max() <= 1e-5


def test_no_torch_dependency_on_mlx_path(tiny_bert_dir, tmp_path):
    """With torch made unimportable, load -> encode -> save works: torch is not a dependency."""
    code = f"""
import sys
sys.modules["torch"] = None  # `import torch` now raises ImportError, as if not installed
import mlx_hf_bridge
from mlx_hf_bridge.pylate import models
m = models.ColBERT({str(tiny_bert_dir)!r})
print(m.encode(["hello"], is_query=False)[0].shape)
m.save({str(tmp_path / 'out')!r})
assert sys.modules["torch"] is None
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

"""``mlx-hf-bridge verify``: torch library (in a subprocess) vs the bridge on a saved folder."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from mlx_hf_bridge import verify



def perturb(path, name=None, delta=0.05):
    """Add ``delta`` to one element of one tensor in a safetensors file (in place)."""
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(path))
    name = name or next(k for k, v in tensors.items() if v.ndim == 2 and "embeddings" not in k)
    tensors[name] = tensors[name].copy()
    tensors[name].flat[0] += delta
    save_file(tensors, str(path), metadata={"format": "pt"})
    return name


def test_detect_kind(tmp_path, tiny_bert_dir):
    assert verify.detect_kind(tiny_bert_dir) == verify.HF
    colbert = tmp_path / "colbert"
    colbert.mkdir()
    (colbert / "modules.json").write_text("[]")
    (colbert / "config_sentence_transformers.json").write_text(json.dumps({"model_type": "ColBERT"}))
    assert verify.detect_kind(colbert) == verify.COLBERT
    # no model_type (PyLate reads that as ColBERT) but ColBERT keys
    (colbert / "config_sentence_transformers.json").write_text(json.dumps({"query_length": 32, "similarity_fn_name": "MaxSim"}))
    assert verify.detect_kind(colbert) == verify.COLBERT
    st = tmp_path / "st"
    st.mkdir()
    (st / "modules.json").write_text(json.dumps([{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]))
    (st / "config_sentence_transformers.json").write_text(json.dumps({"model_type": "SentenceTransformer", "similarity_fn_name": "cosine"}))
    assert verify.detect_kind(st) == verify.SENTENCE_TRANSFORMERS
    with pytest.raises(FileNotFoundError):
        verify.detect_kind(tmp_path / "missing")


def test_unsupported_and_missing_folders_exit_2(tmp_path, capsys):
    st = tmp_path / "st"
    st.mkdir()
    (st / "modules.json").write_text(json.dumps([{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]))
    if verify._bridge_sentence_transformer() is None:
        report = verify.verify_folder(st)
        assert report["status"] == "unsupported" and "not supported by the bridge yet" in report["message"]
        assert report["exit_code"] == 2
    assert verify.main([str(tmp_path / "missing")]) == 2
    assert "ERROR" in capsys.readouterr().out


def test_cli_passes_on_good_hf_folder_torch_libraries_stay_out(tiny_bert_dir):
    """The real entry point, in a fresh process: exit 0, per-kind max|Δ| printed, and the torch
    libraries run only in the subprocess. (``torch`` itself still appears in the MLX process when it
    is installed: transformers' config/tokenizer import pulls it in, see transformers/utils/generic.py.)"""
    code = (
        "import sys\n"
        "from mlx_hf_bridge.cli import main\n"
        f"rc = main(['verify', {str(tiny_bert_dir)!r}])\n"
        "leaked = [m for m in ('pylate', 'sentence_transformers', 'transformers.models.bert.modeling_bert') if m in sys.modules]\n"
        "assert not leaked, f'torch-side modules imported on the MLX side: {leaked}'\n"
        "sys.exit(rc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "last_hidden_state" in proc.stdout and "max|Δ|" in proc.stdout and "PASSED" in proc.stdout


def test_tampered_hf_export_fails(tmp_path, tiny_bert_dir, capsys):
    """An export whose weights differ from the torch model it came from: exit 1."""
    tampered = tmp_path / "tampered"
    shutil.copytree(tiny_bert_dir, tampered)
    perturb(tampered / "model.safetensors")
    assert verify.main([str(tampered), "--reference", str(tiny_bert_dir)]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "above tolerance" in out


def test_bridge_misreading_a_weight_fails(tiny_bert_dir, monkeypatch):
    """Same folder, but the bridge perturbs one weight while reading it (a loader bug): exit 1."""
    from mlx_hf_bridge import loading

    real = loading.load_weights

    def misread(folder):
        weights = dict(real(folder))
        name = "encoder.layer.1.output.dense.weight"
        weights[name] = weights[name] * 1.01
        return weights

    monkeypatch.setattr(loading, "load_weights", misread)
    report = verify.verify_folder(tiny_bert_dir)
    assert report["exit_code"] == 1 and report["status"] == "failed"
    assert report["results"]["last_hidden_state"]["max_abs_diff"] > 1e-5


@pytest.mark.slow  # ~13 s torch subprocess
def test_torch_side_failure_is_an_error_not_a_crash(tmp_path, tiny_bert_dir):
    # the bridge reads the weights first (the non-finite check), so a broken file is named by it ...
    broken = tmp_path / "broken"
    shutil.copytree(tiny_bert_dir, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    report = verify.verify_folder(broken)
    assert report["exit_code"] == 2 and report["status"] == "error" and "model.safetensors" in report["message"]
    # ... and a torch side that cannot load its reference is an error too, not a crash
    report = verify.verify_folder(tiny_bert_dir, reference=tmp_path / "missing")
    assert report["exit_code"] == 2 and report["status"] == "error" and "torch side" in report["message"]


@pytest.fixture(scope="module")
def bridge_colbert_dir(tmp_path_factory, tiny_bert_dir):
    from mlx_hf_bridge.pylate.models import ColBERT

    out = tmp_path_factory.mktemp("bridge-colbert")
    ColBERT(str(tiny_bert_dir), query_length=16, document_length=40).save(str(out))
    return out


def test_colbert_export_passes_and_tampered_dense_fails(tmp_path, bridge_colbert_dir):
    report = verify.verify_folder(bridge_colbert_dir)
    assert report["kind"] == verify.COLBERT and report["exit_code"] == 0, report
    assert set(report["results"]) == {"query (is_query=True)", "document (is_query=False)"}
    assert all(r["max_abs_diff"] <= 1e-5 for r in report["results"].values())

    tampered = tmp_path / "tampered"
    shutil.copytree(bridge_colbert_dir, tampered)
    perturb(tampered / "1_Dense" / "model.safetensors", "linear.weight", delta=0.5)
    report = verify.verify_folder(tampered, reference=bridge_colbert_dir)  # torch side cached from above
    assert report["exit_code"] == 1
    assert all(r["max_abs_diff"] > 1e-5 for r in report["results"].values())


@pytest.mark.slow  # ~14 s torch subprocess
def test_relative_folder_reaches_the_torch_side(tmp_path, bridge_colbert_dir, monkeypatch):
    """``mlx-hf-bridge verify output/demo/final``: the torch child runs in a temp dir, so the
    relative path must be resolved before it is handed over (the demo hit this)."""
    shutil.copytree(bridge_colbert_dir, tmp_path / "out" / "final")
    monkeypatch.chdir(tmp_path)
    report = verify.verify_folder("out/final")
    assert report["exit_code"] == 0, report
    assert all(r["max_abs_diff"] <= 1e-5 for r in report["results"].values())


def test_compare_reports_shape_mismatch():
    ref = {"q0": np.zeros((3, 4), np.float32), "d0": np.zeros((2, 4), np.float32)}
    got = {"q0": np.zeros((3, 4), np.float32), "d0": np.zeros((5, 4), np.float32)}
    result = verify.compare(verify.COLBERT, ref, got, 1)
    assert result["query (is_query=True)"]["max_abs_diff"] == 0.0
    assert result["document (is_query=False)"]["max_abs_diff"] == float("inf")
    assert result["document (is_query=False)"]["shape_mismatches"]


def test_dense_sentence_transformers_folders_pass(tmp_path, tiny_bert_dir):
    """Dense folders against the installed sentence-transformers (5.3 here, 6.2 in .venv-st6): one in
    ST 5's file format (Pooling, Dense Tanh + bias, Normalize) and the bridge's save of a plain HF folder."""
    from st6_reference import hand_written_st5_folder

    from mlx_hf_bridge.sentence_transformers import SentenceTransformer

    folders = [hand_written_st5_folder(tmp_path / "st5", tiny_bert_dir), tmp_path / "bridge"]
    SentenceTransformer(str(tiny_bert_dir)).save_pretrained(str(folders[1]))
    for folder in folders:
        report = verify.verify_folder(folder)
        assert report["kind"] == verify.SENTENCE_TRANSFORMERS and report["exit_code"] == 0, report
        assert report["results"]["sentence_embedding"]["max_abs_diff"] <= 1e-5


def test_multi_vector_folder_needs_sentence_transformers_6(tmp_path, tiny_bert_dir):
    """An ST 6 multi-vector save is compared with ST 6's MultiVectorEncoder; with sentence-transformers 5
    installed verify names the upgrade instead of running (and passes where ST 6 is installed)."""
    from importlib.metadata import version

    from mlx_hf_bridge.sentence_transformers import MultiVectorEncoder

    MultiVectorEncoder(str(tiny_bert_dir)).save_pretrained(str(tmp_path / "mv"))
    report = verify.verify_folder(tmp_path / "mv")
    assert report["kind"] == verify.MULTI_VECTOR
    if int(version("sentence-transformers").split(".")[0]) < 6:
        assert report["status"] == "unsupported" and report["exit_code"] == 2 and report["mlx_seconds"] is None
        assert "pip install 'sentence-transformers>=6'" in report["message"], report["message"]
    else:
        assert report["status"] == "passed", report

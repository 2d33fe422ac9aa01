"""``mlx-hf-bridge verify`` on sentence-transformers 6.2 folders: multi-vector (``MultiVectorEncoder``,
with token pooling, query expansion and a skiplist) and dense (``SentenceTransformer``) folders, saved
by real ST 6.2 and by the bridge, pass against ST 6.2 on torch; a tampered export fails; a Python
without sentence-transformers 6 is told what to install before any model runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("sentence_transformers", minversion="6")

from mlx_hf_bridge import verify  # noqa: E402

pytestmark = pytest.mark.st6
BUILD = textwrap.dedent(
    r'''
    import os, string, sys
    import torch
    from transformers import AutoModel, AutoTokenizer, BertConfig
    from sentence_transformers import MultiVectorEncoder, SentenceTransformer
    from sentence_transformers.base.modules import Dense, Normalize, Transformer
    from sentence_transformers.multi_vector_encoder.modules import HierarchicalTokenPooling, MultiVectorMask
    from sentence_transformers.sentence_transformer.modules import Pooling

    out, tokenizer = sys.argv[1], sys.argv[2]
    bert = os.path.join(out, "bert")
    torch.manual_seed(0)
    AutoModel.from_config(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=64, initializer_range=0.2)).save_pretrained(bert)
    AutoTokenizer.from_pretrained(tokenizer).save_pretrained(bert)
    torch.manual_seed(1)
    MultiVectorEncoder(modules=[
        Transformer(bert, query_expansion={"strategy": "fixed", "length": 8}, document_length=48),
        Dense(32, 16, module_input_name="token_embeddings", bias=False, activation_function=None),
        MultiVectorMask(skiplist_words=list(string.punctuation)), Normalize(module_input_name="token_embeddings"),
        HierarchicalTokenPooling(pool_factor=2)], prompts={"query": "query: ", "document": "passage: "},
        device="cpu").save_pretrained(os.path.join(out, "st6-multi-vector"))
    transformer = Transformer(bert)
    SentenceTransformer(modules=[transformer, Pooling(32, "mean"), Dense(32, 8, activation_function=torch.nn.Tanh()),
                                 Normalize()], device="cpu").save_pretrained(os.path.join(out, "st6-dense"))
    '''
)


@pytest.fixture(scope="module")
def st6_folders(tmp_path_factory, minilm_dir):
    out = tmp_path_factory.mktemp("st6-verify")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([sys.executable, "-c", BUILD, str(out), str(minilm_dir)], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


def assert_passes(report, kind, groups):
    assert report["kind"] == kind and report["exit_code"] == 0 and report["status"] == "passed", report
    assert set(report["results"]) == set(groups)
    for result in report["results"].values():
        assert not result["shape_mismatches"] and result["max_abs_diff"] <= 1e-5


MV_GROUPS = {"query (encode_query)", "document (encode_document)", "similarity"}


def test_st6_multi_vector_folders_pass(st6_folders, capsys):
    folder = st6_folders / "st6-multi-vector"
    assert verify.detect_kind(folder) == verify.MULTI_VECTOR
    # the command line: every group compared, printed, and the exit code
    assert verify.main([str(folder)]) == 0
    out = capsys.readouterr().out
    assert "kind       multi-vector" in out and "PASSED" in out
    assert all(group in out for group in MV_GROUPS), out


@pytest.mark.slow
def test_bridge_saved_multi_vector_folders_pass(st6_folders, tmp_path, tiny_bert_dir):
    from mlx_hf_bridge.modules import HierarchicalTokenPooling
    from mlx_hf_bridge.sentence_transformers import MultiVectorEncoder

    folder = st6_folders / "st6-multi-vector"
    assert_passes(verify.verify_folder(folder), verify.MULTI_VECTOR, MV_GROUPS)
    # the bridge's saves: of that folder, and of a model it built (ST 6's default pipeline + pooling)
    MultiVectorEncoder(str(folder)).save_pretrained(str(tmp_path / "resaved"))
    built = MultiVectorEncoder(str(tiny_bert_dir))
    built.heads.append(HierarchicalTokenPooling(pool_factor=3, num_protected_tokens=0))
    built.save_pretrained(str(tmp_path / "built"))
    for saved in ("resaved", "built"):
        assert_passes(verify.verify_folder(tmp_path / saved), verify.MULTI_VECTOR, MV_GROUPS)


def test_detect_kind_from_module_types(tmp_path):
    folder = tmp_path / "mv"
    folder.mkdir()
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.base.modules.transformer.Transformer"},
        {"idx": 1, "name": "1", "path": "1_MultiVectorMask",
         "type": "sentence_transformers.multi_vector_encoder.modules.multi_vector_mask.MultiVectorMask"}]))
    assert verify.detect_kind(folder) == verify.MULTI_VECTOR  # no config_sentence_transformers.json
    (folder / "config_sentence_transformers.json").write_text(json.dumps({"model_type": "SparseEncoder"}))
    (folder / "modules.json").write_text(json.dumps([{"idx": 0, "name": "0", "path": "", "type": "x"}]))
    report = verify.verify_folder(folder)
    assert report["status"] == "unsupported" and "SparseEncoder" in report["message"] and report["exit_code"] == 2


def test_tampered_multi_vector_export_fails(st6_folders, tmp_path):
    from safetensors.numpy import load_file, save_file

    tampered = shutil.copytree(st6_folders / "st6-multi-vector", tmp_path / "tampered")
    tensors = load_file(str(tampered / "1_Dense" / "model.safetensors"))
    name = next(iter(tensors))
    tensors[name] = tensors[name].copy()
    tensors[name].flat[0] += 0.5
    save_file(tensors, str(tampered / "1_Dense" / "model.safetensors"), metadata={"format": "pt"})
    report = verify.verify_folder(tampered, reference=st6_folders / "st6-multi-vector")
    assert report["exit_code"] == 1 and report["status"] == "failed"
    assert report["results"]["similarity"]["max_abs_diff"] > 1e-5


def test_dense_st6_folders_pass(st6_folders, tmp_path):
    from mlx_hf_bridge.sentence_transformers import SentenceTransformer

    folder = st6_folders / "st6-dense"
    assert verify.detect_kind(folder) == verify.SENTENCE_TRANSFORMERS
    assert_passes(verify.verify_folder(folder), verify.SENTENCE_TRANSFORMERS, {"sentence_embedding"})
    SentenceTransformer(str(folder)).save_pretrained(str(tmp_path / "resaved"))
    assert_passes(verify.verify_folder(tmp_path / "resaved"), verify.SENTENCE_TRANSFORMERS, {"sentence_embedding"})


def test_without_sentence_transformers_6_names_what_to_install(st6_folders, monkeypatch):
    real = verify.metadata.version

    def older(name):
        return "5.3.0" if name == "sentence-transformers" else real(name)

    def no_side(*args, **kwargs):
        raise AssertionError("a side ran although the torch library cannot")

    monkeypatch.setattr(verify.metadata, "version", older)
    monkeypatch.setattr(verify, "run_torch_side", no_side)
    monkeypatch.setattr(verify, "mlx_side", no_side)
    report = verify.verify_folder(st6_folders / "st6-multi-vector")
    assert report["status"] == "unsupported" and report["exit_code"] == 2
    assert "sentence-transformers 5.3.0" in report["message"] and "pip install 'sentence-transformers>=6'" in report["message"]

    def missing(name):
        if name == "sentence-transformers":
            raise verify.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(verify.metadata, "version", missing)
    report = verify.verify_folder(st6_folders / "st6-dense")
    assert report["status"] == "unsupported" and "sentence-transformers is not installed" in report["message"]

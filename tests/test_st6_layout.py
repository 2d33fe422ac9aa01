"""Loading and saving by layout against real sentence-transformers 6.2: ST 6 multi-vector folders
read exactly by ``MultiVectorEncoder`` (encode_query / encode_document / similarity <= 1e-5), bridge
saves loading in ST 6.2 with identical outputs and bit-identical weights, older folders (PyLate,
sentence-transformers 5, Stanford) converted as ST 6.2 converts them. Runs in the ST 6 reference
venv (``st6`` marker); the refusals of layouts the bridge cannot read are tests/test_st6_layout_errors.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from st6_reference import (
    DOCUMENTS, MAXSIM_INPUTS, QUERIES, TOL, VARIANTS, assert_same_outputs, bridge_outputs, hand_written_st5_folder,
    run_st6, safetensors_files, stanford_folder,
)

from mlx_hf_bridge.modules.layout import LayoutError
from mlx_hf_bridge.pylate import models as pylate_models
from mlx_hf_bridge.sentence_transformers import MultiVectorEncoder
from mlx_hf_bridge.sentence_transformers.multi_vector_encoder import MultiVectorEncoder as NestedMultiVectorEncoder

pytestmark = pytest.mark.st6


@pytest.fixture(scope="module")
def st6_dir(tmp_path_factory, minilm_dir, modernbert_tokenizer_dir):
    out = tmp_path_factory.mktemp("st6-reference")
    run_st6({"mode": "build", "out": str(out), "bert_tokenizer": str(minilm_dir),
             "modernbert_tokenizer": str(modernbert_tokenizer_dir)})
    return out


# --- ST 6 folders read exactly ----------------------------------------------------------------------
@pytest.mark.parametrize("variant", VARIANTS)
def test_st6_saved_folder_encodes_as_st6(st6_dir, variant):
    model = MultiVectorEncoder(str(st6_dir / variant))
    assert_same_outputs(bridge_outputs(model), np.load(st6_dir / f"{variant}.npz"), variant)


def test_settings_read_from_the_folder(st6_dir):
    model = MultiVectorEncoder(str(st6_dir / "min-lengths-two-dense"))
    assert model.prompts == {"query": "q: ", "document": "d: ", "other": "x: "}
    assert model.similarity_fn_name == "meanmaxsim"
    assert model[0].query_expansion == {"strategy": "min", "attend": False, "token": None, "length": 8}
    assert (model[0].query_length, model[0].document_length) == (16, 20)
    assert [type(m).__name__ for m in model] == ["Transformer", "Dense", "Dense", "MultiVectorMask", "Normalize"]
    # the caller's settings win over the saved ones, as in ST 6
    override = MultiVectorEncoder(str(st6_dir / "min-lengths-two-dense"), prompts={"query": ""}, similarity_fn_name="maxsim")
    assert override.prompts["query"] == "" and override.prompts["document"] == "d: "
    assert override.similarity_fn_name == "maxsim"


def test_raw_features_equal_st6(st6_dir):
    """``output_value=None``: per text, every tensor feature ST 6 returns (ids, masks, expansion positions,
    unsliced token embeddings) and the same values."""
    ref = np.load(st6_dir / "raw-features.npz")
    raw = MultiVectorEncoder(str(st6_dir / "fixed-attend-prompts-skiplist")).encode_query(QUERIES[:2], output_value=None)
    got = {f"{i}/{k}": np.array(v) for i, item in enumerate(raw) for k, v in item.items()}
    assert sorted(got) == sorted(ref.files)
    for key in ref.files:
        assert got[key].shape == ref[key].shape, key
        if ref[key].dtype.kind == "f":
            assert np.abs(got[key] - ref[key]).max() <= TOL, key
        else:
            assert np.array_equal(got[key].astype(ref[key].dtype), ref[key]), key


def test_the_folder_that_loaded_silently_wrong(st6_dir):
    """Issue 12: PyLate's ColBERT read this ST 6 folder with [Q]/[D], 32-token expansion and the
    punctuation skiplist (32 query rows instead of 8, scores ~5x off). Now ColBERT refuses it and names
    MultiVectorEncoder, which reads ST 6's settings: 8 query rows and ST 6's scores."""
    folder = st6_dir / "fixed-noattend-no-skiplist"
    with pytest.raises(LayoutError, match="MultiVectorEncoder") as err:
        pylate_models.ColBERT(str(folder))
    assert "sentence-transformers 6" in str(err.value)
    ref = np.load(st6_dir / "fixed-noattend-no-skiplist.npz")
    model = MultiVectorEncoder(str(folder))
    queries = model.encode_query(QUERIES, convert_to_numpy=True)
    assert [q.shape[0] for q in queries] == [8, 8, 8, 8] == [ref[f"q{i}"].shape[0] for i in range(4)]
    scores = np.array(model.similarity(queries, model.encode_document(DOCUMENTS, convert_to_numpy=True)))
    assert np.abs(scores - ref["scores"]).max() <= TOL


def test_plain_hf_gets_st6_default_pipeline(st6_dir):
    model = MultiVectorEncoder(str(st6_dir / "tiny-bert"))
    assert [type(m).__name__ for m in model] == ["Transformer", "Dense", "MultiVectorMask", "Normalize"]
    assert model[0].query_expansion is None and model[2].skiplist_words == [] and model.prompts == {"query": "", "document": ""}
    assert (model[1].in_features, model[1].out_features, model[1].bias) == (32, 128, False)


# --- bridge saves load in real ST 6 ---------------------------------------------------------------
def test_saved_layout_files_match_st6(st6_dir, tmp_path):
    for variant in [*VARIANTS, "plain-hf"]:
        source = st6_dir / variant
        if variant == "plain-hf":
            MultiVectorEncoder(str(st6_dir / "tiny-bert")).save_pretrained(str(tmp_path / variant))
        else:
            MultiVectorEncoder(str(source)).save_pretrained(str(tmp_path / variant))
        saved = tmp_path / variant
        for name in ["modules.json", "sentence_bert_config.json"] + [
            str(p.relative_to(source)) for p in source.glob("[0-9]_*/config.json")
        ]:
            assert json.loads((saved / name).read_text()) == json.loads((source / name).read_text()), f"{variant}/{name}"
        ours = json.loads((saved / "config_sentence_transformers.json").read_text())
        theirs = json.loads((source / "config_sentence_transformers.json").read_text())
        assert {k: v for k, v in ours.items() if k != "__version__"} == {k: v for k, v in theirs.items() if k != "__version__"}
        if variant != "plain-hf":  # the plain-HF projection is random on both sides
            ref_tensors, got_tensors = safetensors_files(source), safetensors_files(saved)
            assert sorted(got_tensors) == sorted(ref_tensors)
            for file, tensors in ref_tensors.items():
                assert sorted(got_tensors[file]) == sorted(tensors), file
                for key, value in tensors.items():
                    assert got_tensors[file][key].dtype == value.dtype and np.array_equal(got_tensors[file][key], value), key


def test_bridge_saved_folders_load_in_st6(st6_dir, tmp_path, tiny_modernbert_dir):
    """Round trip (ST 6 folder -> bridge -> save -> ST 6) and a model built from modules in the bridge."""
    from mlx_hf_bridge.modules import Dense, MultiVectorMask, Normalize, Transformer

    folders, expected = {}, {}
    for variant in VARIANTS:
        folders[variant] = str(tmp_path / variant)
        MultiVectorEncoder(str(st6_dir / variant)).save_pretrained(folders[variant])
        expected[variant] = np.load(st6_dir / f"{variant}.npz")
    built = MultiVectorEncoder(
        modules=[
            Transformer(str(tiny_modernbert_dir), query_expansion={"strategy": "fixed", "length": 9}, document_length=30),
            Dense(32, 8, bias=False, activation_function=None, module_input_name="token_embeddings"),
            MultiVectorMask(skiplist_words=[".", ","]),
            Normalize(module_input_name="token_embeddings"),
        ],
        prompts={"query": "query: "},
    )
    folders["bridge-built"] = str(tmp_path / "bridge-built")
    built.save_pretrained(folders["bridge-built"])
    expected["bridge-built"] = bridge_outputs(built)
    out = tmp_path / "st6-outputs"
    out.mkdir()
    run_st6({"mode": "encode", "out": str(out), "folders": folders})
    for name, ref in expected.items():
        got = np.load(out / f"{name}.npz")
        assert_same_outputs({k: got[k] for k in got.files}, ref, name)


def test_save_leaves_other_files_and_facade_names(st6_dir, tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    MultiVectorEncoder(str(st6_dir / "token-no-dense")).save_pretrained(str(target))
    assert (target / "notes.txt").read_text() == "mine" and (target / "modules.json").exists()
    assert NestedMultiVectorEncoder is MultiVectorEncoder


def test_maxsim_functions_equal_st6(st6_dir):
    """ST 6's masking: masked document tokens are left out of the max (negative similarities
    survive), an empty document scores -1e9, 3D inputs without masks drop all-zero rows."""
    from mlx_hf_bridge.colbert import scores

    namespace = {"np": np}
    exec(MAXSIM_INPUTS, namespace)
    ref = np.load(st6_dir / "maxsim-cases.npz")
    for name, (a, b, a_mask, b_mask) in namespace["maxsim_inputs"]().items():
        n = min(len(a), len(b))
        got = {
            name: scores.maxsim(a, b, a_mask, b_mask),
            name + "-mean": scores.mean_maxsim(a, b, a_mask, b_mask),
            name + "-pairwise": scores.maxsim_pairwise(
                a[:n], b[:n], None if a_mask is None else a_mask[:n], None if b_mask is None else b_mask[:n]
            ),
        }
        for key, value in got.items():
            assert np.abs(np.array(value) - ref[key]).max() <= TOL, key
    assert ref["masked"][:, 2].max() == -1e9  # the empty document, as ST 6 scores it


# --- older folders, converted as ST 6.2 converts them ---------------------------------------------
@pytest.fixture(scope="module")
def legacy_dirs(tmp_path_factory, tiny_bert_dir, tiny_modernbert_dir):
    """PyLate folders (PyLate's layout, written by the bridge's ColBERT: equal to PyLate's own in
    test_colbert_parity), a sentence-transformers 5 folder and a Stanford checkpoint, with ST 6's outputs."""
    root = tmp_path_factory.mktemp("legacy")
    folders = {
        "pylate-default": (tiny_bert_dir, {}),
        "pylate-attend-lengths": (tiny_bert_dir, dict(query_length=12, document_length=20, attend_to_expansion_tokens=True)),
        "pylate-no-expansion": (tiny_bert_dir, dict(do_query_expansion=False, query_length=16, skiplist_words=["."])),
        "pylate-modernbert": (tiny_modernbert_dir, dict(query_length=12, document_length=40)),
    }
    paths = {}
    for name, (source, kwargs) in folders.items():
        pylate_models.ColBERT(str(source), **kwargs).save(str(root / name))
        paths[name] = str(root / name)
    paths["st5-dense-tanh"] = str(hand_written_st5_folder(root / "st5-dense-tanh", tiny_bert_dir))
    paths["stanford"] = str(stanford_folder(root / "stanford", tiny_bert_dir))
    out = root / "st6-outputs"
    out.mkdir()
    run_st6({"mode": "encode", "out": str(out), "folders": paths})
    return paths, out


@pytest.mark.parametrize(
    "name", ["pylate-default", "pylate-attend-lengths", "pylate-no-expansion", "pylate-modernbert", "st5-dense-tanh", "stanford"]
)
def test_older_folders_convert_as_st6_does(legacy_dirs, name):
    paths, out = legacy_dirs
    model = MultiVectorEncoder(paths[name])
    assert_same_outputs(bridge_outputs(model), np.load(out / f"{name}.npz"), name)


def test_pylate_conversion_settings(legacy_dirs):
    paths, _ = legacy_dirs
    model = MultiVectorEncoder(paths["pylate-attend-lengths"])
    assert model.prompts == {"query": "[Q] ", "document": "[D] "}
    assert model[0].query_expansion == {"strategy": "fixed", "attend": True, "token": None, "length": 12}
    assert model[0].document_length == 20 and model[0].query_length is None
    assert [type(m).__name__ for m in model] == ["Transformer", "Dense", "MultiVectorMask", "Normalize"]
    assert model[2].skiplist_words == list(__import__("string").punctuation)
    assert MultiVectorEncoder(paths["pylate-no-expansion"])[0].query_expansion is None


# --- push_to_hub ----------------------------------------------------------------------------------
def test_push_to_hub_uploads_st6_layout(st6_dir, tmp_path, monkeypatch):
    """MultiVectorEncoder.push_to_hub -> a local Hub -> download -> real ST 6.2 loads it with the same outputs."""
    from huggingface_hub import snapshot_download
    from hub_server import LocalHub

    from mlx_hf_bridge import hub as hub_mod

    monkeypatch.setattr(hub_mod.tempfile, "tempdir", str(tmp_path))  # a kept local save lands in tmp_path
    model = MultiVectorEncoder(str(st6_dir / "min-lengths-two-dense"))
    with LocalHub(lfs_threshold=1_000_000) as server, server.patch_client(hf_home=tmp_path / "hf-cache"):
        url = model.push_to_hub("tester/multi-vector", token="hf_local_test_token")
        assert "/tester/multi-vector/commit/" in url
        downloaded = snapshot_download("tester/multi-vector")
    assert {"modules.json", "1_Dense/model.safetensors", "3_MultiVectorMask/config.json"} <= {
        str(p.relative_to(downloaded)) for p in Path(downloaded).rglob("*") if p.is_file()
    }
    out = tmp_path / "st6-outputs"
    out.mkdir()
    run_st6({"mode": "encode", "out": str(out), "folders": {"pushed": downloaded}})
    assert_same_outputs(bridge_outputs(model), np.load(out / "pushed.npz"), "pushed")

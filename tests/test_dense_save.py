"""save / save_pretrained: the folder has the installed ST's layout (the same files and JSON as the real
library writes for the same model), loads in the real sentence-transformers of this venv with
max|Δ| <= 1e-5, holds bit-identical weights, and loads back in the bridge. An ST 5 model saved by the
bridge is ST 5.3's layout (which ST 6.2 reads too); an ST 6 model is ST 6.2's."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import _save_tiny, tiny_bert_config
from safetensors.numpy import load_file
from test_dense_model_helpers import ST6, max_diff, reference, texts, write_st_folder

from mlx_hf_bridge.sentence_transformers import SentenceTransformer

TOL = 1e-5
BATCH = texts(12, seed=21, n_max=30)


@pytest.fixture(scope="module")
def st_folder(tmp_path_factory, minilm_dir):
    bert = _save_tiny(tmp_path_factory.mktemp("bert-save"), tiny_bert_config(), minilm_dir, seed=4, init_scale=0.1)
    return write_st_folder(tmp_path_factory.mktemp("st-save") / "m", bert, ("cls", "mean") if ST6 else "cls",
                           dense=20, normalize=True, prompts={"query": "q: "})


def _canonical(tensors: dict) -> dict:
    return {k.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias"): v
            for k, v in tensors.items()}


def _json_files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.json"))


def test_saved_folder_loads_in_st_with_the_same_layout(st_folder, tmp_path):
    ours = SentenceTransformer(str(st_folder))
    out = tmp_path / "saved"
    ours.save(str(out))
    assert _json_files(out) == _json_files(st_folder)
    for name in ("modules.json", "1_Pooling/config.json", "2_Dense/config.json", "sentence_bert_config.json"):
        assert json.loads((out / name).read_text()) == json.loads((st_folder / name).read_text()), name
    ours_cfg = json.loads((out / "config_sentence_transformers.json").read_text())
    ref_cfg = json.loads((st_folder / "config_sentence_transformers.json").read_text())
    assert {k: v for k, v in ours_cfg.items() if k != "__version__"} == {k: v for k, v in ref_cfg.items() if k != "__version__"}
    ref = reference(out)
    for kwargs in ({}, {"prompt_name": "query"}):
        assert max_diff(ours.encode(BATCH, **kwargs), ref.encode(BATCH, **kwargs)) <= TOL
    assert max_diff(reference(st_folder).encode(BATCH), ref.encode(BATCH)) <= TOL
    for weights in ("model.safetensors", "2_Dense/model.safetensors"):
        # transformers 5.3 writes BERT's LayerNorm as gamma / beta, the bridge as weight / bias (both load)
        a, b = (_canonical(load_file(str(f / weights))) for f in (st_folder, out))
        assert set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a), weights


def test_save_pretrained_round_trip_in_the_bridge(st_folder, tmp_path):
    ours = SentenceTransformer(str(st_folder), truncate_dim=12)
    ours.save_pretrained(str(tmp_path / "again"))
    back = SentenceTransformer(str(tmp_path / "again"))
    assert back.generation == ours.generation and back.prompts == ours.prompts
    expected_truncate = 12 if ST6 else None  # ST 6.2 saves truncate_dim, ST 5.3 does not
    assert back.truncate_dim == expected_truncate
    assert np.abs(back.encode(BATCH, truncate_dim=12) - ours.encode(BATCH)).max() == 0


def test_plain_hf_model_saves_the_installed_generations_layout(tiny_bert_dir, tmp_path):
    # a plain HF folder carries no generation: the model takes the installed ST's (ST 5.3 installed: ST 5's
    # layout, which ST 5.3 and 6.2 both read; ST 6 or none: ST 6.2's), so the save loads in the user's library
    ours = SentenceTransformer(str(tiny_bert_dir))
    assert ours.generation == ("st6" if ST6 else "st5")
    ours.save(str(tmp_path / "hf-st"))
    modules = json.loads((tmp_path / "hf-st" / "modules.json").read_text())
    expected = ("sentence_transformers.sentence_transformer.modules.pooling.Pooling" if ST6
                else "sentence_transformers.models.Pooling")
    assert modules[1]["type"] == expected
    assert max_diff(ours.encode(BATCH), reference(tmp_path / "hf-st").encode(BATCH)) <= TOL


def test_st5_built_model_saves_the_installed_layout(tiny_bert_dir, tmp_path):
    # sentence_transformers.models.* is ST 5.3's API and ST 6.2's deprecated alias: the model runs and saves
    # as the installed library would (ST 5.3: its layout; ST 6.2: its own)
    from mlx_hf_bridge.sentence_transformers import models

    transformer = models.Transformer(str(tiny_bert_dir), max_seq_length=64)
    model = SentenceTransformer(modules=[transformer, models.Pooling(32, "max"), models.Normalize()])
    assert model.generation == ("st6" if ST6 else "st5")
    model.save(str(tmp_path / "st5"))
    modules = json.loads((tmp_path / "st5" / "modules.json").read_text())
    if not ST6:
        assert [m["type"] for m in modules] == ["sentence_transformers.models.Transformer",
                                                "sentence_transformers.models.Pooling",
                                                "sentence_transformers.models.Normalize"]
        config = json.loads((tmp_path / "st5" / "sentence_bert_config.json").read_text())
        assert config == {"max_seq_length": 64, "do_lower_case": False}
    else:
        assert modules[1]["type"] == "sentence_transformers.sentence_transformer.modules.pooling.Pooling"
    assert max_diff(model.encode(BATCH), reference(tmp_path / "st5").encode(BATCH)) <= TOL

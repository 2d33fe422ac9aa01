"""The dense model's README card, ``SentenceTransformerModelCardData``, ``add_module`` and ``model.device``
(what ST 6.2's training examples touch beyond encode / train)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mlx_hf_bridge.sentence_transformers import SentenceTransformer, SentenceTransformerModelCardData

st = pytest.importorskip("sentence_transformers")


def test_card_data_fields_and_defaults_match_installed_st():
    reference = getattr(st, "SentenceTransformerModelCardData")
    ours = {f.name: f for f in dataclasses.fields(SentenceTransformerModelCardData)}
    theirs = {f.name: f for f in dataclasses.fields(reference) if f.init}
    user_fields = ("language", "license", "model_name", "model_id", "train_datasets", "eval_datasets", "task_name",
                   "local_files_only", "generate_widget_examples")
    for name in user_fields:
        assert name in theirs and name in ours, name
    a, b = SentenceTransformerModelCardData(), reference()
    for name in user_fields:
        if name == "task_name" and not st.__version__.startswith("6"):
            # ST 6.2 dropped "text " from ST 5.3's "... paraphrase mining, text classification, ..."; ours is 6.2's
            assert b.task_name.replace("text classification", "classification") == a.task_name
            continue
        assert getattr(a, name) == getattr(b, name), name
    assert a.tags == b.tags


def test_saved_card_and_add_module(tiny_bert_dir, tmp_path):
    from mlx_hf_bridge.modules import Normalize

    card_data = SentenceTransformerModelCardData(language="en", license="apache-2.0", model_name="Tiny test model")
    model = SentenceTransformer(str(tiny_bert_dir), model_card_data=card_data, similarity_fn_name="dot")
    model.add_module("normalize", Normalize())
    assert type(model[-1]).__name__ == "Normalize" and len(model) == 3
    with pytest.raises(TypeError, match="add_module"):
        model.add_module("bad", object())
    assert model.device == "cpu" and model.device.type == "cpu"
    model.save(str(tmp_path / "out"))
    card = (tmp_path / "out" / "README.md").read_text()
    assert "library_name: sentence-transformers" in card and "license: apache-2.0" in card and "- en" in card
    assert "# Tiny test model" in card and "Dot Product" in card and "32-dimensional dense vector space" in card
    # the saved pipeline (with the added Normalize) loads and encodes in the real library alike
    texts = ["a first sentence", "and another one, longer than the first"]
    expected = st.SentenceTransformer(str(tmp_path / "out"), device="cpu").encode(texts)
    got = SentenceTransformer(str(tmp_path / "out")).encode(texts)
    assert np.abs(got - expected).max() <= 1e-5
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
    model.save(str(tmp_path / "nocard"), create_model_card=False)
    assert not (tmp_path / "nocard" / "README.md").exists()

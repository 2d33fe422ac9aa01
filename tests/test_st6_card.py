"""ST 6.2's ``MultiVectorEncoderModelCardData`` and the README a ``MultiVectorEncoder`` save writes."""

from __future__ import annotations

import dataclasses

import pytest

st = pytest.importorskip("sentence_transformers", minversion="6")

from st6_training_helpers import *  # noqa: E402,F401,F403  (st6_folders fixture)

pytestmark = pytest.mark.st6


def test_card_data_defaults_match_st6():
    from mlx_hf_bridge.sentence_transformers import MultiVectorEncoderModelCardData

    ours, theirs = MultiVectorEncoderModelCardData(), st.MultiVectorEncoderModelCardData()
    for name in ("language", "license", "model_name", "model_id", "train_datasets", "eval_datasets", "tags",
                 "task_name", "local_files_only", "generate_widget_examples"):
        assert getattr(ours, name) == getattr(theirs, name), name
    init = {f.name for f in dataclasses.fields(st.MultiVectorEncoderModelCardData) if f.init}
    assert {f.name for f in dataclasses.fields(MultiVectorEncoderModelCardData)} <= init


def test_save_writes_a_multi_vector_card(st6_folders, tmp_path):
    from mlx_hf_bridge.sentence_transformers import MultiVectorEncoder, MultiVectorEncoderModelCardData

    model = MultiVectorEncoder(str(st6_folders["bert-fixed"]),
                               model_card_data=MultiVectorEncoderModelCardData(language="en", license="mit"))
    model.save(str(tmp_path / "out"), model_name="tiny-colbert")
    card = (tmp_path / "out" / "README.md").read_text()
    assert "library_name: sentence-transformers" in card and "pipeline_tag: feature-extraction" in card
    assert "- late-interaction" in card and "license: mit" in card and "# tiny-colbert" in card
    assert "Multi-Vector Encoder" in card and "MaxSim" in card and "encode_query" in card
    assert "semantic search with late interaction" in card
    # the folder with its card still loads in real ST 6.2
    st.MultiVectorEncoder(str(tmp_path / "out"), device="cpu").encode_query(["a query"])

"""The one ``SentenceTransformerTrainer`` for dense models: its signature covers the installed
sentence-transformers' (ST 5.3's ``tokenizer`` and ST 6.2's ``processing_class`` / ``optimizer_cls_and_kwargs``),
the default loss is ST's (CoSENTLoss for a dense model), and ST 6.2's ``optimizer_cls_and_kwargs`` builds the
engine's AdamW with the same settings."""

from __future__ import annotations

import inspect

import pytest

st = pytest.importorskip("sentence_transformers")

from mlx_hf_bridge.sentence_transformers import SentenceTransformerTrainer  # noqa: E402


def test_signature_covers_the_installed_sentence_transformers():
    ours = inspect.signature(SentenceTransformerTrainer.__init__).parameters
    theirs = inspect.signature(st.SentenceTransformerTrainer.__init__).parameters
    for name, param in theirs.items():
        assert name in ours, name
        if param.default is not param.empty:
            assert ours[name].default == param.default, name
    # ST 5.3's positional order is kept (ST 6.2 scripts pass these by keyword)
    assert list(ours)[:8] == ["self", "model", "args", "train_dataset", "eval_dataset", "loss", "evaluator",
                              "data_collator"]

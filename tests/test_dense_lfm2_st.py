"""LFM2 as a sentence-transformers / PyLate backbone (the encoder itself: ``tests/test_dense_lfm2.py``).

A tiny causal LFM2 (conv, attention, conv, attention; larger init) with the Qwen-style tokenizer of
``tests/test_dense_qwen3.py`` (``$A <|endoftext|>``, pad = eos): dense last-token pooling + Normalize with
left padding vs ST 5.3 / 6.2 and MNRL training steps; PyLate ``ColBERT`` encode (right / left padding)
and a Contrastive training run (.venv); ST 6 ``MultiVectorEncoder`` encode (.venv-st6).
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import backbone_st_helpers as S  # noqa: E402
from test_dense_lfm2 import lfm2_config, torch_lfm2  # noqa: E402
from test_dense_qwen3 import DOCUMENTS, QUERIES  # noqa: E402
from test_dense_qwen3 import qwen_tokenizer_dir  # noqa: E402,F401  (the module fixture)


def write_backbone(folder, tokenizer_dir, config, seed=0, init_scale=None, padding_side=None):
    from transformers import AutoTokenizer

    torch_lfm2(config, seed, init_scale).save_pretrained(str(folder))
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    if padding_side:
        tokenizer.padding_side = padding_side
    tokenizer.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def embedding_folder(tmp_path_factory, qwen_tokenizer_dir):  # noqa: F811
    from test_dense_model_helpers import write_st_folder

    backbone = write_backbone(tmp_path_factory.mktemp("lfm2-backbone"), qwen_tokenizer_dir, lfm2_config(), init_scale=0.2)
    return write_st_folder(tmp_path_factory.mktemp("lfm2-embedding"), backbone, modes="lasttoken", normalize=True)


def test_lfm2_dense_encodes_as_sentence_transformers(embedding_folder, tmp_path):
    S.check_dense_encode(embedding_folder, tmp_path, QUERIES, DOCUMENTS, "LFM2")


def test_lfm2_dense_mnrl_training_matches(embedding_folder, monkeypatch):
    S.check_mnrl_training(embedding_folder, monkeypatch, "lfm2")


@pytest.fixture(scope="module")
def colbert_backbone(tmp_path_factory, qwen_tokenizer_dir):  # noqa: F811
    return write_backbone(tmp_path_factory.mktemp("lfm2-colbert"), qwen_tokenizer_dir, lfm2_config(), seed=1,
                          init_scale=0.2, padding_side="right")


@pytest.mark.st5
@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_pylate_colbert_on_lfm2_encodes_as_pylate(colbert_backbone, padding_side, tmp_path):
    S.check_pylate_encode(colbert_backbone, tmp_path, padding_side, QUERIES, DOCUMENTS, "LFM2")


@pytest.mark.st5
def test_pylate_contrastive_on_an_lfm2_colbert_trains_as_pylate(colbert_backbone, tmp_path_factory):
    S.check_pylate_loss(colbert_backbone, tmp_path_factory, "Contrastive", "adamw", 1e-3, {}, "LFM2")


@pytest.mark.st6
def test_st6_multi_vector_encoder_on_lfm2_encodes_as_st6(colbert_backbone, tmp_path):
    S.check_st6_multi_vector(colbert_backbone, tmp_path, 64, QUERIES, DOCUMENTS, "LFM2")

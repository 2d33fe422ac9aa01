"""T5Gemma's encoder as a sentence-transformers / PyLate backbone (the encoder itself:
``tests/test_dense_t5gemma.py``).

A tiny ``T5GemmaEncoderModel`` folder (``is_encoder_decoder: false``; local / global layers, a sliding
window of 3, shorter than the texts; larger init) with the Gemma-style tokenizer of
``tests/test_dense_gemma3.py``. ST 5.3 loads T5Gemma's encoder itself (``T5GemmaEncoderModel``, decoder
keys ignored), ST 6.2 through ``AutoModel`` (which maps an encoder-only T5Gemma config to
``T5GemmaEncoderModel``), PyLate 1.6 through ST 5.3: dense mean pooling + Normalize vs ST and MNRL
training steps; PyLate ``ColBERT`` encode (right / left padding) and a Contrastive training run (.venv);
ST 6 ``MultiVectorEncoder`` encode (.venv-st6). A T5Gemma ColBERT saved by PyLate does not reload
(transformers' resize writes the decoder's vocabulary size): recorded below, the bridge refuses it too.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import backbone_st_helpers as S  # noqa: E402
from test_dense_gemma3 import DOCUMENTS, QUERIES  # noqa: E402
from test_dense_gemma3 import gemma_tokenizer_dir  # noqa: E402,F401  (the module fixture)
from test_dense_t5gemma import t5gemma_config, torch_t5gemma  # noqa: E402


def write_backbone(folder, tokenizer_dir, seed=0, init_scale=0.2, padding_side=None):
    from transformers import AutoTokenizer

    torch_t5gemma(t5gemma_config(), seed, init_scale).save_pretrained(str(folder))
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    if padding_side:
        tokenizer.padding_side = padding_side
    tokenizer.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def embedding_folder(tmp_path_factory, gemma_tokenizer_dir):  # noqa: F811
    from test_dense_model_helpers import write_st_folder

    backbone = write_backbone(tmp_path_factory.mktemp("t5gemma-backbone"), gemma_tokenizer_dir)
    return write_st_folder(tmp_path_factory.mktemp("t5gemma-embedding"), backbone, modes="mean", normalize=True)


def test_t5gemma_dense_encodes_as_sentence_transformers(embedding_folder, tmp_path):
    S.check_dense_encode(embedding_folder, tmp_path, QUERIES, DOCUMENTS, "T5Gemma")


def test_t5gemma_dense_mnrl_training_matches(embedding_folder, monkeypatch):
    S.check_mnrl_training(embedding_folder, monkeypatch, "t5gemma")


@pytest.fixture(scope="module")
def colbert_backbone(tmp_path_factory, gemma_tokenizer_dir):  # noqa: F811
    return write_backbone(tmp_path_factory.mktemp("t5gemma-colbert"), gemma_tokenizer_dir, seed=1)


@pytest.mark.st5
@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_pylate_colbert_on_t5gemma_encodes_as_pylate(colbert_backbone, padding_side, tmp_path):
    S.check_pylate_encode(colbert_backbone, tmp_path, padding_side, QUERIES, DOCUMENTS, "T5Gemma")


@pytest.mark.st5
def test_pylate_contrastive_on_a_t5gemma_colbert_trains_as_pylate(colbert_backbone, tmp_path_factory):
    # built on the backbone: the folder PyLate saves for a T5Gemma ColBERT does not reload (next test)
    S.check_pylate_loss(colbert_backbone, tmp_path_factory, "Contrastive", "adamw", 1e-3, {}, "T5Gemma",
                        via_saved_folder=False)


@pytest.mark.st5
def test_a_pylate_saved_t5gemma_colbert_is_refused_as_pylate_refuses_it(colbert_backbone, tmp_path):
    """transformers 5.3's resize_token_embeddings (PyLate adds [Q] / [D]) writes the new vocabulary size
    into ``config.get_text_config()``, which for T5Gemma is the *decoder* sub-config: the saved
    ``encoder.vocab_size`` stays the old one, so neither PyLate nor the bridge can reload the folder. The
    bridge names the mismatch (before reading the layers) instead of re-initialising the table."""
    import json

    from pylate import models

    from mlx_hf_bridge.pylate import models as mlx_models

    torch.manual_seed(0)
    models.ColBERT(str(colbert_backbone), device="cpu").save(str(tmp_path / "saved"))
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert config["decoder"]["vocab_size"] == config["encoder"]["vocab_size"] + 2
    with pytest.raises(RuntimeError, match="ignore_mismatched_sizes"):
        models.ColBERT(str(tmp_path / "saved"), device="cpu")
    with pytest.raises(ValueError, match=r"encoder\.embed_tokens\.weight: \(50283, 64\) in the file, \(50281, 64\)"):
        mlx_models.ColBERT(str(tmp_path / "saved"))


@pytest.mark.st6
def test_st6_multi_vector_encoder_on_t5gemma_encodes_as_st6(colbert_backbone, tmp_path):
    S.check_st6_multi_vector(colbert_backbone, tmp_path, 64, QUERIES, DOCUMENTS, "T5Gemma")

"""Shared fixtures: tiny random HF folders (BERT, ModernBERT) and the real MiniLM folder.

Folders are written by *transformers* (the torch reference), so every test starts from files the
real libraries produced. Torch and MLX share the process here for parity only, never for timing.
"""

from __future__ import annotations

import os
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import mlx_hf_bridge  # noqa: E402,F401  (BLAS preload must precede mlx.core)
import pytest  # noqa: E402

from mlx_hf_bridge import assets  # noqa: E402


def _save_tiny(path, config, tokenizer_src, seed, init_scale=None):
    import torch
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModel.from_config(config).eval()
    if init_scale is not None:  # larger weights make the layers dominate (catches subtle bugs)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if p.dim() > 1 and "embeddings" not in name:
                    p.normal_(0.0, init_scale)
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(str(tokenizer_src)).save_pretrained(path)
    return path


def tiny_bert_config(**overrides):
    from transformers import BertConfig

    kw = dict(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=512, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    kw.update(overrides)
    return BertConfig(**kw)


def tiny_modernbert_config(**overrides):
    from transformers import ModernBertConfig

    kw = dict(
        vocab_size=50368, hidden_size=32, intermediate_size=48, num_hidden_layers=4,
        # head_dim 16: the fused CPU attention runs (as for every real ModernBERT, head_dim 64)
        num_attention_heads=2, local_attention=16, global_attn_every_n_layers=3,
        max_position_embeddings=1024, pad_token_id=50283, cls_token_id=50281, sep_token_id=50282,
        bos_token_id=50281, eos_token_id=50282,
    )
    kw.update(overrides)
    return ModernBertConfig(**kw)


@pytest.fixture(scope="session")
def minilm_dir():
    return assets.minilm_path()


@pytest.fixture(scope="session")
def modernbert_tokenizer_dir():
    return assets.modernbert_tokenizer_dir()


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory, minilm_dir):
    return _save_tiny(tmp_path_factory.mktemp("tiny-bert"), tiny_bert_config(), minilm_dir, seed=0)


@pytest.fixture(scope="session")
def tiny_modernbert_dir(tmp_path_factory, modernbert_tokenizer_dir):
    return _save_tiny(
        tmp_path_factory.mktemp("tiny-modernbert"), tiny_modernbert_config(), modernbert_tokenizer_dir, seed=0
    )


@pytest.fixture
def copy_dir(tmp_path):
    """Copy a folder into the test's tmp dir (for tests that damage or mutate it)."""

    def _copy(src, name="copy"):
        dst = tmp_path / name
        shutil.copytree(src, dst)
        return dst

    return _copy

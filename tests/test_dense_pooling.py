"""Pooling in every mode against the real sentence-transformers Pooling of this venv (ST 5.3 in .venv,
ST 6.2 in .venv-st6): the module on the same token embeddings and masks (right and left padding,
prompts excluded or not, concatenated modes), and whole ST folders the real library saved with each
mode, encoded end to end (tiny BERT with large weights; ModernBERT packed)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import _save_tiny, tiny_bert_config
from test_dense_model_helpers import ST6, max_diff, reference, st_pooling, texts, write_st_folder

import mlx.core as mx
from mlx_hf_bridge.modules.pooling import LEGACY_MODE_KEYS, POOLING_MODES, Pooling
from mlx_hf_bridge.sentence_transformers import SentenceTransformer

TOL = 1e-5
FLAVOUR = "st6" if ST6 else "st5"
MODE_SETS = [*POOLING_MODES, ("cls", "mean", "max"), ("lasttoken", "weightedmean", "mean_sqrt_len_tokens")]


def _masks(B: int, L: int, left: bool):
    rng = np.random.default_rng(1)
    lengths = rng.integers(3, L + 1, size=B)
    lengths[0] = L
    mask = np.zeros((B, L), np.int64)
    for i, n in enumerate(lengths):
        if left:
            mask[i, L - n:] = 1
        else:
            mask[i, :n] = 1
    return mask


def _expected_modes(modes) -> tuple:
    if isinstance(modes, str):
        return (modes,)
    # ST 6.2 concatenates in the order given; ST 5.3 takes booleans, concatenated in its fixed order
    return tuple(modes) if ST6 else tuple(m for m in LEGACY_MODE_KEYS.values() if m in modes)


def _ours(modes, dim, include_prompt):
    if isinstance(modes, str) or ST6:
        return Pooling(dim, modes if isinstance(modes, str) else tuple(modes), include_prompt, flavour=FLAVOUR)
    flags = {key: mode in modes for key, mode in LEGACY_MODE_KEYS.items()}
    return Pooling(dim, None, include_prompt, flavour=FLAVOUR, **flags)


@pytest.mark.parametrize("modes", MODE_SETS, ids=lambda m: m if isinstance(m, str) else "+".join(m))
@pytest.mark.parametrize("left", [False, True], ids=["right-pad", "left-pad"])
@pytest.mark.parametrize("prompt_length", [None, 2])
def test_module_matches_st(modes, left, prompt_length):
    B, L, H = 5, 9, 8
    x = np.random.default_rng(0).standard_normal((B, L, H)).astype(np.float32) * 3
    mask = _masks(B, L, left)
    ref = st_pooling(H, modes)
    ref.include_prompt = prompt_length is None
    features = {"token_embeddings": torch.tensor(x), "attention_mask": torch.tensor(mask)}
    ours_features = {"token_embeddings": mx.array(x), "attention_mask": mx.array(mask.astype(np.int32))}
    if prompt_length:
        features["prompt_length"] = prompt_length
        ours_features["prompt_length"] = prompt_length
    want = ref(features)
    got = _ours(modes, H, prompt_length is None)(ours_features)
    assert max_diff(got["sentence_embedding"], want["sentence_embedding"]) <= TOL
    # ST 5.3 zeroes the prompt in the caller's mask and writes max's fill into token_embeddings: the
    # returned features equal ST's either way
    np.testing.assert_array_equal(np.array(got["attention_mask"]), want["attention_mask"].numpy())
    assert max_diff(got["token_embeddings"], want["token_embeddings"]) <= TOL
    assert _ours(modes, H, True).get_embedding_dimension() == ref.pooling_output_dimension


def test_config_round_trip_matches_st(tmp_path):
    ref = st_pooling(8, ("cls", "max"))
    (tmp_path / "ref").mkdir()
    ref.save(str(tmp_path / "ref"))
    ours = Pooling.load(tmp_path / "ref", flavour=FLAVOUR)
    assert ours.modes == ("cls", "max") and ours.embedding_dimension == 8
    ours.save(tmp_path / "ours")
    assert json.loads((tmp_path / "ours" / "config.json").read_text()) == json.loads(
        (tmp_path / "ref" / "config.json").read_text()
    )


def test_legacy_booleans_and_bad_modes(tmp_path):
    assert Pooling(4).modes == ("mean",)
    assert Pooling(4, pooling_mode_cls_token=True, pooling_mode_mean_tokens=False).modes == ("cls",)
    # ST 5.3's flag order decides the concatenation order
    assert Pooling(4, pooling_mode_lasttoken=True, pooling_mode_cls_token=True).modes == ("cls", "mean", "lasttoken")
    assert Pooling(4, "CLS").modes == ("cls",)  # ST 5.3 lowercases
    with pytest.raises(ValueError, match="Invalid pooling mode: 'median'"):
        Pooling(4, "median")
    with pytest.raises(ValueError, match="Invalid pooling mode"):
        Pooling(4, ("mean", "sum"))
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "config.json").write_text(json.dumps({"embedding_dimension": 4, "pooling_mode": "mean", "topk": 3}))
    with pytest.raises(ValueError, match="unknown Pooling setting.*topk"):
        Pooling.load(tmp_path / "p")


@pytest.fixture(scope="module")
def scaled_bert_dir(tmp_path_factory, minilm_dir):
    return _save_tiny(tmp_path_factory.mktemp("bert-pool"), tiny_bert_config(), minilm_dir, seed=2, init_scale=0.1)


@pytest.mark.parametrize("modes", MODE_SETS, ids=lambda m: m if isinstance(m, str) else "+".join(m))
def test_st_folder_each_mode_encodes_like_st(modes, scaled_bert_dir, tmp_path):
    folder = write_st_folder(tmp_path / "m", scaled_bert_dir, modes)
    batch = texts(10, seed=7, n_max=35)
    ours, ref = SentenceTransformer(str(folder)), reference(folder)
    assert ours[1].modes == _expected_modes(modes)
    assert max_diff(ours.encode(batch, batch_size=4), ref.encode(batch, batch_size=4)) <= TOL


@pytest.mark.parametrize("modes", ["cls", "weightedmean", "lasttoken", "max"])
def test_prompt_excluded_from_pooling_like_st(modes, scaled_bert_dir, tmp_path):
    folder = write_st_folder(tmp_path / "m", scaled_bert_dir, modes, include_prompt=False,
                             prompts={"query": "query: search for "})
    batch = texts(8, seed=8)
    ours, ref = SentenceTransformer(str(folder)), reference(folder)
    assert ours[1].include_prompt is False
    for kwargs in ({"prompt_name": "query"}, {"prompt": "instruct: "}, {}):
        assert max_diff(ours.encode(batch, **kwargs), ref.encode(batch, **kwargs)) <= TOL, kwargs


@pytest.mark.parametrize("modes", ["max", "lasttoken", ("cls", "weightedmean")])
def test_modernbert_modes_packed_like_st(modes, tiny_modernbert_dir, tmp_path):
    folder = write_st_folder(tmp_path / "m", tiny_modernbert_dir, modes, dense=12, normalize=True)
    batch = texts(9, seed=9, n_max=40)
    ours, ref = SentenceTransformer(str(folder)), reference(folder)
    assert max_diff(ours.encode(batch, batch_size=9), ref.encode(batch, batch_size=9)) <= TOL

"""The bridge's collators against transformers' own (its default torch path): the same batches where
they are deterministic, the MLM masking rules and proportions over many draws where they are random."""

from __future__ import annotations

import warnings

import mlx.core as mx
import numpy as np
import pytest

torch = pytest.importorskip("torch")
from transformers import AutoTokenizer  # noqa: E402
from transformers import data as hf_data  # noqa: E402

from mlx_hf_bridge import assets  # noqa: E402
from mlx_hf_bridge import transformers as B  # noqa: E402

HF = hf_data.data_collator
TEXTS = ["hello world", "a much longer sentence than the first one, with punctuation!", "x", "two words"]


@pytest.fixture(scope="module", params=["bert", "modernbert"])
def tok(request):
    folder = assets.minilm_path() if request.param == "bert" else assets.modernbert_tokenizer_dir()
    return AutoTokenizer.from_pretrained(str(folder))


def same_batch(ours: dict, theirs: dict):
    assert set(ours) == set(theirs)
    for k, v in theirs.items():
        ref = v.numpy()
        assert isinstance(ours[k], np.ndarray) and ours[k].dtype == ref.dtype, (k, ours[k].dtype, ref.dtype)
        assert np.array_equal(ours[k], ref), k


@pytest.mark.parametrize("kwargs", [{}, {"pad_to_multiple_of": 8}, {"padding": "max_length", "max_length": 24},
                                    {"padding": "longest", "max_length": 5}])
def test_with_padding_equals_transformers(tok, kwargs):
    features = [dict(tok(t, truncation="max_length" in kwargs.values() or None, max_length=kwargs.get("max_length")),
                     label=i % 2) for i, t in enumerate(TEXTS)]
    same_batch(B.DataCollatorWithPadding(tok, **kwargs)(features), HF.DataCollatorWithPadding(tok, **kwargs)(features))
    as_mx = B.DataCollatorWithPadding(tok, return_tensors="mlx", **kwargs)(features)
    assert all(isinstance(v, mx.array) for v in as_mx.values())
    ref = HF.DataCollatorWithPadding(tok, **kwargs)(features)
    assert all(np.array_equal(np.array(as_mx[k]), ref[k].numpy()) for k in ref)


def test_return_tensors_choices(tok):
    features = [tok(t) for t in TEXTS]
    with pytest.warns(UserWarning, match="return NumPy arrays"):
        import mlx_hf_bridge.transformers.data_collator as dc

        dc._warned_pt = False
        out = B.DataCollatorWithPadding(tok, return_tensors="pt")(features)
    assert isinstance(out["input_ids"], np.ndarray)
    for bad in ("tf", "jax"):
        with pytest.raises(ValueError, match="not supported on MLX: use 'np'"):
            B.DataCollatorWithPadding(tok, return_tensors=bad)


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("label_pad", [-100, -1])
def test_token_classification_equals_transformers(tok, side, label_pad):
    tok.padding_side = side
    try:
        features = []
        for t in TEXTS:
            enc = tok(t)
            features.append(dict(enc, labels=[(i * 7) % 5 for i in range(len(enc["input_ids"]))]))
        ours = B.DataCollatorForTokenClassification(tok, label_pad_token_id=label_pad, pad_to_multiple_of=4)(features)
        same_batch(ours, HF.DataCollatorForTokenClassification(tok, label_pad_token_id=label_pad,
                                                                pad_to_multiple_of=4)(features))
    finally:
        tok.padding_side = "right"


@pytest.mark.parametrize("features", [
    [{"input_ids": [1, 2, 3], "label": 1}, {"input_ids": [4, 5, 6], "label": 0}],
    [{"x": [0.5, 1.5], "label": 0.25}, {"x": [2.5, 3.5], "label": 1.0}],
    [{"input_ids": [1, 2], "label_ids": [0, 1]}, {"input_ids": [3, 4], "label_ids": [1, 1]}],
    [{"v": np.array([1.0, 2.0], np.float32), "label_ids": [0.5, 1.0], "name": "skipped"},
     {"v": np.array([3.0, 4.0], np.float32), "label_ids": [1.5, 2.0], "name": "too"}],
])
def test_default_data_collator_equals_transformers(features):
    same_batch(B.default_data_collator(features), HF.default_data_collator(features))
    same_batch(B.DefaultDataCollator()(features), HF.DefaultDataCollator()(features))


def mlm_examples(tok, n, rng):
    words = "the quick brown fox jumps over a lazy dog while seven wizards quietly hex".split()
    return [tok(" ".join(rng.choice(words, size=rng.integers(3, 25)))) for _ in range(n)]


def masking_counts(tok, batches):
    """Eligible tokens, selected, [MASK]ed, changed to another token, left unchanged; with the rules
    checked on every batch."""
    counts = dict(eligible=0, selected=0, masked=0, random=0, kept=0)
    for original, batch in batches:
        ids, labels = np.asarray(batch["input_ids"]), np.asarray(batch["labels"])
        special = np.isin(original, tok.all_special_ids)
        selected = labels != -100
        assert not (selected & special).any()  # special tokens and padding are never selected
        assert np.array_equal(labels[selected], original[selected])  # labels: the original ids where selected
        assert np.array_equal(ids[~selected], original[~selected])  # everything else untouched
        counts["eligible"] += int((~special).sum())
        counts["selected"] += int(selected.sum())
        counts["masked"] += int((ids[selected] == tok.mask_token_id).sum())
        counts["kept"] += int((ids[selected] == original[selected]).sum())
        counts["random"] += int(((ids[selected] != original[selected]) & (ids[selected] != tok.mask_token_id)).sum())
    return counts


def padded_originals(tok, examples, pad_to_multiple_of=None):
    return HF.DataCollatorWithPadding(tok, return_tensors="np", pad_to_multiple_of=pad_to_multiple_of)(examples)["input_ids"]


@pytest.mark.parametrize("probs", [(0.15, 0.8, 0.1), (0.3, 0.5, 0.25)])
def test_mlm_masking_rules_and_proportions_match_transformers(tok, probs):
    p, mask_p, random_p = probs
    rng = np.random.default_rng(0)
    kw = dict(mlm_probability=p, mask_replace_prob=mask_p, random_replace_prob=random_p, pad_to_multiple_of=8)
    ours = B.DataCollatorForLanguageModeling(tok, seed=11, **kw)
    torch.manual_seed(0)
    theirs = HF.DataCollatorForLanguageModeling(tok, **kw)
    ours_batches, their_batches = [], []
    for _ in range(60):
        examples = mlm_examples(tok, 16, rng)
        original = padded_originals(tok, examples, 8)
        out = ours(examples)
        assert out["input_ids"].shape[1] % 8 == 0 and out["input_ids"].dtype == np.int64
        ours_batches.append((original, out))
        their_batches.append((original, {k: v.numpy() for k, v in theirs(examples).items()}))
    a, b = masking_counts(tok, ours_batches), masking_counts(tok, their_batches)
    # the same binomial rates: each count within 4 sigmas of its expectation, for both collators
    for c in (a, b):
        n = c["eligible"]
        assert abs(c["selected"] - n * p) <= 4 * np.sqrt(n * p * (1 - p))
        s = c["selected"]
        assert abs(c["masked"] - s * mask_p) <= 4 * np.sqrt(s * mask_p * (1 - mask_p))
        rest = s - c["masked"]  # of these, random_p / (1 - mask_p) get a random token (rarely the same one)
        q = random_p / (1 - mask_p)
        assert abs(c["random"] - rest * q) <= 4 * np.sqrt(rest * q * (1 - q))


def test_mlm_seed_and_causal_mode(tok):
    rng = np.random.default_rng(1)
    examples = mlm_examples(tok, 8, rng)
    first = B.DataCollatorForLanguageModeling(tok, seed=5)(examples)
    again = B.DataCollatorForLanguageModeling(tok, seed=5)(examples)
    assert all(np.array_equal(first[k], again[k]) for k in first)
    same_batch(B.DataCollatorForLanguageModeling(tok, mlm=False)(examples),
               HF.DataCollatorForLanguageModeling(tok, mlm=False)(examples))
    with pytest.raises(ValueError, match="mlm_probability should be between 0 and 1"):
        B.DataCollatorForLanguageModeling(tok, mlm_probability=1.5)

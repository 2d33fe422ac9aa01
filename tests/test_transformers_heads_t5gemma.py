"""T5Gemma task heads in transformers' encoder-only mode (mlx_hf_bridge/tasks/t5gemma.py) against
``T5GemmaForSequenceClassification`` / ``T5GemmaForTokenClassification`` (``is_encoder_decoder=False``)
on torch: logits on left- / right-padded batches (two seeds at transformers' init, one larger init),
every problem type's loss, gradients, folders both ways, the new head's init, and the refusal of the
encoder-decoder mode (which classifies from the decoder)."""

from __future__ import annotations

import logging

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten

import heads_parity_helpers as H

torch = pytest.importorskip("torch")
T = pytest.importorskip("transformers")
from mlx_hf_bridge import transformers as B  # noqa: E402

VOCAB, PAD = 100, 0
TASKS = {
    "seq": (T.AutoModelForSequenceClassification, B.AutoModelForSequenceClassification),
    "tok": (T.AutoModelForTokenClassification, B.AutoModelForTokenClassification),
}


def config(is_encoder_decoder=False, num_labels=2, **kw):
    encoder = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=24, max_position_embeddings=128,
                   sliding_window=3, pad_token_id=PAD, eos_token_id=1, bos_token_id=2)
    return T.T5GemmaConfig(encoder=encoder, decoder=dict(encoder), is_encoder_decoder=is_encoder_decoder,
                           vocab_size=VOCAB, pad_token_id=PAD, eos_token_id=1, bos_token_id=2, num_labels=num_labels,
                           **kw)


def hf_model(task, cfg, seed=0, init_scale=None):
    torch.manual_seed(seed)
    return H.scaled(TASKS[task][0].from_config(cfg), torch, init_scale, seed)


def bridge_from(tmp_path, hf, name="hf"):
    hf.save_pretrained(tmp_path / name)
    task = "seq" if hf.config.architectures[0].endswith("SequenceClassification") else "tok"
    return TASKS[task][1].from_pretrained(tmp_path / name)


def reloaded(tmp_path, hf, task, name="hf"):
    """The torch reference as transformers reads the folder back (its default attention for T5Gemma)."""
    return TASKS[task][0].from_pretrained(tmp_path / name).eval()


def batch(seed=0, left=False):
    return H.padded_batch(torch, VOCAB, PAD, seed=seed, length=10, left=left)


@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("seed,init_scale", [(0, None), (1, None), (0, 0.2)], ids=["seed0", "seed1", "large-init"])
@pytest.mark.parametrize("left", [False, True], ids=["right-pad", "left-pad"])
def test_logits_match_transformers(tmp_path, task, seed, init_scale, left):
    hf = hf_model(task, config(num_labels=4), seed, init_scale)
    ours = bridge_from(tmp_path, hf)
    assert type(ours).__name__ == type(hf).__name__
    ids, mask = batch(seed, left)
    out = ours(H.to_mx(ids), H.to_mx(mask))
    assert set(out) == {"logits"}
    H.assert_logits_match(torch, reloaded(tmp_path, hf, task), out.logits, ids, mask)


LOSS_CASES = [("seq", "regression", 1), ("seq", "regression", 3), ("seq", "single_label_classification", 4),
              ("seq", "multi_label_classification", 4), ("tok", None, 5)]


@pytest.mark.parametrize("task,problem,num_labels", LOSS_CASES)
def test_loss_and_problem_type_match_transformers(tmp_path, task, problem, num_labels):
    explicit = problem if problem == "regression" and num_labels > 1 else None
    hf = hf_model(task, config(num_labels=num_labels, problem_type=explicit), init_scale=0.2)
    ours = bridge_from(tmp_path, hf)
    hf = reloaded(tmp_path, hf, task)
    ids, mask = batch(1)
    labels = H.labels_for(torch, task, problem, num_labels, ids, mask, VOCAB)
    ref = hf(input_ids=ids, attention_mask=mask, labels=labels).loss.item()
    got = ours(H.to_mx(ids), H.to_mx(mask), labels=H.to_mx(labels)).loss.item()
    assert abs(got - ref) <= 1e-5 * abs(ref)
    if task == "seq":
        assert ours.config.problem_type == hf.config.problem_type == problem


@pytest.mark.parametrize("task", list(TASKS))
def test_gradients_match_torch(tmp_path, task):
    hf = hf_model(task, config(num_labels=3), init_scale=0.2)
    ours = bridge_from(tmp_path, hf)
    hf = reloaded(tmp_path, hf, task)
    ids, mask = batch(2)
    labels = H.labels_for(torch, task, "single_label_classification", 3, ids, mask, VOCAB)
    H.assert_grads_match(H.torch_grads(hf, ids, mask, labels), H.mlx_grads(ours, ids, mask, labels))


@pytest.mark.parametrize("task", list(TASKS))
def test_save_loads_in_transformers_identically(tmp_path, task):
    cfg = config(num_labels=3, id2label={0: "neg", 1: "neu", 2: "pos"}, label2id={"neg": 0, "neu": 1, "pos": 2})
    ours = bridge_from(tmp_path, hf_model(task, cfg, init_scale=0.2))
    ids, mask = batch(3, left=True)
    if task == "seq":
        ours(H.to_mx(ids), H.to_mx(mask), labels=mx.array([0, 2, 1]))
    ours.save_pretrained(tmp_path / "ours")
    back = TASKS[task][0].from_pretrained(tmp_path / "ours").eval()
    assert type(back).__name__ == ours.hf_architecture and back.config.is_encoder_decoder is False
    H.assert_same_state(back, ours)
    mine = np.array(ours(H.to_mx(ids), H.to_mx(mask)).logits)
    with torch.no_grad():
        theirs = back(input_ids=ids, attention_mask=mask).logits.numpy()
    assert H.real_token_diff(theirs, mine, mask) <= 1e-5
    assert back.config.id2label == {0: "neg", 1: "neu", 2: "pos"}
    assert back.config.problem_type == ours.config.problem_type


@pytest.mark.parametrize("task", list(TASKS))
def test_encoder_checkpoint_gets_new_head_as_transformers(tmp_path, caplog, task):
    cfg = config(initializer_range=0.05)
    torch.manual_seed(0)
    T.T5GemmaEncoderModel(cfg).save_pretrained(tmp_path / "base")
    hf = TASKS[task][0].from_pretrained(tmp_path / "base", num_labels=6).eval()
    mx.random.seed(0)
    with caplog.at_level(logging.WARNING, logger="mlx_hf_bridge.transformers"):
        ours = TASKS[task][1].from_pretrained(tmp_path / "base", num_labels=6)
    hf_state = {k: v.detach().numpy() for k, v in hf.state_dict().items()}
    ours_state = {k: np.array(v) for k, v in tree_flatten(ours.parameters())}
    assert ours.newly_initialized_keys == ["score.out_proj.bias", "score.out_proj.weight"]
    assert "newly initialized" in caplog.text
    for k, mine in ours_state.items():
        theirs = hf_state[k]
        if k.startswith("model.") or k.endswith("bias"):
            assert np.array_equal(mine, theirs), k
        else:  # N(0, initializer_range / sqrt(num_labels))
            std = 0.05 / np.sqrt(6)
            for sample in (theirs, mine):
                assert abs(sample.std() - std) <= 4 * std / np.sqrt(2 * sample.size), k


@pytest.mark.parametrize("task", list(TASKS))
def test_from_config_draws_as_transformers(task):
    cfg = config(num_labels=3)
    torch.manual_seed(0)
    theirs = {k: v.detach().numpy() for k, v in TASKS[task][0].from_config(cfg).state_dict().items()}
    mx.random.seed(0)
    mine = {k: np.array(v) for k, v in tree_flatten(TASKS[task][1].from_config(cfg).parameters())}
    assert set(mine) == {k for k in theirs if "rotary" not in k and "embed_scale" not in k}
    for k, v in mine.items():
        ref = theirs[k]
        assert v.shape == ref.shape, k
        zero_rows = lambda a: np.flatnonzero(~a.reshape(a.shape[0], -1).any(axis=1))  # noqa: E731
        assert np.array_equal(zero_rows(v), zero_rows(ref)), k
        if ref.std() == 0:
            assert np.array_equal(v, ref), k
        elif ref.size >= 128:
            assert abs(v.std() - ref.std()) <= 4 * ref.std() / np.sqrt(ref.size), k


def test_encoder_decoder_mode_is_refused_with_the_fix(tmp_path):
    torch.manual_seed(0)
    T.T5GemmaModel(config(is_encoder_decoder=True)).save_pretrained(tmp_path / "full")
    with pytest.raises(ValueError, match=r"is_encoder_decoder=True classifies from T5Gemma's decoder.*is_encoder_decoder=False"):
        B.AutoModelForSequenceClassification.from_pretrained(tmp_path / "full")
    # the fix: the encoder of the full checkpoint, as transformers builds it with is_encoder_decoder=False
    hf = T.AutoModelForSequenceClassification.from_pretrained(tmp_path / "full", is_encoder_decoder=False).eval()
    ours = B.AutoModelForSequenceClassification.from_pretrained(tmp_path / "full", is_encoder_decoder=False)
    ours.score.out_proj.weight = mx.array(hf.score.out_proj.weight.detach().numpy())  # both drew a new head
    ours.score.out_proj.bias = mx.array(hf.score.out_proj.bias.detach().numpy())
    ids, mask = batch(4)
    H.assert_logits_match(torch, hf, ours(H.to_mx(ids), H.to_mx(mask)).logits, ids, mask)

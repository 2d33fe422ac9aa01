"""Decoder task heads (mlx_hf_bridge/tasks/decoder.py via tasks/qwen3.py, tasks/gemma3_text.py) against
transformers' ``Qwen3ForSequenceClassification`` / ``Qwen3ForTokenClassification`` /
``Gemma3TextForSequenceClassification`` on torch: logits on left- and right-padded batches (two seeds
at transformers' init, one larger init; causal and bidirectional), HF's last-non-pad-token pooling
(pad token as a real last token, no pad_token_id), every problem type's loss, gradients, folders both
ways, new-head init from a base checkpoint, and what is refused."""

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
CASES = [("qwen3", "seq"), ("qwen3", "tok"), ("gemma3_text", "seq")]


def config(arch, is_causal=True, **kw):
    if arch == "qwen3":
        base = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, head_dim=16, max_position_embeddings=128, pad_token_id=PAD,
                    eos_token_id=1, bos_token_id=2)
        base.update(kw)
        cfg = T.Qwen3Config(**base)
    else:
        base = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
                    num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=24, max_position_embeddings=128,
                    sliding_window=4, sliding_window_pattern=3, pad_token_id=PAD, eos_token_id=1, bos_token_id=2)
        base.update(kw)
        cfg = T.Gemma3TextConfig(**base)
    if not is_causal:
        cfg.is_causal = False  # transformers' own switch, saved in config.json
    return cfg


def hf_model(task, cfg, seed=0, init_scale=None):
    torch.manual_seed(seed)
    return H.scaled(TASKS[task][0].from_config(cfg), torch, init_scale, seed)


def bridge_from(tmp_path, hf, name="hf"):
    hf.save_pretrained(tmp_path / name)
    task = "seq" if hf.config.architectures[0].endswith("SequenceClassification") else "tok"
    return TASKS[task][1].from_pretrained(tmp_path / name)


def batch(seed=0, left=False):
    return H.padded_batch(torch, VOCAB, PAD, seed=seed, length=10, left=left)


@pytest.mark.parametrize("arch,task", CASES)
@pytest.mark.parametrize("seed,init_scale", [(0, None), (1, None), (0, 0.2)], ids=["seed0", "seed1", "large-init"])
@pytest.mark.parametrize("left", [False, True], ids=["right-pad", "left-pad"])
def test_logits_match_transformers(tmp_path, arch, task, seed, init_scale, left):
    hf = hf_model(task, config(arch, num_labels=4), seed, init_scale)
    ours = bridge_from(tmp_path, hf)
    assert type(ours).__name__ == type(hf).__name__
    ids, mask = batch(seed, left)
    out = ours(H.to_mx(ids), H.to_mx(mask))
    assert set(out) == {"logits"}
    H.assert_logits_match(torch, hf, out.logits, ids, mask)


@pytest.mark.parametrize("arch,task", CASES)
def test_bidirectional_config_matches_transformers(tmp_path, arch, task):
    hf = hf_model(task, config(arch, is_causal=False, num_labels=3), init_scale=0.2)
    ours = bridge_from(tmp_path, hf)
    ids, mask = batch(4)
    H.assert_logits_match(torch, hf, ours(H.to_mx(ids), H.to_mx(mask)).logits, ids, mask)


@pytest.mark.parametrize("arch", ["qwen3", "gemma3_text"])
def test_sequence_pooling_quirks_as_transformers(tmp_path, arch):
    """HF pools the rightmost token != pad_token_id found in input_ids, not from the attention mask: a pad
    token that is a real last token (Qwen's <|endoftext|>) is skipped, and an all-pad row reads position 0."""
    hf = hf_model("seq", config(arch, num_labels=3), init_scale=0.2)
    ours = bridge_from(tmp_path, hf)
    ids, mask = batch(5)
    ids[0, -1] = PAD  # attended, but the pad id
    ids[2] = PAD
    mask[2] = 0
    mask[2, 0] = 1
    H.assert_logits_match(torch, hf, ours(H.to_mx(ids), H.to_mx(mask)).logits, ids, mask)


@pytest.mark.parametrize("arch", ["qwen3", "gemma3_text"])
def test_no_pad_token_batch_of_one_and_refusal(tmp_path, arch):
    hf = hf_model("seq", config(arch, num_labels=2, pad_token_id=None), init_scale=0.2)
    ours = bridge_from(tmp_path, hf)
    ids, mask = batch(6)
    one, one_mask = ids[:1], mask[:1]
    H.assert_logits_match(torch, hf, ours(H.to_mx(one), H.to_mx(one_mask)).logits, one, one_mask)
    with pytest.raises(ValueError, match="Cannot handle batch sizes > 1"):
        hf(input_ids=ids, attention_mask=mask)
    with pytest.raises(ValueError, match=r"pad_token_id=None.*Set config\.pad_token_id"):
        ours(H.to_mx(ids), H.to_mx(mask))


LOSS_CASES = [("seq", "regression", 1), ("seq", "regression", 3), ("seq", "single_label_classification", 4),
              ("seq", "multi_label_classification", 4), ("tok", None, 5)]


@pytest.mark.parametrize("arch,task,problem,num_labels",
                         [(arch, *case) for arch, task in CASES for case in LOSS_CASES if case[0] == task])
def test_loss_and_problem_type_match_transformers(tmp_path, arch, task, problem, num_labels):
    explicit = problem if problem == "regression" and num_labels > 1 else None
    hf = hf_model(task, config(arch, num_labels=num_labels, problem_type=explicit), init_scale=0.2)
    ours = bridge_from(tmp_path, hf)
    ids, mask = batch(1, left=True)
    labels = H.labels_for(torch, task, problem, num_labels, ids, mask, VOCAB)
    ref = hf(input_ids=ids, attention_mask=mask, labels=labels).loss.item()
    got = ours(H.to_mx(ids), H.to_mx(mask), labels=H.to_mx(labels)).loss.item()
    assert abs(got - ref) <= 1e-5 * abs(ref)
    if task == "seq":
        assert ours.config.problem_type == hf.config.problem_type == problem
    # the generic heads do not pass num_items_in_batch to their loss: a plain mean in both
    ref7 = hf(input_ids=ids, attention_mask=mask, labels=labels, num_items_in_batch=torch.tensor(7)).loss.item()
    got7 = ours(H.to_mx(ids), H.to_mx(mask), labels=H.to_mx(labels), num_items_in_batch=mx.array(7)).loss.item()
    assert abs(ref7 - ref) <= 1e-6 * abs(ref) and abs(got7 - ref7) <= 1e-5 * abs(ref7)


@pytest.mark.parametrize("arch,task", CASES)
@pytest.mark.parametrize("left", [False, True], ids=["right-pad", "left-pad"])
def test_gradients_match_torch(tmp_path, arch, task, left):
    hf = hf_model(task, config(arch, num_labels=3), init_scale=0.2)
    ours = bridge_from(tmp_path, hf)
    ids, mask = batch(2, left)
    labels = H.labels_for(torch, task, "single_label_classification", 3, ids, mask, VOCAB)
    H.assert_grads_match(H.torch_grads(hf, ids, mask, labels), H.mlx_grads(ours, ids, mask, labels))


@pytest.mark.parametrize("arch,task", CASES)
def test_save_loads_in_transformers_identically(tmp_path, arch, task):
    cfg = config(arch, num_labels=3, id2label={0: "neg", 1: "neu", 2: "pos"}, label2id={"neg": 0, "neu": 1, "pos": 2})
    ours = bridge_from(tmp_path, hf_model(task, cfg, init_scale=0.2))
    ids, mask = batch(3, left=True)
    if task == "seq":
        ours(H.to_mx(ids), H.to_mx(mask), labels=mx.array([0, 2, 1]))
    ours.save_pretrained(tmp_path / "ours")
    back = TASKS[task][0].from_pretrained(tmp_path / "ours").eval()
    assert type(back).__name__ == ours.hf_architecture
    H.assert_same_state(back, ours)
    mine = np.array(ours(H.to_mx(ids), H.to_mx(mask)).logits)
    with torch.no_grad():
        theirs = back(input_ids=ids, attention_mask=mask).logits.numpy()
    assert H.real_token_diff(theirs, mine, mask) <= 1e-5
    assert back.config.id2label == {0: "neg", 1: "neu", 2: "pos"}
    assert back.config.problem_type == ours.config.problem_type


@pytest.mark.parametrize("arch,task", CASES)
def test_base_checkpoint_gets_new_head_as_transformers(tmp_path, caplog, arch, task):
    cfg = config(arch, initializer_range=0.05)
    torch.manual_seed(0)
    base = T.AutoModel.from_config(cfg)
    base.save_pretrained(tmp_path / "base")
    hf = TASKS[task][0].from_pretrained(tmp_path / "base", num_labels=6).eval()
    mx.random.seed(0)
    with caplog.at_level(logging.WARNING, logger="mlx_hf_bridge.transformers"):
        ours = TASKS[task][1].from_pretrained(tmp_path / "base", num_labels=6)
    hf_state = {k: v.detach().numpy() for k, v in hf.state_dict().items()}
    ours_state = {k: np.array(v) for k, v in tree_flatten(ours.parameters())}
    new = sorted(k for k in ours_state if not k.startswith("model."))
    assert new == ours.newly_initialized_keys == sorted(k for k in hf_state if k.startswith("score."))
    assert "newly initialized" in caplog.text
    for k, mine in ours_state.items():
        theirs = hf_state[k]
        if k.startswith("model.") or k.endswith("bias"):
            assert np.array_equal(mine, theirs), k
        else:
            for sample in (theirs, mine):
                assert abs(sample.std() - 0.05) <= 4 * 0.05 / np.sqrt(2 * sample.size), k


@pytest.mark.parametrize("arch,task", CASES)
def test_from_config_draws_as_transformers(arch, task):
    cfg = config(arch, num_labels=3)
    torch.manual_seed(0)
    theirs = {k: v.detach().numpy() for k, v in TASKS[task][0].from_config(cfg).state_dict().items()}
    mx.random.seed(0)
    model = TASKS[task][1].from_config(cfg)
    mine = {k: np.array(v) for k, v in tree_flatten(model.parameters())}
    assert set(mine) == {k for k in theirs if "rotary" not in k and "embed_scale" not in k}
    for k, v in mine.items():
        ref = theirs[k]
        assert v.shape == ref.shape, k
        zero_rows = lambda a: np.flatnonzero(~a.reshape(a.shape[0], -1).any(axis=1))  # noqa: E731
        assert np.array_equal(zero_rows(v), zero_rows(ref)), k  # the pad row; Gemma's zero norms
        if ref.std() == 0:
            assert np.array_equal(v, ref), k
        elif ref.size >= 128:
            assert abs(v.std() - ref.std()) <= 4 * ref.std() / np.sqrt(ref.size), k


def test_heads_transformers_lacks_are_refused(tmp_path):
    T.AutoModel.from_config(config("gemma3_text")).save_pretrained(tmp_path / "g")
    with pytest.raises(ValueError, match="No token-classification head for model_type 'gemma3_text'"):
        B.AutoModelForTokenClassification.from_pretrained(tmp_path / "g")
    with pytest.raises(ValueError, match="No masked-lm head for model_type 'qwen3'"):
        B.AutoModelForMaskedLM.from_config(config("qwen3"))


@pytest.mark.parametrize("arch,task", CASES)
@pytest.mark.parametrize("compile_step", [False, True], ids=["eager", "compiled"])
def test_engine_steps_follow_torch(tmp_path, arch, task, compile_step):
    """Three engine AdamW steps (decay groups, clipping) = torch's, eager or compiled (the pooling and the
    labels check run inside mx.compile). classifier_dropout=0: the token head's default 0.1 would draw
    different masks in the two frameworks."""
    hf = hf_model(task, config(arch, num_labels=3, classifier_dropout=0.0), init_scale=0.2)
    ours = bridge_from(tmp_path, hf)
    ids, mask = batch(8, left=True)
    labels = H.labels_for(torch, task, "single_label_classification", 3, ids, mask, VOCAB)
    assert H.engine_steps_vs_torch(ours, hf, ids, mask, labels, compile_step) <= 1e-4


@pytest.mark.parametrize("arch,task", CASES)
def test_padding_free_gives_the_padded_logits(tmp_path, arch, task):
    hf = hf_model(task, config(arch, num_labels=3), init_scale=0.2)
    ours = bridge_from(tmp_path, hf)
    ids, mask = batch(9)
    padded = np.array(ours(H.to_mx(ids), H.to_mx(mask)).logits)
    ours.padding_free = True
    packed = np.array(ours(H.to_mx(ids), H.to_mx(mask)).logits)
    assert H.real_token_diff(padded, packed, mask) <= 1e-5


def test_freeze_embeddings_freezes_the_token_table(tmp_path):
    ours = bridge_from(tmp_path, hf_model("seq", config("qwen3", num_labels=2)))
    ours.freeze_embeddings()
    frozen = {k for k, h in ours.named_parameters() if not h.requires_grad}
    assert frozen == {"model.embed_tokens.weight"}
    ours.freeze_embeddings(False)
    assert all(h.requires_grad for _, h in ours.named_parameters())

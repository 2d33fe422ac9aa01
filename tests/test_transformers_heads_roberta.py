"""RoBERTa / XLM-RoBERTa task heads (mlx_hf_bridge/tasks/roberta.py, xlm_roberta.py) against
transformers' ``RobertaFor*`` / ``XLMRobertaFor*`` on torch: logits on padded batches (two seeds at
transformers' init, one larger init), every problem type's loss, gradients, folders both ways,
the tied MLM decoder and the new-head init of a base checkpoint."""

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

VOCAB, PAD = 100, 1
TASKS = {
    "seq": (T.AutoModelForSequenceClassification, B.AutoModelForSequenceClassification),
    "tok": (T.AutoModelForTokenClassification, B.AutoModelForTokenClassification),
    "mlm": (T.AutoModelForMaskedLM, B.AutoModelForMaskedLM),
}
ARCHS = ["roberta", "xlm-roberta"]


def config(arch, **kw):
    cls = T.RobertaConfig if arch == "roberta" else T.XLMRobertaConfig
    base = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                max_position_embeddings=40, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                pad_token_id=PAD, bos_token_id=0, eos_token_id=2, type_vocab_size=1)
    base.update(kw)
    return cls(**base)


def hf_model(task, cfg, seed=0, init_scale=None):
    torch.manual_seed(seed)
    return H.scaled(TASKS[task][0].from_config(cfg), torch, init_scale, seed)


def bridge_from(tmp_path, hf, name="hf"):
    hf.save_pretrained(tmp_path / name)
    task = next(k for k, v in {"seq": "SequenceClassification", "tok": "TokenClassification",
                               "mlm": "MaskedLM"}.items() if hf.config.architectures[0].endswith(v))
    return TASKS[task][1].from_pretrained(tmp_path / name)


def batch(seed=0):
    return H.padded_batch(torch, VOCAB, PAD, seed=seed, length=14)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("seed,init_scale", [(0, None), (1, None), (0, 0.2)], ids=["seed0", "seed1", "large-init"])
def test_logits_match_transformers(tmp_path, arch, task, seed, init_scale):
    hf = hf_model(task, config(arch, num_labels=4), seed, init_scale)
    ours = bridge_from(tmp_path, hf)
    assert type(ours).__name__ == type(hf).__name__
    ids, mask = batch(seed)
    out = ours(H.to_mx(ids), H.to_mx(mask))
    assert set(out) == {"logits"}
    H.assert_logits_match(torch, hf, out.logits, ids, mask)


LOSS_CASES = [("seq", "regression", 1), ("seq", "regression", 3), ("seq", "single_label_classification", 4),
              ("seq", "multi_label_classification", 4), ("tok", None, 5), ("mlm", None, 2)]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("task,problem,num_labels", LOSS_CASES)
def test_loss_and_problem_type_match_transformers(tmp_path, arch, task, problem, num_labels):
    explicit = problem if problem == "regression" and num_labels > 1 else None
    hf = hf_model(task, config(arch, num_labels=num_labels, problem_type=explicit), init_scale=0.2)
    ours = bridge_from(tmp_path, hf)
    ids, mask = batch(1)
    labels = H.labels_for(torch, task, problem, num_labels, ids, mask, VOCAB)
    ref = hf(input_ids=ids, attention_mask=mask, labels=labels).loss.item()
    got = ours(H.to_mx(ids), H.to_mx(mask), labels=H.to_mx(labels)).loss.item()
    assert abs(got - ref) <= 1e-5 * abs(ref)
    if task == "seq":
        assert ours.config.problem_type == hf.config.problem_type == problem
    # RoBERTa's heads ignore the Trainer's num_items_in_batch (their losses are plain means)
    got = ours(H.to_mx(ids), H.to_mx(mask), labels=H.to_mx(labels), num_items_in_batch=mx.array(7)).loss.item()
    assert abs(got - ref) <= 1e-5 * abs(ref)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("task", list(TASKS))
def test_gradients_match_torch(tmp_path, arch, task):
    hf = hf_model(task, config(arch, num_labels=3), init_scale=0.2)
    ours = bridge_from(tmp_path, hf)
    ids, mask = batch(2)
    labels = H.labels_for(torch, task, "single_label_classification", 3, ids, mask, VOCAB)
    # the pad rows of the word and position tables get no gradient in either (padding_idx)
    H.assert_grads_match(H.torch_grads(hf, ids, mask, labels), H.mlx_grads(ours, ids, mask, labels))


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("task", list(TASKS))
def test_save_loads_in_transformers_identically(tmp_path, arch, task):
    cfg = config(arch, num_labels=3, id2label={0: "neg", 1: "neu", 2: "pos"}, label2id={"neg": 0, "neu": 1, "pos": 2})
    ours = bridge_from(tmp_path, hf_model(task, cfg, init_scale=0.2))
    ids, mask = batch(3)
    if task == "seq":
        ours(H.to_mx(ids), H.to_mx(mask), labels=mx.array([0, 2, 1]))  # sets problem_type, saved with the config
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
    if task == "mlm":
        assert back.get_output_embeddings().weight.data_ptr() == back.get_input_embeddings().weight.data_ptr()
        assert not any(k.startswith("lm_head.decoder") for k, _ in tree_flatten(ours.parameters()))


@pytest.mark.parametrize("arch", ARCHS)
def test_untied_decoder_round_trips(tmp_path, arch):
    hf = hf_model("mlm", config(arch, tie_word_embeddings=False), init_scale=0.2)
    ours = bridge_from(tmp_path, hf)
    ids, mask = batch(5)
    H.assert_logits_match(torch, hf, ours(H.to_mx(ids), H.to_mx(mask)).logits, ids, mask)
    ours.save_pretrained(tmp_path / "ours")
    back = T.AutoModelForMaskedLM.from_pretrained(tmp_path / "ours").eval()
    assert back.get_output_embeddings().weight.data_ptr() != back.get_input_embeddings().weight.data_ptr()
    H.assert_same_state(back, ours)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("task", list(TASKS))
def test_base_checkpoint_gets_new_head_as_transformers(tmp_path, caplog, arch, task):
    cfg = config(arch, initializer_range=0.05)
    torch.manual_seed(0)
    base = T.AutoModel.from_config(cfg, add_pooling_layer=False)
    base.save_pretrained(tmp_path / "base")
    hf = TASKS[task][0].from_pretrained(tmp_path / "base", num_labels=6).eval()
    mx.random.seed(0)
    with caplog.at_level(logging.WARNING, logger="mlx_hf_bridge.transformers"):
        ours = TASKS[task][1].from_pretrained(tmp_path / "base", num_labels=6)
    hf_state = {k: v.detach().numpy() for k, v in hf.state_dict().items()}
    ours_state = {k: np.array(v) for k, v in tree_flatten(ours.parameters())}
    base_keys = {"roberta." + k for k in base.state_dict()}
    new = sorted(k for k in ours_state if k not in base_keys)
    assert new == ours.newly_initialized_keys and new and "newly initialized" in caplog.text
    for k, mine in ours_state.items():
        theirs = hf_state[k]
        if k in base_keys:
            assert np.array_equal(mine, theirs), k
        elif k.endswith("bias") or np.all(theirs == 1.0):
            assert np.array_equal(mine, theirs), k
        else:  # N(0, initializer_range): both samples within 4 sampling sigmas
            for sample in (theirs, mine):
                assert abs(sample.std() - 0.05) <= 4 * 0.05 / np.sqrt(2 * sample.size), k


@pytest.mark.parametrize("task", list(TASKS))
def test_from_config_draws_as_transformers(task):
    cfg = config("roberta", num_labels=3)
    torch.manual_seed(0)
    theirs = {k: v.detach().numpy() for k, v in TASKS[task][0].from_config(cfg).state_dict().items()}
    mx.random.seed(0)
    model = TASKS[task][1].from_config(cfg)
    mine = {k: np.array(v) for k, v in tree_flatten(model.parameters())}
    assert set(mine) <= set(theirs)
    for k, v in mine.items():
        ref = theirs[k]
        assert v.shape == ref.shape, k
        zero_rows = lambda a: np.flatnonzero(~a.reshape(a.shape[0], -1).any(axis=1))  # noqa: E731
        assert np.array_equal(zero_rows(v), zero_rows(ref)), k  # zero biases, both pad rows
        if ref.std() == 0:
            assert np.array_equal(v, ref), k
        elif ref.size >= 128:
            assert abs(v.std() - ref.std()) <= 4 * ref.std() / np.sqrt(ref.size), k


@pytest.mark.parametrize("compile_step", [False, True], ids=["eager", "compiled"])
def test_engine_steps_follow_torch(tmp_path, compile_step):
    hf = hf_model("seq", config("roberta", num_labels=3), init_scale=0.2)
    ours = bridge_from(tmp_path, hf)
    ids, mask = batch(8)
    labels = H.labels_for(torch, "seq", "single_label_classification", 3, ids, mask, VOCAB)
    assert H.engine_steps_vs_torch(ours, hf, ids, mask, labels, compile_step) <= 1e-4


@pytest.mark.parametrize("task", ["tok", "mlm"])
def test_padding_free_gives_the_padded_logits(tmp_path, task):
    ours = bridge_from(tmp_path, hf_model(task, config("roberta", num_labels=3), init_scale=0.2))
    ids, mask = batch(9)
    padded = np.array(ours(H.to_mx(ids), H.to_mx(mask)).logits)
    ours.padding_free = True
    packed = np.array(ours(H.to_mx(ids), H.to_mx(mask)).logits)
    assert H.real_token_diff(padded, packed, mask) <= 1e-5
    ours.freeze_embeddings()
    assert {k for k, h in ours.named_parameters() if not h.requires_grad} == {
        f"roberta.embeddings.{n}.weight" for n in ("word_embeddings", "position_embeddings", "token_type_embeddings")
    } | {"roberta.embeddings.LayerNorm.weight", "roberta.embeddings.LayerNorm.bias"}

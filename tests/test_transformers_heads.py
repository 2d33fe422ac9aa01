"""Task heads (mlx_hf_bridge.tasks via mlx_hf_bridge.transformers) against transformers on torch:
logits, losses per problem_type, gradients, folders both ways, tied MLM decoders, new-head init."""

from __future__ import annotations

import logging

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten

from conftest import tiny_bert_config, tiny_modernbert_config

torch = pytest.importorskip("torch")
T = pytest.importorskip("transformers")
from mlx_hf_bridge import kernels  # noqa: E402
from mlx_hf_bridge import transformers as B  # noqa: E402
from mlx_hf_bridge.engine.optim import AdamW  # noqa: E402
from mlx_hf_bridge.engine.step import StepRunner  # noqa: E402

VOCAB = 100
TASKS = {
    "seq": (T.AutoModelForSequenceClassification, B.AutoModelForSequenceClassification),
    "tok": (T.AutoModelForTokenClassification, B.AutoModelForTokenClassification),
    "mlm": (T.AutoModelForMaskedLM, B.AutoModelForMaskedLM),
}


def config(arch, **kw):
    if arch == "bert":
        return tiny_bert_config(vocab_size=VOCAB, **kw)
    return tiny_modernbert_config(vocab_size=VOCAB, pad_token_id=0, cls_token_id=1, sep_token_id=2, bos_token_id=1,
                                  eos_token_id=2, **kw)


def hf_model(task, cfg, seed=0, init_scale=None):
    torch.manual_seed(seed)
    model = TASKS[task][0].from_config(cfg).eval()
    if init_scale is not None:  # larger weights make the layers dominate
        with torch.no_grad():
            for name, p in model.named_parameters():
                if p.dim() > 1 and "embeddings" not in name:
                    p.normal_(0.0, init_scale)
                elif p.dim() == 1 and "bias" in name:
                    p.normal_(0.0, 0.1)
    return model


def batch(seed=0, B_=3, L=20):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (B_, L), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 13:] = 0
    mask[2, 6:] = 0
    ids[mask == 0] = 0
    return ids, mask


def labels_for(task, problem, num_labels, ids, mask, seed=0):
    g = torch.Generator().manual_seed(seed + 1)
    if task == "seq":
        n = ids.shape[0]
        if problem == "regression":
            return torch.randn(n, generator=g) if num_labels == 1 else torch.randn(n, num_labels, generator=g)
        if problem == "multi_label_classification":
            return torch.randint(0, 2, (n, num_labels), generator=g).float()
        return torch.randint(0, num_labels, (n,), generator=g)
    high = num_labels if task == "tok" else VOCAB
    labels = torch.randint(0, high, ids.shape, generator=g)
    labels[mask == 0] = -100
    if task == "mlm":
        labels[torch.rand(ids.shape, generator=g) < 0.5] = -100
    return labels


def to_mx(t):
    return mx.array(t.numpy())


def bridge_from(tmp_path, hf, name="hf"):
    folder = tmp_path / name
    hf.save_pretrained(folder)
    return TASKS_BY_ARCH[hf.config.architectures[0]].from_pretrained(folder)


TASKS_BY_ARCH = {
    f"{prefix}For{kind}": cls
    for prefix in ("Bert", "ModernBert")
    for kind, cls in (("SequenceClassification", B.AutoModelForSequenceClassification),
                      ("TokenClassification", B.AutoModelForTokenClassification),
                      ("MaskedLM", B.AutoModelForMaskedLM))
}


def assert_logits_match(hf, ours_logits, ids, mask):
    """<= 1e-5 of transformers' float32 logits; where torch's own float32 rounding is larger (the
    large-init ModernBERT reaches 1.7e-5 from float64), no farther from the float64 logits than
    torch float32 is (x1.5)."""
    import copy

    with torch.no_grad():
        ref32 = hf(input_ids=ids, attention_mask=mask).logits.numpy()
        ref64 = copy.deepcopy(hf).double()(input_ids=ids, attention_mask=mask).logits.numpy()
    ours_logits = np.array(ours_logits)
    to_torch, to_f64 = real_token_diff(ref32, ours_logits, mask), real_token_diff(ref64, ours_logits, mask)
    torch_own = real_token_diff(ref64, ref32, mask)
    assert to_torch <= 1e-5 or to_f64 <= max(1e-5, 1.5 * torch_own), (to_torch, to_f64, torch_own)
    assert to_torch <= 1e-4  # the bar, in every case
    return to_torch


def real_token_diff(ref, ours, mask):
    diff = np.abs(ref - ours)
    return float(diff[mask.numpy().astype(bool)].max() if diff.ndim == 3 else diff.max())


CASES = [("bert", {}), ("modernbert", {}), ("modernbert", {"classifier_pooling": "mean"})]


@pytest.mark.parametrize("arch,extra", CASES, ids=["bert", "modernbert-cls", "modernbert-mean"])
@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("init_scale", [None, 0.2], ids=["default-init", "large-init"])
def test_logits_match_transformers(tmp_path, arch, extra, task, init_scale):
    cfg = config(arch, num_labels=4, **extra)
    hf = hf_model(task, cfg, init_scale=init_scale)
    ours = bridge_from(tmp_path, hf)
    ids, mask = batch()
    assert ours.padding_free == (task == "seq")  # the default: packed only where the outputs are the padded ones
    ours.padding_free = False
    out = ours(to_mx(ids), to_mx(mask))
    assert out.loss is None and set(out) == {"logits"}
    assert_logits_match(hf, out.logits, ids, mask)
    if kernels.available():  # packed backbone: the same logits at every real token
        ours.padding_free = True
        packed = ours(to_mx(ids), to_mx(mask)).logits
        assert_logits_match(hf, packed, ids, mask)
        assert real_token_diff(np.array(out.logits), np.array(packed), mask) <= 1e-5


LOSS_CASES = [
    ("seq", "regression", 1), ("seq", "regression", 3), ("seq", "single_label_classification", 4),
    ("seq", "multi_label_classification", 4), ("tok", None, 5), ("mlm", None, 2),
]


@pytest.mark.parametrize("arch", ["bert", "modernbert"])
@pytest.mark.parametrize("task,problem,num_labels", LOSS_CASES)
def test_loss_and_problem_type_match_transformers(tmp_path, arch, task, problem, num_labels):
    # regression with several outputs must be asked for (float labels otherwise mean multi-label, as in HF)
    explicit = problem if problem == "regression" and num_labels > 1 else None
    cfg = config(arch, num_labels=num_labels, problem_type=explicit)
    hf = hf_model(task, cfg, init_scale=0.2)
    ours = bridge_from(tmp_path, hf)
    ids, mask = batch(1)
    labels = labels_for(task, problem, num_labels, ids, mask)
    ref = hf(input_ids=ids, attention_mask=mask, labels=labels).loss.item()
    got = ours(to_mx(ids), to_mx(mask), labels=to_mx(labels)).loss.item()
    assert abs(got - ref) <= 1e-4 * abs(ref)
    if task == "seq":  # HF infers problem_type on the first labelled forward and keeps it in the config
        assert ours.config.problem_type == hf.config.problem_type == problem
    # the Trainer's num_items_in_batch: ModernBERT's MLM divides its summed loss by it, the others ignore it
    ref = hf(input_ids=ids, attention_mask=mask, labels=labels, num_items_in_batch=torch.tensor(7)).loss.item()
    got = ours(to_mx(ids), to_mx(mask), labels=to_mx(labels), num_items_in_batch=mx.array(7)).loss.item()
    assert abs(got - ref) <= 1e-4 * abs(ref)


def torch_grads(hf, ids, mask, labels):
    hf.zero_grad()
    hf(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
    return {n: p.grad.numpy() for n, p in hf.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("arch", ["bert", "modernbert"])
@pytest.mark.parametrize("task", list(TASKS))
def test_gradients_match_torch(tmp_path, arch, task):
    cfg = config(arch, num_labels=3)
    hf = hf_model(task, cfg, init_scale=0.2)
    ours = bridge_from(tmp_path, hf)
    ids, mask = batch(2)
    labels = labels_for(task, "single_label_classification", 3, ids, mask)
    ref = torch_grads(hf, ids, mask, labels)

    def loss_fn(params):
        ours.update(params)
        return ours(to_mx(ids), to_mx(mask), labels=to_mx(labels)).loss

    grads = dict(tree_flatten(mx.grad(loss_fn)(ours.trainable_parameters())))
    assert set(grads) == set(ref)  # a tied decoder has one gradient, on the embedding table, as in torch
    scale = max(float(np.abs(g).max()) for g in ref.values())
    worst = max(float(np.abs(np.array(grads[k]) - ref[k]).max()) for k in ref)
    assert worst <= 1e-4 * scale


@pytest.mark.parametrize("arch", ["bert", "modernbert"])
@pytest.mark.parametrize("task", list(TASKS))
def test_save_loads_in_transformers_identically(tmp_path, arch, task):
    cfg = config(arch, num_labels=3, id2label={0: "neg", 1: "neu", 2: "pos"}, label2id={"neg": 0, "neu": 1, "pos": 2})
    ours = bridge_from(tmp_path, hf_model(task, cfg, init_scale=0.2))
    ids, mask = batch(3)
    if task == "seq":
        ours(to_mx(ids), to_mx(mask), labels=mx.array([0, 2, 1]))  # sets problem_type, saved with the config
    ours.save_pretrained(tmp_path / "ours")
    back = TASKS[task][0].from_pretrained(tmp_path / "ours").eval()
    ours_state = dict(tree_flatten(ours.parameters()))
    theirs = dict(back.named_parameters())
    assert set(theirs) == set(ours_state)
    for k, v in ours_state.items():
        assert np.array_equal(theirs[k].detach().numpy(), np.array(v)), k
    assert_logits_match(back, ours(to_mx(ids), to_mx(mask)).logits, ids, mask)
    assert back.config.id2label == {0: "neg", 1: "neu", 2: "pos"}
    assert back.config.problem_type == ours.config.problem_type
    if task == "mlm":
        out = back.get_output_embeddings().weight
        assert out.data_ptr() == back.get_input_embeddings().weight.data_ptr()  # tied after the round trip


@pytest.mark.parametrize("arch", ["bert", "modernbert"])
def test_tied_decoder_stays_tied_through_training(tmp_path, arch):
    cfg = config(arch)
    ours = bridge_from(tmp_path, hf_model("mlm", cfg, init_scale=0.2))
    names = [k for k, _ in tree_flatten(ours.parameters())]
    assert not any(k.endswith("decoder.weight") for k in names)  # one table, no copy to drift apart
    ids, mask = batch(4)
    labels = to_mx(labels_for("mlm", None, 0, ids, mask))
    ours.train()
    runner = StepRunner(ours, AdamW.for_model(ours, 1e-2), max_grad_norm=1.0)
    emb = ours.get_input_embeddings()
    before = np.array(emb.weight)
    for _ in range(3):
        runner.step([(lambda f, y: ours(**f, labels=y).loss, {"input_ids": to_mx(ids), "attention_mask": to_mx(mask)},
                      labels)], 1.0)
    ours.eval()
    assert not np.array_equal(before, np.array(ours.get_input_embeddings().weight))
    ours.save_pretrained(tmp_path / "trained")
    back = T.AutoModelForMaskedLM.from_pretrained(tmp_path / "trained").eval()
    assert np.array_equal(back.get_output_embeddings().weight.detach().numpy(),
                          np.array(ours.get_input_embeddings().weight))
    assert_logits_match(back, ours(to_mx(ids), to_mx(mask)).logits, ids, mask)


@pytest.mark.parametrize("arch", ["bert", "modernbert"])
def test_untied_decoder_round_trips(tmp_path, arch):
    cfg = config(arch, tie_word_embeddings=False)
    hf = hf_model("mlm", cfg, init_scale=0.2)
    ours = bridge_from(tmp_path, hf)
    ids, mask = batch(5)
    assert_logits_match(hf, ours(to_mx(ids), to_mx(mask)).logits, ids, mask)
    assert any(k.endswith("decoder.weight") for k, _ in tree_flatten(ours.parameters()))
    ours.save_pretrained(tmp_path / "ours")
    back = T.AutoModelForMaskedLM.from_pretrained(tmp_path / "ours").eval()
    assert back.get_output_embeddings().weight.data_ptr() != back.get_input_embeddings().weight.data_ptr()
    assert_logits_match(back, ours(to_mx(ids), to_mx(mask)).logits, ids, mask)


@pytest.mark.parametrize("arch", ["bert", "modernbert"])
@pytest.mark.parametrize("task", list(TASKS))
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
    base_keys = {(("bert." if arch == "bert" else "model.") + k) for k in base.state_dict()}
    new = sorted(k for k in ours_state if k not in base_keys)
    assert new == ours.newly_initialized_keys and new
    assert "newly initialized" in caplog.text and all(k in caplog.text for k in new)
    assert ours.config.num_labels == hf.config.num_labels == 6
    for k in ours_state:
        if k in base_keys:  # the encoder is the checkpoint's, bit for bit
            assert np.array_equal(ours_state[k], hf_state[k]), k
            continue
        theirs, mine = hf_state[k], ours_state[k]
        assert mine.shape == theirs.shape, k
        if k.endswith("bias") or np.all(theirs == 1.0):  # zeros / ones exactly as HF
            assert np.array_equal(mine, theirs), k
        else:  # the family's distribution: both samples within 4 sampling sigmas of its std, same cut-off
            std, cutoff = init_rule(ours.config, k)
            for sample in (theirs, mine):
                assert abs(sample.std() - std) <= 4 * std / np.sqrt(2 * sample.size), k
                assert cutoff is None or np.abs(sample).max() <= cutoff * std + 1e-7, k


def init_rule(cfg, name):
    """(std of the drawn values, cut-off in stds or None): HF's _init_weights for the family."""
    if cfg.model_type == "bert":
        return cfg.initializer_range, None
    from scipy.stats import truncnorm

    c = cfg.initializer_cutoff_factor
    std = cfg.hidden_size ** -0.5 if name.startswith("classifier.") else cfg.initializer_range / np.sqrt(2.0 * cfg.num_hidden_layers)
    return std * truncnorm.std(-c, c), c / truncnorm.std(-c, c)


def test_bad_labels_are_named_before_training(tmp_path):
    ours = bridge_from(tmp_path, hf_model("seq", config("bert", num_labels=3)))
    ids, mask = batch()
    with pytest.raises(ValueError, match=r"outside 0\.\.2 .*num_labels=3"):
        ours(to_mx(ids), to_mx(mask), labels=mx.array([0, 3, 1]))
    ours.config.problem_type = "multi_label_classification"
    with pytest.raises(ValueError, match="labels shaped like the logits"):
        ours(to_mx(ids), to_mx(mask), labels=mx.array([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="needs float multi-hot labels"):
        ours(to_mx(ids), to_mx(mask), labels=mx.zeros((3, 3), dtype=mx.int64))
    tok = bridge_from(tmp_path, hf_model("tok", config("bert", num_labels=3)), name="tok")
    with pytest.raises(ValueError, match="floats"):
        tok(to_mx(ids), to_mx(mask), labels=mx.zeros(ids.shape))


def test_forward_arguments_that_would_change_results_are_refused(tmp_path):
    ours = bridge_from(tmp_path, hf_model("seq", config("bert", num_labels=3)))
    ids, mask = batch()
    ours(to_mx(ids), to_mx(mask), return_dict=True, output_hidden_states=False)  # no effect: accepted
    for bad in ({"position_ids": to_mx(ids)}, {"output_hidden_states": True}, {"inputs_embeds": mx.zeros((3, 20, 32))}):
        with pytest.raises(TypeError, match=f"do not support {next(iter(bad))}"):
            ours(to_mx(ids), to_mx(mask), **bad)


def test_checkpoint_with_other_num_labels_is_refused(tmp_path):
    folder = tmp_path / "three"
    hf_model("seq", config("bert", num_labels=3)).save_pretrained(folder)
    with pytest.raises(ValueError, match=r"classifier\.weight: \(3, 32\) in the checkpoint, \(5, 32\)"):
        B.AutoModelForSequenceClassification.from_pretrained(folder, num_labels=5)
    with pytest.raises(TypeError, match="not_a_field_or_option"):
        B.AutoModelForSequenceClassification.from_pretrained(folder, not_a_field_or_option=1)


@pytest.mark.parametrize("arch", ["bert", "modernbert"])
@pytest.mark.parametrize("task", list(TASKS))
def test_from_config_draws_as_transformers(arch, task):
    cfg = config(arch, num_labels=3)
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
        assert np.array_equal(zero_rows(v), zero_rows(ref)), k  # zero biases, the padding row
        if ref.std() == 0:  # constants (norm weights 1, biases 0) exactly
            assert np.array_equal(v, ref), k
        elif ref.size >= 128:  # two samples of one distribution: 4 sigmas of their difference
            assert abs(v.std() - ref.std()) <= 4 * ref.std() / np.sqrt(ref.size), k
            assert np.abs(v).max() <= 1.5 * np.abs(ref).max() + 1e-6, k
    ids, mask = batch()
    assert model(to_mx(ids), to_mx(mask)).logits.shape[0] == 3


@pytest.mark.parametrize("task", ["seq", "mlm"])
def test_push_to_hub_then_transformers_and_bridge_load_it(tmp_path, task):
    from hub_server import LocalHub

    ours = bridge_from(tmp_path, hf_model(task, config("modernbert", num_labels=2), init_scale=0.2))
    ids, mask = batch(7)
    repo = f"tester/tiny-{task}"
    with LocalHub(lfs_threshold=1_000_000) as hub, hub.patch_client(hf_home=tmp_path / "hf-cache"):
        url = ours.push_to_hub(repo, token="hf_local_test_token")
        assert url.startswith(f"{hub.url}/{repo}/commit/")
        # cache_dir: transformers keeps the hub cache path it read at import time
        theirs = TASKS[task][0].from_pretrained(repo, cache_dir=tmp_path / "hf-cache").eval()
        again = TASKS[task][1].from_pretrained(repo, cache_dir=tmp_path / "hf-cache")
    assert_logits_match(theirs, ours(to_mx(ids), to_mx(mask)).logits, ids, mask)
    assert np.array_equal(np.array(again(to_mx(ids), to_mx(mask)).logits), np.array(ours(to_mx(ids), to_mx(mask)).logits))


@pytest.mark.parametrize("compile_step", [False, True], ids=["eager", "compiled"])
def test_engine_steps_follow_torch(tmp_path, compile_step):
    """Three engine AdamW steps (HF's decay groups, clipping) = torch's, compiled or not."""
    from mlx_hf_bridge.engine.optim import decay_parameter_names

    hf = hf_model("seq", config("bert", num_labels=3), init_scale=0.2)
    ours = bridge_from(tmp_path, hf)
    ids, mask = batch(8)
    labels = labels_for("seq", "single_label_classification", 3, ids, mask)
    ours.train()
    runner = StepRunner(ours, AdamW.for_model(ours, 1e-3, weight_decay=0.01), max_grad_norm=1.0, compile=compile_step)
    features = {"input_ids": to_mx(ids), "attention_mask": to_mx(mask)}
    got = [runner.step([(lambda f, y: ours(**f, labels=y).loss, features, to_mx(labels))], 1.0)[0] for _ in range(3)]
    decay = set(decay_parameter_names(ours))
    params = list(hf.named_parameters())
    opt = torch.optim.AdamW([{"params": [p for n, p in params if n in decay], "weight_decay": 0.01},
                             {"params": [p for n, p in params if n not in decay], "weight_decay": 0.0}], lr=1e-3)
    hf.train()
    ref = []
    for _ in range(3):
        opt.zero_grad()
        loss = hf(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(hf.parameters(), 1.0)
        opt.step()
        ref.append(loss.item())
    assert max(abs(a - b) / abs(b) for a, b in zip(got, ref)) <= 1e-4

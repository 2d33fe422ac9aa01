"""Embedding freezing written the torch way on the MLX task models: frozen leaves get no gradient,
no optimizer state and no update in the engine; training then follows torch with the same freezing."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten

from test_transformers_heads import TASKS, batch, bridge_from, config, hf_model, labels_for, to_mx

torch = pytest.importorskip("torch")
from mlx_hf_bridge.engine.optim import AdamW, decay_parameter_names  # noqa: E402
from mlx_hf_bridge.engine.step import StepRunner  # noqa: E402

PREFIX = {"bert": "bert", "modernbert": "model"}


def freeze_torch_style(model, arch, how):
    if how == "loop":
        for p in model.base_model.embeddings.parameters():
            p.requires_grad = False
    elif how == "requires_grad_":
        getattr(model, PREFIX[arch]).embeddings.requires_grad_(False)
    elif how == "named":
        for name, p in model.named_parameters():
            if name.startswith(f"{PREFIX[arch]}.embeddings."):
                p.requires_grad = False
    else:  # the bridge's one-liner
        model.freeze_embeddings()


@pytest.mark.parametrize("arch", ["bert", "modernbert"])
@pytest.mark.parametrize("how", ["loop", "requires_grad_", "named", "one-liner"])
def test_torch_spellings_freeze_exactly_what_torch_freezes(tmp_path, arch, how):
    hf = hf_model("mlm", config(arch))
    ours = bridge_from(tmp_path, hf)
    if how != "one-liner":
        freeze_torch_style(hf, arch, how)
    else:
        freeze_torch_style(hf, arch, "loop")
    freeze_torch_style(ours, arch, how)
    theirs = {n: p.requires_grad for n, p in hf.named_parameters()}
    mine = {n: p.requires_grad for n, p in ours.named_parameters()}
    assert mine == theirs  # same names (a tied decoder is the embedding table in both) and flags
    frozen = {n for n, flag in mine.items() if not flag}
    assert frozen and all(n.startswith(f"{PREFIX[arch]}.embeddings.") for n in frozen)
    assert not frozen & {k for k, _ in tree_flatten(ours.trainable_parameters())}
    assert ours.num_parameters(only_trainable=True) == sum(p.numel() for p in hf.parameters() if p.requires_grad)
    next(iter(ours.base_model.embeddings.parameters())).requires_grad = True  # and back
    assert sum(not p.requires_grad for p in ours.base_model.embeddings.parameters()) == len(frozen) - 1


def train_torch(hf, steps, inputs, labels, lr, decay_names):
    """torch AdamW with the trainer's two groups (HF's decay rule), over the parameters left trainable."""
    params = [(n, p) for n, p in hf.named_parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{"params": [p for n, p in params if n in decay_names], "weight_decay": 0.01},
                             {"params": [p for n, p in params if n not in decay_names], "weight_decay": 0.0}], lr=lr)
    hf.train()
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = hf(**inputs, labels=labels).loss
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("arch", ["bert", "modernbert"])
@pytest.mark.parametrize("task", ["seq", "mlm"])
def test_frozen_embeddings_untouched_by_engine_training(tmp_path, arch, task):
    hf = hf_model(task, config(arch, num_labels=3), init_scale=0.2)
    ours = bridge_from(tmp_path, hf)
    ids, mask = batch(6)
    labels = labels_for(task, "single_label_classification", 3, ids, mask)
    for p in hf.base_model.embeddings.parameters():
        p.requires_grad = False
    for p in ours.base_model.embeddings.parameters():
        p.requires_grad = False
    before = {k: np.array(v) for k, v in tree_flatten(ours.parameters())}
    ours.train()
    optimizer = AdamW.for_model(ours, 1e-3, weight_decay=0.01)
    runner = StepRunner(ours, optimizer, max_grad_norm=0.0)
    features = {"input_ids": to_mx(ids), "attention_mask": to_mx(mask)}
    losses = [runner.step([(lambda f, y: ours(**f, labels=y).loss, features, to_mx(labels))], 1.0)[0]
              for _ in range(5)]
    ref = train_torch(hf, 5, {"input_ids": ids, "attention_mask": mask}, labels, 1e-3, set(decay_parameter_names(ours)))
    assert max(abs(a - b) / abs(b) for a, b in zip(losses, ref)) <= 1e-4
    after = {k: np.array(v) for k, v in tree_flatten(ours.parameters())}
    frozen = [k for k in before if k.startswith(f"{PREFIX[arch]}.embeddings.")]
    assert frozen
    for k in before:
        if k in frozen:
            assert np.array_equal(before[k], after[k]), k  # bit-identical
    assert all(not np.array_equal(before[k], after[k]) for k in before if k not in frozen and "weight" in k
               and "norm" not in k.lower())
    state = optimizer.state_tensors()
    assert state and not [k for k in state if k.split(".", 1)[1] in frozen]  # no moments for frozen leaves
    assert not set(frozen) & {n for g in optimizer.groups for n in g["params"]}
    trained = dict(hf.named_parameters())
    for k in frozen:  # torch left them alone too
        assert np.array_equal(trained[k].detach().numpy(), after[k]), k

"""padding_free=True on the task models: per-token heads on real tokens only (ModernBERT's backbone
packed too) give the padded forward's logits at real tokens, its loss and its gradients."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten

from test_transformers_heads import CASES, TASKS, assert_logits_match, batch, bridge_from, config, hf_model, \
    labels_for, to_mx

torch = pytest.importorskip("torch")


def loss_and_grads(model, ids, mask, labels):
    def loss_fn(params):
        model.update(params)
        return model(ids, mask, labels=labels).loss

    loss, grads = mx.value_and_grad(loss_fn)(model.trainable_parameters())
    return loss.item(), dict(tree_flatten(grads))


@pytest.mark.parametrize("arch,extra", CASES, ids=["bert", "modernbert-cls", "modernbert-mean"])
@pytest.mark.parametrize("task", list(TASKS))
def test_padding_free_equals_padded_at_real_tokens(tmp_path, arch, extra, task):
    hf = hf_model(task, config(arch, num_labels=3, **extra), init_scale=0.2)
    ours = bridge_from(tmp_path, hf)
    ids, mask = batch(9, B_=4, L=24)
    labels = labels_for(task, "single_label_classification", 3, ids, mask)
    padded_logits = np.array(ours(to_mx(ids), to_mx(mask)).logits)
    padded_loss, padded_grads = loss_and_grads(ours, to_mx(ids), to_mx(mask), to_mx(labels))
    ours.padding_free = True
    logits = ours(to_mx(ids), to_mx(mask)).logits
    assert_logits_match(hf, logits, ids, mask)
    real = mask.numpy().astype(bool)
    if task != "seq":
        assert np.abs(np.array(logits) - padded_logits)[real].max() <= 1e-5
        assert not np.array(logits)[~real].any()  # no head work at padding: logits 0 there
    loss, grads = loss_and_grads(ours, to_mx(ids), to_mx(mask), to_mx(labels))
    assert abs(loss - padded_loss) <= 1e-5 * abs(padded_loss)
    scale = max(float(mx.abs(g).max()) for g in padded_grads.values())
    assert max(float(mx.abs(grads[k] - padded_grads[k]).max()) for k in padded_grads) <= 1e-5 * scale


def test_padding_free_refuses_labels_at_padding(tmp_path):
    ours = bridge_from(tmp_path, hf_model("tok", config("bert", num_labels=3)))
    ours.padding_free = True
    ids, mask = batch()
    labels = np.zeros(ids.shape, np.int64)  # padded positions labelled 0, not -100
    with pytest.raises(ValueError, match="padded positions carry labels other than -100"):
        ours(to_mx(ids), to_mx(mask), labels=mx.array(labels))

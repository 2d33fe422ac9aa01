"""Sequence-classification heads that read only the first token ([CLS] / <s>) run the backbone's last
layer for that token only (keys and values from every token): logits equal transformers', and loss and
gradients equal the full last layer's, padded and packed, in eval and in training."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten

from conftest import tiny_bert_config

torch = pytest.importorskip("torch")
T = pytest.importorskip("transformers")
from mlx_hf_bridge import kernels  # noqa: E402
from mlx_hf_bridge import transformers as B  # noqa: E402
from mlx_hf_bridge.models import bert as bert_arch  # noqa: E402

VOCAB = 100


def hf_model(arch, seed):
    kw = dict(vocab_size=VOCAB, num_labels=3, num_attention_heads=2,  # head_dim 16: the fused kernel's
              hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    if arch == "bert":
        cfg = tiny_bert_config(**kw)
    else:
        base = tiny_bert_config(**kw).to_dict()
        base.update(model_type="roberta", pad_token_id=1, bos_token_id=0, eos_token_id=2,
                    max_position_embeddings=base["max_position_embeddings"] + 2)
        cfg = T.RobertaConfig.from_dict(base)
    torch.manual_seed(seed)
    model = T.AutoModelForSequenceClassification.from_config(cfg).eval()
    with torch.no_grad():  # a larger init, so the layers dominate
        for name, p in model.named_parameters():
            if p.dim() > 1 and "embeddings" not in name:
                p.normal_(0.0, 0.2)
    return model


def batch(pad_id):
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(5, VOCAB, (4, 18), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 11:] = 0
    mask[2, 4:] = 0
    mask[3, 1:] = 0  # a one-token row: its first token is all it has
    ids[mask == 0] = pad_id
    return ids, mask, torch.tensor([0, 2, 1, 2])


class Spy:
    """Counts the last-layer calls that ran first-token-only, and the row counts they produced."""

    def __init__(self, monkeypatch):
        self.rows, self.packed = [], []
        original = bert_arch.FirstTokens.attend

        def attend(first, module, x):
            out = original(first, module, x)
            self.rows.append(out.shape[0] * out.shape[1])
            self.packed.append(first.first is not None)
            return out

        monkeypatch.setattr(bert_arch.FirstTokens, "attend", attend)


def loss_and_grads(model, ids, mask, labels, first_token):
    model.reads_first_token = first_token

    def loss_fn(params):
        model.update(params)
        return model(ids, mask, labels=labels).loss

    try:
        loss, grads = mx.value_and_grad(loss_fn)(model.trainable_parameters())
        return float(loss), dict(tree_flatten(grads))
    finally:
        del model.reads_first_token  # back to the class's own setting


@pytest.mark.parametrize("arch", ["bert", "roberta"])
@pytest.mark.parametrize("padding_free", [True, False], ids=["packed", "padded"])
def test_first_token_last_layer_equals_transformers_and_the_full_layer(tmp_path, monkeypatch, arch, padding_free):
    if padding_free and not kernels.available():
        pytest.skip(f"packing needs the fused CPU attention ({kernels.status()})")
    hf = hf_model(arch, seed=1)
    ids, mask, labels = batch(hf.config.pad_token_id)
    hf.save_pretrained(tmp_path / "hf")
    model = B.AutoModelForSequenceClassification.from_pretrained(tmp_path / "hf")
    assert type(model).reads_first_token
    model.padding_free = padding_free
    spy = Spy(monkeypatch)
    x, m, y = (mx.array(t.numpy()) for t in (ids, mask, labels))

    logits = np.array(model(x, m).logits)
    assert spy.rows == [4]  # the last layer produced one row per sequence
    assert spy.packed == [padding_free]
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask).logits.numpy()
    assert np.abs(logits - ref).max() <= 1e-5

    model.train()
    got_loss, got = loss_and_grads(model, x, m, y, first_token=True)
    want_loss, want = loss_and_grads(model, x, m, y, first_token=False)
    assert spy.rows == [4, 4]  # only the first-token pass took the short path
    assert abs(got_loss - want_loss) <= 1e-6 * abs(want_loss)
    scale = max(float(mx.abs(g).max()) for g in want.values())
    for name, g in want.items():
        assert float(mx.abs(got[name] - g).max()) <= 1e-5 * scale, name
    assert float(mx.abs(got["classifier.weight" if arch == "bert" else "classifier.out_proj.weight"]).max()) > 0

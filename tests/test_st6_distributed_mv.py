"""ST 6's multi-vector losses with ``gather_across_devices=True`` on 2 ring ranks: world 2 x per-device 4 =
world 1 x batch 8 (per-step losses, first-step gradients and final weights <= 1e-5 relative, SGD) and = sentence-transformers 6.2's
own single-process batch-8 run on torch (losses and first-step gradients <= 1e-4). The ranks' document
columns have different widths (ST 6's collator pads each to its own longest row): both pad to the widest
rank's before gathering, as ST 6's ``all_gather_padded``; unlike PyLate's, the loss is not scaled by the
world size. The uncached and the GradCache variant run in one launch; the ST 6 trainer itself (slow) too."""

from __future__ import annotations

import json

import numpy as np
import pytest
from mlx.utils import tree_flatten

pytest.importorskip("sentence_transformers", minversion="6")

from distributed_helpers import run  # noqa: E402
from st6_training_helpers import (  # noqa: E402
    assert_parity, collate_both, common_name, contrastive_rows, load_pair, run_mlx, run_torch, torch_loss,
)

STEPS, LR = 10, 0.05  # assert_parity's STEPS
LOSSES = {"MultiVectorMultipleNegativesRankingLoss": {},
          "CachedMultiVectorMultipleNegativesRankingLoss": {"mini_batch_size": 2}}

CHILD = r"""
import json, sys
import mlx.core as mx, mlx.nn as nn, mlx.optimizers as optim, numpy as np
from mlx.utils import tree_flatten
from mlx_hf_bridge.engine.data import collect_features
from mlx_hf_bridge.sentence_transformers import MultiVectorEncoder
from mlx_hf_bridge.sentence_transformers.multi_vector_encoder import losses
from mlx_hf_bridge.sentence_transformers.multi_vector_encoder.data_collator import MultiVectorEncoderDataCollator

folder, rows_path, out, steps, lr = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
world = mx.distributed.init()
r, W = world.rank(), world.size()
rows = json.load(open(rows_path))
per = len(rows) // W
for name, kwargs in json.loads(sys.argv[6]).items():
    model = MultiVectorEncoder(folder)
    model.train()
    batch = MultiVectorEncoderDataCollator(preprocess_fn=model.preprocess)(rows[r * per:(r + 1) * per])
    features, labels = collect_features(batch)
    loss = getattr(losses, name)(model, gather_across_devices=True, **kwargs)
    value_and_grad = getattr(loss, "value_and_grad", None) or nn.value_and_grad(model, loss)
    opt = optim.SGD(learning_rate=lr)
    values, first = [], None
    for step in range(steps):
        value, grads = value_and_grad(features, labels)
        # DDP: the mean over ranks of the loss and of every gradient
        grads = nn.utils.tree_map(lambda g: mx.distributed.all_sum(g, group=world) / W, grads)
        value = mx.distributed.all_sum(value, group=world) / W
        if step == 0:
            first = {k: np.array(v) for k, v in tree_flatten(grads)}
        opt.update(model, grads)
        mx.eval(model.parameters(), opt.state)
        values.append(value.item())
    if r == 0:
        np.savez(f"{out}/{name}-weights.npz", **{k: np.array(v) for k, v in tree_flatten(model.parameters())})
        np.savez(f"{out}/{name}-grads.npz", **first)
        json.dump(values, open(f"{out}/{name}-losses.json", "w"))
    json.dump([int(f["input_ids"].shape[1]) for f in features[1:]], open(f"{out}/widths-{r}.json", "w"))
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory, tiny_modernbert_dir):
    import torch
    from sentence_transformers import MultiVectorEncoder as TorchEncoder
    from sentence_transformers.base.modules import Dense, Normalize, Transformer
    from sentence_transformers.multi_vector_encoder.modules import MultiVectorMask

    torch.manual_seed(0)
    dense = Dense(32, 16, module_input_name="token_embeddings", bias=False, activation_function=None)
    modules = [Transformer(str(tiny_modernbert_dir), document_length=28), dense, MultiVectorMask(),
               Normalize(module_input_name="token_embeddings")]
    out = tmp_path_factory.mktemp("st6-mv-dp")
    TorchEncoder(modules=modules, device="cpu").save_pretrained(str(out))
    return out


def test_two_ranks_gathering_equal_one_process_and_st6_on_torch(folder, tmp_path):
    from mlx_hf_bridge.sentence_transformers.multi_vector_encoder import losses as mlx_losses

    rows = contrastive_rows(8, 1, seed=5)
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    (tmp_path / "child.py").write_text(CHILD)
    run([str(tmp_path / "child.py"), str(folder), str(tmp_path / "rows.json"), str(tmp_path), str(STEPS), str(LR),
         json.dumps(LOSSES)], workdir=tmp_path, timeout=300)
    widths = [json.loads((tmp_path / f"widths-{r}.json").read_text()) for r in range(2)]
    assert widths[0] != widths[1], widths  # the ranks' columns differ: the padding to the widest rank ran
    for name, kwargs in LOSSES.items():
        torch_model, mlx_model = load_pair(folder)
        t_features, t_labels, m_features, m_labels = collate_both(torch_model, mlx_model, rows)
        reference = run_torch(torch_model, torch_loss(name, torch_model, kwargs), (t_features, t_labels), "sgd", LR)
        one = run_mlx(mlx_model, getattr(mlx_losses, name)(mlx_model, **kwargs), (m_features, m_labels), "sgd", LR)
        losses = json.loads((tmp_path / f"{name}-losses.json").read_text())
        grads = dict(np.load(tmp_path / f"{name}-grads.npz"))
        two = (losses, {common_name(k): v for k, v in grads.items()})
        assert_parity(reference, two, f"{name} 2 ranks x 4 vs ST 6.2 1 x 8")
        assert max(abs(a - b) / abs(b) for a, b in zip(losses, one[0])) <= 1e-5, (losses, one[0])
        scale = max(float(np.abs(g).max()) for g in one[1].values())
        worst = max(float(np.abs(two[1][k] - g).max()) for k, g in one[1].items()) / scale
        print(f"{name}: first-step gradients 2 ranks vs 1 process {worst:.1e} of scale")
        assert worst <= 1e-5
        single = {k: np.array(v) for k, v in tree_flatten(mlx_model.parameters())}
        weights = dict(np.load(tmp_path / f"{name}-weights.npz"))
        assert weights.keys() == single.keys()
        for key, w in single.items():
            assert float(np.abs(weights[key] - w).max()) <= 1e-5 * max(1.0, float(np.abs(w).max())), key


@pytest.mark.slow
def test_the_st6_trainer_on_two_ranks_equals_one_process(folder, tmp_path):
    """The ST 6 trainer with a MultiVectorEncoder under data parallel: 2 ranks x per-device 4 (gathering)
    = 1 process x batch 8, per-step logged losses and final weights (AdamW, adam_epsilon=1e-3 as in
    test_distributed.py, whose comparison this reuses)."""
    pytest.importorskip("datasets")
    from distributed_helpers import train_child
    from test_distributed import compare

    options = {"loss": "st6-mv", "steps": 3, "eps": 1e-3}
    one = train_child(1, tmp_path / "one", folder, {"run": {**options, "batch": 8}})["run"]
    two = train_child(2, tmp_path / "two", folder, {"run": {**options, "batch": 4}})["run"]
    compare(one, two, "ST 6 trainer, MultiVectorEncoder, 2 x 4 vs 1 x 8")

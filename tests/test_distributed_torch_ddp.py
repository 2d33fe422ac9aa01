"""The engine's data parallel on 2 ring ranks = sentence-transformers / PyLate on torch DDP (gloo, 2 CPU
processes), same starting weights, same 8 rows, per-device 4, gathered in-batch negatives: MNRL,
Contrastive and CachedContrastive (mini-batch 2: GradCache's cached embedding gradients of the global loss).

With 8 rows and per-device 4 every step trains on the whole dataset, and a gathered loss does not
depend on which rank holds which rows, so the two libraries' different shuffles (numpy vs torch) do
not matter. PyLate's Contrastive multiplies its loss by the world size when it gathers; the torch run
shows it (logged loss = 2 x the batch-8 loss) and the bridge reproduces it. lr 5e-4 keeps three
AdamW steps from amplifying the torch-vs-MLX rounding (~1e-7 at step 1) past 1e-5.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pylate")
pytest.importorskip("torch")
from distributed_helpers import torch_ddp, train_child  # noqa: E402


@pytest.mark.slow  # ~50 s; CI keeps test_distributed's single-process per-rank comparison
def test_two_ranks_equal_torch_ddp_gloo(tmp_path, tiny_bert_dir):
    import mlx.core as mx

    from mlx_hf_bridge.pylate import models

    mx.random.seed(0)
    colbert = tmp_path / "colbert"  # one ColBERT folder (projection included) both libraries load
    models.ColBERT(str(tiny_bert_dir), query_length=8, document_length=12).save(str(colbert))
    base = {"batch": 4, "n": 8, "steps": 3, "eps": 1e-3, "lr": 5e-4}
    runs = {"mnrl": {**base, "loss": "mnrl", "model": str(tiny_bert_dir)},
            "contrastive": {**base, "loss": "contrastive", "model": str(colbert)},
            "cached": {**base, "loss": "cached", "model": str(colbert)}}  # CachedContrastive, mini-batch 2
    ours = train_child(2, tmp_path / "mlx", tiny_bert_dir, runs)
    theirs = torch_ddp(2, tmp_path / "torch", tiny_bert_dir, runs)
    for name in runs:
        assert [r["world"] for r in theirs[name]] == [2, 2]
        ref = theirs[name][0]["losses"]
        got = ours[name][0]["losses"]
        rel = np.abs(np.array(got) - ref) / np.abs(ref)
        print(f"{name}: torch DDP {ref}, bridge {got}, rel max {rel.max():.2e}")
        np.testing.assert_allclose(got, ref, rtol=1e-5)

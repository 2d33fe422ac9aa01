"""``all_gather_with_grad`` / ``all_gather_padded`` on 2 ring ranks: the backward sums every rank's cotangent
(torch's ``distributed.nn.all_gather``); MLX's own ``all_gather`` VJP gives only this rank's, shown here."""

from __future__ import annotations

import json

import mlx.core as mx
import numpy as np

from distributed_helpers import run

CHILD = r"""
import json, sys
import mlx.core as mx
import numpy as np
from mlx_hf_bridge.engine import distributed as D

world = mx.distributed.init()
r, W = world.rank(), world.size()
rng = np.random.default_rng(0)
pattern = mx.array(rng.normal(size=(2 * W, 5, 3)).astype(np.float32))  # the same on every rank
widths = [3, 5]
x = mx.array(rng.normal(size=(2, widths[r], 3)).astype(np.float32)) * (r + 1)
mask = mx.arange(widths[r])[None, :] < mx.array([[widths[r] - 1], [widths[r]]])

def loss_with(gather):  # rank r weighs the gathered rows with (r + 1) * pattern
    def f(a):
        g, m = gather(a)
        return ((g * pattern[:, : g.shape[1]]) * (r + 1) * m[..., None]).sum()
    return f

ours = mx.grad(loss_with(lambda a: D.all_gather_padded(a, mask)))(x)
plain = mx.grad(lambda a: ((mx.distributed.all_gather(a) * pattern[:, :3] * (r + 1)).sum()))(x[:, :3])
g, m = D.all_gather_padded(x, mask)
flat = D.all_gather_with_grad(mx.ones((2, 4)) * r)
out = {"rank": r, "ours": np.array(ours).tolist(), "plain": np.array(plain).tolist(),
       "gathered": np.array(g).tolist(), "mask": np.array(m).tolist(), "flat": np.array(flat).tolist()}
open(f"{sys.argv[1]}/g{r}.json", "w").write(json.dumps(out))
"""


def test_gathers_sum_the_cotangents_of_every_rank(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    run([str(script), str(tmp_path)], workdir=tmp_path, timeout=60)
    res = [json.loads((tmp_path / f"g{r}.json").read_text()) for r in range(2)]
    rng = np.random.default_rng(0)
    pattern = rng.normal(size=(4, 5, 3)).astype(np.float32)
    widths = [3, 5]
    for r, out in enumerate(res):
        # the forward: both ranks' rows, rank 0's padded from 3 to 5 tokens with zeros / False
        g = np.array(out["gathered"])
        assert g.shape == (4, 5, 3) and np.all(g[:2, 3:] == 0)
        assert np.array(out["mask"]).tolist() == [[True, True, False, False, False], [True, True, True, False, False],
                                                  [True, True, True, True, False], [True] * 5]
        np.testing.assert_array_equal(out["flat"], [[0.0] * 4] * 2 + [[1.0] * 4] * 2)
        # the backward: d(sum of both ranks' losses)/d(this rank's rows) = (1 + 2) x pattern, masked
        m = np.array(out["mask"])[2 * r : 2 * r + 2, : widths[r], None]
        expected = 3 * pattern[2 * r : 2 * r + 2, : widths[r]] * m
        np.testing.assert_allclose(out["ours"], expected, rtol=1e-6)
        # MLX's all_gather alone: only this rank's own loss reaches its rows (no sum over ranks)
        np.testing.assert_allclose(out["plain"], (r + 1) * pattern[2 * r : 2 * r + 2, :3], rtol=1e-6)


def test_one_process_is_the_identity():
    from mlx_hf_bridge.engine import distributed as D

    x, mask = mx.ones((2, 3, 4)), mx.ones((2, 3), dtype=mx.bool_)
    assert D.all_gather_with_grad(x) is x and D.all_gather_padded(x, mask) == (x, mask)
    assert D.group() is None and D.rank() == 0 and D.world_size() == 1
    with D.local_only():
        assert D.group() is None


def test_a_backend_error_becomes_a_distributed_error_naming_the_peer():
    import pytest

    from mlx_hf_bridge.engine import distributed as D

    class TwoRanks:  # what guard reads of a group
        def rank(self):
            return 0

        def size(self):
            return 2

    with pytest.raises(D.DistributedError, match=r"rank 0 of 2: step 7 failed: rank 1 stopped answering "
                                                 r"\(\[ring\] connection to a peer was lost\).*resume_from_checkpoint"):
        with D.guard(TwoRanks(), "step 7", timeout=60):
            raise RuntimeError("[ring] connection to a peer was lost")
    with pytest.raises(RuntimeError, match="^unrelated$"):  # other errors pass through unchanged
        with D.guard(TwoRanks(), "step 8", timeout=60):
            raise RuntimeError("unrelated")
    assert D._watchdog.deadline is None  # disarmed either way

"""Data parallel on 2 ring-backend ranks on 127.0.0.1 (CPU): the engine's DDP equals one process.

Each test trains the same tiny BERT (dense MNRL / PyLate ColBERT) for 3 steps through the ordinary
trainer, once on 2 ranks x per-device 4 and once as its one-process equivalent, and compares the
logged loss of every step and the final weights. Weights: max|diff| <= 1e-5 of each tensor's largest
value; BERT's attention key biases hold only rounding noise (<= 1e-9: softmax ignores a shift of
the keys, so their exact gradient is 0) and are compared at 1e-9 absolute. AdamW runs with
adam_epsilon=1e-3 here: with 1e-8 the first update is lr * sign(grad), which turns 1e-7 rounding
differences in near-zero gradients into lr-sized weight differences (weights then agree only to
~5e-5 of scale; the losses agree either way).
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("datasets")
from distributed_helpers import train_child  # noqa: E402

STEPS = 3


def assert_same_weights(a: dict, b: dict, rel=1e-5):
    assert a.keys() == b.keys()
    worst = 0.0
    for k, v in a.items():
        scale = float(np.abs(v).max())
        diff = float(np.abs(v - b[k]).max())
        if scale <= 1e-9:
            assert diff <= 1e-9, k
            continue
        worst = max(worst, diff / scale)
        assert diff <= rel * scale, (k, diff, scale)
    return worst


def check_ranks_agree(results):
    """Identical weights and logs on every rank (bit for bit: the all_sum result is the same everywhere)."""
    assert [r["rank"] for r in results] == [0, 1] and all(r["world"] == 2 for r in results)
    assert results[0]["losses"] == results[1]["losses"]
    for k, v in results[0]["weights"].items():
        np.testing.assert_array_equal(v, results[1]["weights"][k])


def compare(one, two, label):
    check_ranks_agree(two)
    (ref,) = one
    assert len(ref["losses"]) == len(two[0]["losses"]) == STEPS
    np.testing.assert_allclose(two[0]["losses"], ref["losses"], rtol=1e-5)
    worst = assert_same_weights(ref["weights"], two[0]["weights"])
    losses = np.abs(np.array(two[0]["losses"]) - ref["losses"]) / np.abs(ref["losses"])
    print(f"{label}: losses rel max {losses.max():.2e}, weights rel max {worst:.2e}, "
          f"all-reduced {two[0]['bytes_per_step']} B/step")


BASE = {"steps": STEPS, "eps": 1e-3}


def test_gathered_mnrl_two_ranks_of_4_equal_one_process_batch_8(tmp_path, tiny_bert_dir):
    """Dense MNRL (ST: no world-size factor): the mean of the ranks' losses is the batch-8 loss. The
    evaluation after step 3 runs in full on each rank without gathering: the same eval_loss as one process.
    Compiled step (torch_compile=True): the custom-VJP gather runs inside mx.compile."""
    run = {**BASE, "loss": "mnrl", "eval": True, "compile": True}  # torch_compile: the gather in mx.compile
    one = train_child(1, tmp_path / "one", tiny_bert_dir, {"mnrl": {**run, "batch": 8}})
    two = train_child(2, tmp_path / "two", tiny_bert_dir, {"mnrl": {**run, "batch": 4}},
                      launcher="mlx.launch")  # the real launcher: an unmodified script
    compare(one["mnrl"], two["mnrl"], "MNRL gathered")
    (ref,) = one["mnrl"]
    assert len(ref["eval_losses"]) == 1 and ref["world_process_zero"] == [True, True]
    assert [r["world_process_zero"] for r in two["mnrl"]] == [[True, True], [False, False]]
    for r in two["mnrl"]:
        np.testing.assert_allclose(r["eval_losses"], ref["eval_losses"], rtol=1e-5)


def test_gathered_pylate_contrastive_and_cached_equal_one_process_batch_8(tmp_path, tiny_bert_dir):
    """PyLate multiplies the loss by the world size when it gathers (``loss *= get_world_size()``): the
    2-rank run logs 2 x the batch-8 loss and steps with 2 x its gradient, reproduced as PyLate on torch
    DDP does. The reference is the one-process batch-8 loss times 2; CachedContrastive (mini-batch 2)
    routes the cached embedding gradients of the global loss back to every rank. Step 1's loss / 2 is
    also real PyLate's (torch, one process) on that batch of 8, from the same starting weights."""
    runs = {name: {**BASE, "loss": name} for name in ("contrastive", "cached")}
    one = train_child(1, tmp_path / "one", tiny_bert_dir, {k: {**v, "batch": 8, "scale": 2} for k, v in runs.items()})
    start = tmp_path / "start"
    runs["contrastive"]["save_initial"] = str(start)
    two = train_child(2, tmp_path / "two", tiny_bert_dir, {k: {**v, "batch": 4} for k, v in runs.items()})
    for name in runs:
        compare(one[name], two[name], f"PyLate {name} gathered")
    # real PyLate on torch, one process, the first global batch of 8 from the same starting weights
    reference = pylate_first_batch_loss(start)
    if reference is not None:
        for name in runs:
            assert two[name][0]["losses"][0] / 2 == pytest.approx(reference, rel=1e-5)
        print(f"PyLate torch batch-8 loss {reference:.7f}; 2 ranks / 2: {two['contrastive'][0]['losses'][0] / 2:.7f}")


def pylate_first_batch_loss(folder):
    """PyLate 1.6's Contrastive on its own ColBERT (torch), batch = the first 8 rows the sampler gives."""
    try:
        from pylate import losses, models, utils
    except ImportError:
        return None
    from distributed_helpers import _dataset

    from mlx_hf_bridge.engine.sampling import DefaultBatchSampler

    rows = _dataset(24, True)
    first = next(iter(DefaultBatchSampler(rows, 8, False, seed=1)))  # seed=1: the runs' seed
    model = models.ColBERT(str(folder), device="cpu")
    model.train()
    batch = utils.ColBERTCollator(model.tokenize)([rows[i] for i in first])
    features = [{k[len(c) + 1:]: v for k, v in batch.items() if k.startswith(c + "_")} for c in ("query", "positive",
                                                                                                 "negative")]
    return float(losses.Contrastive(model)(features, None).detach())


@pytest.mark.slow  # ~40 s, the non-default path; the gathered runs (real launcher included) stay in CI
def test_without_gathering_each_rank_uses_its_own_negatives(tmp_path, tiny_bert_dir):
    """gather_across_devices=False: DDP's loss is the mean of each rank's in-batch loss over its own rows;
    the reference computes exactly that on one process (batch 8 split in two halves, losses averaged)."""
    runs = {name: {**BASE, "loss": name, "gather": False} for name in ("mnrl", "contrastive")}
    one = {k: {**v, "batch": 8, "per_rank_parts": 2} for k, v in runs.items()}
    two = {k: {**v, "batch": 4} for k, v in runs.items()}
    # with accumulation: each rank accumulates its own micro-batches of 2; micro-batch i of the step is
    # sampler batches 2i and 2i+1, i.e. the one-process micro-batch i of 4 split in two
    one["mnrl_ga2"] = {**runs["mnrl"], "batch": 4, "ga": 2, "per_rank_parts": 2}
    two["mnrl_ga2"] = {**runs["mnrl"], "batch": 2, "ga": 2}
    runs["mnrl_ga2"] = {}
    one = train_child(1, tmp_path / "one", tiny_bert_dir, one)
    two = train_child(2, tmp_path / "two", tiny_bert_dir, two)
    for name in runs:
        compare(one[name], two[name], f"{name} per-rank negatives")

"""The transformers Trainer under data parallel (2 ring ranks on 127.0.0.1, CPU) against one process and
against transformers on torch DDP (gloo, 2 CPU processes): tiny BERT (2 heads) sequence classification,
10 AdamW steps (warmup 2, linear decay, clipping 1.0), evaluation at steps 5 and 10, evaluate / predict
on 10 rows with per-device batch 4, save_model; the script is tests/distributed_transformers_helpers.py.

transformers' quirk, reproduced: with ``average_tokens_across_devices=True`` (its default) compute_loss
multiplies the loss by the number of processes whenever ``num_items_in_batch`` is given, which it is for
every head taking ``**kwargs``, also BERT's that ignore it. On 2 ranks the logged loss, the gradient and
the eval_loss are therefore 2 x one process's; the one-process reference multiplies its compute_loss by 2
(with ``False`` the 2-rank run equals the plain one-process run). Evaluation is sharded and gathered
as accelerate does (trainer_eval_dp.py): predictions and metrics equal one process's; eval_loss gives
the last batch's rows the mean of their padded batch (8, 9 + wrap-around rows 0, 1), as transformers.

Weights are compared with adam_epsilon=1e-3: with 1e-8 the first update is lr * sign(grad), which turns
1e-7 rounding differences in near-zero gradients (the attention key biases') into lr-sized weight
differences; the losses agree either way (the torch comparison runs with the default 1e-8).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import tiny_bert_config

pytest.importorskip("datasets")
T = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")
import distributed_helpers as DH  # noqa: E402
import distributed_transformers_helpers as H  # noqa: E402

SCRIPT = str(Path(H.__file__).resolve())


def _tiny(tmp_path_factory, minilm_dir, auto, name):
    path = tmp_path_factory.mktemp(name)
    torch.manual_seed(0)
    auto.from_config(tiny_bert_config(num_attention_heads=2, num_labels=3)).save_pretrained(path)
    T.AutoTokenizer.from_pretrained(str(minilm_dir)).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, minilm_dir):
    return _tiny(tmp_path_factory, minilm_dir, T.AutoModelForSequenceClassification, "tiny-bert-seq")


@pytest.fixture(scope="module")
def token_model_dir(tmp_path_factory, minilm_dir):
    return _tiny(tmp_path_factory, minilm_dir, T.AutoModelForTokenClassification, "tiny-bert-tok")


def bridge(n: int, out: Path, model_dir, launcher="self", **options) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    options.setdefault("output_dir", str(out / "run"))
    argv = [SCRIPT, "mlx", str(out), str(model_dir), json.dumps(options)]
    if n == 1:  # in this process: the same script, without a second start-up
        H.run_mlx(str(out), str(model_dir), options)
    elif launcher == "mlx.launch":
        assert DH.mlx_launch(argv, n=n, timeout=300) is not None, "mlx.launch not found"
    else:
        DH.run(argv, n=n, timeout=300, workdir=out)
    return H.load(out)


def torch_ddp(n: int, out: Path, model_dir, **options) -> list[dict]:
    """transformers on torch DDP over gloo, started as torchrun does (RANK / WORLD_SIZE / MASTER_*)."""
    out.mkdir(parents=True, exist_ok=True)
    options.setdefault("output_dir", str(out / "run"))
    port, procs = DH.free_ports(1)[0], []
    for rank in range(n):
        env = DH._env({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(n),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
        procs.append(subprocess.Popen([sys.executable, SCRIPT, "torch", str(out), str(model_dir), json.dumps(options)],
                                      stdout=open(out / f"rank{rank}.log", "w"), stderr=subprocess.STDOUT, env=env))
    codes, logs = DH.wait(procs, 300, out)
    assert codes == [0] * n, f"torch ranks exited with {codes}:\n{logs[0][-3000:]}"
    return H.load(out)


def rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-12)))


def of_scale(a, b) -> float:
    return float(np.abs(np.asarray(a) - b).max() / np.abs(b).max())


def weights_rel(a: dict, b: dict) -> float:
    assert a.keys() == b.keys() and len(a) > 20
    worst = 0.0
    for k, v in a.items():
        scale, diff = float(np.abs(b[k]).max()), float(np.abs(v - b[k]).max())
        if scale <= 1e-9:  # attention key biases: rounding noise only (their exact gradient is 0)
            assert diff <= 1e-9, k
            continue
        worst = max(worst, diff / scale)
    return worst


def ranks_agree(two: list[dict]):
    """Identical logs, metrics, predictions and weights on both ranks (the all_sum is the same everywhere)."""
    assert [r["rank"] for r in two] == [0, 1]
    for key in ("losses", "grad_norms", "train_evals", "metrics", "predict_metrics"):
        assert two[0][key] == two[1][key], key
    np.testing.assert_array_equal(two[0]["predictions"], two[1]["predictions"])
    for k, v in two[0]["weights"].items():
        np.testing.assert_array_equal(v, two[1]["weights"][k])


def padded_eval_loss(logits, labels, scale, batch=4, world=2) -> float:
    """transformers' gathered eval_loss: each batch's mean cross-entropy (x scale) repeated per row, the
    last round's batches completed with rows from the start, the gathered rows cut to the set's size."""
    z = logits - logits.max(-1, keepdims=True)
    row_loss = np.log(np.exp(z).sum(-1)) - z[np.arange(len(labels)), labels]
    n = len(labels)
    order = list(range(n)) + (list(range(batch * world)) if world > 1 else [])  # wrap-around: the first rows
    kept = []
    for start in range(0, n, batch):
        rows = order[start : start + batch]
        kept += [scale * row_loss[rows].mean()] * batch
    return float(np.mean(kept[:n]))


def test_two_ranks_of_4_equal_one_process_of_8(tmp_path, model_dir):
    """2 ranks x per-device 4 = 1 process x batch 8 (its loss x 2, see the module docstring): the 10 logged
    losses and grad norms, the final weights, the evaluations; rank 0 alone printed logs and wrote the
    output folder, which transformers (torch) loads with the one-process run's logits."""
    one = bridge(1, tmp_path / "one", model_dir, batch=8, scale=2, eps=1e-3)
    two = bridge(2, tmp_path / "two", model_dir, batch=4, eps=1e-3)
    ranks_agree(two)
    (ref,) = one
    assert len(ref["losses"]) == len(two[0]["losses"]) == 10
    loss_rel, norm_rel = rel(two[0]["losses"], ref["losses"]), rel(two[0]["grad_norms"], ref["grad_norms"])
    w_rel = weights_rel(two[0]["weights"], ref["weights"])
    assert loss_rel <= 1e-5 and norm_rel <= 1e-5 and w_rel <= 1e-5, (loss_rel, norm_rel, w_rel)

    # evaluation: sharded + gathered predictions = one process's, in its order; metrics equal
    preds_rel = of_scale(two[0]["predictions"], ref["predictions"])
    assert two[0]["predictions"].shape == ref["predictions"].shape == (H.EVAL_ROWS, 3) and preds_rel <= 1e-4
    np.testing.assert_array_equal(two[0]["label_ids"], ref["label_ids"])
    pairs = ((two[0]["metrics"], ref["metrics"]), (two[0]["predict_metrics"], ref["predict_metrics"]))
    for metrics, ref_metrics in pairs:
        assert {k for k in metrics} == {k for k in ref_metrics}
        prefix = next(iter(metrics)).split("_")[0]
        assert metrics[f"{prefix}_accuracy"] == ref_metrics[f"{prefix}_accuracy"]
        # one process: plain batch means; 2 ranks: the last batch's rows carry their padded batch's mean
        assert abs(ref_metrics[f"{prefix}_loss"] - padded_eval_loss(ref["predictions"], ref["label_ids"], 2, world=1)) \
            <= 1e-5 * ref_metrics[f"{prefix}_loss"]
        expected = padded_eval_loss(two[0]["predictions"], two[0]["label_ids"], 2)
        assert abs(metrics[f"{prefix}_loss"] - expected) <= 1e-5 * expected, (metrics, expected)
    assert [e["step"] for e in two[0]["train_evals"]] == [5, 10, 10]  # eval_steps 5, then evaluate()
    assert [e["eval_accuracy"] for e in two[0]["train_evals"]] == [e["eval_accuracy"] for e in ref["train_evals"]]

    # the arguments and the Trainer as transformers under DDP (local = world ranks on one host)
    for r in two:
        me = r["rank"]
        assert (r["world_size"], r["process_index"], r["local_process_index"], r["parallel_mode"]) == \
            (2, me, me, "distributed")
        assert r["should_log"] == r["should_save"] == r["is_world_process_zero"] == r["is_local_process_zero"] \
            == (me == 0)
    assert (ref["world_size"], ref["parallel_mode"], ref["should_save"]) == (1, "not_parallel", True)

    # rank 0 alone printed the logs and wrote: its output_dir has the checkpoint and the model; rank 1's is absent
    logs = [(tmp_path / "two" / f"rank{r}.log").read_text() for r in range(2)]
    assert "'loss':" in logs[0] and "'loss':" not in logs[1] and "'eval_loss':" not in logs[1]
    out0 = tmp_path / "two" / "run"
    assert (out0 / "checkpoint-10" / "trainer_state.json").is_file() and (out0 / "model.safetensors").is_file()
    assert not (tmp_path / "two" / "run-rank1").exists()
    hf = T.AutoModelForSequenceClassification.from_pretrained(str(out0)).eval()
    tok = T.AutoTokenizer.from_pretrained(str(out0))
    rows = H.make_rows(tok, H.EVAL_ROWS, 2)
    batch = tok.pad([{k: v for k, v in r.items() if k != "label"} for r in rows], return_tensors="pt")
    with torch.no_grad():
        logits = hf(**batch).logits.numpy()
    torch_vs_one = float(np.abs(logits - ref["predictions"]).max())
    torch_vs_own = float(np.abs(logits - two[0]["predictions"]).max())
    assert torch_vs_own <= 1e-5 and torch_vs_one <= 1e-4, (torch_vs_own, torch_vs_one)
    print(f"2x4 vs 1x8: losses {loss_rel:.1e}, grad norms {norm_rel:.1e}, weights {w_rel:.1e} of scale, "
          f"predictions {preds_rel:.1e} of scale; saved model in torch vs 1 process {torch_vs_one:.1e}, vs own "
          f"{torch_vs_own:.1e}")


@pytest.mark.slow
def test_without_average_tokens_two_ranks_equal_plain_one_process(tmp_path, model_dir):
    """average_tokens_across_devices=False: no loss x world size, so 2 x 4 is the unscaled batch-8 run.
    Started by the real ``mlx.launch -n 2 --backend ring`` (the unmodified script)."""
    one = bridge(1, tmp_path / "one", model_dir, batch=8, eps=1e-3)
    two = bridge(2, tmp_path / "two", model_dir, launcher="mlx.launch", batch=4, eps=1e-3, average_tokens=False)
    ranks_agree(two)
    (ref,) = one
    assert rel(two[0]["losses"], ref["losses"]) <= 1e-5 and rel(two[0]["grad_norms"], ref["grad_norms"]) <= 1e-5
    assert weights_rel(two[0]["weights"], ref["weights"]) <= 1e-5
    assert of_scale(two[0]["predictions"], ref["predictions"]) <= 1e-4
    assert two[0]["metrics"]["eval_accuracy"] == ref["metrics"]["eval_accuracy"]
    expected = padded_eval_loss(two[0]["predictions"], two[0]["label_ids"], 1)
    assert abs(two[0]["metrics"]["eval_loss"] - expected) <= 1e-5 * expected


@pytest.mark.slow
@pytest.mark.parametrize("task,ga", [("seq", 1), ("tok", 2)])
def test_two_ranks_equal_transformers_on_torch_ddp(task, ga, tmp_path, model_dir, token_model_dir):
    """Real transformers Trainer on 2 torch DDP processes (gloo) vs the bridge on 2 ring ranks, same weights,
    rows and arguments (adam_epsilon 1e-8): losses (x 2 in both), grad norms, eval metrics (eval_loss with
    the padded last batch), predictions and the arguments' data-parallel properties. Token classification
    with gradient accumulation 2: num_items_in_batch summed over the ranks' windows, the token axis of
    the gathered predictions and inputs padded across the ranks (-100), include_for_metrics' losses."""
    start = token_model_dir if task == "tok" else model_dir
    extra = {"args": {"include_for_metrics": ["inputs", "loss"]}} if task == "tok" else {}
    ours = bridge(2, tmp_path / "ours", start, batch=4, task=task, ga=ga, **extra)
    theirs = torch_ddp(2, tmp_path / "theirs", start, batch=4, task=task, ga=ga, **extra)
    ranks_agree(ours)
    for mine, hf in zip(ours, theirs):
        for key in ("world_size", "process_index", "local_process_index", "parallel_mode", "should_log",
                    "should_save", "is_world_process_zero", "is_local_process_zero"):
            assert mine[key] == hf[key], (key, mine[key], hf[key])
    o, t = ours[0], theirs[0]
    assert len(o["losses"]) == len(t["losses"]) == 10
    assert rel(o["losses"], t["losses"]) <= 1e-4 and rel(o["grad_norms"], t["grad_norms"]) <= 1e-4
    assert o["predictions"].shape == t["predictions"].shape
    padded = t["predictions"] == -100  # token tasks: positions past a rank's batch length, -100 in both
    np.testing.assert_array_equal(o["predictions"] == -100, padded)
    assert of_scale(o["predictions"][~padded], t["predictions"][~padded]) <= 1e-4
    np.testing.assert_array_equal(o["label_ids"], t["label_ids"])
    for key, prefix in (("metrics", "eval"), ("predict_metrics", "test")):
        assert o[key].keys() == t[key].keys()
        assert task != "tok" or {f"{prefix}_inputs_sum", f"{prefix}_losses_mean"} <= o[key].keys()
        for name, value in t[key].items():
            assert abs(o[key][name] - value) <= 1e-4 * max(abs(value), 1e-6), (name, o[key][name], value)
    assert [e["step"] for e in o["train_evals"]] == [e["step"] for e in t["train_evals"]] == [5, 10, 10]
    preds = of_scale(o["predictions"][~padded], t["predictions"][~padded])
    print(f"bridge vs torch DDP ({task}, ga {ga}): losses {rel(o['losses'], t['losses']):.1e}, grad norms "
          f"{rel(o['grad_norms'], t['grad_norms']):.1e}, predictions {preds:.1e} of scale, eval_loss "
          f"{o['metrics']['eval_loss']:.6f} vs {t['metrics']['eval_loss']:.6f}")


def test_local_process_index_from_the_launch(monkeypatch, tmp_path):
    """Ring hostfile: the earlier ranks on the same IP (torchrun's LOCAL_RANK for the same layout); MPI's
    local rank when set; JACCL: one rank per Mac."""
    from mlx_hf_bridge.transformers.training_args import local_rank

    for name in ("OMPI_COMM_WORLD_LOCAL_RANK", "MV2_COMM_WORLD_LOCAL_RANK", "LOCAL_RANK", "MLX_IBV_DEVICES",
                 "MLX_JACCL_COORDINATOR"):
        monkeypatch.delenv(name, raising=False)
    hosts = tmp_path / "hosts.json"
    hosts.write_text(json.dumps([["10.0.0.1:5000"], ["10.0.0.1:5001"], ["10.0.0.2:5002", "10.0.1.2:5003"],
                                 ["10.0.0.2:5004"], ["10.0.0.1:5005"]]))
    monkeypatch.setenv("MLX_HOSTFILE", str(hosts))
    assert [local_rank(r) for r in range(5)] == [0, 1, 0, 1, 2]
    monkeypatch.setenv("MLX_IBV_DEVICES", str(tmp_path / "devices.json"))
    assert local_rank(3) == 0
    monkeypatch.setenv("OMPI_COMM_WORLD_LOCAL_RANK", "2")
    assert local_rank(7) == 2


@pytest.mark.slow
def test_save_on_each_node_on_two_hosts_is_refused(tmp_path, model_dir):
    """Two 'hosts' (127.0.0.1 and 127.0.0.2, both loopback) with save_on_each_node=True: both ranks stop
    before training with the same error (the engine writes checkpoints on rank 0 only)."""
    ports = DH.free_ports(2)
    hostfile = tmp_path / "hosts.json"
    hostfile.write_text(json.dumps([[f"127.0.0.1:{ports[0]}"], [f"127.0.0.2:{ports[1]}"]]))
    options = {"batch": 4, "steps": 2, "output_dir": str(tmp_path / "run"), "args": {"save_on_each_node": True}}
    procs = [subprocess.Popen([sys.executable, SCRIPT, "mlx", str(tmp_path), str(model_dir), json.dumps(options)],
                              stdout=open(tmp_path / f"rank{r}.log", "w"), stderr=subprocess.STDOUT,
                              env=DH._env({"MLX_RANK": str(r), "MLX_HOSTFILE": str(hostfile)})) for r in range(2)]
    codes, logs = DH.wait(procs, 300, tmp_path)
    assert codes[0] != 0 and codes[1] != 0, codes
    for log in logs:
        assert "save_on_each_node=True with 2 hosts is not supported" in log, log[-2000:]
    assert not (tmp_path / "run" / "checkpoint-2").exists()

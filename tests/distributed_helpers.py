"""Launch 2-rank ring-backend runs on 127.0.0.1 for the data-parallel tests, and the training script they run.

``launch(...)`` starts the ranks itself (what ``mlx.launch -n N --backend ring`` does: a JSON hostfile
of ``127.0.0.1:port`` per rank, ``MLX_RANK`` / ``MLX_HOSTFILE`` in each environment), so a test can kill
or stop one rank and read each rank's output; ``mlx_launch(...)`` goes through the real ``mlx.launch``.
``python tests/distributed_helpers.py train OUT MODEL_DIR '{json options}'`` trains one tiny model with
the engine (an unmodified ST / PyLate-style script) and writes, per rank, the logged losses and final
weights to ``OUT/rank{r}.json`` / ``.npz``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port_run(n: int) -> int:
    """The first of ``n`` consecutive free ports: ``mlx.launch --starting-port`` gives rank r port p + r, and
    its fixed default would collide when two suites (``./run tests`` runs both venvs at once) launch together."""
    for _ in range(50):
        first = free_ports(1)[0]
        socks = [socket.socket() for _ in range(n)]
        try:
            for i, s in enumerate(socks):
                s.bind(("127.0.0.1", first + i))
            return first
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no {n} consecutive free ports on 127.0.0.1")


def _env(extra=None) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    env.update(extra or {})
    return env


def start(argv: list[str], n: int = 2, env=None, workdir=None) -> list[subprocess.Popen]:
    """Start ``n`` ranks of ``python argv...`` on the ring backend; returns the processes (rank order)."""
    workdir = Path(workdir or os.getcwd())
    hostfile = workdir / "hosts.json"
    hostfile.write_text(json.dumps([[f"127.0.0.1:{p}"] for p in free_ports(n)]))
    procs = []
    for rank in range(n):
        log = open(workdir / f"rank{rank}.log", "w")
        procs.append(subprocess.Popen(
            [sys.executable, *argv], stdout=log, stderr=subprocess.STDOUT,
            env=_env({"MLX_RANK": str(rank), "MLX_HOSTFILE": str(hostfile), **(env or {})})))
    return procs


def wait(procs, timeout: float, workdir) -> tuple[list[int | None], list[str]]:
    """Return codes (None: still running at the timeout, then killed) and each rank's log."""
    end = time.monotonic() + timeout
    codes = []
    for p in procs:
        try:
            codes.append(p.wait(timeout=max(end - time.monotonic(), 0.1)))
        except subprocess.TimeoutExpired:
            codes.append(None)
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    logs = [(Path(workdir) / f"rank{r}.log").read_text() for r in range(len(procs))]
    return codes, logs


def run(argv, n=2, timeout=120, env=None, workdir=None):
    workdir = Path(workdir or os.getcwd())
    codes, logs = wait(start(argv, n, env, workdir), timeout, workdir)
    if any(c != 0 for c in codes):
        tails = "\n".join(f"--- rank {r}\n{t[-3000:]}" for r, t in enumerate(logs))
        raise AssertionError(f"ranks exited with {codes}:\n{tails}")
    return logs


def mlx_launch(argv, n=2, timeout=120):
    launcher = Path(sys.executable).with_name("mlx.launch")
    launcher = str(launcher) if launcher.exists() else shutil.which("mlx.launch")
    if launcher is None:
        return None
    proc = subprocess.run([launcher, "-n", str(n), "--backend", "ring", "--starting-port", str(free_port_run(n)),
                           "--python", sys.executable, *argv],
                          capture_output=True, text=True, timeout=timeout, env=_env())
    if proc.returncode != 0:
        raise AssertionError(proc.stdout[-3000:] + proc.stderr[-3000:])
    return proc


def train_child(n: int, out: Path, model_dir, runs: dict, timeout=300, launcher="self") -> dict:
    """The training runs ``runs`` (name -> options of :func:`_train`), one after the other in one process
    per rank, on ``n`` ranks (n=1: a plain process). Returns name -> [each rank's result]."""
    out.mkdir(parents=True, exist_ok=True)
    args = [str(HERE), "train", str(out), str(model_dir), json.dumps(runs)]
    if n == 1:
        proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=_env())
        if proc.returncode != 0:
            raise AssertionError(proc.stdout[-3000:] + proc.stderr[-3000:])
    elif launcher == "mlx.launch":
        mlx_launch(args, n=n, timeout=timeout)
    else:
        run(args, n=n, workdir=out, timeout=timeout)
    return {name: load(out / name) for name in runs}


def load(out: Path) -> list[dict]:
    import numpy as np

    results = []
    for path in sorted(out.glob("rank*.json")):
        r = json.loads(path.read_text())
        with np.load(path.with_suffix(".npz")) as z:
            r["weights"] = {k: z[k] for k in z.files}
        results.append(r)
    return results


# --- the child: an ordinary training script ------------------------------------------------------
TEXTS = [f"w{i % 7} w{(3 * i) % 11} topic {i}" for i in range(64)]


def _dataset(n: int, negatives: bool):
    from datasets import Dataset

    rows = {"query": [f"what about {t}?" for t in TEXTS[:n]], "positive": [f"{t} is described here" for t in TEXTS[:n]]}
    if negatives:
        rows["negative"] = [f"unrelated {TEXTS[(i + 17) % 64]} text" for i in range(n)]
    return Dataset.from_dict(rows)


class _Scaled:
    """``factor`` x a loss (the one-process reference of PyLate's ``loss *= world_size`` under gathering)."""

    def __init__(self, loss, factor):
        self.loss, self.factor, self.model = loss, factor, loss.model

    def __call__(self, features, labels=None):
        return self.loss(features, labels) * self.factor

    def __getattr__(self, name):
        if name == "value_and_grad":
            inner = self.loss.value_and_grad

            def scaled(features, labels=None):
                from mlx.utils import tree_map

                loss, grads = inner(features, labels)
                return loss * self.factor, tree_map(lambda g: g * self.factor, grads)

            return scaled
        return getattr(self.loss, name)


class _PerRank:
    """The mean of ``loss`` over ``parts`` equal row blocks of the batch: what DDP without gathering
    computes for a global batch split over ``parts`` ranks (each rank's in-batch negatives, averaged)."""

    def __init__(self, loss, parts):
        self.loss, self.parts, self.model = loss, parts, loss.model

    def __call__(self, features, labels=None):
        rows = next(v for v in features[0].values() if hasattr(v, "shape")).shape[0]
        n = rows // self.parts
        blocks = [[{k: v[p * n:(p + 1) * n] for k, v in f.items()} for f in features] for p in range(self.parts)]
        return sum(self.loss(b, labels) for b in blocks) / self.parts

    def __getattr__(self, name):
        if name == "value_and_grad":
            raise AttributeError(name)
        return getattr(self.loss, name)


def _train(out: str, model_dir: str, runs: dict, one=None):
    for name, options in runs.items():
        Path(out, name).mkdir(parents=True, exist_ok=True)
        (one or _train_one)(str(Path(out, name)), options.get("model", model_dir), options)


def torch_ddp(n: int, out: Path, model_dir, runs: dict, timeout=300) -> dict:
    """The same runs with real sentence-transformers / PyLate on torch DDP (gloo, CPU), ``n`` processes
    started as torchrun does (RANK / LOCAL_RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT)."""
    out.mkdir(parents=True, exist_ok=True)
    port = free_ports(1)[0]
    procs = []
    for rank in range(n):
        log = open(out / f"rank{rank}.log", "w")
        env = _env({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(n), "MASTER_ADDR": "127.0.0.1",
                    "MASTER_PORT": str(port)})
        procs.append(subprocess.Popen([sys.executable, str(HERE), "torch_train", str(out), str(model_dir),
                                       json.dumps(runs)], stdout=log, stderr=subprocess.STDOUT, env=env))
    codes, logs = wait(procs, timeout, out)
    if any(c != 0 for c in codes):
        raise AssertionError(f"torch ranks exited with {codes}:\n" + logs[0][-3000:])
    return {name: [json.loads((out / name / f"rank{r}.json").read_text()) for r in range(n)] for name in runs}


def _torch_train_one(out: str, model_dir: str, options: dict):
    """What :func:`_train_one` runs, with the torch libraries (losses only: the weights' names differ)."""
    import torch
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    kind, collator = options["loss"], None
    if kind == "mnrl":
        from sentence_transformers import SentenceTransformer, losses

        model = SentenceTransformer(model_dir, device="cpu")
        loss = losses.MultipleNegativesRankingLoss(model, gather_across_devices=options.get("gather", True))
    else:
        from pylate import losses, models, utils

        model = models.ColBERT(model_dir, device="cpu", query_length=8, document_length=12)
        gather = options.get("gather", True)
        loss = (losses.Contrastive(model, gather_across_devices=gather) if kind == "contrastive" else
                losses.CachedContrastive(model, mini_batch_size=2, gather_across_devices=gather))
        collator = utils.ColBERTCollator(model.tokenize)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(Path(out) / "run"), per_device_train_batch_size=options["batch"],
        max_steps=options.get("steps", 3), learning_rate=options.get("lr", 2e-3), logging_steps=1, seed=1,
        save_strategy="no", disable_tqdm=True, report_to="none", lr_scheduler_type="constant",
        adam_epsilon=options.get("eps", 1e-8), use_cpu=True, ddp_backend="gloo")
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=_dataset(options.get("n", 24), True),
                                         loss=loss, data_collator=collator)
    trainer.train()
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    result = {"rank": rank, "world": args.world_size, "losses": [h["loss"] for h in trainer.state.log_history
                                                                if "loss" in h]}
    Path(out, f"rank{rank}.json").write_text(json.dumps(result))


def _train_one(out: str, model_dir: str, options: dict):
    import mlx.core as mx
    import numpy as np
    from mlx.utils import tree_flatten

    import mlx_hf_bridge  # noqa: F401
    from mlx_hf_bridge.sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    kind, gather = options["loss"], options.get("gather", True)
    mx.random.seed(0)  # ColBERT's projection layer is initialised at random: the same start in every run
    collator = None
    if kind == "mnrl":
        from mlx_hf_bridge.sentence_transformers import SentenceTransformer, losses

        model = SentenceTransformer(model_dir)
        loss = losses.MultipleNegativesRankingLoss(model, gather_across_devices=gather)
    elif kind == "st6-mv":  # an ST 6 MultiVectorEncoder folder, the ST 6 trainer's multi-vector path
        from mlx_hf_bridge.sentence_transformers import MultiVectorEncoder
        from mlx_hf_bridge.sentence_transformers.multi_vector_encoder import losses

        model = MultiVectorEncoder(model_dir)
        loss = losses.MultiVectorMultipleNegativesRankingLoss(model, gather_across_devices=gather)
    else:
        from mlx_hf_bridge.pylate import losses, models, utils

        model = models.ColBERT(model_dir, query_length=8, document_length=12)
        loss = (losses.Contrastive(model, gather_across_devices=gather) if kind == "contrastive" else
                losses.CachedContrastive(model, mini_batch_size=2, gather_across_devices=gather))
        collator = utils.ColBERTCollator(model.tokenize)
    if options.get("save_initial") and mx.distributed.init().rank() == 0:
        model.save(options["save_initial"])  # the starting weights, for a reference run on torch
    if options.get("scale", 1) != 1:
        loss = _Scaled(loss, options["scale"])
    if options.get("per_rank_parts"):
        loss = _PerRank(loss, options["per_rank_parts"])
    args = SentenceTransformerTrainingArguments(
        output_dir=options.get("output_dir", str(Path(out) / "run")), per_device_train_batch_size=options["batch"],
        max_steps=options.get("steps", 3), learning_rate=options.get("lr", 2e-3), logging_steps=1, seed=1,
        save_strategy="steps" if options.get("save_steps") else "no", save_steps=options.get("save_steps") or 500,
        disable_tqdm=True, report_to="none", lr_scheduler_type="constant", max_grad_norm=options.get("clip", 1.0),
        ddp_timeout=options.get("ddp_timeout", 1800), adam_epsilon=options.get("eps", 1e-8),
        eval_strategy="steps" if options.get("eval") else "no", eval_steps=options.get("steps", 3),
        gradient_accumulation_steps=options.get("ga", 1), torch_compile=options.get("compile", False))
    evaluation = _dataset(40, True).select(range(24, 36)) if options.get("eval") else None  # rows not trained on
    rows = options.get("n", 24) if mx.distributed.init().rank() == 0 else options.get("n_rank1", options.get("n", 24))
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=_dataset(rows, True),
                                         eval_dataset=evaluation, loss=loss, data_collator=collator)
    if options.get("kill_rank") is not None:
        _kill_at(trainer, options["kill_rank"], options["kill_step"], options.get("how", "kill"))
    trainer.train(resume_from_checkpoint=options.get("resume"))
    world = mx.distributed.init()
    rank = world.rank() if world.size() > 1 else 0
    logs = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    if options.get("save_final"):
        trainer.save_model(options["save_final"])
    result = {"rank": rank, "world": world.size(), "losses": logs, "global_step": trainer.state.global_step,
              "bytes_per_step": getattr(trainer.runner.reducer, "bytes_per_step", 0),
              "eval_losses": [h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h],
              "world_process_zero": [trainer.is_world_process_zero(), trainer.state.is_world_process_zero]}
    Path(out, f"rank{rank}.json").write_text(json.dumps(result))
    np.savez(Path(out, f"rank{rank}.npz"), **{k: np.array(v) for k, v in tree_flatten(model.parameters())})


def _kill_at(trainer, rank: int, step: int, how: str):
    """Rank ``rank`` dies (SIGKILL) or hangs (SIGSTOP) at the start of step ``step``."""
    import signal

    import mlx.core as mx

    from mlx_hf_bridge.engine import TrainerCallback

    class Die(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if mx.distributed.init().rank() == rank and state.global_step + 1 == step:
                os.kill(os.getpid(), signal.SIGKILL if how == "kill" else signal.SIGSTOP)

    trainer.add_callback(Die())


if __name__ == "__main__":
    if sys.argv[1] == "train":
        _train(sys.argv[2], sys.argv[3], json.loads(sys.argv[4]))
    elif sys.argv[1] == "torch_train":
        _train(sys.argv[2], sys.argv[3], json.loads(sys.argv[4]), one=_torch_train_one)

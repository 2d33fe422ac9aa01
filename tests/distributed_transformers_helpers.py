"""The training script of tests/test_distributed_transformers.py: a transformers-style sequence-classification
run (Trainer + TrainingArguments, evaluation during training, evaluate / predict / save_model), once with
the bridge (``mlx``) and once with transformers on torch (``torch``, DDP over gloo when started as torchrun
starts it). Each rank writes ``OUT/rank{r}.json`` (logs, metrics, the arguments' data-parallel properties)
and ``.npz`` (final weights, predictions).

``python tests/distributed_transformers_helpers.py mlx|torch OUT MODEL_DIR '{json options}'``
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

WORDS = "the a cat dog sat ran on under mat hat red blue green fast slow big small house tree river".split()
EVAL_ROWS = 10  # 2 ranks x per-device 4: the last round holds rows 8-9 and 6 wrap-around rows


def make_rows(tok, n: int, seed: int, task: str = "seq") -> list[dict]:
    """Sequence labels (3 classes), or token tags (3) on each word's first sub-token (-100 elsewhere)."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        words = [WORDS[i] for i in rng.integers(0, len(WORDS), int(rng.integers(3, 10)))]
        if task == "tok":
            enc = tok(words, is_split_into_words=True)
            tags, prev, labels = rng.integers(0, 3, len(words)), None, []
            for w in enc.word_ids():
                labels.append(-100 if w is None or w == prev else int(tags[w]))
                prev = w
            rows.append({**enc, "labels": labels})
            continue
        enc = dict(tok(" ".join(words)))
        enc["label"] = int(rng.integers(0, 3))
        rows.append(enc)
    return rows


def accuracy(pred):
    """Accuracy over the labelled positions (token tasks: -100 marks padding and unlabelled sub-tokens)."""
    labels, guess = np.asarray(pred.label_ids), np.argmax(pred.predictions, axis=-1)
    keep = labels != -100
    out = {"accuracy": float((guess[keep] == labels[keep]).mean())}
    if getattr(pred, "inputs", None) is not None:  # include_for_metrics: the gathered, -100-padded input_ids
        ids = np.asarray(pred.inputs)
        out.update(inputs_width=ids.shape[1], inputs_sum=float(np.where(ids == -100, 0, ids + 1).sum()))
    if getattr(pred, "losses", None) is not None:
        out.update(losses_rows=len(pred.losses), losses_mean=float(np.mean(pred.losses)))
    return out


def arguments(cls, output_dir: str, o: dict, **extra):
    return cls(output_dir=output_dir, per_device_train_batch_size=o["batch"], per_device_eval_batch_size=4,
               max_steps=o.get("steps", 10), learning_rate=1e-3, gradient_accumulation_steps=o.get("ga", 1),
               warmup_steps=2, weight_decay=0.01,
               logging_steps=1, eval_strategy="steps", eval_steps=5, save_strategy="steps", save_steps=10,
               report_to="none", disable_tqdm=True, seed=7, adam_epsilon=o.get("eps", 1e-8),
               average_tokens_across_devices=o.get("average_tokens", True), ddp_timeout=o.get("ddp_timeout", 1800),
               **o.get("args", {}), **extra)


def properties(args, trainer) -> dict:
    return {"world_size": args.world_size, "process_index": args.process_index,
            "local_process_index": args.local_process_index, "parallel_mode": args.parallel_mode.value,
            "should_log": args.should_log, "should_save": args.should_save,
            "is_world_process_zero": trainer.is_world_process_zero(),
            "is_local_process_zero": trainer.is_local_process_zero()}


def record(out: str, rank: int, trainer, props: dict, metrics: dict, pred, weights: dict):
    history = trainer.state.log_history
    timing = ("_runtime", "_per_second", "_time")
    steady = lambda m: {k: v for k, v in m.items() if not k.endswith(timing)}  # noqa: E731
    result = {"rank": rank, **props, "losses": [h["loss"] for h in history if "loss" in h],
              "grad_norms": [float(h["grad_norm"]) for h in history if "grad_norm" in h],
              "train_evals": [steady(h) for h in history if "eval_loss" in h],
              "metrics": steady(metrics), "predict_metrics": steady(pred.metrics)}
    Path(out, f"rank{rank}.json").write_text(json.dumps(result))
    np.savez(Path(out, f"rank{rank}.npz"), predictions=np.asarray(pred.predictions),
             label_ids=np.asarray(pred.label_ids), **{f"w.{k}": v for k, v in weights.items()})


def run_mlx(out: str, model_dir: str, o: dict):
    from mlx_hf_bridge import transformers as B  # first: mlx.core binds its BLAS when first imported
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from transformers import AutoTokenizer

    scale = o.get("scale", 1)

    class Scaled(B.Trainer):
        """One process standing in for transformers' ``loss *= num_processes`` on ``scale`` ranks."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            got = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            return (got[0] * scale, got[1]) if return_outputs else got * scale

    world = mx.distributed.init()
    rank = world.rank() if world.size() > 1 else 0
    tok, task = AutoTokenizer.from_pretrained(model_dir), o.get("task", "seq")
    auto = B.AutoModelForTokenClassification if task == "tok" else B.AutoModelForSequenceClassification
    model = auto.from_pretrained(model_dir)
    collator = B.DataCollatorForTokenClassification(tok) if task == "tok" else None
    # rank r > 0 is given its own output_dir: anything it wrote would show there (it must stay absent)
    output_dir = o["output_dir"] if rank == 0 else f"{o['output_dir']}-rank{rank}"
    args = arguments(B.TrainingArguments, output_dir, {"ddp_timeout": 120, **o})
    with args.main_process_first(desc="dataset map"):  # one barrier per rank: a wrong pairing would hang
        train_rows = make_rows(tok, 24, 1, task)
    cls = Scaled if scale != 1 else B.Trainer
    trainer = cls(model=model, args=args, train_dataset=train_rows,
                  eval_dataset=make_rows(tok, EVAL_ROWS, 2, task), data_collator=collator, processing_class=tok,
                  compute_metrics=accuracy)
    trainer.train()
    metrics = trainer.evaluate()
    pred = trainer.predict(make_rows(tok, EVAL_ROWS, 2, task))
    trainer.save_model()
    weights = {k: np.array(v) for k, v in tree_flatten(model.parameters())}
    record(out, rank, trainer, properties(args, trainer), metrics, pred, weights)


def run_torch(out: str, model_dir: str, o: dict):
    import torch
    import transformers as T

    tok, task = T.AutoTokenizer.from_pretrained(model_dir), o.get("task", "seq")
    auto = T.AutoModelForTokenClassification if task == "tok" else T.AutoModelForSequenceClassification
    model = auto.from_pretrained(model_dir)
    collator = T.DataCollatorForTokenClassification(tok) if task == "tok" else T.DataCollatorWithPadding(tok)
    args = arguments(T.TrainingArguments, o["output_dir"], o, use_cpu=True, ddp_backend="gloo")
    trainer = T.Trainer(model=model, args=args, train_dataset=make_rows(tok, 24, 1, task),
                        eval_dataset=make_rows(tok, EVAL_ROWS, 2, task), data_collator=collator, processing_class=tok,
                        compute_metrics=accuracy)
    trainer.train()
    metrics = trainer.evaluate()
    pred = trainer.predict(make_rows(tok, EVAL_ROWS, 2, task))
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    record(out, rank, trainer, properties(args, trainer), metrics, pred, {})


def load(out: Path) -> list[dict]:
    results = []
    for path in sorted(Path(out).glob("rank*.json")):
        r = json.loads(path.read_text())
        with np.load(path.with_suffix(".npz")) as z:
            r["predictions"], r["label_ids"] = z["predictions"], z["label_ids"]
            r["weights"] = {k[2:]: z[k] for k in z.files if k.startswith("w.")}
        results.append(r)
    return results


if __name__ == "__main__":
    kind, out, model_dir, options = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    Path(out).mkdir(parents=True, exist_ok=True)
    (run_mlx if kind == "mlx" else run_torch)(out, model_dir, options)

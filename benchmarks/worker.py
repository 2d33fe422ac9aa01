"""One side of the A/B benchmark, driven over stdin/stdout by ``bench.py``.

``python worker.py torch|mlx`` then JSON lines: {"cmd": "setup", ...}, {"cmd": "step", "i": k},
{"cmd": "encode", "texts": [...]}, {"cmd": "quit"}. Each reply is one JSON line on the original
stdout; everything else the libraries print goes to stderr. Each side runs in its own process:
with OpenBLAS preloaded RTLD_GLOBAL, torch in the same process as MLX slows down badly.
"""

from __future__ import annotations

import json
import os
import sys
import time

PROTOCOL = os.fdopen(os.dup(1), "w", buffering=1)
sys.stdout = sys.stderr
sys.path.insert(0, os.path.dirname(__file__))


def peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def real_tokens(batch) -> int:
    """Non-padding tokens in the batch (what both sides must process)."""
    import numpy as np

    return int(sum(int(np.asarray(v).sum()) for k, v in batch.items() if k.endswith("_attention_mask")))


class TorchSide:
    def __init__(self, cfg):
        import torch
        from pylate import losses, models, utils

        torch.set_num_threads(cfg["threads"])
        torch.manual_seed(cfg["seed"])
        self.torch = torch
        self.model = models.ColBERT(
            cfg["model"], device="cpu", query_length=cfg["query_length"], document_length=cfg["document_length"],
            do_query_expansion=cfg["do_query_expansion"],
        )
        self.model.train()
        self.loss = losses.CachedContrastive(self.model, mini_batch_size=cfg["mini_batch_size"])
        self.collator = utils.ColBERTCollator(self.model.tokenize)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg["lr"], weight_decay=0.0)

    def step(self, rows):
        batch = self.collator(rows)
        features = [
            {k[len(col) + 1 :]: v for k, v in batch.items() if k.startswith(col + "_")} for col in ("query", "pos", "neg")
        ]
        t0 = time.perf_counter()
        loss = self.loss(features, None)
        loss.backward()
        self.torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad()
        seconds = time.perf_counter() - t0
        return {"loss": float(loss.item()), "seconds": seconds, "tokens": real_tokens(batch)}

    def encode(self, texts, batch_size):
        t0 = time.perf_counter()
        self.model.encode(texts, is_query=False, batch_size=batch_size)
        return {"seconds": time.perf_counter() - t0}


class MLXSide:
    def __init__(self, cfg):
        # This process runs MLX only: keep transformers from importing torch (memory, start-up),
        # as for a user who installed the bridge without torch.
        sys.modules.setdefault("torch", None)
        import mlx_hf_bridge  # noqa: F401  (BLAS preload first)
        from mlx_hf_bridge import backend
        from mlx_hf_bridge.engine import AdamW
        from mlx_hf_bridge.engine.step import StepRunner
        from mlx_hf_bridge.pylate import losses, models, utils

        backend.seed_everything(cfg["seed"])
        self.model = models.ColBERT(
            cfg["model"], query_length=cfg["query_length"], document_length=cfg["document_length"],
            do_query_expansion=cfg["do_query_expansion"],
        )
        self.model.train()
        self.loss = losses.CachedContrastive(
            self.model, mini_batch_size=cfg["mini_batch_size"], padding_free=cfg["padding_free"]
        )
        self.collator = utils.ColBERTCollator(self.model.tokenize)
        # the trainer's own step: HF-semantics AdamW (weight decay 0 as on the torch side), clipping at 1.0
        optimizer = AdamW.for_model(self.model, cfg["lr"], weight_decay=0.0)
        self.runner = StepRunner(self.model, optimizer, max_grad_norm=1.0)

    def step(self, rows):
        batch = self.collator(rows)
        features = [
            {k[len(col) + 1 :]: v for k, v in batch.items() if k.startswith(col + "_")} for col in ("query", "pos", "neg")
        ]
        t0 = time.perf_counter()
        loss, _ = self.runner.step([(self.loss, features, None)], lr_factor=1.0)
        seconds = time.perf_counter() - t0
        return {"loss": float(loss), "seconds": seconds, "tokens": real_tokens(batch)}

    def encode(self, texts, batch_size):
        t0 = time.perf_counter()
        self.model.encode(texts, is_query=False, batch_size=batch_size)
        return {"seconds": time.perf_counter() - t0}


def main():
    side_name = sys.argv[1]
    side, rows, cfg = None, None, None
    for line in sys.stdin:
        msg = json.loads(line)
        try:
            if msg["cmd"] == "setup":
                cfg = msg
                from workload import make_rows

                # words come from the model folder's own tokenizer.json: the torch side must never import
                # mlx_hf_bridge, whose OpenBLAS preload (RTLD_GLOBAL) slows torch down in-process
                rows = make_rows(cfg["n_rows"], cfg["document_length"], cfg["query_length"], cfg["seed"], cfg["fixed"],
                                 tokenizer_dir=cfg["model"])
                from dense_sides import SIDES as DENSE_SIDES

                if side_name in DENSE_SIDES:
                    side = DENSE_SIDES[side_name](cfg)
                else:
                    side = (MLXSide if side_name == "mlx" else TorchSide)(cfg)  # "torch" or "torch-malloc"
                if not side_name.startswith("mlx") and "mlx_hf_bridge" in sys.modules:
                    raise RuntimeError("the torch worker imported mlx_hf_bridge: its BLAS preload would skew torch")
                reply = {"ok": True}
            elif msg["cmd"] == "step":
                b = cfg["batch_size"]
                reply = side.step(rows[msg["i"] * b : (msg["i"] + 1) * b])
            elif msg["cmd"] == "encode":
                texts = [r["pos"] for r in rows[: msg["n"]]]
                reply = side.encode(texts, msg["batch_size"])
            elif msg["cmd"] == "quit":
                break
            reply["peak_rss_mb"] = peak_rss_mb()
        except Exception as exc:  # report, don't hang the driver
            import traceback

            traceback.print_exc()
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        PROTOCOL.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
    main()

"""The dense sides of the A/B benchmark (``bench.py --sides st6-dense mlx-dense``): a
sentence-transformers bi-encoder (the plain-HF ModernBERT folder of ``workload.model_folder`` with ST's
default mean pooling) trained with ``CachedMultipleNegativesRankingLoss`` on (query, pos, neg) rows.

- ``st6-dense``: real sentence-transformers 6.2 on torch-CPU, fp32 (run by the ``.venv-st6`` interpreter);
- ``mlx-dense``: the bridge's ``SentenceTransformer`` + ``CachedMultipleNegativesRankingLoss`` through the
  trainer's own step (``StepRunner``), same AdamW settings and clipping.
"""

from __future__ import annotations

import shutil
import sys
import time


SIZE_KEYS = ("hidden_size", "num_attention_heads", "intermediate_size", "num_hidden_layers", "local_attention",
             "global_attn_every_n_layers", "max_position_embeddings", "pad_token_id", "cls_token_id", "sep_token_id",
             "bos_token_id", "eos_token_id")


def _hf_folder(cfg, create: bool = False) -> str:
    """A plain ModernBERT folder like ``workload.model_folder``'s (same sizes and seed), written by the ST 6
    venv's transformers: a ModernBERT config.json written by transformers 5.3 fails 5.24's strict
    ``rope_parameters`` validation, so the PyLate-side folder cannot be shared."""
    from pathlib import Path

    folder = Path(cfg["model"])
    out = folder.parent / f"dense-{folder.name}"
    if (out / "config.json").exists() or not create:
        if not (out / "config.json").exists():
            raise RuntimeError(f"{out} is missing: list the st6-dense side first (it writes the folder)")
        return str(out)
    import torch
    from transformers import AutoConfig, AutoModel

    hf = folder.parent / f"hf-{folder.name}"  # the transformers folder PyLate's was made from
    sizes = {k: cfg["model_config"][k] for k in SIZE_KEYS if k in cfg["model_config"]}
    config = AutoConfig.for_model("modernbert", **sizes, vocab_size=50368)
    torch.manual_seed(cfg["seed"])
    AutoModel.from_config(config).save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (hf / name).exists():  # copied: loading them through AutoTokenizer would read the 5.3 config
            shutil.copy(hf / name, out / name)
    return str(out)


def _features(batch, columns=("query", "pos", "neg")):
    return [{k[len(c) + 1:]: v for k, v in batch.items() if k.startswith(c + "_")} for c in columns]


def _tokens(features) -> int:
    import numpy as np

    return int(sum(int(np.asarray(f["attention_mask"]).sum()) for f in features))


class TorchDenseSide:
    def __init__(self, cfg):
        import torch
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.sentence_transformer.losses import CachedMultipleNegativesRankingLoss

        torch.set_num_threads(cfg["threads"])
        torch.manual_seed(cfg["seed"])
        self.torch = torch
        self.model = SentenceTransformer(_hf_folder(cfg, create=True), device="cpu")
        self.model.max_seq_length = cfg["document_length"]
        self.model.train()
        self.loss = CachedMultipleNegativesRankingLoss(self.model, mini_batch_size=cfg["mini_batch_size"])
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg["lr"], weight_decay=0.0)

    def step(self, rows):
        features = [self.model.tokenize([r[c] for r in rows]) for c in ("query", "pos", "neg")]
        t0 = time.perf_counter()
        loss = self.loss(features, None)
        loss.backward()
        self.torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad()
        return {"loss": float(loss.item()), "seconds": time.perf_counter() - t0, "tokens": _tokens(features)}

    def encode(self, texts, batch_size):
        t0 = time.perf_counter()
        self.model.encode(texts, batch_size=batch_size)
        return {"seconds": time.perf_counter() - t0}


class MLXDenseSide:
    def __init__(self, cfg):
        sys.modules.setdefault("torch", None)  # an MLX-only process, as for a user without torch
        import mlx_hf_bridge  # noqa: F401  (BLAS preload first)
        from mlx_hf_bridge import backend
        from mlx_hf_bridge.engine import AdamW
        from mlx_hf_bridge.engine.step import StepRunner
        from mlx_hf_bridge.sentence_transformers import SentenceTransformer
        from mlx_hf_bridge.sentence_transformers.losses import CachedMultipleNegativesRankingLoss

        backend.seed_everything(cfg["seed"])
        self.model = SentenceTransformer(_hf_folder(cfg))
        self.model.max_seq_length = cfg["document_length"]
        self.model.train()
        self.loss = CachedMultipleNegativesRankingLoss(self.model, mini_batch_size=cfg["mini_batch_size"])
        self.runner = StepRunner(self.model, AdamW.for_model(self.model, cfg["lr"], weight_decay=0.0), max_grad_norm=1.0)

    def step(self, rows):
        features = [self.model.tokenize([r[c] for r in rows]) for c in ("query", "pos", "neg")]
        t0 = time.perf_counter()
        loss, _ = self.runner.step([(self.loss, features, None)], lr_factor=1.0)
        return {"loss": float(loss), "seconds": time.perf_counter() - t0, "tokens": _tokens(features)}

    def encode(self, texts, batch_size):
        t0 = time.perf_counter()
        self.model.encode(texts, batch_size=batch_size)
        return {"seconds": time.perf_counter() - t0}


SIDES = {"st6-dense": TorchDenseSide, "mlx-dense": MLXDenseSide}

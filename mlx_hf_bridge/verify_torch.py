"""The torch side of ``mlx-hf-bridge verify``: the real library's outputs for a saved folder.

It always runs in a **separate Python process** that never imports ``mlx_hf_bridge`` (this file is
loaded there by path): the bridge preloads a BLAS with ``RTLD_GLOBAL`` that makes torch very slow in
the same process, and the MLX path must never import torch. It writes its outputs to an ``.npz``
that the MLX process compares (``verify.py``).

This module imports only the standard library and numpy at top level, and nothing from the bridge;
keep it that way (it is executed standalone in the torch process).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

COLBERT, SENTENCE_TRANSFORMERS, MULTI_VECTOR, HF = "colbert", "sentence-transformers", "multi-vector", "hf"
KINDS = (COLBERT, SENTENCE_TRANSFORMERS, MULTI_VECTOR, HF)
_TORCH_CACHE: dict = {}


def torch_side(kind: str, source: str, queries: list[str], documents: list[str]) -> dict[str, np.ndarray]:
    """Outputs of the real torch library for ``source`` (a folder or hub id) as numpy arrays."""
    import torch  # noqa: F401  (the torch side legitimately needs the torch library)

    texts = queries + documents
    out: dict[str, np.ndarray] = {}
    if kind == COLBERT:
        from pylate import models

        model = models.ColBERT(source, device="cpu")
        for flag, tag in ((True, "q"), (False, "d")):
            for i, emb in enumerate(model.encode(texts, is_query=flag, convert_to_numpy=True, show_progress_bar=False)):
                out[f"{tag}{i}"] = np.asarray(emb, dtype=np.float32)
    elif kind == SENTENCE_TRANSFORMERS:
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(source, device="cpu")
        out["sentence_embedding"] = np.asarray(model.encode(texts, convert_to_numpy=True, show_progress_bar=False), dtype=np.float32)
    elif kind == MULTI_VECTOR:
        import sentence_transformers

        if int(sentence_transformers.__version__.split(".")[0]) < 6:
            raise RuntimeError(
                f"{source} is a sentence-transformers 6 MultiVectorEncoder folder; the installed sentence-transformers "
                f"{sentence_transformers.__version__} has no MultiVectorEncoder: pip install 'sentence-transformers>=6'."
            )
        from sentence_transformers import MultiVectorEncoder

        model = MultiVectorEncoder(source, device="cpu")
        q = model.encode_query(texts, convert_to_numpy=True)
        d = model.encode_document(texts, convert_to_numpy=True)
        out |= {f"q{i}": np.asarray(e, dtype=np.float32) for i, e in enumerate(q)}
        out |= {f"d{i}": np.asarray(e, dtype=np.float32) for i, e in enumerate(d)}
        out["scores"] = model.similarity(q, d).float().numpy()
    elif kind == HF:
        from transformers import AutoModel, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModel.from_pretrained(source).eval()
        limits = [512, getattr(tokenizer, "model_max_length", None), getattr(model.config, "max_position_embeddings", None)]
        max_length = min(int(x) for x in limits if x)
        enc = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**enc).last_hidden_state
        out["last_hidden_state"] = hidden.float().numpy()
        for key, value in enc.items():
            out[key] = value.numpy()
    else:
        raise ValueError(f"unknown kind {kind!r}")
    return out


def torch_side_main(argv: list[str]) -> int:
    """``<kind> <source> <probes.json> <out.npz>``: entry point of the torch process."""
    kind, source, probes_path, out_path = argv[:4]
    try:
        probes = json.loads(Path(probes_path).read_text())
        t0 = time.perf_counter()
        arrays = torch_side(kind, source, probes["queries"], probes["documents"])
        import torch
        import transformers

        meta = {"seconds": time.perf_counter() - t0, "torch": torch.__version__, "transformers": transformers.__version__}
        np.savez(out_path, __meta__=np.array(json.dumps(meta)), **arrays)
        return 0
    except Exception:
        traceback.print_exc()
        return 3


_BOOTSTRAP = (
    "import importlib.util, sys\n"
    "spec = importlib.util.spec_from_file_location('_mlx_hf_bridge_verify_torch_side', sys.argv[1])\n"
    "module = importlib.util.module_from_spec(spec)\n"
    "spec.loader.exec_module(module)\n"
    "sys.exit(module.torch_side_main(sys.argv[2:]))\n"
)


def _fingerprint(source: str):
    path = Path(source)
    if not path.is_dir():
        return None  # hub ids are never cached
    return tuple(sorted((str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns) for p in path.rglob("*") if p.is_file()))


def run_torch_side(kind: str, source, queries, documents, timeout: float | None = 1800, env: dict | None = None, python: str | None = None):
    """Run :func:`torch_side` in a fresh interpreter; returns ``(arrays, meta)``.

    ``env`` adds to / overrides the child's environment (``None`` values unset a variable), e.g.
    ``HF_ENDPOINT`` to load a hub id from a local server. Results for unchanged local folders are
    cached for the life of this process.
    """
    # the child runs in a temp dir: a relative folder must reach it as an absolute path
    source = str(Path(source).resolve()) if Path(source).exists() else str(source)
    fingerprint = _fingerprint(source)
    key = (kind, source, fingerprint, tuple(queries), tuple(documents))
    if fingerprint is not None and env is None and key in _TORCH_CACHE:
        return _TORCH_CACHE[key]
    with tempfile.TemporaryDirectory(prefix="mlx-hf-bridge-verify-") as tmp:
        probes_path, out_path = Path(tmp) / "probes.json", Path(tmp) / "torch.npz"
        probes_path.write_text(json.dumps({"queries": list(queries), "documents": list(documents)}))
        child_env = dict(os.environ)
        child_env.update({"TOKENIZERS_PARALLELISM": "false", "MLX_HF_BRIDGE_BLAS": "reference"})
        for name, value in (env or {}).items():  # None removes a variable (e.g. HF_HUB_OFFLINE)
            if value is None:
                child_env.pop(name, None)
            else:
                child_env[name] = str(value)
        cmd = [python or sys.executable, "-c", _BOOTSTRAP, str(Path(__file__).resolve()), kind, source, str(probes_path), str(out_path)]
        # cwd=tmp: the child's sys.path[0] must not be a folder that shadows `transformers` & co.
        proc = subprocess.run(cmd, cwd=tmp, env=child_env, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0 or not out_path.exists():
            tail = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-15:])
            raise RuntimeError(f"the torch side failed (exit {proc.returncode}) loading {source}:\n{tail}")
        with np.load(out_path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files if k != "__meta__"}
            meta = json.loads(str(data["__meta__"])) if "__meta__" in data.files else {}
    if fingerprint is not None and env is None:
        _TORCH_CACHE[key] = (arrays, meta)
    return arrays, meta

"""``mlx-hf-bridge verify <folder>``: does the real torch library compute what the bridge computes?

The folder kind is detected from its files:

- **PyLate ColBERT** (``config_sentence_transformers.json`` with ``model_type: ColBERT``, or ColBERT
  keys such as ``query_length`` / ``similarity_fn_name: MaxSim``, or a ``pylate`` module in
  ``modules.json``): ``pylate.models.ColBERT`` (torch) vs ``mlx_hf_bridge.pylate.models.ColBERT``;
  every probe text is encoded with ``is_query=True`` and with ``is_query=False``.
- **sentence-transformers** (``modules.json``, not ColBERT): ``SentenceTransformer.encode`` vs the
  bridge's ``SentenceTransformer`` when the bridge has one ("not supported by the bridge yet"
  otherwise).
- **plain Hugging Face** (``config.json`` only): ``transformers.AutoModel`` last hidden state vs
  ``mlx_hf_bridge.transformers.AutoModel`` on the same token ids (padding positions excluded).

The torch side always runs in a **separate Python process** that never imports ``mlx_hf_bridge``
(this file is loaded there by path): the bridge preloads a BLAS with ``RTLD_GLOBAL`` that makes
torch very slow in the same process, and the MLX path must never import torch. It writes its
outputs to an ``.npz`` that this process compares.

Exit codes of :func:`main`: 0 all max|Δ| ≤ tolerance, 1 above tolerance, shapes differ, or
non-finite weights / bridge outputs (found before the torch side runs), 2 could not verify (unsupported kind, a side failed to load or run).

This module imports only the standard library and numpy at top level; keep it that way (it is
executed standalone in the torch process).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

__all__ = ["DEFAULT_QUERIES", "DEFAULT_DOCUMENTS", "detect_kind", "verify_folder", "main", "torch_side"]

DEFAULT_QUERIES = [
    "what is the capital of france?",
    "hello world",
    "How do late-interaction retrievers (ColBERT) score documents; is it MaxSim?",
    "mlx",
]
DEFAULT_DOCUMENTS = [
    "Paris is the capital and most populous city of France.",
    "Hello!",
    "MLX is an array framework for machine learning on Apple silicon, brought to you by Apple machine "
    "learning research. It has a NumPy-like API, composable function transformations, lazy computation "
    "and a unified memory model; it also runs on Linux CPUs and CUDA GPUs.",
    "ColBERT encodes queries and documents into one vector per token and scores a pair with the sum, over "
    "query tokens, of the maximum similarity to any document token (MaxSim). " * 6,  # longer than most limits
]

COLBERT, SENTENCE_TRANSFORMERS, HF = "colbert", "sentence-transformers", "hf"
EXIT_OK, EXIT_MISMATCH, EXIT_ERROR = 0, 1, 2
_COLBERT_KEYS = ("query_prefix", "document_prefix", "query_length", "document_length", "do_query_expansion")
_TORCH_CACHE: dict = {}


# --- folder kind ----------------------------------------------------------------------------
def _read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def detect_kind(folder) -> str:
    """``"colbert"``, ``"sentence-transformers"`` or ``"hf"`` (raises if it is no model folder)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder; pass the saved model folder.")
    st_config = _read_json(folder / "config_sentence_transformers.json")
    modules = _read_json(folder / "modules.json")
    if st_config is not None:
        model_type = st_config.get("model_type")
        if model_type == "ColBERT":
            return COLBERT
        if model_type is None and (
            st_config.get("similarity_fn_name") == "MaxSim" or any(k in st_config for k in _COLBERT_KEYS)
        ):
            return COLBERT  # PyLate reads a missing model_type as ColBERT
    if modules is not None:
        if any("pylate" in str(m.get("type", "")).lower() for m in modules):
            return COLBERT
        return SENTENCE_TRANSFORMERS
    if (folder / "config.json").exists():
        return HF
    raise FileNotFoundError(
        f"{folder} has neither modules.json (sentence-transformers / PyLate) nor config.json (Hugging Face); "
        "it is not a saved model folder."
    )


def _probes(probe_texts) -> tuple[list[str], list[str]]:
    if probe_texts is None:
        return list(DEFAULT_QUERIES), list(DEFAULT_DOCUMENTS)
    if isinstance(probe_texts, dict):
        return list(probe_texts.get("queries", [])), list(probe_texts.get("documents", []))
    texts = [probe_texts] if isinstance(probe_texts, str) else list(probe_texts)
    return texts, []


# --- torch side (runs in its own process; never imports mlx_hf_bridge) ----------------------
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


# --- MLX side (this process) ----------------------------------------------------------------
def mlx_side(kind: str, folder, queries: list[str], documents: list[str], torch_arrays: dict) -> dict[str, np.ndarray]:
    """The bridge's outputs, under the same keys as :func:`torch_side`."""
    import mlx_hf_bridge  # noqa: F401  (BLAS preload before mlx.core)

    texts = queries + documents
    out: dict[str, np.ndarray] = {}
    if kind == COLBERT:
        from mlx_hf_bridge.pylate.models import ColBERT

        model = ColBERT(str(folder))
        for flag, tag in ((True, "q"), (False, "d")):
            for i, emb in enumerate(model.encode(texts, is_query=flag, convert_to_numpy=True)):
                out[f"{tag}{i}"] = np.asarray(emb, dtype=np.float32)
    elif kind == SENTENCE_TRANSFORMERS:
        model_cls = _bridge_sentence_transformer()
        if model_cls is None:
            raise NotImplementedError("sentence-transformers folders are not supported by the bridge yet")
        model = model_cls(str(folder))
        out["sentence_embedding"] = np.asarray(model.encode(texts, convert_to_numpy=True), dtype=np.float32)
    elif kind == HF:
        import mlx.core as mx

        from mlx_hf_bridge.transformers import AutoModel

        model = AutoModel.from_pretrained(str(folder))
        if torch_arrays is None:  # before the torch side: the same tokenizer call as torch_side's
            limits = [512, getattr(model.tokenizer, "model_max_length", None), model.args.max_position_embeddings]
            torch_arrays = dict(model.tokenizer(texts, padding=True, truncation=True,
                                                max_length=min(int(x) for x in limits if x), return_tensors="np"))
        args = [mx.array(torch_arrays["input_ids"]), mx.array(torch_arrays["attention_mask"])]
        if "token_type_ids" in torch_arrays:
            args.append(mx.array(torch_arrays["token_type_ids"]))
        hidden = model(*args)
        out["last_hidden_state"] = np.array(hidden.astype(mx.float32))
    return out


def _bridge_sentence_transformer():
    try:
        import importlib

        module = importlib.import_module("mlx_hf_bridge.sentence_transformers")
    except ImportError:
        return None
    return getattr(module, "SentenceTransformer", None)


# --- comparison -----------------------------------------------------------------------------
def compare(kind: str, ref: dict, got: dict, n_texts: int) -> dict[str, dict]:
    """Per output kind: ``{"max_abs_diff", "shape_mismatches"}``."""
    groups: dict[str, list[tuple[str, str]]] = {}
    if kind == COLBERT:
        groups["query (is_query=True)"] = [(f"q{i}", f"q{i}") for i in range(n_texts)]
        groups["document (is_query=False)"] = [(f"d{i}", f"d{i}") for i in range(n_texts)]
    elif kind == SENTENCE_TRANSFORMERS:
        groups["sentence_embedding"] = [("sentence_embedding", "sentence_embedding")]
    else:
        groups["last_hidden_state"] = [("last_hidden_state", "last_hidden_state")]
    report = {}
    for name, pairs in groups.items():
        worst, mismatches = 0.0, []
        for ref_key, got_key in pairs:
            a, b = ref.get(ref_key), got.get(got_key)
            if a is None or b is None or a.shape != b.shape:
                mismatches.append(f"{ref_key}: torch {None if a is None else a.shape} vs mlx {None if b is None else b.shape}")
                continue
            a64, b64 = a.astype(np.float64), b.astype(np.float64)
            if kind == HF and name == "last_hidden_state":
                mask = ref["attention_mask"].astype(bool)  # padded positions are not model outputs
                a64, b64 = a64[mask], b64[mask]
            if a64.size:
                worst = max(worst, float(np.abs(a64 - b64).max()))
        report[name] = {"max_abs_diff": float("inf") if mismatches else worst, "shape_mismatches": mismatches}
    return report


def verify_folder(folder, tolerance: float = 1e-5, probe_texts=None, reference=None, timeout: float | None = 1800) -> dict:
    """Compare the torch library and the bridge on ``folder``; never raises for model problems.

    Args:
        folder: the saved model folder (what the bridge loads).
        tolerance: the largest allowed max|Δ| per output kind.
        probe_texts: ``None`` (a fixed set of 4 queries + 4 documents, one longer than most length
            limits), a list of texts, or ``{"queries": [...], "documents": [...]}``. ColBERT folders
            encode every text both as query and as document.
        reference: what the torch side loads instead of ``folder`` (another folder or a hub id),
            e.g. the torch model an MLX export was converted from.
        timeout: seconds allowed for the torch process.

    Returns a dict: ``folder``, ``kind``, ``status`` (``"passed"``, ``"failed"``, ``"unsupported"``,
    ``"error"``), ``passed`` (bool), ``tolerance``, ``results`` (``{output kind: {"max_abs_diff",
    "shape_mismatches"}}``), ``n_texts``, ``torch_seconds``, ``mlx_seconds``, ``message``,
    ``exit_code`` (0 / 1 / 2, as :func:`main`).
    """
    folder = Path(folder)
    queries, documents = _probes(probe_texts)
    report = {"folder": str(folder), "reference": str(reference) if reference else None, "kind": None,
              "tolerance": tolerance, "n_texts": len(queries) + len(documents), "results": {},
              "torch_seconds": None, "mlx_seconds": None}

    def finish(status, message, code):
        report.update(status=status, passed=status == "passed", message=message, exit_code=code)
        return report

    try:
        kind = detect_kind(folder)
    except FileNotFoundError as exc:
        return finish("error", str(exc), EXIT_ERROR)
    report["kind"] = kind
    if not report["n_texts"]:
        return finish("error", "no probe texts", EXIT_ERROR)
    if kind == SENTENCE_TRANSFORMERS and _bridge_sentence_transformer() is None:
        return finish("unsupported", f"{folder} is a sentence-transformers (non-ColBERT) folder: not supported by the bridge yet.", EXIT_ERROR)
    # A broken model must fail, not pass because torch computes the same NaN (checked before the torch side)
    from mlx_hf_bridge.loading import nonfinite_tensors
    try:
        bad = nonfinite_tensors(folder)
    except ValueError as exc:  # an unreadable weight file
        return finish("error", f"bridge side: {exc}", EXIT_ERROR)
    if bad:
        return finish("failed", f"non-finite weights in {len(bad)} tensor(s): {'; '.join(bad[:8])}. The model is "
                      "broken (a diverged run?): export an earlier checkpoint whose weights are finite.", EXIT_MISMATCH)
    try:
        t0 = time.perf_counter()
        mlx_arrays = mlx_side(kind, folder, queries, documents, None)
        report["mlx_seconds"] = round(time.perf_counter() - t0, 2)
    except NotImplementedError as exc:
        return finish("unsupported", str(exc), EXIT_ERROR)
    except Exception as exc:
        return finish("error", f"bridge side: {type(exc).__name__}: {exc}", EXIT_ERROR)
    if bad := [k for k, v in mlx_arrays.items() if not np.isfinite(v).all()]:
        return finish("failed", f"non-finite outputs ({', '.join(bad[:8])}) from finite weights: activations overflow "
                      "float32; the weights are unusable as saved (re-export from a healthy checkpoint).", EXIT_MISMATCH)
    try:
        t0 = time.perf_counter()
        torch_arrays, _meta = run_torch_side(kind, reference or folder, queries, documents, timeout=timeout)
        report["torch_seconds"] = round(time.perf_counter() - t0, 2)
        if kind == HF:  # compare on exactly the torch side's token ids
            mlx_arrays = mlx_side(kind, folder, queries, documents, torch_arrays)
    except Exception as exc:
        return finish("error", f"torch side: {exc}", EXIT_ERROR)
    report["results"] = compare(kind, torch_arrays, mlx_arrays, report["n_texts"])
    bad = {name: r for name, r in report["results"].items() if r["shape_mismatches"] or not r["max_abs_diff"] <= tolerance}
    if bad:
        worst = ", ".join(f"{n}: {r['max_abs_diff']:.3g}" for n, r in bad.items())
        return finish("failed", f"max|Δ| above tolerance {tolerance:g} ({worst})", EXIT_MISMATCH)
    return finish("passed", f"all outputs within {tolerance:g}", EXIT_OK)


def format_report(report: dict) -> str:
    lines = [f"folder     {report['folder']}"]
    if report.get("reference"):
        lines.append(f"reference  {report['reference']} (torch side)")
    lines.append(f"kind       {report['kind'] or '?'}")
    for name, result in report["results"].items():
        diff = result["max_abs_diff"]
        flag = "ok" if diff <= report["tolerance"] and not result["shape_mismatches"] else "FAIL"
        lines.append(f"  {name:<28} max|Δ| = {diff:.3e}  {flag}")
        for mismatch in result["shape_mismatches"][:5]:
            lines.append(f"    shape mismatch {mismatch}")
    if report.get("torch_seconds") is not None:
        lines.append(f"time       torch {report['torch_seconds']} s (subprocess), mlx {report['mlx_seconds']} s")
    lines.append(f"{report['status'].upper():<10} {report['message']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``mlx-hf-bridge verify <folder> [--tolerance 1e-5] [--reference F] [--probes FILE] [--json]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--torch-side":  # internal: the torch process
        return torch_side_main(argv[1:])
    parser = argparse.ArgumentParser(prog="mlx-hf-bridge verify", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="saved model folder (PyLate, sentence-transformers or Hugging Face)")
    parser.add_argument("--tolerance", type=float, default=1e-5, help="largest allowed max|Δ| (default 1e-5)")
    parser.add_argument("--reference", default=None, help="folder or hub id the torch side loads instead of FOLDER")
    parser.add_argument("--probes", default=None, help="JSON file: a list of texts or {\"queries\": [...], \"documents\": [...]}")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    probes = json.loads(Path(args.probes).read_text()) if args.probes else None
    report = verify_folder(args.folder, tolerance=args.tolerance, probe_texts=probes, reference=args.reference)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return report["exit_code"]


if __name__ == "__main__":
    sys.exit(main())

"""``mlx-hf-bridge verify <folder>``: does the real torch library compute what the bridge computes?

The folder kind is detected from its files:

- **PyLate ColBERT** (``config_sentence_transformers.json`` with ``model_type: ColBERT``, or ColBERT
  keys such as ``query_length`` / ``similarity_fn_name: MaxSim``, or a ``pylate`` module in
  ``modules.json``): ``pylate.models.ColBERT`` (torch) vs ``mlx_hf_bridge.pylate.models.ColBERT``;
  every probe text is encoded with ``is_query=True`` and with ``is_query=False``.
- **sentence-transformers 6 multi-vector** (``config_sentence_transformers.json`` with ``model_type:
  MultiVectorEncoder``, or ``sentence_transformers.multi_vector_encoder`` modules): ST 6's
  ``MultiVectorEncoder`` (torch) vs the bridge's: ``encode_query`` and ``encode_document`` of every
  probe text (per-text vectors, so token pooling's vector counts are compared too) and ``similarity``.
  Needs sentence-transformers >= 6 in this Python (named if it is older or missing).
- **sentence-transformers** (dense; ``modules.json``, neither of the above): the installed
  ``SentenceTransformer.encode`` vs the bridge's ``SentenceTransformer``.
- **plain Hugging Face** (``config.json`` only): ``transformers.AutoModel`` last hidden state vs
  ``mlx_hf_bridge.transformers.AutoModel`` on the same token ids (padding positions excluded).

The torch side (``verify_torch.py``) always runs in a **separate Python process** that never imports
``mlx_hf_bridge``; the MLX side is ``verify_mlx.py``; this file detects the kind, compares and reports.

Exit codes of :func:`main`: 0 all max|Δ| ≤ tolerance, 1 above tolerance, shapes differ, or
non-finite weights / bridge outputs (found before the torch side runs), 2 could not verify (unsupported kind, a side failed to load or run).

This module imports only the standard library, numpy and the two sides at top level.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np

from .verify_mlx import bridge_sentence_transformer as _bridge_sentence_transformer
from .verify_mlx import mlx_side
from .verify_torch import COLBERT, HF, MULTI_VECTOR, SENTENCE_TRANSFORMERS, run_torch_side, torch_side, torch_side_main

__all__ = ["DEFAULT_QUERIES", "DEFAULT_DOCUMENTS", "detect_kind", "verify_folder", "main", "torch_side",
           "run_torch_side", "mlx_side", "compare", "COLBERT", "SENTENCE_TRANSFORMERS", "MULTI_VECTOR", "HF"]

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

EXIT_OK, EXIT_MISMATCH, EXIT_ERROR = 0, 1, 2
_COLBERT_KEYS = ("query_prefix", "document_prefix", "query_length", "document_length", "do_query_expansion")
# what the torch side imports per kind: (distribution, lowest major version)
_TORCH_LIBRARIES = {COLBERT: ("pylate", None), SENTENCE_TRANSFORMERS: ("sentence-transformers", None),
                    MULTI_VECTOR: ("sentence-transformers", 6), HF: ("transformers", None)}
_OTHER_ST_FAMILIES = ("SparseEncoder", "CrossEncoder")


# --- folder kind ----------------------------------------------------------------------------
def _read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def detect_kind(folder) -> str:
    """``"colbert"``, ``"multi-vector"``, ``"sentence-transformers"`` or ``"hf"`` (raises if it is no
    model folder)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder; pass the saved model folder.")
    st_config = _read_json(folder / "config_sentence_transformers.json")
    modules = _read_json(folder / "modules.json")
    if st_config is not None:
        model_type = st_config.get("model_type")
        if model_type == "ColBERT":
            return COLBERT
        if model_type == "MultiVectorEncoder":
            return MULTI_VECTOR
        if model_type is None and (
            st_config.get("similarity_fn_name") == "MaxSim" or any(k in st_config for k in _COLBERT_KEYS)
        ):
            return COLBERT  # PyLate reads a missing model_type as ColBERT
    if modules is not None:
        if any("pylate" in str(m.get("type", "")).lower() for m in modules):
            return COLBERT
        if any(str(m.get("type", "")).startswith("sentence_transformers.multi_vector_encoder.") for m in modules):
            return MULTI_VECTOR
        return SENTENCE_TRANSFORMERS
    if (folder / "config.json").exists():
        return HF
    raise FileNotFoundError(
        f"{folder} has neither modules.json (sentence-transformers / PyLate) nor config.json (Hugging Face); "
        "it is not a saved model folder."
    )


def missing_torch_library(kind: str, folder) -> str | None:
    """Why the torch side cannot run here (its library missing or too old), with what to install."""
    dist, major = _TORCH_LIBRARIES[kind]
    what = {COLBERT: "PyLate ColBERT", MULTI_VECTOR: "sentence-transformers 6 MultiVectorEncoder",
            SENTENCE_TRANSFORMERS: "sentence-transformers", HF: "Hugging Face"}[kind]
    for name in ("torch", dist):
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
        wanted = f"{name}>={major}" if name == dist and major else name
        if installed is None or (name == dist and major and int(installed.split(".")[0]) < major):
            has = f"this Python has {name} {installed}" if installed else f"{name} is not installed in this Python"
            return (f"{folder} is a {what} folder: verify compares it with the torch library, but {has}. "
                    f"Install it (pip install '{wanted}') and run verify again.")
    return None


def _probes(probe_texts) -> tuple[list[str], list[str]]:
    if probe_texts is None:
        return list(DEFAULT_QUERIES), list(DEFAULT_DOCUMENTS)
    if isinstance(probe_texts, dict):
        return list(probe_texts.get("queries", [])), list(probe_texts.get("documents", []))
    texts = [probe_texts] if isinstance(probe_texts, str) else list(probe_texts)
    return texts, []


# --- comparison -----------------------------------------------------------------------------
def compare(kind: str, ref: dict, got: dict, n_texts: int) -> dict[str, dict]:
    """Per output kind: ``{"max_abs_diff", "shape_mismatches", "relative"}``. MaxSim scores sum one
    similarity per query token (hundreds for a long text), so theirs is relative: |Δ| / max(1, |score|)."""
    groups: dict[str, list[tuple[str, str]]] = {}
    if kind == COLBERT:
        groups["query (is_query=True)"] = [(f"q{i}", f"q{i}") for i in range(n_texts)]
        groups["document (is_query=False)"] = [(f"d{i}", f"d{i}") for i in range(n_texts)]
    elif kind == MULTI_VECTOR:
        groups["query (encode_query)"] = [(f"q{i}", f"q{i}") for i in range(n_texts)]
        groups["document (encode_document)"] = [(f"d{i}", f"d{i}") for i in range(n_texts)]
        groups["similarity"] = [("scores", "scores")]
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
            scale = np.maximum(np.abs(a64), 1.0) if name == "similarity" else 1.0
            if a64.size:
                worst = max(worst, float((np.abs(a64 - b64) / scale).max()))
        report[name] = {"max_abs_diff": float("inf") if mismatches else worst, "shape_mismatches": mismatches,
                        "relative": name == "similarity"}
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
    st_config = _read_json(folder / "config_sentence_transformers.json")
    family = st_config.get("model_type") if isinstance(st_config, dict) else None
    if kind == SENTENCE_TRANSFORMERS and family in _OTHER_ST_FAMILIES:
        return finish("unsupported", f"{folder} is a sentence-transformers {family}: the bridge runs SentenceTransformer "
                      "and MultiVectorEncoder models only.", EXIT_ERROR)
    # A broken model must fail, not pass because torch computes the same NaN (checked before the torch side)
    from mlx_hf_bridge.loading import nonfinite_tensors
    try:
        bad = nonfinite_tensors(folder)
    except ValueError as exc:  # an unreadable weight file
        return finish("error", f"bridge side: {exc}", EXIT_ERROR)
    if bad:
        return finish("failed", f"non-finite weights in {len(bad)} tensor(s): {'; '.join(bad[:8])}. The model is "
                      "broken (a diverged run?): export an earlier checkpoint whose weights are finite.", EXIT_MISMATCH)
    adapters = [p for p in [folder / "adapter_config.json", *folder.glob("*/adapter_config.json")] if p.is_file()]
    if adapters and reference is None:
        return finish("unsupported", f"{adapters[0]} is a LoRA adapter saved without merged weights: the torch "
                      "libraries do not load adapter folders alike (sentence-transformers 5.3 drops the adapter "
                      "weights), so the comparison would not be of the same model. Merge it first "
                      "(model.merge_and_unload(); model.save_pretrained(path)) and verify the merged folder.",
                      EXIT_ERROR)
    if reason := missing_torch_library(kind, folder):  # before the bridge's forward: name what to install
        return finish("unsupported", reason, EXIT_ERROR)
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
        measure = "max|Δ|/max(1,|s|)" if result.get("relative") else "max|Δ|"
        lines.append(f"  {name:<28} {measure} = {diff:.3e}  {flag}")
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
    parser.add_argument("folder", help="saved model folder (PyLate, sentence-transformers 5 / 6 incl. multi-vector, or Hugging Face)")
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

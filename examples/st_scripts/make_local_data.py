"""Tiny offline stand-ins, shaped like the Hub datasets sentence-transformers' training examples load.

Each folder is a Hub-style dataset repository (README ``configs:`` with splits + jsonl files) at
``<out>/<org>/<name>``, so a script's unchanged ``load_dataset("<org>/<name>", <config>, split=...)``
reads it when ``ST_EXAMPLE_DATA=<out>/`` is put in front of the id:

    sentence-transformers/all-nli          configs "triplet" (anchor, positive, negative), "pair-score"
                                           (sentence1, sentence2, score); splits train / dev / test
    sentence-transformers/stsb             default config (sentence1, sentence2, score); train / validation / test
    sentence-transformers/msmarco          "corpus" (passage_id, passage), "queries" (query_id, query),
                                           "bert-ensemble-margin-mse" (query_id, positive_id, negative_id, score)
    tomaarsen/msmarco-Qwen3-Reranker-0.6B  default (query, positive, negative_1..3, score: a list); train / eval
    sentence-transformers/quora-duplicates "pair-class" (sentence1, sentence2, label)
    sentence-transformers/NanoBEIR-en      "corpus" / "queries" (_id, text), "qrels" (query-id, corpus-id);
                                           one split per dataset (NanoMSMARCO, NanoNFCorpus, NanoNQ)

    python make_local_data.py --out data/st-local
"""

from __future__ import annotations

import argparse
import json
import random
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
    ("why do cats purr", "Cats purr by vibrating the muscles of the larynx, often when they are content."),
    ("how do bees make honey", "Bees turn flower nectar into honey by enzymes and evaporation in the hive."),
]
NANO = {"NanoMSMARCO": 0, "NanoNFCorpus": 1, "NanoNQ": 2}
WORDS = "amber basil cedar delta ember fjord garnet harbor indigo juniper kestrel lumen maple nectar onyx".split()


def tag(i: int) -> str:
    """A short word tag unique per row index (rows must differ: ST's NO_DUPLICATES sampler drops repeats)."""
    a, b = divmod(i, len(WORDS))
    return f"{WORDS[a % len(WORDS)]} {WORDS[b]} {i}"


def _jsonl(path: Path, rows) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path.name


def _repo(out: Path, repo: str, configs: dict[str, dict[str, list[dict]]]) -> Path:
    """configs: {config name: {split: rows}}; "default" is the config load_dataset picks without a name."""
    folder = out / repo
    lines = ["---", "configs:"]
    for config, splits in configs.items():
        lines += [f"- config_name: {config}", "  data_files:"]
        for split, rows in splits.items():
            rel = f"{config}/{split}.jsonl"
            _jsonl(folder / rel, rows)
            lines += [f"  - split: {split}", f"    path: {rel}"]
    (folder / "README.md").write_text("\n".join([*lines, "---", "", "Offline stand-in (synthetic).", ""]),
                                      encoding="utf-8")
    return folder


def _splits(make, sizes=(("train", 96), ("dev", 16), ("test", 16)), seed=0):
    return {split: make(n, random.Random(seed + i)) for i, (split, n) in enumerate(sizes)}


def _other(rng, own):
    return rng.choice([j for j in range(len(TOPICS)) if j != own])


def all_nli(out: Path) -> Path:
    def triplets(n, rng):
        return [{"anchor": f"{TOPICS[i % 10][0]} ({tag(i)})", "positive": f"{TOPICS[i % 10][1]} {tag(i)}",
                 "negative": f"{TOPICS[_other(rng, i % 10)][1]} {tag(i + n)}"} for i in range(n)]

    def pair_scores(n, rng):
        rows = []
        for i in range(n):
            same = rng.random() < 0.5
            j = i % 10 if same else _other(rng, i % 10)
            rows.append({"sentence1": f"{TOPICS[i % 10][0]} ({i})", "sentence2": TOPICS[j][1],
                         "score": 1.0 if same else 0.0})
        return rows

    return _repo(out, "sentence-transformers/all-nli", {"triplet": _splits(triplets), "pair-score": _splits(pair_scores)})


def stsb(out: Path) -> Path:
    def rows(n, rng):
        data = []
        for i in range(n):
            j = i % 10 if rng.random() < 0.5 else _other(rng, i % 10)
            score = round(rng.uniform(0.6, 1.0) if j == i % 10 else rng.uniform(0.0, 0.4), 3)
            data.append({"sentence1": f"{TOPICS[i % 10][0]} ({i})", "sentence2": TOPICS[j][1], "score": score})
        return data

    return _repo(out, "sentence-transformers/stsb",
                 {"default": _splits(rows, (("train", 48), ("validation", 12), ("test", 12)))})


def msmarco(out: Path, rows: int = 48) -> Path:
    rng = random.Random(3)
    corpus = [{"passage_id": j, "passage": text} for j, (_, text) in enumerate(TOPICS)]
    queries = [{"query_id": i, "query": f"{TOPICS[i % 10][0]} ({i})"} for i in range(rows)]
    triplets = [{"query_id": i, "positive_id": i % 10, "negative_id": _other(rng, i % 10),
                 "score": round(rng.uniform(2.0, 9.0), 3)} for i in range(rows)]
    return _repo(out, "sentence-transformers/msmarco", {
        "corpus": {"train": corpus}, "queries": {"train": queries}, "bert-ensemble-margin-mse": {"train": triplets}})


def msmarco_reranker_scores(out: Path) -> Path:
    def rows(n, rng):
        data = []
        for i in range(n):
            negs = rng.sample([j for j in range(10) if j != i % 10], 3)
            data.append({"query": f"{TOPICS[i % 10][0]} ({i})", "positive": TOPICS[i % 10][1],
                         **{f"negative_{k + 1}": TOPICS[j][1] for k, j in enumerate(negs)},
                         "score": [round(rng.uniform(0.7, 1.0), 4)] + [round(rng.uniform(0.0, 0.4), 4) for _ in negs]})
        return data

    return _repo(out, "tomaarsen/msmarco-Qwen3-Reranker-0.6B", {"default": _splits(rows, (("train", 48), ("eval", 12)))})


def quora_duplicates(out: Path) -> Path:
    def rows(n, rng):
        data = []
        for i in range(n):
            same = rng.random() < 0.5
            j = i % 10 if same else _other(rng, i % 10)
            data.append({"sentence1": f"{TOPICS[i % 10][0]}? ({i})", "sentence2": f"{TOPICS[j][0]}, please ({i + 1})",
                         "label": int(same)})
        return data

    return _repo(out, "sentence-transformers/quora-duplicates", {"pair-class": {"train": rows(64, random.Random(5))}})


def nano_beir(out: Path) -> Path:
    configs = {"corpus": {}, "queries": {}, "qrels": {}}
    for name, shift in NANO.items():
        configs["corpus"][name] = [{"_id": f"{name}-d{j}", "text": text} for j, (_, text) in enumerate(TOPICS)]
        configs["queries"][name] = [{"_id": f"{name}-q{i}", "text": TOPICS[(i + shift) % 10][0]} for i in range(6)]
        configs["qrels"][name] = [{"query-id": f"{name}-q{i}", "corpus-id": f"{name}-d{(i + shift) % 10}"}
                                  for i in range(6)]
    return _repo(out, "sentence-transformers/NanoBEIR-en", configs)


MAKERS = (all_nli, stsb, msmarco, msmarco_reranker_scores, quora_duplicates, nano_beir)


def write_all(out: Path) -> list[Path]:
    return [make(Path(out)) for make in MAKERS]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="data/st-local")
    for path in write_all(parser.parse_args(argv).out):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

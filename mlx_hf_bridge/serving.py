"""An HTTP embedding server for the bridge's ColBERT models: PyLate's ``/v1/embeddings`` request and
response schema (``pylate/server/server.py``), requests from concurrent clients encoded together in
dynamic batches by one worker thread (MLX runs one model call at a time), bounded request sizes, an
optional index-backed ``/search``, and a clean shutdown on SIGINT / SIGTERM. Standard library only.

    mlx-hf-bridge serve out/final --port 8002 [--index-folder indexes --index-name index]
    python -m mlx_hf_bridge.pylate.server --model out/final     # PyLate's server script, its arguments
"""

from __future__ import annotations

import json
import queue
import threading
import time
from concurrent.futures import Future
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

DEFAULT_MODEL_NAME = "lightonai/GTE-ModernColBERT-v1"  # PyLate's EmbeddingRequest.model default


class RequestError(Exception):
    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


class DynamicBatcher:
    """``submit(texts, is_query)`` from any thread; one worker encodes what is waiting together, up to
    ``max_batch_size`` texts, waiting at most ``max_wait_s`` for more after the first request."""

    def __init__(self, model, max_batch_size: int = 32, max_wait_s: float = 0.005, encode_batch_size: int = 32):
        self.model, self.max_batch_size, self.max_wait_s = model, max_batch_size, max_wait_s
        self.encode_batch_size = encode_batch_size
        self._queue: queue.Queue = queue.Queue()
        self._worker = threading.Thread(target=self._work, name="mlx-hf-bridge-encoder", daemon=True)
        self._worker.start()

    def submit(self, texts: list, is_query: bool) -> Future:
        future: Future = Future()
        self._queue.put((list(texts), bool(is_query), future))
        return future

    def call(self, fn) -> Future:
        """Run ``fn()`` on the encoder thread (every MLX computation of the server runs there)."""
        future: Future = Future()
        self._queue.put((fn, future))
        return future

    def close(self):
        self._queue.put(None)
        self._worker.join()

    def _work(self):
        while True:
            first = self._queue.get()
            if first is None:
                return
            waiting, calls, stop = [], [], False
            (calls if len(first) == 2 else waiting).append(first)
            count = sum(len(w[0]) for w in waiting)
            deadline = time.monotonic() + self.max_wait_s
            while waiting and count < self.max_batch_size:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                if len(item) == 2:
                    calls.append(item)
                    continue
                waiting.append(item)
                count += len(item[0])
            for is_query in (True, False):
                self._encode([w for w in waiting if w[1] is is_query], is_query)
            for fn, future in calls:
                try:
                    future.set_result(fn())
                except Exception as exc:
                    future.set_exception(exc)
            if stop:
                return

    def _encode(self, requests: list, is_query: bool):
        if not requests:
            return
        texts = [t for texts, _, _ in requests for t in texts]
        try:
            embeddings = self.model.encode(texts, is_query=is_query, batch_size=self.encode_batch_size,
                                           show_progress_bar=False)
        except Exception as exc:  # every waiting request gets the error (HTTP 500, as PyLate)
            for _, _, future in requests:
                future.set_exception(exc)
            return
        start = 0
        for texts, _, future in requests:
            future.set_result(embeddings[start:start + len(texts)])
            start += len(texts)


class EmbeddingService:
    """What the HTTP handler calls: validation, PyLate's response format, the batcher, the index."""

    def __init__(self, model, model_name: str, batcher: DynamicBatcher, index=None, max_inputs: int = 512,
                 max_input_chars: int = 100_000):
        self.model, self.model_name, self.batcher, self.index = model, model_name, batcher, index
        self.max_inputs, self.max_input_chars = max_inputs, max_input_chars

    def _texts(self, value, field: str) -> list:
        texts = [value] if isinstance(value, str) else value
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise RequestError(422, f"`{field}` must be a string or a list of strings.")
        if len(texts) > self.max_inputs:
            raise RequestError(413, f"`{field}` has {len(texts)} texts; this server takes at most {self.max_inputs} per "
                                    "request (--max-inputs). Split the request.")
        longest = max((len(t) for t in texts), default=0)
        if longest > self.max_input_chars:
            raise RequestError(413, f"a text in `{field}` has {longest} characters; this server takes at most "
                                    f"{self.max_input_chars} (--max-input-chars).")
        return texts

    def embeddings(self, body: dict) -> dict:
        """PyLate's ``create_embedding``, kept as it behaves: a single string is encoded as one text whose
        token vectors become the ``data`` entries, and ``usage`` counts ``len(text.split())`` over the
        input as given (over a string's characters for a single string)."""
        unknown = set(body) - {"input", "is_query", "model"}
        if "input" not in body:
            raise RequestError(422, "The request needs `input`: a string or a list of strings.")
        if unknown:
            raise RequestError(422, f"Unknown field(s) {sorted(unknown)}; the request takes input, is_query, model.")
        is_query = body.get("is_query", True)
        if not isinstance(is_query, bool):
            raise RequestError(422, "`is_query` must be true or false.")
        model = body.get("model", DEFAULT_MODEL_NAME)
        if model != self.model_name:
            raise RequestError(400, f"Model not supported, the loaded model is {self.model_name}, but the request is "
                                    f"for {model}")
        texts = self._texts(body["input"], "input")
        embeddings = self.batcher.submit(texts, is_query).result()
        rows = embeddings[0] if isinstance(body["input"], str) else embeddings
        data = [{"object": "embedding", "embedding": np.asarray(e).tolist(), "index": i} for i, e in enumerate(rows)]
        tokens = sum(len(text.split()) for text in body["input"])
        return {"data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    def search(self, body: dict) -> dict:
        if self.index is None:
            raise RequestError(404, "This server has no index: start it with --index-folder / --index-name.")
        k = body.get("k", 10)
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise RequestError(422, "`k` must be a positive integer.")
        queries = self._texts(body.get("queries"), "queries")
        from .pylate import retrieve

        embeddings = self.batcher.submit(queries, True).result()
        results = self.batcher.call(lambda: retrieve.ColBERT(index=self.index).retrieve(embeddings, k=k)).result()
        return {"results": results, "model": self.model_name}


class _Handler(BaseHTTPRequestHandler):
    service: EmbeddingService
    max_request_bytes: int
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002  (quiet: one line per request is too much under load)
        pass

    def _send(self, status: int, payload: dict):
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802
        if self.path == "/health":
            return self._send(200, {"status": "ok", "model": self.service.model_name})
        self._send(404, {"detail": f"No route GET {self.path}; POST /v1/embeddings, POST /search, GET /health."})

    def do_POST(self):  # noqa: N802
        routes = {"/v1/embeddings": self.service.embeddings, "/search": self.service.search}
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if length > self.max_request_bytes:
                self.close_connection = True  # the body is not read
                raise RequestError(413, f"The request body has {length} bytes; this server takes at most "
                                        f"{self.max_request_bytes} (--max-request-bytes).")
            raw = self.rfile.read(length)
            if self.path not in routes:
                raise RequestError(404, f"No route POST {self.path}; POST /v1/embeddings, POST /search, GET /health.")
            try:
                body = json.loads(raw or b"null")
            except ValueError as exc:
                raise RequestError(400, f"The body is not valid JSON: {exc}.") from None
            if not isinstance(body, dict):
                raise RequestError(422, "The body must be a JSON object.")
            self._send(200, routes[self.path](body))
        except RequestError as exc:
            self._send(exc.status, {"detail": exc.detail})
        except Exception as exc:  # the model failed: PyLate answers 500 with the message; the server keeps serving
            self._send(500, {"detail": str(exc)})


class EmbeddingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, service: EmbeddingService, max_request_bytes: int = 8 * 1024 * 1024):
        handler = type("Handler", (_Handler,), {"service": service, "max_request_bytes": max_request_bytes})
        super().__init__(address, handler)
        self.service = service

    def close(self):
        """Stop accepting, then let the encoder finish what it holds."""
        self.shutdown()
        self.server_close()
        self.service.batcher.close()


def build_server(model, model_name: str, host: str = "127.0.0.1", port: int = 8002, index=None,
                 max_batch_size: int = 32, max_wait_ms: float = 5.0, max_inputs: int = 512,
                 max_input_chars: int = 100_000, max_request_bytes: int = 8 * 1024 * 1024) -> EmbeddingServer:
    import mlx.core as mx

    # MLX streams are per thread: arrays the loading thread left unevaluated cannot be evaluated by the
    # encoder thread ("There is no Stream(cpu, 0) in current thread"). Evaluate them here, once.
    mx.eval(model.parameters())
    for is_query in (True, False):
        model.encode(["warm-up"], is_query=is_query, show_progress_bar=False)
    batcher = DynamicBatcher(model, max_batch_size=max_batch_size, max_wait_s=max_wait_ms / 1000.0)
    service = EmbeddingService(model, model_name, batcher, index, max_inputs, max_input_chars)
    return EmbeddingServer((host, port), service, max_request_bytes)


def add_arguments(parser, host: str = "127.0.0.1"):
    parser.add_argument("--host", default=host, help=f"address to listen on (default {host})")
    parser.add_argument("--port", type=int, default=8002, help="port (default 8002, PyLate's)")
    parser.add_argument("--model-name", default=None,
                        help="the name requests must give as `model` (default: the model argument, as PyLate)")
    parser.add_argument("--index-folder", default=None, help="serve POST /search from this PLAID index folder")
    parser.add_argument("--index-name", default="index")
    parser.add_argument("--max-batch-size", type=int, default=32, help="texts encoded together at most")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="how long a batch waits for more requests")
    parser.add_argument("--max-inputs", type=int, default=512, help="texts per request at most (413 above)")
    parser.add_argument("--max-input-chars", type=int, default=100_000, help="characters per text at most (413 above)")
    parser.add_argument("--max-request-bytes", type=int, default=8 * 1024 * 1024, help="request body size at most")


def serve(args) -> int:
    """Load the model (and index), serve until SIGINT / SIGTERM, then stop cleanly."""
    import signal

    from .pylate import models

    model = models.ColBERT(args.model)
    index = None
    if args.index_folder:
        from .pylate import indexes

        index = indexes.PLAID(index_folder=args.index_folder, index_name=args.index_name, override=False)
    server = build_server(model, args.model_name or args.model, args.host, args.port, index, args.max_batch_size,
                          args.max_wait_ms, args.max_inputs, args.max_input_chars, args.max_request_bytes)

    def stop(*_):
        threading.Thread(target=server.shutdown, daemon=True).start()  # shutdown() blocks until serve_forever ends

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    print(f"Serving {args.model} on http://{args.host}:{server.server_address[1]} (POST /v1/embeddings)", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        server.service.batcher.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="mlx-hf-bridge serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a PyLate ColBERT folder or hub id")
    add_arguments(parser)
    return serve(parser.parse_args(argv))

"""A local Hugging Face Hub for tests: standard library only, repos kept in memory.

Serves what ``huggingface_hub`` calls for uploads and downloads (see
shared/reference/offline-assets.md §3), so ``create_repo`` / ``upload_folder`` (regular files and
LFS) / ``snapshot_download`` / ``hf_hub_download`` / ``from_pretrained("user/repo")`` run against
it unchanged. Point clients at it with ``HF_ENDPOINT=<server.url>``, any ``HF_TOKEN`` and
``HF_HUB_DISABLE_XET=1`` (or use :meth:`LocalHub.env` / :meth:`LocalHub.patch_client`).

Endpoints:
  GET  /api/whoami-v2
  POST /api/repos/create                 409 + {"url"} when the repo exists
  POST /api/repos/delete
  POST /api/validate-yaml
  GET  /api/{type}s/{ns}/{name}[/revision/{rev}]      model / dataset / space info
  GET  /api/{type}s/{ns}/{name}/tree/{rev}[/{path}]
  POST /api/{type}s/{ns}/{name}/paths-info/{rev}
  GET  /api/{type}s/{ns}/{name}/refs
  POST /api/{type}s/{ns}/{name}/preupload/{rev}       "lfs" at or above ``lfs_threshold`` bytes
  POST /api/{type}s/{ns}/{name}/commit/{rev}          ndjson; ``create_pr=1`` opens refs/pr/N
  POST /api/{type}s/{ns}/{name}/branch/{branch}
  POST /{[type/]ns/name}.git/info/lfs/objects/batch
  PUT  /_lfs/{oid}            POST /_lfs/{oid}/verify
  HEAD|GET /{[type/]ns/name}/resolve/{rev}/{path}     ETag, X-Repo-Commit, X-Linked-Etag/-Size
Errors are JSON ``{"error": ...}`` with ``X-Error-Code`` (RepoNotFound, RevisionNotFound,
EntryNotFound) like the real Hub.

Fault switches: ``tokens={"good"}`` makes any other bearer token (or none, on writes) answer 401;
``hub.fail(503, on="commit", times=1)`` makes matching requests answer that status;
``hub.requests`` logs ``(method, endpoint-name, path)`` for assertions.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

REPO_TYPES = ("model", "dataset", "space")
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
USER = "tester"


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(oid: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n".encode()


@dataclass
class Entry:
    size: int
    blob_oid: str  # git blob sha1 (of the pointer for LFS files)
    data: bytes | None = None  # regular files
    lfs_oid: str | None = None  # sha256 of the content for LFS files


@dataclass
class Repo:
    repo_id: str
    repo_type: str
    private: bool = False
    refs: dict = field(default_factory=dict)  # ref name -> commit oid
    commits: dict = field(default_factory=dict)  # oid -> {"files": {path: Entry}, "title": str, "parent": oid}
    prs: int = 0

    def files(self, rev: str):
        oid = self.resolve(rev)
        return None if oid is None else self.commits[oid]["files"]

    def resolve(self, rev: str):
        if rev in self.refs:
            return self.refs[rev]
        if rev in self.commits:
            return rev
        return None


class HttpError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, extra: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.extra = status, message, code, extra or {}


class LocalHub:
    """``with LocalHub() as hub: ...`` starts a server on 127.0.0.1 (free port) in a thread."""

    def __init__(self, tokens=None, lfs_threshold: int = 10 * 1024 * 1024, user: str = USER):
        self.tokens = set(tokens) if tokens else None
        self.lfs_threshold = lfs_threshold
        self.user = user
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs_store: dict[str, bytes] = {}
        self.requests: list[tuple[str, str, str]] = []
        self.faults: list[dict] = []
        self.lock = threading.RLock()
        self._server = None
        self._thread = None

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> "LocalHub":
        hub = self

        class Handler(_Handler):
            server_hub = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # --- client configuration -------------------------------------------------------------
    def env(self, token: str = "hf_test_token", hf_home: str | None = None) -> dict:
        """Environment for a subprocess that talks to this hub (``None`` = unset: it must be online)."""
        env = {"HF_ENDPOINT": self.url, "HF_TOKEN": token, "HF_HUB_DISABLE_XET": "1", "HF_HUB_OFFLINE": None,
               "TRANSFORMERS_OFFLINE": None}
        if hf_home:
            env["HF_HOME"] = str(hf_home)
        return env

    @contextlib.contextmanager
    def patch_client(self, hf_home=None):
        """Point the already-imported ``huggingface_hub`` of this process at the server.

        ``huggingface_hub.constants`` reads HF_ENDPOINT / HF_HUB_OFFLINE / HF_HUB_DISABLE_XET at
        import time, so setting the environment variables afterwards is not enough.
        """
        from huggingface_hub import constants

        values = {
            "ENDPOINT": self.url,
            "HUGGINGFACE_CO_URL_TEMPLATE": self.url + "/{repo_id}/resolve/{revision}/{filename}",
            "HF_HUB_OFFLINE": False,
            "HF_HUB_DISABLE_XET": True,
        }
        if hf_home is not None:
            values["HF_HUB_CACHE"] = str(hf_home)
        saved = {k: getattr(constants, k) for k in values}
        env_saved = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "HF_ENDPOINT", "HF_HUB_DISABLE_XET")}
        try:
            for k, v in values.items():
                setattr(constants, k, v)
            os.environ.pop("HF_HUB_OFFLINE", None)
            os.environ["HF_ENDPOINT"] = self.url
            os.environ["HF_HUB_DISABLE_XET"] = "1"
            yield self
        finally:
            for k, v in saved.items():
                setattr(constants, k, v)
            for k, v in env_saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    # --- fault injection ------------------------------------------------------------------
    def fail(self, status: int, on: str = "*", times: int | None = None, message: str | None = None):
        """Answer ``status`` to requests whose endpoint name matches ``on`` (``*`` = all).

        Endpoint names: whoami, create, delete, validate-yaml, info, tree, paths-info, refs,
        preupload, commit, branch, lfs-batch, lfs-put, lfs-verify, resolve.
        """
        self.faults.append({"status": status, "on": on, "times": times, "message": message})

    def clear_faults(self):
        self.faults.clear()

    def _fault_for(self, endpoint: str):
        with self.lock:
            for fault in self.faults:
                if fault["on"] in ("*", endpoint) and (fault["times"] is None or fault["times"] > 0):
                    if fault["times"] is not None:
                        fault["times"] -= 1
                    return fault
        return None

    # --- direct access (for assertions) ---------------------------------------------------
    def repo(self, repo_id: str, repo_type: str = "model") -> Repo | None:
        return self.repos.get((repo_type, repo_id))

    def file_bytes(self, repo_id: str, path: str, revision: str = "main", repo_type: str = "model") -> bytes:
        entry = self.repo(repo_id, repo_type).files(revision)[path]
        return entry.data if entry.lfs_oid is None else self.lfs_store[entry.lfs_oid]

    def list_files(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> list[str]:
        return sorted(self.repo(repo_id, repo_type).files(revision))

    def is_lfs(self, repo_id: str, path: str, revision: str = "main", repo_type: str = "model") -> bool:
        return self.repo(repo_id, repo_type).files(revision)[path].lfs_oid is not None

    def endpoints_called(self) -> list[str]:
        return [name for _, name, _ in self.requests]

    # --- repo operations ------------------------------------------------------------------
    def create(self, repo_id: str, repo_type: str = "model", private: bool = False) -> tuple[Repo, bool]:
        with self.lock:
            key = (repo_type, repo_id)
            if key in self.repos:
                return self.repos[key], False
            repo = Repo(repo_id, repo_type, private)
            gitattributes = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"
            oid = self._new_commit(repo, None, {".gitattributes": Entry(len(gitattributes), git_blob_sha1(gitattributes), gitattributes)}, "initial commit")
            repo.refs["main"] = oid
            self.repos[key] = repo
            return repo, True

    def publish(self, repo_id: str, files: dict, commit: str | None = None, repo_type: str = "model") -> str:
        """Seed a repo whose ``main`` is one commit holding ``files`` (path -> bytes), with the commit id
        given (a real repo's pinned revision) or made up; returns it. Used to serve stand-ins read-only."""
        with self.lock:
            repo, _ = self.create(repo_id, repo_type)
            entries = {path: Entry(len(data), git_blob_sha1(data), data) for path, data in files.items()}
            oid = commit or self._new_commit(repo, None, entries, "stand-in")
            repo.commits[oid] = {"files": entries, "title": "stand-in", "parent": None, "date": time.time()}
            repo.refs["main"] = oid
            return oid

    def _new_commit(self, repo: Repo, parent: str | None, files: dict, title: str) -> str:
        digest = hashlib.sha1()
        digest.update((parent or "").encode())
        digest.update(title.encode())
        digest.update(str(time.time_ns()).encode())
        for path in sorted(files):
            digest.update(path.encode() + files[path].blob_oid.encode())
        oid = digest.hexdigest()
        repo.commits[oid] = {"files": files, "title": title, "parent": parent, "date": time.time()}
        return oid

    def repo_url(self, repo: Repo) -> str:
        return f"{self.url}/{URL_PREFIX[repo.repo_type]}{repo.repo_id}"


class _Handler(BaseHTTPRequestHandler):
    server_hub: LocalHub = None  # set by LocalHub.start
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - keep test output quiet
        pass

    # --- plumbing -------------------------------------------------------------------------
    def _body(self) -> bytes:
        if getattr(self, "_cached_body", None) is not None:
            return self._cached_body
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            body = b"".join(chunks)
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._cached_body = body
        return body

    def _json_body(self):
        body = self._body()
        return json.loads(body) if body else {}

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, content_type="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status: int, payload, headers: dict | None = None):
        self._send(status, json.dumps(payload).encode(), headers)

    def _token(self):
        auth = self.headers.get("Authorization", "")
        return auth[7:] if auth.lower().startswith("bearer ") else None

    def _check_auth(self, write: bool):
        hub = self.server_hub
        if hub.tokens is None:
            return
        token = self._token()
        if token is None and not write:
            return
        if token not in hub.tokens:
            raise HttpError(401, "Invalid credentials in Authorization header", "Unauthorized")

    def do_GET(self):
        self._dispatch()

    def do_HEAD(self):
        self._dispatch()

    def do_POST(self):
        self._dispatch()

    def do_PUT(self):
        self._dispatch()

    def do_DELETE(self):
        self._dispatch()

    def _dispatch(self):
        hub = self.server_hub
        split = urlsplit(self.path)
        self.query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        raw = split.path
        self._cached_body = None  # one handler serves every request of a keep-alive connection
        self._body()  # always drain the request body (keep-alive)
        try:
            name, handler, args = self._route(self.command, raw)
            hub.requests.append((self.command, name, raw))
            fault = hub._fault_for(name)
            if fault is not None:
                raise HttpError(fault["status"], fault["message"] or f"Injected {fault['status']} on {name}", None)
            handler(*args)
        except HttpError as err:
            headers = {"X-Error-Message": err.message}
            if err.code:
                headers["X-Error-Code"] = err.code
            self._send_json(err.status, {"error": err.message, **err.extra}, headers)
        except Exception as exc:  # a bug in the test server: make it visible as a 500
            self._send_json(500, {"error": f"local hub crashed: {type(exc).__name__}: {exc}"})

    def _route(self, method: str, raw: str):
        parts = raw.strip("/").split("/")
        if raw == "/api/whoami-v2":
            return "whoami", self.whoami, ()
        if raw == "/api/repos/create" and method == "POST":
            return "create", self.create_repo, ()
        if raw == "/api/repos/delete" and method in ("POST", "DELETE"):
            return "delete", self.delete_repo, ()
        if raw == "/api/validate-yaml" and method == "POST":
            return "validate-yaml", lambda: self._send_json(200, {"errors": [], "warnings": []}), ()
        if parts[0] == "_lfs" and len(parts) >= 2:
            if method == "PUT":
                return "lfs-put", self.lfs_put, (parts[1],)
            if len(parts) == 3 and parts[2] == "verify":
                return "lfs-verify", self.lfs_verify, (parts[1],)
        if parts[0] == "api" and len(parts) >= 3 and parts[1].rstrip("s") in REPO_TYPES:
            repo_type = parts[1][:-1]
            width = self._id_width(repo_type, parts[2:])
            repo_id = "/".join(unquote(p) for p in parts[2:2 + width])
            rest = parts[2 + width:]
            if not rest:
                return "info", self.info, (repo_type, repo_id, "main")
            action = rest[0]
            rev = unquote(rest[1]) if len(rest) > 1 else "main"
            tail = unquote("/".join(rest[2:]))
            if action == "revision" and method == "GET":
                return "info", self.info, (repo_type, repo_id, unquote("/".join(rest[1:])))
            if action == "tree" and method == "GET":
                return "tree", self.tree, (repo_type, repo_id, rev, tail)
            if action == "paths-info" and method == "POST":
                return "paths-info", self.paths_info, (repo_type, repo_id, rev)
            if action == "refs" and method == "GET":
                return "refs", self.refs, (repo_type, repo_id)
            if action == "preupload" and method == "POST":
                return "preupload", self.preupload, (repo_type, repo_id, rev)
            if action == "commit" and method == "POST":
                return "commit", self.commit, (repo_type, repo_id, rev)
            if action == "branch" and method == "POST":
                return "branch", self.branch, (repo_type, repo_id, unquote("/".join(rest[1:])))
        # /{[datasets/|spaces/]ns/name}.git/info/lfs/objects/batch
        repo_type = "model"
        if parts and parts[0] in ("datasets", "spaces"):
            repo_type, parts = parts[0][:-1], parts[1:]
        if len(parts) >= 2 and parts[1].endswith(".git") and parts[2:] == ["info", "lfs", "objects", "batch"]:
            return "lfs-batch", self.lfs_batch, (repo_type, f"{parts[0]}/{parts[1][:-4]}")
        width = self._id_width(repo_type, parts)
        if len(parts) >= width + 3 and parts[width] == "resolve" and method in ("GET", "HEAD"):
            repo_id = "/".join(unquote(p) for p in parts[:width])
            return "resolve", self.resolve, (repo_type, repo_id, unquote(parts[width + 1]), unquote("/".join(parts[width + 2:])))
        raise HttpError(404, f"Not found: {method} {raw}")

    def _id_width(self, repo_type: str, segments: list) -> int:
        """How many path segments the repo id takes: 2 (``ns/name``), or 1 for a legacy canonical id
        (``bert-base-uncased``) held here without a namespace."""
        if len(segments) >= 1 and self.server_hub.repo(unquote(segments[0]), repo_type) is not None:
            if len(segments) < 2 or self.server_hub.repo("/".join(unquote(p) for p in segments[:2]), repo_type) is None:
                return 1
        return 2

    # --- lookups --------------------------------------------------------------------------
    def _repo(self, repo_type: str, repo_id: str) -> Repo:
        repo = self.server_hub.repo(repo_id, repo_type)
        if repo is None:
            raise HttpError(404, f"Repository Not Found for url: {self.path}.", "RepoNotFound")
        if repo.private and self._token() is None:
            raise HttpError(401, "Repository is private; authentication required", "RepoNotFound")
        return repo

    def _files(self, repo: Repo, rev: str) -> tuple[str, dict]:
        oid = repo.resolve(rev)
        if oid is None:
            raise HttpError(404, f"Revision Not Found for url: {self.path}.", "RevisionNotFound")
        return oid, repo.commits[oid]["files"]

    def _tree_entry(self, path: str, entry: Entry) -> dict:
        item = {"type": "file", "oid": entry.blob_oid, "size": entry.size, "path": path}
        if entry.lfs_oid is not None:
            item["lfs"] = {"oid": entry.lfs_oid, "size": entry.size, "pointerSize": len(lfs_pointer(entry.lfs_oid, entry.size))}
        return item

    # --- handlers -------------------------------------------------------------------------
    def whoami(self):
        self._check_auth(write=True)
        hub = self.server_hub
        self._send_json(200, {
            "type": "user", "id": "0", "name": hub.user, "fullname": "Test User", "email": None,
            "orgs": [], "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": "write"}},
        })

    def create_repo(self):
        self._check_auth(write=True)
        hub = self.server_hub
        payload = self._json_body()
        repo_type = payload.get("type") or "model"
        namespace = payload.get("organization") or hub.user
        repo_id = f"{namespace}/{payload['name']}"
        private = payload.get("private") or payload.get("visibility") == "private"
        repo, created = hub.create(repo_id, repo_type, bool(private))
        url = hub.repo_url(repo)
        if not created:
            raise HttpError(409, "You already created this model repo", None, {"url": url})
        self._send_json(200, {"url": url, "name": repo_id, "id": repo_id})

    def delete_repo(self):
        self._check_auth(write=True)
        hub = self.server_hub
        payload = self._json_body()
        repo_id = f"{payload.get('organization') or hub.user}/{payload['name']}"
        with hub.lock:
            if hub.repos.pop((payload.get("type") or "model", repo_id), None) is None:
                raise HttpError(404, "Repository not found", "RepoNotFound")
        self._send_json(200, {})

    def info(self, repo_type, repo_id, rev):
        self._check_auth(write=False)
        repo = self._repo(repo_type, repo_id)
        oid, files = self._files(repo, rev)
        commit = repo.commits[oid]
        last = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(commit["date"]))
        self._send_json(200, {
            "_id": repo_id, "id": repo_id, "modelId": repo_id, "author": repo_id.split("/")[0], "sha": oid,
            "private": repo.private, "disabled": False, "gated": False, "downloads": 0, "likes": 0,
            "tags": [], "lastModified": last, "createdAt": last,
            "siblings": [{"rfilename": p} for p in sorted(files)],
        })

    def tree(self, repo_type, repo_id, rev, prefix):
        self._check_auth(write=False)
        repo = self._repo(repo_type, repo_id)
        _, files = self._files(repo, rev)
        recursive = self.query.get("recursive", "false").lower() in ("1", "true")
        prefix = prefix.strip("/")
        if prefix and prefix in files:
            raise HttpError(404, f"{prefix} is a file, not a folder", "EntryNotFound")
        base = prefix + "/" if prefix else ""
        under = {p: e for p, e in files.items() if p.startswith(base)}
        if prefix and not under:
            raise HttpError(404, f"Entry Not Found for url: {self.path}.", "EntryNotFound")
        items, folders = [], set()
        for path in sorted(under):
            rel = path[len(base):]
            if "/" in rel:
                parts = rel.split("/")
                # every intermediate folder once (all of them when recursive, the first level otherwise)
                for depth in range(1, len(parts) if recursive else 2):
                    folder = base + "/".join(parts[:depth])
                    if folder not in folders:
                        folders.add(folder)
                        items.append({"type": "directory", "oid": hashlib.sha1(folder.encode()).hexdigest(), "size": 0, "path": folder})
                if not recursive:
                    continue
            items.append(self._tree_entry(path, under[path]))
        self._send_json(200, items)

    def paths_info(self, repo_type, repo_id, rev):
        self._check_auth(write=False)
        repo = self._repo(repo_type, repo_id)
        _, files = self._files(repo, rev)
        body = self._body().decode()
        if self.headers.get("Content-Type", "").startswith("application/json"):
            paths = json.loads(body).get("paths", [])
        else:
            paths = parse_qs(body).get("paths", [])
        out = []
        for path in paths:
            path = path.strip("/")
            if path in files:
                out.append(self._tree_entry(path, files[path]))
            elif any(p.startswith(path + "/") for p in files):
                out.append({"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(), "size": 0, "path": path})
        self._send_json(200, out)

    def refs(self, repo_type, repo_id):
        self._check_auth(write=False)
        repo = self._repo(repo_type, repo_id)
        branches = [{"name": r, "ref": f"refs/heads/{r}", "targetCommit": o} for r, o in repo.refs.items() if not r.startswith("refs/")]
        prs = [{"name": r, "ref": r, "targetCommit": o} for r, o in repo.refs.items() if r.startswith("refs/pr/")]
        self._send_json(200, {"branches": branches, "tags": [], "converts": [], "pullRequests": prs})

    def preupload(self, repo_type, repo_id, rev):
        self._check_auth(write=True)
        hub = self.server_hub
        self._repo(repo_type, repo_id)
        payload = self._json_body()
        files = []
        for item in payload.get("files", []):
            mode = "lfs" if int(item["size"]) >= hub.lfs_threshold else "regular"
            files.append({"path": item["path"], "uploadMode": mode, "shouldIgnore": False, "oid": None})
        self._send_json(200, {"files": files, "commitOid": None})

    def branch(self, repo_type, repo_id, branch):
        self._check_auth(write=True)
        hub = self.server_hub
        repo = self._repo(repo_type, repo_id)
        payload = self._json_body()
        with hub.lock:
            if branch in repo.refs:
                raise HttpError(409, f"Reference already exists: {branch}")
            start = payload.get("startingPoint") or "main"
            oid = repo.resolve(start)
            if oid is None:
                raise HttpError(404, f"Invalid starting point {start}", "RevisionNotFound")
            repo.refs[branch] = oid
        self._send_json(200, {})

    def commit(self, repo_type, repo_id, rev):
        self._check_auth(write=True)
        hub = self.server_hub
        repo = self._repo(repo_type, repo_id)
        lines = [json.loads(line) for line in self._body().decode().splitlines() if line.strip()]
        create_pr = self.query.get("create_pr") in ("1", "true")
        with hub.lock:
            target = rev
            if create_pr:
                repo.prs += 1
                target = f"refs/pr/{repo.prs}"
                base_oid = repo.resolve(rev)
                if base_oid is None:
                    raise HttpError(404, f"Revision Not Found: {rev}", "RevisionNotFound")
                repo.refs[target] = base_oid
            parent, files = self._files(repo, target)
            files = dict(files)
            title = "commit"
            for line in lines:
                key, value = line.get("key"), line.get("value", {})
                if key == "header":
                    title = value.get("summary") or title
                    if value.get("parentCommit") and value["parentCommit"] != parent:
                        raise HttpError(412, "A commit has happened since. Please refresh and try again.")
                elif key == "file":
                    data = base64.b64decode(value["content"]) if value.get("encoding", "base64") == "base64" else value["content"].encode()
                    files[value["path"]] = Entry(len(data), git_blob_sha1(data), data)
                elif key == "lfsFile":
                    oid, size = value["oid"], int(value["size"])
                    if oid not in hub.lfs_store:
                        raise HttpError(422, f"LFS object {oid} for {value['path']} was never uploaded")
                    files[value["path"]] = Entry(size, git_blob_sha1(lfs_pointer(oid, size)), None, oid)
                elif key == "deletedFile":
                    if files.pop(value["path"], None) is None:
                        raise HttpError(404, f"{value['path']} does not exist", "EntryNotFound")
                elif key == "deletedFolder":
                    folder = value["path"].rstrip("/") + "/"
                    for path in [p for p in files if p.startswith(folder)]:
                        del files[path]
                elif key == "copyFile":
                    src_files = repo.files(value.get("srcRevision") or target)
                    files[value["path"]] = src_files[value["srcPath"]]
                else:
                    raise HttpError(400, f"Unknown commit line key {key!r}")
            oid = hub._new_commit(repo, parent, files, title)
            repo.refs[target] = oid
        reply = {"commitUrl": f"{hub.repo_url(repo)}/commit/{oid}", "commitOid": oid, "success": True}
        if create_pr:
            reply["pullRequestUrl"] = f"{hub.repo_url(repo)}/discussions/{repo.prs}"
        self._send_json(200, reply)

    def lfs_batch(self, repo_type, repo_id):
        self._check_auth(write=True)
        hub = self.server_hub
        self._repo(repo_type, repo_id)
        payload = self._json_body()
        objects = []
        for obj in payload.get("objects", []):
            oid, size = obj["oid"], int(obj["size"])
            item = {"oid": oid, "size": size, "authenticated": True}
            if payload.get("operation") == "upload" and oid not in hub.lfs_store:
                item["actions"] = {
                    "upload": {"href": f"{hub.url}/_lfs/{oid}"},
                    "verify": {"href": f"{hub.url}/_lfs/{oid}/verify"},
                }
            elif payload.get("operation") == "download":
                if oid not in hub.lfs_store:
                    item["error"] = {"code": 404, "message": "Object does not exist"}
                else:
                    item["actions"] = {"download": {"href": f"{hub.url}/_lfs/{oid}"}}
            objects.append(item)
        self._send(200, json.dumps({"transfer": "basic", "objects": objects}).encode(), content_type="application/vnd.git-lfs+json")

    def lfs_put(self, oid):
        data = self._body()
        if hashlib.sha256(data).hexdigest() != oid:
            raise HttpError(400, f"sha256 of the uploaded bytes does not match {oid}")
        with self.server_hub.lock:
            self.server_hub.lfs_store[oid] = data
        self._send(200, b"")

    def lfs_verify(self, oid):
        payload = self._json_body()
        data = self.server_hub.lfs_store.get(oid)
        if data is None or len(data) != int(payload.get("size", len(data))):
            raise HttpError(404, f"LFS object {oid} not found or wrong size")
        self._send_json(200, {"success": True})

    def resolve(self, repo_type, repo_id, rev, path):
        self._check_auth(write=False)
        hub = self.server_hub
        repo = self._repo(repo_type, repo_id)
        oid, files = self._files(repo, rev)
        entry = files.get(path)
        if entry is None:
            raise HttpError(404, f"Entry Not Found for url: {self.path}.", "EntryNotFound")
        headers = {"X-Repo-Commit": oid, "Accept-Ranges": "bytes"}
        if entry.lfs_oid is not None:
            data = hub.lfs_store[entry.lfs_oid]
            headers.update({"ETag": f'"{entry.lfs_oid}"', "X-Linked-Etag": f'"{entry.lfs_oid}"', "X-Linked-Size": str(entry.size)})
        else:
            data = entry.data
            headers["ETag"] = f'"{entry.blob_oid}"'
        status = 200
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", "") or "")
        if match and self.command == "GET":
            start = int(match.group(1))
            end = int(match.group(2)) if match.group(2) else len(data) - 1
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            data, status = data[start : end + 1], 206
        self._send(status, data, headers, content_type="application/octet-stream")

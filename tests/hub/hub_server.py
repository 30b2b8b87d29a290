"""A stand-in for the Hugging Face hub on loopback: the part of its HTTP protocol that
huggingface_hub (2.x) speaks when it downloads a model, read off its source.

- ``GET /api/models/{repo}[/revision/{rev}]``: model info (``sha``, ``siblings``,
  ``gated``, ``config``), what ``HfApi.model_info`` and ``snapshot_download`` ask first;
- ``GET /api/models/{repo}/tree/{rev}?recursive=...``: the file listing that
  ``snapshot_download`` caches before fetching files (a JSON list, one page);
- ``HEAD``/``GET /{repo}/resolve/{rev}/{path}``: a file, with ``X-Repo-Commit`` and
  ``ETag`` (the git blob id); a large (LFS) file answers 302 with ``X-Linked-Etag``
  (its sha256), ``X-Linked-Size`` and a ``Location`` on another host name
  (``localhost`` for ``127.0.0.1``), as the hub sends LFS files to its CDN: the client
  then keeps the metadata of the 302 and drops its token for the CDN;
- ``GET /cdn/{sha256}``: the CDN, with ``Range`` for resumed downloads.

Errors carry the hub's ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``,
``GatedRepo``, ``EntryNotFound``), which huggingface_hub turns into its exceptions.

``cut_after`` makes the server die in the middle of a file: it sends that many bytes,
drops the connection and stops listening, as a killed server would. ``start()``
again listens on the same port. Every request is logged in ``requests``.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".onnx", ".model", ".h5")


@dataclass
class RepoFile:
    path: str
    data: bytes

    @property
    def git_oid(self) -> str:
        return hashlib.sha1(b"blob %d\0" % len(self.data) + self.data).hexdigest()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def lfs(self) -> bool:
        return self.path.endswith(LFS_SUFFIXES)


@dataclass
class Repo:
    repo_id: str
    files: dict[str, RepoFile]
    commit: str
    refs: dict[str, str]  # branch or tag -> commit
    gated: bool = False
    private: bool = False
    token: str | None = None  # the token that may read it (gated or private)
    config: dict = field(default_factory=dict)

    def allowed(self, authorization: str | None) -> bool:
        if not (self.gated or self.private):
            return True
        return self.token is not None and authorization == f"Bearer {self.token}"


class LoopbackHub:
    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path)
        self.cut_after: dict[str, int] = {}  # file name -> bytes sent before the server dies
        self.port: int | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- content -------------------------------------------------------------------------

    def add_repo(self, repo_id: str, folder: Path, *, tags: tuple[str, ...] = (), gated: bool = False,
                 private: bool = False, token: str | None = None) -> str:
        """Serve every file under ``folder`` as ``repo_id`` at revision ``main`` (and
        ``tags``); returns the commit, a sha1 of the contents (same files, same commit)."""
        files = {p.relative_to(folder).as_posix(): RepoFile(p.relative_to(folder).as_posix(), p.read_bytes())
                 for p in sorted(folder.rglob("*")) if p.is_file()}
        commit = hashlib.sha1(repo_id.encode() + b"".join(f.path.encode() + f.git_oid.encode()
                                                          for f in files.values())).hexdigest()
        config: dict = {}
        if "config.json" in files:
            raw = json.loads(files["config.json"].data)
            config = {k: raw[k] for k in ("architectures", "model_type") if k in raw}
        self.repos[repo_id] = Repo(repo_id, files, commit, {"main": commit, **{t: commit for t in tags}},
                                   gated=gated, private=private, token=token, config=config)
        return commit

    @property
    def url(self) -> str:
        assert self.port is not None, "start() the hub first"
        return f"http://127.0.0.1:{self.port}"

    def api_requests(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self.requests)

    # -- life ---------------------------------------------------------------------------

    def start(self) -> "LoopbackHub":
        hub = self

        class Handler(_Handler):
            owner = hub

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port or 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="loopback-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def die(self) -> None:
        """Stop listening now, from a handler thread too (shutdown() waits for the loop)."""
        server, self._server = self._server, None
        if server is not None:
            server.server_close()  # new connections are refused from here on
            threading.Thread(target=server.shutdown, daemon=True).start()

    def __enter__(self) -> "LoopbackHub":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    owner: LoopbackHub
    protocol_version = "HTTP/1.1"  # keep-alive, as the hub; every answer has a Content-Length

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    # -- dispatch ------------------------------------------------------------------------

    def do_HEAD(self) -> None:
        self._dispatch(body=False)

    def do_GET(self) -> None:
        self._dispatch(body=True)

    def _dispatch(self, body: bool) -> None:
        hub = self.owner
        path = urlsplit(self.path).path
        with hub._lock:
            hub.requests.append((self.command, path))
        if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)(/.*)?", path):
            return self._tree(unquote(m[1]), unquote(m[2]), body)
        if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?", path):
            return self._info(unquote(m[1]), unquote(m[2]) if m[2] else "main", body)
        if m := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
            return self._resolve(unquote(m[1]), unquote(m[2]), unquote(m[3]), body)
        if m := re.fullmatch(r"/cdn/([0-9a-f]{64})", path):
            return self._cdn(m[1], body)
        self._error(404, "EntryNotFound", "Not found", body)

    # -- endpoints ---------------------------------------------------------------------------

    def _repo(self, repo_id: str, revision: str, body: bool, files_too: bool = True) -> Repo | None:
        repo = self.owner.repos.get(repo_id)
        authorization = self.headers.get("Authorization")
        if repo is None or (repo.private and not repo.allowed(authorization)):
            # The hub answers 401 to an anonymous caller, 404 otherwise; RepoNotFound either way.
            self._error(401 if repo is not None and authorization is None else 404, "RepoNotFound",
                        "Repository not found", body)
            return None
        if revision not in repo.refs and revision != repo.commit:
            self._error(404, "RevisionNotFound", "Invalid rev id: " + revision, body)
            return None
        if files_too and repo.gated and not repo.allowed(authorization):
            status = 401 if authorization is None else 403
            self._error(status, "GatedRepo", f"Access to model {repo_id} is restricted", body)
            return None
        return repo

    def _info(self, repo_id: str, revision: str, body: bool) -> None:
        repo = self._repo(repo_id, revision, body, files_too=False)  # a gated repo's card is public
        if repo is None:
            return
        siblings = [{"rfilename": f.path, "size": len(f.data), "blobId": f.git_oid,
                     **({"lfs": {"sha256": f.sha256, "size": len(f.data), "pointerSize": 134}} if f.lfs else {})}
                    for f in repo.files.values()]
        self._json({"_id": "0" * 24, "id": repo_id, "modelId": repo_id, "author": repo_id.split("/")[0],
                    "sha": repo.commit, "private": repo.private, "gated": "manual" if repo.gated else False,
                    "disabled": False, "downloads": 0, "likes": 0, "tags": ["transformers"],
                    "library_name": "transformers", "config": repo.config, "siblings": siblings}, body)

    def _tree(self, repo_id: str, revision: str, body: bool) -> None:
        repo = self._repo(repo_id, revision, body, files_too=False)
        if repo is None:
            return
        entries: list[dict] = []
        folders = sorted({str(Path(p).parent) for p in repo.files} - {"."})
        for folder in folders:
            entries.append({"type": "directory", "oid": hashlib.sha1(folder.encode()).hexdigest(), "size": 0,
                            "path": folder})
        for f in repo.files.values():
            entry = {"type": "file", "oid": f.git_oid, "size": len(f.data), "path": f.path}
            if f.lfs:
                entry["lfs"] = {"oid": f.sha256, "size": len(f.data), "pointerSize": 134}
            entries.append(entry)
        self._json(entries, body)

    def _resolve(self, repo_id: str, revision: str, name: str, body: bool) -> None:
        repo = self._repo(repo_id, revision, body)
        if repo is None:
            return
        file = repo.files.get(name)
        if file is None:
            self._error(404, "EntryNotFound", f"{name} does not exist", body, commit=repo.commit)
            return
        headers = {"X-Repo-Commit": repo.commit, "ETag": f'"{file.git_oid}"'}
        if file.lfs:  # to the CDN, on another host name
            headers |= {"X-Linked-Etag": f'"{file.sha256}"', "X-Linked-Size": str(len(file.data)),
                        "Location": f"http://localhost:{self.owner.port}/cdn/{file.sha256}"}
            self._send(302, headers, b"", body)
            return
        self._send(200, headers, file.data, body)

    def _cdn(self, sha256: str, body: bool) -> None:
        file = next((f for r in self.owner.repos.values() for f in r.files.values() if f.sha256 == sha256), None)
        if file is None:
            self._send(404, {}, b"", body)
            return
        start = 0
        if m := re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", "")):
            start = int(m[1])
        data = file.data[start:]
        status = 206 if start else 200
        headers = {"ETag": f'"{sha256}"', "Accept-Ranges": "bytes"}
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(file.data) - 1}/{len(file.data)}"
        cut = self.owner.cut_after.pop(Path(file.path).name, None) if body else None
        if cut is None:
            self._send(status, headers, data, body)
            return
        # Die mid-file: the promised length, a part of the bytes, then nothing listens.
        self.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(data))}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data[:cut])
        self.wfile.flush()
        self.owner.die()
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # -- answers -------------------------------------------------------------------------------

    def _json(self, value: object, body: bool) -> None:
        self._send(200, {"Content-Type": "application/json"}, json.dumps(value).encode(), body)

    def _error(self, status: int, code: str, message: str, body: bool, commit: str | None = None) -> None:
        headers = {"X-Error-Code": code, "X-Error-Message": message, "Content-Type": "application/json"}
        if commit:
            headers["X-Repo-Commit"] = commit
        self._send(status, headers, json.dumps({"error": message}).encode(), body)

    def _send(self, status: int, headers: dict[str, str], data: bytes, body: bool) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body and data:
            self.wfile.write(data)


def hub_env(base: dict[str, str], tmp_path: Path, endpoint: str) -> dict[str, str]:
    """The environment of a `tuner` process that may download from ``endpoint`` (and
    nothing else) into a Hugging Face cache of its own, with a database and a machine
    lock of its own."""
    env = {k: v for k, v in base.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN")}
    env.update({"HF_ENDPOINT": endpoint, "HF_HOME": str(tmp_path / "hf-home"),
                "TUNER_DATA_DIR": str(tmp_path / "data"), "TUNER_LOCK_FILE": str(tmp_path / "machine.lock")})
    return env


# -- endpoints that never answer ------------------------------------------------------------


def closed_port() -> int:
    """A loopback port nothing listens on: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Blackhole:
    """A loopback socket that listens and never accepts: the kernel completes the
    handshake, so a client connects, sends its request and waits for an answer that
    never comes."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> "Blackhole":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

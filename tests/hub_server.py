"""A local HTTP server that speaks the Hugging Face Hub's download protocol, for `reelchat pull` tests.

huggingface_hub, pointed at it with HF_ENDPOINT, asks for: a repo's revision (`/api/models/{repo}/revision/
{rev}`: its commit sha and files), its file tree (`/api/models/{repo}/tree/{rev}`: sizes, git blob ids and
LFS sha256), and each file (`HEAD`/`GET /{repo}/resolve/{rev}/{path}`, with `X-Repo-Commit`, an ETag that
names the blob in the cache, and HTTP Range for resumed downloads). That is all this server answers;
every request is recorded so tests can check what was fetched, and how.
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
from typing import Any
from urllib.parse import unquote, urlsplit

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    range: str | None


@dataclass
class Repo:
    files: dict[str, bytes]

    def sha256(self, path: str) -> str:
        return hashlib.sha256(self.files[path]).hexdigest()

    def blob_id(self, path: str) -> str:
        data = self.files[path]
        return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


@dataclass
class HubServer:
    """`repos` maps "owner/name" to its files; start() serves them on 127.0.0.1."""

    repos: dict[str, Repo]
    requests: list[Request] = field(default_factory=list)
    # files whose next full download is cut off half-way (the connection drops), as on a flaky network
    cut_once: set[str] = field(default_factory=set)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> HubServer:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_HEAD(self) -> None:
                hub._handle(self, body=False)

            def do_GET(self) -> None:
                hub._handle(self, body=True)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def fetched(self) -> list[str]:
        """Paths of files downloaded (GET on resolve), in order."""
        return [r.path for r in self.requests if r.method == "GET" and "/resolve/" in r.path]

    # -- protocol ----------------------------------------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler, *, body: bool) -> None:
        path = unquote(urlsplit(h.path).path)
        self.requests.append(Request(h.command, path, h.headers.get("Range")))
        api = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?", path)
        if api and api[1] in self.repos:
            repo = self.repos[api[1]]
            siblings = [{"rfilename": p} for p in sorted(repo.files)]
            return _json(h, {"id": api[1], "modelId": api[1], "sha": COMMIT, "private": False, "siblings": siblings})
        tree = re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)(/.*)?", path)
        if tree and tree[1] in self.repos:
            return _json(h, _tree(self.repos[tree[1]], (tree[3] or "").strip("/")))
        resolve = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if resolve and resolve[1] in self.repos and resolve[3] in self.repos[resolve[1]].files:
            cut = body and resolve[3] in self.cut_once and not h.headers.get("Range")
            if cut:
                self.cut_once.discard(resolve[3])
            return _file(h, self.repos[resolve[1]], resolve[3], body=body, cut=cut)
        if api or tree or resolve:
            h.send_response(404)
            h.send_header(
                "X-Error-Code", "RepoNotFound" if not (resolve and resolve[1] in self.repos) else "EntryNotFound"
            )
            h.send_header("Content-Length", "0")
            h.end_headers()
            return None
        h.send_error(404)
        return None


def _tree(repo: Repo, under: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    dirs: set[str] = set()
    for p in sorted(repo.files):
        if under and not p.startswith(under + "/"):
            continue
        parts = p.split("/")
        for i in range(1, len(parts)):
            dirs.add("/".join(parts[:i]))
        size = len(repo.files[p])
        lfs = {"oid": repo.sha256(p), "size": size, "pointerSize": 134}
        out.append({"type": "file", "oid": repo.blob_id(p), "size": size, "path": p, "lfs": lfs})
    out += [{"type": "directory", "oid": "0" * 40, "size": 0, "path": d} for d in sorted(dirs)]
    return out


def _json(h: BaseHTTPRequestHandler, data: Any) -> None:
    raw = json.dumps(data).encode()
    h.send_response(200)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(raw)))
    h.end_headers()
    h.wfile.write(raw)


def _file(h: BaseHTTPRequestHandler, repo: Repo, path: str, *, body: bool, cut: bool = False) -> None:
    data = repo.files[path]
    start = 0
    ranged = re.fullmatch(r"bytes=(\d+)-", h.headers.get("Range") or "")
    if ranged and body:
        start = min(int(ranged[1]), len(data))
    h.send_response(206 if start else 200)
    h.send_header("X-Repo-Commit", COMMIT)
    # as the Hub does for LFS files: the ETag is the sha256, which names the blob in the cache
    h.send_header("ETag", f'"{repo.sha256(path)}"')
    h.send_header("X-Linked-Etag", f'"{repo.sha256(path)}"')
    h.send_header("X-Linked-Size", str(len(data)))
    h.send_header("Accept-Ranges", "bytes")
    h.send_header("Content-Type", "application/octet-stream")
    if start:
        h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
    h.send_header("Content-Length", str(len(data) - start))
    h.end_headers()
    if cut:  # half the promised bytes, then the connection drops
        h.wfile.write(data[: len(data) // 2])
        h.wfile.flush()
        h.close_connection = True
        h.connection.shutdown(socket.SHUT_RDWR)
    elif body:
        h.wfile.write(data[start:])


def repo_from_dir(root: Path, extra: dict[str, bytes] | None = None) -> Repo:
    """A repo holding every file under `root` (a saved diffusers pipeline), plus `extra` files."""
    files = {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    return Repo({**files, **(extra or {})})

"""A small Hugging Face Hub stand-in on loopback, speaking the HTTP the real Hub speaks to ``huggingface_hub``.

It serves ``HEAD``/``GET /{repo}/resolve/{revision}/{path}`` with the headers the client reads (``X-Repo-Commit``,
``ETag``, ``Content-Length``), honours ``Range`` (the safetensors header reader asks for the first bytes only), and
answers errors with the ``X-Error-Code`` values the client maps to its exceptions (``RepoNotFound``,
``RevisionNotFound``, ``EntryNotFound``, ``GatedRepo``). Each request is logged so tests can count them and check the
token that came with them. Not a mock of our code: the code under test is the real ``huggingface_hub`` client.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
_API = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)(?:/revision/(?P<rev>[^/?]+))?")


def safetensors_blob(tensors: dict[str, tuple[str, list[int]]], metadata: dict[str, str] | None = None) -> bytes:
    """A valid safetensors file: 8-byte header length, JSON header, then zero-filled data (format per the
    huggingface/safetensors README)."""
    width = {"BF16": 2, "F16": 2, "F32": 4, "I32": 4, "U8": 1, "I8": 1, "F8_E4M3": 1}
    header: dict[str, Any] = {}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        n = width[dtype]
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    if metadata:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + bytes(offset)


@dataclass
class Repo:
    files: dict[str, bytes]
    commit: str = ""
    branches: dict[str, str] = field(default_factory=dict)
    #: a token that must be sent (gated / private repos); None = public
    token: str | None = None
    gated: bool = True

    def __post_init__(self) -> None:
        if not self.commit:
            digest = hashlib.sha1(b"".join(sorted(self.files.values()))).hexdigest()
            self.commit = digest
        self.branches.setdefault("main", self.commit)


@dataclass
class Request:
    method: str
    path: str
    authorization: str | None
    range: str | None


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.requests: list[Request] = []
        #: answer every request with this status (503: the Hub is down)
        self.fail_status: int | None = None
        #: seconds to wait before answering (a slow Hub)
        self.delay = 0.0
        #: each file's ETag, computed once per content: hashing a 1 GiB safetensors blob on every HEAD took seconds
        #: on a loaded machine, longer than the resolver's request timeout (the Hub test then failed at random)
        self._etags: dict[int, tuple[bytes, str]] = {}
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_HEAD(self) -> None:
                hub._serve(self, body=False)

            def do_GET(self) -> None:
                hub._serve(self, body=True)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add(self, repo_id: str, files: dict[str, Any], **kwargs: Any) -> Repo:
        encoded = {k: v if isinstance(v, bytes) else json.dumps(v).encode() for k, v in files.items()}
        repo = Repo(encoded, **kwargs)
        self.repos[repo_id] = repo
        for data in encoded.values():
            self._etag(data)  # now, not inside the first request's timeout
        return repo

    def _etag(self, data: bytes) -> str:
        known = self._etags.get(id(data))
        if known is None or known[0] is not data:
            known = (data, f'"{hashlib.sha256(data).hexdigest()}"')
            self._etags[id(data)] = known
        return known[1]

    # -- HTTP -----------------------------------------------------------------------------------------------------
    def _reply(
        self, h: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str], send_body: bool
    ) -> None:
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if send_body:
            h.wfile.write(body)

    def _error(self, h: BaseHTTPRequestHandler, status: int, code: str, send_body: bool) -> None:
        body = json.dumps({"error": f"{code} (fake hub)"}).encode()
        self._reply(h, status, body, {"X-Error-Code": code, "Content-Type": "application/json"}, send_body)

    def _serve(self, h: BaseHTTPRequestHandler, body: bool) -> None:
        path = unquote(h.path.split("?", 1)[0])
        self.requests.append(Request(h.command, path, h.headers.get("Authorization"), h.headers.get("Range")))
        if self.delay:
            time.sleep(self.delay)
        if self.fail_status is not None:
            self._reply(h, self.fail_status, b"unavailable", {}, body)
            return
        m = _RESOLVE.match(path) or _API.match(path)
        if m is None:
            self._reply(h, 404, b"not found", {}, body)
            return
        repo = self.repos.get(m.group("repo"))
        if repo is None:
            self._error(h, 401, "RepoNotFound", body)  # the Hub answers 401 for unknown and private alike
            return
        if repo.token is not None and h.headers.get("Authorization") != f"Bearer {repo.token}":
            self._error(h, 401 if not repo.gated else 403, "GatedRepo" if repo.gated else "RepoNotFound", body)
            return
        rev = m.group("rev") or "main"
        commit = repo.branches.get(rev, rev if rev == repo.commit else None)
        if commit is None:
            self._error(h, 404, "RevisionNotFound", body)
            return
        if "path" not in m.groupdict() or m.group("path") is None:
            info = {"id": m.group("repo"), "sha": commit, "siblings": [{"rfilename": f} for f in repo.files]}
            self._reply(h, 200, json.dumps(info).encode(), {"Content-Type": "application/json"}, body)
            return
        data = repo.files.get(m.group("path"))
        if data is None:
            self._error(h, 404, "EntryNotFound", body)
            return
        headers = {
            "X-Repo-Commit": commit,
            "ETag": self._etag(data),
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        rng = h.headers.get("Range")
        if rng and body:
            rm = re.match(r"bytes=(\d+)-(\d*)$", rng)
            if rm:
                start = int(rm.group(1))
                end = min(int(rm.group(2)) if rm.group(2) else len(data) - 1, len(data) - 1)
                headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                self._reply(h, 206, data[start : end + 1], headers, body)
                return
        self._reply(h, 200, data, headers, body)

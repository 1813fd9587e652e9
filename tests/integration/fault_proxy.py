"""A threaded HTTP -> HTTPS reverse proxy on loopback in front of the API server, for fault-injection tests.

The operator is pointed at it with a kubeconfig whose server is ``http://127.0.0.1:<port>``; the proxy forwards each
request to the API server with the cluster admin's client certificate, streaming the answer back (watches included).
While ``faults`` is set it answers a share of the chosen verbs itself with 409 Conflict, 429 Too Many Requests (with
Retry-After) or 500, in turn, without forwarding them. It counts every request per whole second (``per_second``).
"""

from __future__ import annotations

import http.client
import itertools
import json
import ssl
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade", "te", "trailer"}
FAULT_CODES = (409, 429, 500)
REASONS = {409: "Conflict", 429: "TooManyRequests", 500: "InternalError"}


class FaultProxy:
    def __init__(self, upstream_port: int, ca: Path, cert: Path, key: Path) -> None:
        self.upstream_port = upstream_port
        self.ctx = ssl.create_default_context(cafile=str(ca))
        self.ctx.load_cert_chain(str(cert), str(key))
        self.per_second: Counter[int] = Counter()  # int(time.monotonic()) -> requests that arrived in that second
        self.injected: Counter[int] = Counter()  # status code -> fault answers sent
        self.share = 0.0  # of requests with a verb in ``verbs`` answered by the proxy
        self.verbs: frozenset[str] = frozenset()
        self.retry_after = 1
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self._codes = itertools.cycle(FAULT_CODES)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def set_faults(self, share: float, verbs: set[str]) -> None:
        with self._lock:
            self.share, self.verbs = share, frozenset(verbs)

    def rates(self, start: float, end: float) -> tuple[int, float]:
        """(max, mean) requests per second over the whole seconds in [start, end) of ``time.monotonic()``."""
        seconds = range(int(start), max(int(start) + 1, int(end)))
        counts = [self.per_second[s] for s in seconds]
        return max(counts), sum(counts) / len(counts)

    def write_kubeconfig(self, path: Path) -> None:
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "proxy", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}],
            "users": [{"name": "proxy", "user": {}}],
            "contexts": [{"name": "proxy", "context": {"cluster": "proxy", "user": "proxy"}}],
            "current-context": "proxy",
        }
        path.write_text(yaml.safe_dump(cfg))

    def _fault(self, verb: str) -> int | None:
        with self._lock:
            if verb not in self.verbs or self.share <= 0:
                return None
            # deterministic share: every request whose sequence number falls in the first `share` of each 20
            if next(self._seq) % 20 >= round(self.share * 20):
                return None
            code = next(self._codes)
            self.injected[code] += 1
            return code

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # one request per connection; bodies end when the connection closes

            def log_message(self, *args: object) -> None:
                pass

            def _any(self) -> None:
                proxy.per_second[int(time.monotonic())] += 1
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                code = proxy._fault(self.command)
                if code is not None:
                    status = {
                        "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
                        "reason": REASONS[code], "message": f"injected by the fault proxy ({code})",
                    }  # fmt: skip
                    data = json.dumps(status).encode()
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    if code == 429:
                        self.send_header("Retry-After", str(proxy.retry_after))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP and k.lower() != "host"}
                conn = http.client.HTTPSConnection("127.0.0.1", proxy.upstream_port, context=proxy.ctx, timeout=330)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    rsp = conn.getresponse()
                except (OSError, http.client.HTTPException):  # the API server is down (restarting)
                    self.send_error(503, "upstream unavailable")
                    conn.close()
                    return
                try:
                    self.send_response(rsp.status, rsp.reason)
                    for k, v in rsp.getheaders():
                        if k.lower() not in HOP and k.lower() != "content-length":
                            self.send_header(k, v)
                    self.end_headers()
                    while chunk := rsp.read1(65536):
                        self.wfile.write(chunk)
                        self.wfile.flush()
                except (OSError, http.client.HTTPException):  # either side went away (a watch cut by a restart)
                    pass
                finally:
                    conn.close()

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

        return Handler

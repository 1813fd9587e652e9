"""A real Prometheus (the Debian package's binary) on loopback that scrapes the simulated pods by pod IP.

The local cluster has no Service endpoints (Kubernetes refuses loopback addresses in EndpointSlices), so Kubernetes
service discovery would find nothing to scrape. Prometheus reads its targets from a file instead (``file_sd``): the
pod watcher writes ``[{"targets": ["<podIP>:8000"], "labels": {"namespace": …, "pod": …}}, …]`` and Prometheus picks
up every change (it watches the file, and re-reads it every ``refresh_interval``).

:class:`Prometheus` writes the config into a work directory, starts the binary there with its storage in the same
directory, waits for ``/-/ready``, and stops the process by the PID it started. ``hack/fetch-prometheus.sh``
fetches the binary into the cache (no root, nothing installed system-wide).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

JOB = "vllm-sim"
#: Where the Debian package puts the binary, tried last.
DEBIAN_BINARY = "/usr/bin/prometheus"


def cached_prometheus() -> Path:
    """Where ``hack/fetch-prometheus.sh`` links the binary it fetched: ``<cache>/prometheus/bin/prometheus``."""
    from vlm_operator.devcluster.build import cache_root

    return cache_root() / "prometheus" / "bin" / "prometheus"


class PrometheusError(RuntimeError):
    pass


def find_prometheus() -> str | None:
    """The Prometheus server binary, or ``None`` (fetch it with ``bash hack/fetch-prometheus.sh``).

    Tried in order: ``$VLM_PROMETHEUS``, the cache, ``prometheus`` on PATH, the Debian package's path.
    """
    explicit = os.environ.get("VLM_PROMETHEUS")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    cached = cached_prometheus()
    if os.access(cached, os.X_OK):
        return str(cached)
    found = shutil.which("prometheus")
    if found:
        return found
    return DEBIAN_BINARY if os.access(DEBIAN_BINARY, os.X_OK) else None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class Target:
    """One scrape target: ``host:port`` and the labels Prometheus attaches to its series."""

    address: str
    labels: Mapping[str, str] = field(default_factory=dict)


def render_targets(targets: Iterable[Target]) -> str:
    """The file_sd JSON for ``targets``, one group per target, sorted so that equal sets give equal text."""
    ordered = sorted(targets, key=lambda t: (t.address, sorted(t.labels.items())))
    groups = [{"targets": [t.address], "labels": dict(sorted(t.labels.items()))} for t in ordered]
    return json.dumps(groups, indent=1) + "\n"


def write_targets(path: Path, targets: Iterable[Target]) -> bool:
    """Write the file_sd file atomically (Prometheus never reads half a file). Returns whether it changed."""
    text = render_targets(targets)
    with contextlib.suppress(FileNotFoundError):
        if path.read_text() == text:
            return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return True


def render_config(targets_file: Path, scrape_interval: float = 2.0) -> dict[str, Any]:
    """The Prometheus config: one job whose targets come from ``targets_file``."""
    interval = f"{int(scrape_interval * 1000)}ms"
    timeout = f"{max(100, int(scrape_interval * 1000) // 2)}ms"
    return {
        "global": {"scrape_interval": interval, "scrape_timeout": timeout, "evaluation_interval": interval},
        "scrape_configs": [
            {
                "job_name": JOB,
                "metrics_path": "/metrics",
                "file_sd_configs": [{"files": [str(targets_file)], "refresh_interval": interval}],
            }
        ],
    }


def _opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only, never a proxy


def instant_query(base_url: str, promql: str, timeout: float = 5.0) -> list[dict[str, Any]]:
    """``GET /api/v1/query``: the vector result as a list of ``{"metric": {...}, "value": [ts, "v"]}``."""
    url = base_url.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with _opener().open(url, timeout=timeout) as resp:
        body = json.loads(resp.read())
    if body.get("status") != "success":
        raise PrometheusError(f"query {promql!r} failed: {body}")
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


class Prometheus:
    """One Prometheus process on ``127.0.0.1:port`` with its config, targets file and TSDB under ``workdir``."""

    def __init__(
        self,
        workdir: Path,
        port: int = 0,
        scrape_interval: float = 2.0,
        binary: str | None = None,
        log: Callable[[str], None] = lambda _m: None,
    ) -> None:
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.scrape_interval = scrape_interval
        self.binary = binary or find_prometheus()
        self.log = log
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def targets_file(self) -> Path:
        return self.workdir / "targets.json"

    @property
    def config_file(self) -> Path:
        return self.workdir / "prometheus.yml"

    @property
    def pid_file(self) -> Path:
        return self.workdir / "prometheus.pid"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, timeout: float = 60.0) -> None:
        if self.binary is None:
            raise PrometheusError("no prometheus binary: run `bash hack/fetch-prometheus.sh`")
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.targets_file.exists():
            write_targets(self.targets_file, [])
        self.config_file.write_text(yaml.safe_dump(render_config(self.targets_file, self.scrape_interval)))
        args = [
            self.binary,
            f"--config.file={self.config_file}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            "--storage.tsdb.retention.time=2h",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        log_file = (self.workdir / "prometheus.log").open("ab")
        try:
            self._proc = subprocess.Popen(
                args, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        finally:
            log_file.close()
        self.pid_file.write_text(f"{self._proc.pid}\n")
        self.log(f"prometheus: pid {self._proc.pid} on {self.url}, targets in {self.targets_file}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise PrometheusError(f"prometheus exited with {self._proc.returncode}:\n{self._log_tail()}")
            try:
                with _opener().open(self.url + "/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        self.stop()
        raise PrometheusError(f"prometheus not ready after {timeout:.0f}s:\n{self._log_tail()}")

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the process this object started (by PID), SIGKILL after ``grace`` seconds."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait(5)
        self.pid_file.unlink(missing_ok=True)
        self.log(f"prometheus: stopped pid {proc.pid}")

    def query(self, promql: str) -> list[dict[str, Any]]:
        return instant_query(self.url, promql)

    def active_targets(self) -> list[dict[str, Any]]:
        """``GET /api/v1/targets``: the active targets with their health and last error."""
        with _opener().open(self.url + "/api/v1/targets?state=active", timeout=5) as resp:
            body = json.loads(resp.read())
        targets: list[dict[str, Any]] = body["data"]["activeTargets"]
        return targets

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join((self.workdir / "prometheus.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

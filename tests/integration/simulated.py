"""Simulated vLLM pods for the integration tests: ``vlmctl simulate-pods`` as a subprocess (:class:`SimWatcher`), plain
GPU Deployments (with or without the simulator) and waits on their pods. Test modules import these from here, never
from each other."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.conftest import Cluster, wait_until

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only, never a proxy


class SimWatcher:
    """`vlmctl simulate-pods` as a subprocess, stopped by its PID."""

    def __init__(self, cluster: Cluster, log: Path, *extra: str) -> None:
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "vlm_operator",
                    "simulate-pods",
                    "--kubeconfig",
                    str(cluster.kubeconfig),
                    "--interval",
                    "0.3",
                    *extra,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_until(lambda: "simulate-pods: watching" in self.output() or self.proc.poll() is not None, "watcher")
        except AssertionError:
            self.stop()
            raise
        if self.proc.poll() is not None:
            raise AssertionError(f"simulate-pods exited with {self.proc.returncode}:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def gpu_deployment(
    name: str,
    gpus: int = 1,
    annotations: dict[str, str] | None = None,
    node_selector: dict[str, str] | None = None,
    simulated: bool = False,
) -> dict[str, Any]:
    """A plain apps/v1 Deployment of one pod that asks for ``gpus`` GPUs (no operator involved). ``simulated``: the
    pod is served by ``vlmctl simulate-pods`` (its annotations configure the simulator) and goes at once when
    deleted."""
    container: dict[str, Any] = {
        "name": "vllm",
        "image": "vllm/vllm-openai:v0.11.0",
        "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
    }
    pod_spec: dict[str, Any] = {"tolerations": [GPU_TOLERATION], "containers": [container]}
    annotations = dict(annotations or {})
    if simulated:
        annotations = {"sim.vlmops.io/simulator": "true", **annotations}
        pod_spec["terminationGracePeriodSeconds"] = 0
        container["args"] = ["--served-model-name", "Qwen/Qwen2.5-VL-7B-Instruct", "--max-num-seqs", "4"]
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}, "annotations": annotations}, "spec": pod_spec},
        },
    }


def sim_deployment(name: str, annotations: dict[str, str]) -> dict[str, Any]:
    """:func:`gpu_deployment` of one GPU whose pod the simulator serves."""
    return gpu_deployment(name, annotations=annotations, simulated=True)


def live_pods(cluster: Cluster, ns: str, app: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.get_json("pods", "-n", ns, "-l", f"app={app}")["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def is_ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions") or [])


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str] | None:
    """``(status, body)``, or ``None`` when nothing answers (connection refused)."""
    try:
        with _OPENER.open(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, OSError):
        return None


def running_pod(cluster: Cluster, ns: str, app: str, exclude: str | None = None) -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        for p in live_pods(cluster, ns, app):
            if p["metadata"]["name"] != exclude and p["status"].get("phase") == "Running" and p["status"].get("podIP"):
                return p
        return None

    pod: dict[str, Any] = wait_until(find, f"a Running pod of {app} with an IP", timeout=60, interval=0.2)
    return pod


def ready_pod(cluster: Cluster, ns: str, app: str, name: str, timeout: float = 60) -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        for p in live_pods(cluster, ns, app):
            if p["metadata"]["name"] == name and is_ready(p):
                return p
        return None

    pod: dict[str, Any] = wait_until(find, f"pod {name} Ready", timeout=timeout, interval=0.2)
    return pod

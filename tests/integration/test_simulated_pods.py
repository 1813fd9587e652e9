"""Simulated vLLM pods on the local control plane: `vlmctl simulate-pods` serves a simulator on each annotated
pod's loopback IP, the pod turns Ready only once the simulator answers /health, and the simulator stops with the pod.
Only loopback traffic; every request here is bounded."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Cluster, wait_until
from vlm_operator.smoke import smoke_check

pytestmark = [pytest.mark.integration, pytest.mark.local_only, pytest.mark.timeout(240)]

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


def sim_deployment(name: str, annotations: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {
                    "labels": {"app": name},
                    "annotations": {"sim.vlmops.io/simulator": "true", **annotations},
                },
                "spec": {
                    "tolerations": [GPU_TOLERATION],
                    "terminationGracePeriodSeconds": 0,
                    "containers": [
                        {
                            "name": "vllm",
                            "image": "vllm/vllm-openai:v0.11.0",
                            "args": ["--served-model-name", "Qwen/Qwen2.5-VL-7B-Instruct", "--max-num-seqs", "4"],
                            "resources": {"limits": {"nvidia.com/gpu": "1"}},
                        }
                    ],
                },
            },
        },
    }


def apply(cluster: Cluster, ns: str, obj: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(obj))


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


@pytest.fixture(scope="module")
def watcher(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimWatcher]:
    w = SimWatcher(cluster, tmp_path_factory.mktemp("simulate-pods") / "simulate-pods.log")
    try:
        yield w
    finally:
        w.stop()


def test_pod_turns_ready_only_once_its_simulator_answers_and_the_simulator_stops_with_the_pod(
    cluster: Cluster, namespace: str, watcher: SimWatcher
) -> None:
    # the simulator "loads" for 4 s before it listens, as vLLM's port refuses connections during a model load
    apply(cluster, namespace, sim_deployment("sim", {"sim.vlmops.io/startup-delay": "4s"}))
    pod = running_pod(cluster, namespace, "sim")
    name, ip = pod["metadata"]["name"], pod["status"]["podIP"]
    assert ip.startswith("127.100.")
    base = f"http://{ip}:8000"

    # Running with an IP, but kwok left it unready and nothing answers yet
    assert not is_ready(pod)
    assert http_get(base + "/health") is None
    assert not is_ready(cluster.get_json("pod", "-n", namespace, name))

    pod = ready_pod(cluster, namespace, "sim", name)
    health_at_ready = http_get(base + "/health")
    assert health_at_ready is not None and health_at_ready[0] == 200
    assert all(cs["ready"] for cs in pod["status"]["containerStatuses"])
    assert {c["type"]: c["status"] for c in pod["status"]["conditions"]}["ContainersReady"] == "True"
    assert f"{namespace}/{name}: /health answered; marked Ready" in watcher.output()

    # the simulator took its settings from the container's `vllm serve` args and image tag
    models = http_get(base + "/v1/models")
    assert models is not None and "Qwen/Qwen2.5-VL-7B-Instruct" in models[1]
    res = smoke_check(base, "Qwen/Qwen2.5-VL-7B-Instruct", timeout=10)
    assert res.ok, res.error

    metrics = http_get(base + "/metrics")
    assert metrics is not None and metrics[0] == 200
    fams = {f.name: f for f in text_string_to_metric_families(metrics[1])}
    waiting = fams["vllm:num_requests_waiting"]
    assert waiting.type == "gauge"
    assert waiting.samples[0].labels == {"model_name": "Qwen/Qwen2.5-VL-7B-Instruct", "engine": "0"}
    assert waiting.samples[0].value == 0
    assert "vllm:kv_cache_usage_perc" in fams and "vllm:gpu_cache_usage_perc" not in fams  # v0.11.0
    success = [s for s in fams["vllm:request_success"].samples if s.name == "vllm:request_success_total"]
    assert sum(s.value for s in success) == 1

    # delete the pod: its simulator stops; the Deployment's replacement gets its own simulator and turns Ready
    cluster.kubectl("delete", "pod", "-n", namespace, name, "--wait=false")
    replacement = running_pod(cluster, namespace, "sim", exclude=name)
    new_ip = replacement["status"]["podIP"]
    if new_ip != ip:
        wait_until(lambda: http_get(base + "/health") is None, "the deleted pod's simulator to stop", timeout=30)
    ready_pod(cluster, namespace, "sim", replacement["metadata"]["name"])
    health = http_get(f"http://{new_ip}:8000/health")
    assert health is not None and health[0] == 200

    # scale to zero: no pod, no simulator
    cluster.kubectl("scale", "deployment/sim", "-n", namespace, "--replicas=0")
    wait_until(lambda: not live_pods(cluster, namespace, "sim"), "the pods to go", timeout=60)
    wait_until(lambda: http_get(f"http://{new_ip}:8000/health") is None, "the simulator to stop", timeout=30)
    assert "stopped the simulator" in watcher.output()


def test_annotations_configure_the_simulator_and_plain_pods_get_none(
    cluster: Cluster, namespace: str, watcher: SimWatcher
) -> None:
    apply(
        cluster,
        namespace,
        sim_deployment(
            "old",
            {
                "sim.vlmops.io/engine-version": "0.6.3",
                "sim.vlmops.io/model-name": "llava-hf/llava-1.5-7b-hf",
                "sim.vlmops.io/max-num-seqs": "1",
            },
        ),
    )
    plain = sim_deployment("plain", {})
    del plain["spec"]["template"]["metadata"]["annotations"]["sim.vlmops.io/simulator"]
    apply(cluster, namespace, plain)

    pod = running_pod(cluster, namespace, "old")
    ready_pod(cluster, namespace, "old", pod["metadata"]["name"])
    metrics = http_get(f"http://{pod['status']['podIP']}:8000/metrics")
    assert metrics is not None and metrics[0] == 200
    fams = {f.name: f for f in text_string_to_metric_families(metrics[1])}
    # the old engine exports the old KV name and only the model_name label
    assert "vllm:gpu_cache_usage_perc" in fams and "vllm:kv_cache_usage_perc" not in fams
    assert fams["vllm:num_requests_waiting"].samples[0].labels == {"model_name": "llava-hf/llava-1.5-7b-hf"}

    # a pod without the annotation goes Ready through kwok's default stage and gets no simulator
    plain_pod = wait_until(
        lambda: next((p for p in live_pods(cluster, namespace, "plain") if is_ready(p)), None), "the plain pod Ready"
    )
    time.sleep(1.0)  # a few watcher passes
    assert http_get(f"http://{plain_pod['status']['podIP']}:8000/health") is None

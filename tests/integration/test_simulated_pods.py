"""Simulated vLLM pods on the local control plane: `vlmctl simulate-pods` serves a simulator on each annotated
pod's loopback IP, the pod turns Ready only once the simulator answers /health, and the simulator stops with the pod.
Only loopback traffic; every request here is bounded."""

from __future__ import annotations

import ipaddress
import json
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Cluster, wait_until
from tests.integration.helpers import apply
from tests.integration.simulated import (
    SimWatcher,
    http_get,
    is_ready,
    live_pods,
    ready_pod,
    running_pod,
    sim_deployment,
)
from vlm_operator.smoke import smoke_check

pytestmark = [pytest.mark.integration, pytest.mark.local_only, pytest.mark.timeout(240)]


def test_pod_turns_ready_only_once_its_simulator_answers_and_the_simulator_stops_with_the_pod(
    cluster: Cluster, namespace: str, watcher: SimWatcher
) -> None:
    # the simulator "loads" for 4 s before it listens, as vLLM's port refuses connections during a model load
    apply(cluster, sim_deployment("sim", {"sim.vlmops.io/startup-delay": "4s"}), namespace=namespace)
    pod = running_pod(cluster, namespace, "sim")
    name, ip = pod["metadata"]["name"], pod["status"]["podIP"]
    # the loopback /16 this cluster claimed (several clusters run side by side under xdist, each in its own range)
    pod_cidr = json.loads((cluster.kubeconfig.parent / "state.json").read_text())["pod_cidr"]
    assert ipaddress.ip_address(ip) in ipaddress.ip_network(pod_cidr) and ipaddress.ip_address(ip).is_loopback
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
        sim_deployment(
            "old",
            {
                "sim.vlmops.io/engine-version": "0.6.3",
                "sim.vlmops.io/model-name": "llava-hf/llava-1.5-7b-hf",
                "sim.vlmops.io/max-num-seqs": "1",
            },
        ),
        namespace=namespace,
    )
    plain = sim_deployment("plain", {})
    del plain["spec"]["template"]["metadata"]["annotations"]["sim.vlmops.io/simulator"]
    apply(cluster, plain, namespace=namespace)

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

"""Smoke tests of the control plane itself: scheduling onto simulated GPU nodes, the KWOK pod stages, RBAC and
garbage collection, all against the real API server, scheduler and controller-manager."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest

from tests.conftest import Cluster, wait_until
from tests.integration.helpers import CRASH_LOOP, apply
from tests.integration.simulated import gpu_deployment

pytestmark = pytest.mark.integration


def pods(cluster: Cluster, ns: str, app: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.get_json("pods", "-n", ns, "-l", f"app={app}")["items"]
    return items


def is_ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))


def node_of(cluster: Cluster, name: str) -> dict[str, Any]:
    node: dict[str, Any] = cluster.get_json("node", name)
    return node


@pytest.mark.local_only
def test_gpu_pod_is_scheduled_on_a_gpu_node_and_becomes_ready(cluster: Cluster, namespace: str) -> None:
    apply(cluster, gpu_deployment("one-gpu"), namespace=namespace)
    cluster.kubectl("rollout", "status", "-n", namespace, "deploy/one-gpu", "--timeout=90s")
    [pod] = pods(cluster, namespace, "one-gpu")
    assert is_ready(pod)
    node = node_of(cluster, pod["spec"]["nodeName"])
    assert int(node["status"]["allocatable"]["nvidia.com/gpu"]) >= 1
    assert any(t["key"] == "nvidia.com/gpu" and t["effect"] == "NoSchedule" for t in node["spec"]["taints"])


@pytest.mark.local_only
def test_simulated_pods_get_loopback_ips(cluster: Cluster, namespace: str) -> None:
    apply(cluster, gpu_deployment("ips"), namespace=namespace)
    pod = wait_until(lambda: [p for p in pods(cluster, namespace, "ips") if p["status"].get("podIP")], "a pod IP")[0]
    ip = ipaddress.ip_address(pod["status"]["podIP"])
    assert ip.is_loopback, ip
    assert not ip.is_private or ip.is_loopback


@pytest.mark.portable
def test_more_gpus_than_any_node_stays_pending_with_failed_scheduling(cluster: Cluster, namespace: str) -> None:
    apply(cluster, gpu_deployment("too-big", gpus=1000), namespace=namespace)

    def failed_scheduling() -> list[dict[str, Any]]:
        events = cluster.get_json("events", "-n", namespace)["items"]
        return [e for e in events if e["reason"] == "FailedScheduling"]

    events = wait_until(failed_scheduling, "a FailedScheduling event", timeout=60)
    assert "nvidia.com/gpu" in events[0]["message"]
    [pod] = pods(cluster, namespace, "too-big")
    assert pod["status"]["phase"] == "Pending"
    assert not pod["spec"].get("nodeName")


@pytest.mark.local_only
def test_product_node_selector_picks_the_right_pool(cluster: Cluster, namespace: str) -> None:
    from vlm_operator import gpus

    for alias in ("L4", "H100-80GB"):
        product = gpus.lookup(alias)
        name = f"on-{product.short_name.lower()}"
        apply(
            cluster,
            gpu_deployment(name, node_selector={"nvidia.com/gpu.product": product.product}),
            namespace=namespace,
        )
        cluster.kubectl("rollout", "status", "-n", namespace, f"deploy/{name}", "--timeout=90s")
        [pod] = pods(cluster, namespace, name)
        labels = node_of(cluster, pod["spec"]["nodeName"])["metadata"]["labels"]
        assert labels["nvidia.com/gpu.product"] == product.product
        assert labels["nvidia.com/gpu.memory"] == str(product.memory_mib)


@pytest.mark.portable
def test_garbage_collector_deletes_owned_objects(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("create", "configmap", "owner", "-n", namespace)
    owner = cluster.get_json("configmap", "owner", "-n", namespace)
    child = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "child",
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
            ],
        },
        "data": {"k": "v"},
    }
    apply(cluster, child, namespace=namespace)
    assert cluster.exists("configmap", "child", namespace)
    cluster.kubectl("delete", "configmap", "owner", "-n", namespace)
    wait_until(
        lambda: not cluster.exists("configmap", "child", namespace),
        "the garbage collector to delete the owned ConfigMap",
        timeout=60,
    )


@pytest.mark.portable
def test_rbac_is_enforced(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("create", "serviceaccount", "nobody", "-n", namespace)
    who = f"system:serviceaccount:{namespace}:nobody"
    res = cluster.kubectl("get", "pods", "-n", namespace, f"--as={who}", check=False)
    assert res.returncode != 0 and "forbidden" in res.stderr.lower()
    cluster.kubectl("create", "role", "pod-reader", "-n", namespace, "--verb=get,list", "--resource=pods")
    cluster.kubectl(
        "create", "rolebinding", "rb", "-n", namespace, "--role=pod-reader", f"--serviceaccount={namespace}:nobody"
    )
    wait_until(
        lambda: cluster.kubectl("get", "pods", "-n", namespace, f"--as={who}", check=False).returncode == 0,
        "the RoleBinding to take effect",
    )


@pytest.mark.local_only
def test_crashloop_stage_shows_climbing_restarts(cluster: Cluster, namespace: str) -> None:
    ann = CRASH_LOOP
    apply(cluster, gpu_deployment("crashy", annotations=ann), namespace=namespace)

    def restarts() -> int:
        ps = pods(cluster, namespace, "crashy")
        statuses = ps[0]["status"].get("containerStatuses", []) if ps else []
        return int(statuses[0]["restartCount"]) if statuses else 0

    wait_until(lambda: restarts() >= 3, "three restarts", timeout=90)
    [pod] = pods(cluster, namespace, "crashy")
    cs = pod["status"]["containerStatuses"][0]
    assert cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert cs["lastState"]["terminated"]["exitCode"] == 1
    assert not is_ready(pod)


@pytest.mark.local_only
def test_oom_at_startup_is_reported_like_the_kubelet_does(cluster: Cluster, namespace: str) -> None:
    ann = {
        "sim.vlmops.io/behavior": "crashloop",
        "sim.vlmops.io/crash-after": "1s",
        "sim.vlmops.io/exit-code": "137",
        "sim.vlmops.io/reason": "OOMKilled",
    }
    apply(cluster, gpu_deployment("oom", annotations=ann), namespace=namespace)

    def terminated() -> dict[str, Any] | None:
        for p in pods(cluster, namespace, "oom"):
            for cs in p["status"].get("containerStatuses", []):
                t: dict[str, Any] | None = cs.get("lastState", {}).get("terminated")
                if t:
                    return t
        return None

    t = wait_until(terminated, "an OOMKilled container", timeout=60)
    assert t["reason"] == "OOMKilled" and t["exitCode"] == 137


@pytest.mark.local_only
def test_fail_stage_fails_the_pod(cluster: Cluster, namespace: str) -> None:
    ann = {"sim.vlmops.io/behavior": "fail", "sim.vlmops.io/crash-after": "1s", "sim.vlmops.io/exit-code": "3"}
    apply(cluster, gpu_deployment("fails", annotations=ann), namespace=namespace)
    failed = wait_until(
        lambda: [p for p in pods(cluster, namespace, "fails") if p["status"].get("phase") == "Failed"],
        "a Failed pod",
        timeout=60,
    )
    term = failed[0]["status"]["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 3


@pytest.mark.local_only
def test_ready_after_annotation_delays_readiness(cluster: Cluster, namespace: str) -> None:
    apply(cluster, gpu_deployment("slow", annotations={"sim.vlmops.io/ready-after": "6s"}), namespace=namespace)
    running = wait_until(
        lambda: [p for p in pods(cluster, namespace, "slow") if p["status"].get("phase") == "Running"],
        "the slow pod to be Running",
    )
    # Running but not Ready while the "model loads"
    assert not is_ready(running[0])
    assert running[0]["status"]["containerStatuses"][0]["started"] is True
    wait_until(lambda: any(is_ready(p) for p in pods(cluster, namespace, "slow")), "readiness", timeout=60)
    started = running[0]["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]
    ready_pod = pods(cluster, namespace, "slow")[0]
    ready_at = next(c["lastTransitionTime"] for c in ready_pod["status"]["conditions"] if c["type"] == "Ready")
    from datetime import datetime

    delay = (datetime.fromisoformat(ready_at) - datetime.fromisoformat(started)).total_seconds()
    assert delay >= 5, json.dumps(ready_pod["status"], indent=1)

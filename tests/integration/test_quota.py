"""A namespace GPU ResourceQuota on the real local control plane: the built-in autoscaler stops at what the quota
admits and says so in ``ScalingLimited``, and a rollout that has spare GPUs but no quota room replaces pods in place
instead of creating a surge pod the API server would refuse.

The quota admits 2 pods of 1 GPU (``requests.nvidia.com/gpu: 2``). The API server's quota admission and the
controller manager's quota controller fill in ``status.used``; nothing here is faked.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.conftest import Cluster, wait_until
from tests.integration.helpers import Operator, apply, condition, wait_condition, wait_ready
from tests.integration.simulated import SimWatcher
from tests.integration.workloads import (
    SLOW_SIM,
    PoolFactory,
    Timeline,
    deployment,
    events,
    internal,
    load,
    longer_context,
    model,
    watch_a_rollout,
)
from vlm_operator.kube import Kube

pytestmark = [pytest.mark.integration, pytest.mark.local_only, pytest.mark.timeout(300)]

GPU = "requests.nvidia.com/gpu"


def gpu_quota(cluster: Cluster, namespace: str, gpus: int) -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "gpu-quota", "namespace": namespace},
        "spec": {"hard": {GPU: str(gpus)}},
    }
    apply(cluster, doc)
    # the controller manager's quota controller fills in status; before that, admission refuses nothing it limits
    wait_until(
        lambda: (
            GPU in (cluster.get_json("resourcequota", "gpu-quota", "-n", namespace).get("status") or {}).get("used", {})
        ),
        "the quota's status.used",
        timeout=60,
    )


def used(cluster: Cluster, namespace: str) -> str:
    q: dict[str, Any] = cluster.get_json("resourcequota", "gpu-quota", "-n", namespace)
    return str(q["status"]["used"][GPU])


def test_the_autoscaler_stays_within_the_quota_and_says_so(
    cluster: Cluster, namespace: str, operator: Operator, sims: SimWatcher
) -> None:
    kube = Kube(cluster.api_client)
    gpu_quota(cluster, namespace, 2)
    doc = internal(
        namespace,
        annotations=SLOW_SIM,
        replicas=1,
        minReplicas=1,
        maxReplicas=4,
        targetQueueDepth=2,
        scaleUpWindowSeconds=1,
        scaleUpMaxStep=4,
        cooldownSeconds=1,
    )
    name = doc["metadata"]["name"]
    apply(cluster, doc)
    wait_ready(cluster, namespace, name)
    obj = wait_condition(cluster, namespace, name, "ScalingLimited", "False", "WithinQuota")

    timeline = Timeline(kube, namespace, name)
    try:
        # 16 clients on pods that run 2 and queue 2 each: it wants 4 replicas, the quota has room for 2
        burst = load(kube, namespace, name, clients=16, seconds=30)
        obj = wait_condition(cluster, namespace, name, "ScalingLimited", "True", "QuotaLimited")
        msg = condition(obj, "ScalingLimited")["message"]
        assert "namespace quota gpu-quota leaves room for 2" in msg and "nvidia.com/gpu used" in msg, msg
        assert msg.startswith("wants "), msg
        time.sleep(8)  # several polls under load: it stays at the quota, no write loop, no refused pod churn
        assert time.monotonic() < burst.deadline, "the load ended too early to mean anything"
        limited = condition(timeline.latest(), "ScalingLimited")
        assert limited["reason"] == "QuotaLimited", limited
        burst.join()
    finally:
        timeline.stop()
    seen = [r for _, r in timeline.replicas()]
    assert max(seen) == 2 and seen[-1] == 2, seen
    assert used(cluster, namespace) == "2"
    # the load is gone: nothing wants more than the quota admits any more
    wait_condition(cluster, namespace, name, "ScalingLimited", "False", "WithinQuota")


def test_a_rollout_under_a_full_quota_replaces_in_place(
    cluster: Cluster, namespace: str, operator: Operator, gpu_pool: PoolFactory
) -> None:
    pool = gpu_pool(3)  # a spare GPU on the node, so only the quota stands in the way of a surge pod
    gpu_quota(cluster, namespace, 2)

    def change_once_the_quota_is_full(doc: dict[str, Any]) -> None:
        wait_until(lambda: used(cluster, namespace) == "2", "2 GPUs used in the quota", timeout=60)
        longer_context(doc)

    doc = model(namespace, pool, 2, {"sim.vlmops.io/ready-after": "3s"})
    w = watch_a_rollout(cluster, namespace, doc, change_once_the_quota_is_full)
    assert w.max_live == 2, w.samples  # no surge pod was ever created
    strategy = deployment(cluster, namespace)["spec"]["strategy"]["rollingUpdate"]
    assert strategy == {"maxSurge": 0, "maxUnavailable": 1}
    reasons = {e["reason"]: e["message"] for e in events(cluster, namespace)}
    assert "RolloutInPlace" in reasons and "QuotaFull" in reasons["RolloutInPlace"], reasons
    assert "gpu-quota has 2 of 2 nvidia.com/gpu used" in reasons["RolloutInPlace"], reasons

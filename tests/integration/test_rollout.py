"""Rollouts on the real local control plane: capacity-aware surge or in-place replacement, auto-rollback of a
crash-looping config, slow but healthy loads, and an operator killed mid-rollout.

Each test brings its own simulated GPU node (product A10G, which no other test uses) with a taint and a label of
its own, and pins its VLMDeployment there through ``podTemplate``, so the free GPUs are exactly what the test says
whatever else runs on the session cluster. KWOK stages (pod annotations set through ``podTemplate.annotations``)
make pods slow or crash-looping.
"""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest

from tests.conftest import Cluster, wait_until
from tests.integration.helpers import DRIFT_SECONDS, Operator, apply, condition, vlmd
from tests.integration.workloads import (
    SPEC_HASH,
    PoolFactory,
    deployment,
    events,
    longer_context,
    model,
    rolled_out,
    template_hash,
    watch_a_rollout,
)

pytestmark = [pytest.mark.integration, pytest.mark.local_only]


@pytest.fixture(autouse=True)
def _ignore_sigpipe() -> None:
    """``vlmctl``'s main() sets SIGPIPE to SIG_DFL (for ``vlmctl render | head``); unit tests call it in-process, and
    then a write on a socket the API server closed would kill the whole pytest process instead of raising EPIPE."""
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)


@pytest.fixture
def op(request: pytest.FixtureRequest) -> Operator:
    """The module's operator process (test_operator's fixture, under a name that does not shadow its import)."""
    running: Operator = request.getfixturevalue("operator")
    return running


def test_exactly_enough_gpus_replaces_in_place_without_dropping_below_replicas_minus_one(
    cluster: Cluster, namespace: str, op: Operator, gpu_pool: PoolFactory
) -> None:
    pool = gpu_pool(2)  # two pods of one GPU: no room for a third
    doc = model(namespace, pool, 2, {"sim.vlmops.io/ready-after": "3s"})
    w = watch_a_rollout(
        cluster,
        namespace,
        doc,
        lambda d: d["spec"]["podTemplate"]["annotations"].update({"sim.vlmops.io/ready-after": "4s"}),
    )
    assert w.min_ready >= 1, w.samples  # replicas - 1 Ready at every moment
    strategy = deployment(cluster, namespace)["spec"]["strategy"]["rollingUpdate"]
    assert strategy == {"maxSurge": 0, "maxUnavailable": 1}
    reasons = {e["reason"]: e["message"] for e in events(cluster, namespace)}
    assert "RolloutInPlace" in reasons and "NoSpareGPU" in reasons["RolloutInPlace"], reasons


def test_a_spare_gpu_surges_and_never_drops_ready(
    cluster: Cluster, namespace: str, op: Operator, gpu_pool: PoolFactory
) -> None:
    pool = gpu_pool(3)  # two pods of one GPU, and one GPU spare
    w = watch_a_rollout(
        cluster, namespace, model(namespace, pool, 2, {"sim.vlmops.io/ready-after": "3s"}), longer_context
    )
    assert w.max_live == 3, w.samples  # a surge pod was observed
    assert w.min_ready >= 2, w.samples  # the Ready count never dropped
    reasons = {e["reason"]: e["message"] for e in events(cluster, namespace)}
    assert "RolloutSurge" in reasons and "SpareGPUs" in reasons["RolloutSurge"], reasons


def test_a_crash_looping_config_is_rolled_back_and_the_spec_is_left_alone(
    cluster: Cluster, namespace: str, op: Operator, gpu_pool: PoolFactory
) -> None:
    pool = gpu_pool(2)
    doc = model(namespace, pool, 2, {})
    apply(cluster, doc)
    wait_until(lambda: rolled_out(cluster, namespace, 2), "the first revision", timeout=120)
    good = template_hash(cluster, namespace)
    oom = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
    doc["spec"]["podTemplate"]["annotations"] = {
        "sim.vlmops.io/behavior": "crashloop",
        "sim.vlmops.io/exit-code": "137",
        "sim.vlmops.io/reason": "OOMKilled",
        "sim.vlmops.io/message": oom,
        "sim.vlmops.io/crash-after": "1s",
    }
    apply(cluster, doc)
    applied = vlmd(cluster, namespace, "vlm")
    # the new config reaches the pod template (podTemplate.annotations pass through)
    wait_until(
        lambda: (
            deployment(cluster, namespace)["spec"]["template"]["metadata"]["annotations"].get("sim.vlmops.io/behavior")
            == "crashloop"
        ),
        "the crash-looping template to be applied",
    )
    obj = wait_until(
        lambda: (o := vlmd(cluster, namespace, "vlm")) and condition(o, "Degraded").get("reason") == "RolledBack" and o,
        "the rollback",
        timeout=120,
    )
    msg = condition(obj, "Degraded")["message"]
    assert "OOMKilled" in msg and "exit code 137" in msg and "OutOfMemoryError" in msg, msg
    assert template_hash(cluster, namespace) == good  # the previous pod template is back
    assert obj["spec"] == applied["spec"]  # the user's spec is untouched
    assert obj["metadata"]["generation"] == applied["metadata"]["generation"]
    obj = wait_until(lambda: rolled_out(cluster, namespace, 2), "the good revision to serve again", timeout=120)
    assert condition(obj, "Degraded")["reason"] == "RolledBack"
    assert obj["status"]["podTemplateHash"] == obj["status"]["lastGoodPodTemplateHash"] == good
    assert any(e["reason"] == "RolledBack" and e["type"] == "Warning" for e in events(cluster, namespace))
    # no loop: several drift resyncs later the failed template has not been applied again
    dep_gen = deployment(cluster, namespace)["metadata"]["generation"]
    time.sleep(DRIFT_SECONDS * 3)
    assert deployment(cluster, namespace)["metadata"]["generation"] == dep_gen
    assert template_hash(cluster, namespace) == good
    # the next change of the pod template retries
    doc["spec"]["podTemplate"]["annotations"] = {"sim.vlmops.io/ready-after": "1s"}
    apply(cluster, doc)
    obj = wait_until(
        lambda: template_hash(cluster, namespace) != good and rolled_out(cluster, namespace, 2),
        "the fixed config to roll out",
        timeout=120,
    )
    assert condition(obj, "Degraded")["status"] == "False"


def test_auto_rollback_can_be_turned_off(cluster: Cluster, namespace: str, op: Operator, gpu_pool: PoolFactory) -> None:
    pool = gpu_pool(2)
    doc = model(namespace, pool, 1, {}, autoRollback=False)
    apply(cluster, doc)
    wait_until(lambda: rolled_out(cluster, namespace, 1), "the first revision", timeout=120)
    before = template_hash(cluster, namespace)
    doc["spec"]["podTemplate"]["annotations"] = {
        "sim.vlmops.io/behavior": "crashloop",
        "sim.vlmops.io/crash-after": "1s",
    }
    apply(cluster, doc)
    bad = wait_until(lambda: (h := template_hash(cluster, namespace)) != before and h, "the new template")

    def restarts() -> int:
        pods = cluster.get_json("pods", "-n", namespace)["items"]
        return max(
            (c.get("restartCount", 0) for p in pods for c in p["status"].get("containerStatuses", [])), default=0
        )

    wait_until(lambda: restarts() >= 4, "the crash loop to pass the threshold", timeout=60)
    time.sleep(DRIFT_SECONDS)
    obj = vlmd(cluster, namespace, "vlm")
    assert condition(obj, "Degraded")["reason"] == "PodsFailing"
    assert template_hash(cluster, namespace) == bad


def test_a_slow_but_healthy_load_is_not_rolled_back(
    cluster: Cluster, namespace: str, op: Operator, gpu_pool: PoolFactory
) -> None:
    pool = gpu_pool(2)
    doc = model(namespace, pool, 1, {}, failureThreshold=1)
    apply(cluster, doc)
    wait_until(lambda: rolled_out(cluster, namespace, 1), "the first revision", timeout=120)
    before = template_hash(cluster, namespace)
    doc["spec"]["podTemplate"]["annotations"] = {"sim.vlmops.io/ready-after": "40s"}
    apply(cluster, doc)
    seen: set[str] = set()

    def done() -> dict[str, Any] | None:
        seen.add(condition(vlmd(cluster, namespace, "vlm"), "Degraded").get("reason", ""))
        return template_hash(cluster, namespace) != before and rolled_out(cluster, namespace, 1)

    started = time.monotonic()
    obj = wait_until(done, "the slow load to become Ready", timeout=150, interval=1)
    assert time.monotonic() - started >= 35  # it really was slow
    assert "RolledBack" not in seen and "StartupTimeout" not in seen, seen
    assert condition(obj, "Degraded")["status"] == "False"


def test_operator_killed_mid_rollout_resumes_without_duplicates_or_orphans(
    cluster: Cluster, namespace: str, op: Operator, gpu_pool: PoolFactory
) -> None:
    pool = gpu_pool(2)
    doc = model(namespace, pool, 2, {"sim.vlmops.io/ready-after": "2s"})
    apply(cluster, doc)
    wait_until(lambda: rolled_out(cluster, namespace, 2), "the first revision", timeout=120)
    before = template_hash(cluster, namespace)
    doc["spec"]["podTemplate"]["annotations"] = {"sim.vlmops.io/ready-after": "8s"}
    apply(cluster, doc)
    wait_until(lambda: template_hash(cluster, namespace) != before, "the rollout to start")
    op.kill()
    try:
        time.sleep(3)
        assert rolled_out(cluster, namespace, 2) is None  # killed while the rollout was still running
    finally:
        op.start()
    obj = wait_until(
        lambda: rolled_out(cluster, namespace, 2), "the rollout to complete after the restart", timeout=180
    )
    dep = deployment(cluster, namespace)
    rs = cluster.get_json("replicasets", "-n", namespace)["items"]
    by_hash: dict[str, int] = {}
    for r in rs:
        h = r["spec"]["template"]["metadata"]["annotations"][SPEC_HASH]
        by_hash[h] = by_hash.get(h, 0) + 1
        assert r["metadata"]["ownerReferences"][0]["uid"] == dep["metadata"]["uid"]
    assert by_hash == {before: 1, obj["status"]["podTemplateHash"]: 1}  # one ReplicaSet per template, no duplicate
    current_rs = next(r for r in rs if r["spec"]["replicas"] > 0)
    pods = [p for p in cluster.get_json("pods", "-n", namespace)["items"] if not p["metadata"].get("deletionTimestamp")]
    assert len(pods) == 2
    assert all(p["metadata"]["ownerReferences"][0]["uid"] == current_rs["metadata"]["uid"] for p in pods)
    for kind in ("deployments", "services", "poddisruptionbudgets"):
        assert [i["metadata"]["name"] for i in cluster.get_json(kind, "-n", namespace)["items"]] == ["vlm"], kind

"""Rollouts on the real local control plane: capacity-aware surge or in-place replacement, auto-rollback of a
crash-looping config, slow but healthy loads, and an operator killed mid-rollout.

Each test brings its own simulated GPU node (product A10G, which no other test uses) with a taint and a label of
its own, and pins its VLMDeployment there through ``podTemplate``, so the free GPUs are exactly what the test says
whatever else runs on the session cluster. KWOK stages (pod annotations set through ``podTemplate.annotations``)
make pods slow or crash-looping.
"""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client, watch

from tests.conftest import Cluster, wait_until
from tests.integration.helpers import DRIFT_SECONDS, Operator, apply, condition, sample, vlmd
from vlm_operator.devcluster.cluster import LABEL_MANAGED, NodePool, node_manifests

pytestmark = [pytest.mark.integration, pytest.mark.local_only]

POOL_KEY = "vlmops.io/test-pool"
SPEC_HASH = "vlmops.io/spec-hash"


PoolFactory = Callable[[int], str]


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


@pytest.fixture
def gpu_pool(cluster: Cluster) -> Iterator[PoolFactory]:
    """Make one A10G node with ``gpus`` GPUs that only this test's pods tolerate; returns its pool id."""
    made: list[str] = []

    def make(gpus: int) -> str:
        pool = f"r{uuid.uuid4().hex[:8]}"
        (doc,) = node_manifests(NodePool("A10G", 1, gpus))
        doc["metadata"]["name"] = f"gpu-{pool}"
        doc["metadata"]["labels"].update(
            {"kubernetes.io/hostname": f"gpu-{pool}", POOL_KEY: pool, LABEL_MANAGED: "true"}
        )
        doc["spec"]["taints"].append({"key": POOL_KEY, "value": pool, "effect": "NoSchedule"})
        cluster.kubectl("create", "-f", "-", input=yaml.safe_dump(doc))
        made.append(doc["metadata"]["name"])
        cluster.kubectl("wait", "--for=condition=Ready", f"node/gpu-{pool}", "--timeout=60s")
        return pool

    yield make
    for name in made:
        cluster.kubectl("delete", "node", name, "--wait=false", check=False)


def model(namespace: str, pool: str, replicas: int, annotations: dict[str, str], **rollout: Any) -> dict[str, Any]:
    doc = sample("llava-1.5-7b-l4.yaml", namespace)
    doc["metadata"]["name"] = "vlm"
    doc["spec"]["resources"]["gpu"]["product"] = "A10G"
    doc["spec"]["scaling"] = {"replicas": replicas}
    doc["spec"]["podTemplate"] = {
        "nodeSelector": {POOL_KEY: pool},
        "tolerations": [{"key": POOL_KEY, "operator": "Equal", "value": pool, "effect": "NoSchedule"}],
        "annotations": annotations,
    }
    if rollout:
        doc["spec"]["rollout"] = rollout
    return doc


class PodWatch:
    """Watches one namespace's pods and keeps, after every event, the Ready count and the live pod count
    (pods being deleted count as neither: they no longer serve)."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.api = client.CoreV1Api(cluster.api_client)
        self.namespace = namespace
        self.pods: dict[str, tuple[bool, bool]] = {}
        self.samples: list[tuple[int, int]] = []
        self._stop = threading.Event()
        self._w = watch.Watch()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = threading.Event()

    def __enter__(self) -> PodWatch:
        self._thread.start()
        self._started.wait(10)
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._w.stop()
        self._thread.join(10)

    def _run(self) -> None:
        listed = self.api.list_namespaced_pod(self.namespace)
        for p in listed.items:
            self._record(p, sample=False)
        self._sample()  # the state as listed, not one pod at a time
        self._started.set()
        rv = listed.metadata.resource_version
        while not self._stop.is_set():
            try:
                for ev in self._w.stream(
                    self.api.list_namespaced_pod, self.namespace, resource_version=rv, timeout_seconds=30
                ):
                    p = ev["object"]
                    rv = p.metadata.resource_version
                    if ev["type"] == "DELETED":
                        self.pods.pop(p.metadata.name, None)
                        self._sample()
                    else:
                        self._record(p)
                    if self._stop.is_set():
                        return
            except Exception:  # the stream ended early (stop(), or the API server closed it): resume from rv
                if self._stop.is_set():
                    return
                time.sleep(0.2)

    def _record(self, p: Any, sample: bool = True) -> None:
        ready = any(c.type == "Ready" and c.status == "True" for c in (p.status.conditions or []))
        deleting = p.metadata.deletion_timestamp is not None
        self.pods[p.metadata.name] = (ready and not deleting, not deleting and p.status.phase not in ("Failed",))
        if sample:
            self._sample()

    def _sample(self) -> None:
        self.samples.append(
            (sum(1 for r, _ in self.pods.values() if r), sum(1 for _, live in self.pods.values() if live))
        )

    @property
    def min_ready(self) -> int:
        return min(r for r, _ in self.samples)

    @property
    def max_live(self) -> int:
        return max(n for _, n in self.samples)


def deployment(cluster: Cluster, ns: str) -> dict[str, Any]:
    dep: dict[str, Any] = cluster.get_json("deployment", "vlm", "-n", ns)
    return dep


def template_hash(cluster: Cluster, ns: str) -> str:
    return str(deployment(cluster, ns)["spec"]["template"]["metadata"]["annotations"][SPEC_HASH])


def rolled_out(cluster: Cluster, ns: str, replicas: int) -> dict[str, Any] | None:
    """The VLMDeployment once Ready with every replica on the Deployment's current template and no old pod left."""
    obj = vlmd(cluster, ns, "vlm")
    if condition(obj, "Ready").get("status") != "True" or obj["status"].get("observedGeneration") != obj[
        "metadata"
    ].get("generation"):
        return None
    h = template_hash(cluster, ns)
    pods = cluster.get_json("pods", "-n", ns)["items"]
    hashes = [p["metadata"]["annotations"].get(SPEC_HASH) for p in pods if not p["metadata"].get("deletionTimestamp")]
    return obj if hashes == [h] * replicas and obj["status"].get("podTemplateHash") == h else None


def events(cluster: Cluster, ns: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.get_json("events", "-n", ns)["items"]
    return items


def test_exactly_enough_gpus_replaces_in_place_without_dropping_below_replicas_minus_one(
    cluster: Cluster, namespace: str, op: Operator, gpu_pool: PoolFactory
) -> None:
    pool = gpu_pool(2)  # two pods of one GPU: no room for a third
    doc = model(namespace, pool, 2, {"sim.vlmops.io/ready-after": "3s"})
    apply(cluster, doc)
    wait_until(lambda: rolled_out(cluster, namespace, 2), "the first revision", timeout=120)
    before = template_hash(cluster, namespace)
    with PodWatch(cluster, namespace) as w:
        doc["spec"]["podTemplate"]["annotations"]["sim.vlmops.io/ready-after"] = "4s"
        apply(cluster, doc)
        wait_until(
            lambda: template_hash(cluster, namespace) != before and rolled_out(cluster, namespace, 2),
            "the rollout to complete",
            timeout=180,
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
    doc = model(namespace, pool, 2, {"sim.vlmops.io/ready-after": "3s"})
    apply(cluster, doc)
    wait_until(lambda: rolled_out(cluster, namespace, 2), "the first revision", timeout=120)
    before = template_hash(cluster, namespace)
    with PodWatch(cluster, namespace) as w:
        doc["spec"]["engine"]["maxModelLen"] = 2048
        apply(cluster, doc)
        wait_until(
            lambda: template_hash(cluster, namespace) != before and rolled_out(cluster, namespace, 2),
            "the rollout to complete",
            timeout=180,
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

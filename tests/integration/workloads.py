"""Workloads the integration tests share: VLMDeployments for the autoscaler (:func:`internal`, :class:`Timeline`,
:func:`load`) and for rollouts on a test's own GPU node (:func:`model`, :class:`PodWatch`, :func:`rolled_out`). The
fixtures that go with them (``sims``, ``prometheus_port``, ``gpu_pool``) are in ``conftest.py``. Test modules import
these from here, never from each other."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client, watch

from tests.conftest import Cluster, wait_until
from tests.integration.helpers import apply, condition, sample, vlmd
from vlm_operator.kube import Kube
from vlm_operator.render import objects
from vlm_operator.simulator.load import BurstLoad, ready_pod_urls

SIM = "sim.vlmops.io/"
#: One request holds a slot for 16 output tokens at 10 tokens/s: 1.6 s, so a handful of clients builds a queue.
SLOW_SIM = {
    SIM + "simulator": "true",
    SIM + "max-num-seqs": "2",
    SIM + "decode-tokens-per-s": "10",
    SIM + "output-tokens": "16",
}


def internal(namespace: str, *, annotations: dict[str, str], **scaling: Any) -> dict[str, Any]:
    doc = sample("llava-1.5-7b-l4.yaml", namespace)
    doc["spec"]["scaling"] = {"mode": "Internal", "pollIntervalSeconds": 1, **scaling}
    doc["spec"]["podTemplate"] = {"annotations": annotations}
    return doc


class Timeline:
    """Polls the VLMDeployment every 0.2 s in a thread: ``(t, spec.scaling.replicas, conditions, object)``."""

    def __init__(self, kube: Kube, namespace: str, name: str) -> None:
        self.kube, self.namespace, self.name = kube, namespace, name
        self.points: list[tuple[float, int, dict[str, tuple[str, str]], dict[str, Any]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                obj = self.kube.get("vlmops.io/v1alpha1", "VLMDeployment", self.namespace, self.name)
            except Exception:  # a transient API error: the next sample is 0.2 s later
                obj = None
            if obj is not None:
                conds = {c["type"]: (c["status"], c["reason"]) for c in obj.get("status", {}).get("conditions", [])}
                self.points.append((time.monotonic(), int(obj["spec"]["scaling"]["replicas"]), conds, obj))
            self._stop.wait(0.2)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def replicas(self) -> list[tuple[float, int]]:
        """The distinct values of spec.scaling.replicas, each with the time it was first seen."""
        out: list[tuple[float, int]] = []
        for t, r, _, _ in self.points:
            if not out or out[-1][1] != r:
                out.append((t, r))
        return out

    def first(self, pred: Any, since: float = 0.0) -> float | None:
        return next((t for t, r, c, _ in self.points if t >= since and pred(r, c)), None)

    def latest(self) -> dict[str, Any]:
        return self.points[-1][3] if self.points else {}


def load(kube: Kube, namespace: str, name: str, clients: int, seconds: float) -> BurstLoad:
    """A bounded burst of tiny-PNG chat requests to the VLMDeployment's ready pods, by pod IP; started."""

    def targets() -> list[str]:
        return ready_pod_urls(kube.list("v1", "Pod", namespace, objects.selector_string(name)))

    return BurstLoad(targets, "llava-1.5-7b", clients=clients, seconds=seconds).start()


# --- rollouts on a GPU node of the test's own --------------------------------------------------------------------

POOL_KEY = "vlmops.io/test-pool"
SPEC_HASH = "vlmops.io/spec-hash"


PoolFactory = Callable[[int], str]


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


def watch_a_rollout(
    cluster: Cluster, namespace: str, doc: dict[str, Any], change: Callable[[dict[str, Any]], None]
) -> PodWatch:
    """Apply ``doc`` (2 replicas) and wait for its first revision; then, under a :class:`PodWatch`, apply ``change``
    and wait until every replica runs the new template. Returns the watch (its Ready and live counts over time)."""
    apply(cluster, doc)
    wait_until(lambda: rolled_out(cluster, namespace, 2), "the first revision", timeout=120)
    before = template_hash(cluster, namespace)
    with PodWatch(cluster, namespace) as w:
        change(doc)
        apply(cluster, doc)
        wait_until(
            lambda: template_hash(cluster, namespace) != before and rolled_out(cluster, namespace, 2),
            "the rollout to complete",
            timeout=180,
        )
    return w


def longer_context(doc: dict[str, Any]) -> None:
    """A spec change that rolls the pods: ``engine.maxModelLen`` 2048."""
    doc["spec"]["engine"]["maxModelLen"] = 2048

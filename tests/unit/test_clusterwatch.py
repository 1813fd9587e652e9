"""The watch-fed nodes and pods a rollout's free-GPU count reads (vlm_operator.clusterwatch): listed once in pages,
kept current by watch events, listed again after 410 Gone, trimmed to what free_gpus reads, 403 passed on."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from vlm_operator import rollout
from vlm_operator.clusterwatch import ClusterWatch, WatchedKind, trim_node, trim_pod


def pod(name: str, node: str | None, gpus: int = 1, phase: str = "Running", rv: str = "1") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": f"u-{name}", "resourceVersion": rv, "labels": {"a": "b"}},
        "spec": {
            "nodeName": node,
            "containers": [{"resources": {"requests": {"cpu": "1", "nvidia.com/gpu": str(gpus)}}, "image": "x"}],
        },
        "status": {"phase": phase, "conditions": [{"type": "Ready"}]},
    }


def node(name: str, gpus: int) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "uid": f"u-{name}", "labels": {"nvidia.com/gpu.product": "NVIDIA-L4"}},
        "spec": {},
        "status": {"allocatable": {"nvidia.com/gpu": str(gpus), "cpu": "8"}, "conditions": [{"type": "Ready"}]},
    }


class FakeKube:
    """Pages of a LIST, then scripted watch requests (each a list of events, or an exception)."""

    def __init__(self, items: list[dict[str, Any]], watches: list[Any], page_size: int = 2) -> None:
        self.items, self.watches, self.page_size = items, watches, page_size
        self.lists: list[str | None] = []
        self.watched_from: list[str] = []
        self.done = threading.Event()

    def list_page(self, api_version: str, kind: str, fs: str | None, limit: int, cont: str | None) -> dict[str, Any]:
        self.lists.append(cont)
        start = int(cont or 0)
        chunk = self.items[start : start + self.page_size]
        nxt = start + self.page_size
        return {
            "items": chunk,
            "metadata": {"resourceVersion": "10", "continue": str(nxt) if nxt < len(self.items) else ""},
        }

    def watch(self, api_version: str, kind: str, fs: str | None, rv: str, timeout_s: int = 290) -> Iterator[Any]:
        self.watched_from.append(rv)
        if not self.watches:
            self.done.set()
            time.sleep(0.05)
            return
        step = self.watches.pop(0)
        if isinstance(step, Exception):
            raise step
        yield from step


def _settle(kube: FakeKube, w: WatchedKind) -> None:
    w.items()
    assert kube.done.wait(5)
    w.stop()


def test_listed_in_pages_then_kept_current_by_the_watch() -> None:
    kube = FakeKube(
        [pod("a", "n1"), pod("b", "n1"), pod("c", None)],
        [
            [
                {"type": "MODIFIED", "object": pod("c", "n2", rv="11")},
                {"type": "DELETED", "object": pod("a", "n1", rv="12")},
                {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "13"}}},
            ],
            [{"type": "ADDED", "object": pod("d", "n2", rv="14")}],
        ],
    )
    w = WatchedKind(kube, "v1", "Pod", trim_pod)
    _settle(kube, w)
    assert kube.lists == [None, "2"]  # one LIST, two pages
    assert kube.watched_from == ["10", "13", "14"]  # each watch resumes where the last one ended
    assert sorted((p["metadata"]["name"], p["spec"]["nodeName"]) for p in w.items()) == [
        ("b", "n1"), ("c", "n2"), ("d", "n2"),
    ]  # fmt: skip
    assert w.lists == 1


def test_an_expired_watch_lists_again() -> None:
    kube = FakeKube([pod("a", "n1")], [[{"type": "ERROR", "object": {"code": 410, "message": "too old"}}]])
    w = WatchedKind(kube, "v1", "Pod", trim_pod)
    _settle(kube, w)
    assert w.lists == 2 and kube.lists == [None, None]


def test_a_forbidden_list_is_raised_to_the_caller() -> None:
    class Forbidden(FakeKube):
        def list_page(self, *a: Any, **k: Any) -> dict[str, Any]:
            raise ApiException(status=403, reason="Forbidden")

    w = WatchedKind(Forbidden([], []), "v1", "Pod", trim_pod)
    with pytest.raises(ApiException) as exc:
        w.items(timeout_s=5)
    assert exc.value.status == 403
    w.stop()


def test_trimmed_objects_give_the_same_free_gpus_as_whole_ones() -> None:
    nodes = [node("n1", 2), node("n2", 4)]
    pods = [pod("a", "n1"), pod("b", "n2", gpus=3), pod("c", None), pod("d", "n2", phase="Pending")]
    spec = {"containers": [{"resources": {"requests": {"nvidia.com/gpu": "1"}}}]}
    whole = rollout.free_gpus(nodes, pods, spec)
    assert whole == {"n1": 1, "n2": 0}
    assert rollout.free_gpus([trim_node(n) for n in nodes], [trim_pod(p) for p in pods], spec) == whole
    trimmed = trim_pod(pods[0])
    assert "cpu" not in trimmed["spec"]["containers"][0]["resources"]["requests"]
    assert "conditions" not in trimmed["status"] and "labels" not in trimmed["metadata"]


def test_the_cluster_watch_serves_nodes_and_pods() -> None:
    class Both(FakeKube):
        def list_page(self, api_version: str, kind: str, *a: Any) -> dict[str, Any]:
            items = [node("n1", 2)] if kind == "Node" else [pod("a", "n1")]
            return {"items": items, "metadata": {"resourceVersion": "5"}}

    cw = ClusterWatch(Both([], []))
    nodes, pods = cw.get()
    assert [n["metadata"]["name"] for n in nodes] == ["n1"] and [p["metadata"]["name"] for p in pods] == ["a"]
    cw.stop()


# ---- the incremental count (PodItems / NodeItems) against the full recount (rollout.free_gpus) -------------------
import random  # noqa: E402

from vlm_operator.clusterwatch import NodeItems, PodItems, free_from  # noqa: E402

MIG = "nvidia.com/mig-1g.10gb"
SPECS = [
    {"containers": [{"resources": {"requests": {"nvidia.com/gpu": "1"}}}]},
    {"containers": [{"resources": {"limits": {MIG: "1"}}}]},
    {"containers": [{"resources": {"requests": {"nvidia.com/gpu": "2"}}}], "nodeSelector": {"pool": "a"}},
    {
        "containers": [{"resources": {"requests": {"nvidia.com/gpu": "1"}}}],
        "tolerations": [{"key": "gpu", "operator": "Exists"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["a", "b"]}]}
                    ]
                }
            }
        },
    },
]


def random_node(rng: random.Random, i: int) -> dict[str, Any]:
    alloc = {"cpu": "8", "nvidia.com/gpu": str(rng.randint(0, 8))}
    if rng.random() < 0.3:
        alloc[MIG] = str(rng.randint(0, 7))
    spec: dict[str, Any] = {}
    if rng.random() < 0.2:
        spec["taints"] = [{"key": "gpu", "effect": rng.choice(["NoSchedule", "PreferNoSchedule"])}]
    if rng.random() < 0.1:
        spec["unschedulable"] = True
    return {
        "metadata": {"name": f"n{i}", "uid": f"node-{i}", "labels": {"pool": rng.choice(["a", "b", "c"])}},
        "spec": spec,
        "status": {"allocatable": alloc, "conditions": [{"type": "Ready", "lastHeartbeatTime": str(rng.random())}]},
    }


def random_pod(rng: random.Random, i: int, rv: int) -> dict[str, Any]:
    def resources() -> dict[str, Any]:
        req: dict[str, str] = {"cpu": "1"}
        for res in rng.sample(["nvidia.com/gpu", MIG], rng.randint(0, 2)):
            req[res] = str(rng.randint(0, 3))
        return {rng.choice(["requests", "limits"]): req}

    labels = {"vlmops.io/deployment": rng.choice(["m1", "m2"])} if rng.random() < 0.5 else {}
    meta: dict[str, Any] = {"name": f"p{i}", "namespace": "ns", "uid": f"pod-{i}", "resourceVersion": str(rv)}
    meta["labels"] = labels
    return {
        "metadata": meta,
        "spec": {
            "nodeName": rng.choice([None, "n0", "n1", "n2", "n3", "n4", "gone"]),
            "containers": [{"resources": resources()} for _ in range(rng.randint(1, 2))],
            "initContainers": [{"resources": resources()} for _ in range(rng.randint(0, 1))],
        },
        "status": {"phase": rng.choice(["Pending", "Running", "Running", "Succeeded", "Failed", "Unknown"])},
    }


def test_random_event_sequences_give_the_free_gpus_of_a_full_recount() -> None:
    for seed in range(150):
        rng = random.Random(seed)
        nodes, pods = NodeItems(trim_node), PodItems(trim_pod)
        live_nodes: dict[str, dict[str, Any]] = {}
        live_pods: dict[str, dict[str, Any]] = {}
        for step in range(80):
            r = rng.random()
            if r < 0.15:  # a node added, changed (or a heartbeat), or deleted
                i = rng.randint(0, 5)
                n = random_node(rng, i)
                if rng.random() < 0.2 and n["metadata"]["uid"] in live_nodes:
                    nodes.drop(live_nodes.pop(n["metadata"]["uid"]))
                else:
                    live_nodes[n["metadata"]["uid"]] = n
                    nodes.put(n)
            elif r < 0.3 and live_pods:  # a pod deleted (or it turned terminal and left the field selector)
                uid = rng.choice(sorted(live_pods))
                pods.drop(live_pods.pop(uid))
            elif r < 0.35:  # the watch expired: a relist rebuilds both from scratch
                nodes, pods = NodeItems(trim_node), PodItems(trim_pod)
                for n in live_nodes.values():
                    nodes.put(n)
                for p in live_pods.values():
                    pods.put(p)
            else:  # a pod added or modified (bound, phase changed, requests changed)
                p = random_pod(rng, rng.randint(0, 15), step)
                live_pods[p["metadata"]["uid"]] = p
                pods.put(p)
            for spec in SPECS:
                res = rollout.gpu_resource(spec)
                want = rollout.free_gpus(live_nodes.values(), live_pods.values(), spec)
                got = free_from(nodes.eligible(spec, res), pods.usage, res)
                assert got == want, (seed, step, spec)
            for owner in ("m1", "m2"):
                want_uids = {
                    u for u, p in live_pods.items() if p["metadata"]["labels"].get("vlmops.io/deployment") == owner
                }
                assert set(pods.by_owner.owned.get(("ns", owner), {})) == want_uids, (seed, step)
        assert all(all(v for v in per.values()) for per in pods.usage.values())  # no zero entries pile up


def test_the_owners_pods_keep_what_a_rollout_reads_of_them() -> None:
    p = pod("a", None, phase="Pending")
    p["metadata"]["labels"] = {"vlmops.io/deployment": "m", "app.kubernetes.io/instance": "m"}
    p["metadata"]["annotations"] = {"vlmops.io/spec-hash": "h1", "other": "x" * 1000}
    p["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    p["status"]["conditions"] = [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/2 nodes: Insufficient"},
        {"type": "Ready", "status": "False"},
    ]
    items = PodItems(trim_pod)
    items.put(p)
    (kept,) = items.by_owner.owned[("ns", "m")].values()
    assert kept["metadata"]["annotations"] == {"vlmops.io/spec-hash": "h1"}
    assert kept["metadata"]["uid"] == "u-a"
    assert kept["metadata"]["deletionTimestamp"] and kept["metadata"]["labels"]["vlmops.io/deployment"] == "m"
    assert [c["type"] for c in kept["status"]["conditions"]] == ["PodScheduled"]
    assert rollout.pending_for_resources(kept) == rollout.pending_for_resources(p)


def test_the_cluster_watch_counts_free_gpus_and_serves_the_owners_pods_from_one_snapshot() -> None:
    owned = pod("s", "n1", rv="7")
    owned["metadata"]["labels"] = {"vlmops.io/deployment": "m"}

    class Both(FakeKube):
        def list_page(self, api_version: str, kind: str, *a: Any) -> dict[str, Any]:
            items = [node("n1", 2), node("n2", 1)] if kind == "Node" else [pod("a", "n1"), owned]
            return {"items": items, "metadata": {"resourceVersion": "5"}}

    cw = ClusterWatch(Both([], []))
    spec = {"containers": [{"resources": {"requests": {"nvidia.com/gpu": "1"}}}]}
    free, own = cw.free_gpus(spec, ("ns", "m"))
    assert free == {"n1": 0, "n2": 1}
    assert [p["metadata"]["name"] for p in own] == ["s"]
    assert cw.free_gpus(spec, ("ns", "other"))[1] == []
    cw.stop()


def test_the_watched_nodes_give_the_fit_checks_inventory_and_none_before_their_first_list() -> None:
    gate = threading.Event()

    class Both(FakeKube):
        def list_page(self, api_version: str, kind: str, *a: Any) -> dict[str, Any]:
            if kind == "Node":
                assert gate.wait(5)
            items = [node("n1", 2), node("n2", 4)] if kind == "Node" else []
            return {"items": items, "metadata": {"resourceVersion": "5"}}

    cw = ClusterWatch(Both([], []))
    assert cw.max_gpus_per_node() is None  # the first LIST has not completed: the caller lists
    gate.set()
    deadline = time.monotonic() + 5
    while (found := cw.max_gpus_per_node()) is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert found == {"NVIDIA-L4": 4}
    cw.stop()


def test_the_node_inventory_is_remembered_until_a_node_changes() -> None:
    items = NodeItems(trim_node)
    items.put(node("n1", 2))
    assert items.max_gpus() == {"NVIDIA-L4": 2}
    items.put(node("n1", 2))  # a heartbeat: nothing the trimmed node keeps changed
    assert items._max_gpus == {"NVIDIA-L4": 2}
    items.put(node("n2", 8))
    assert items.max_gpus() == {"NVIDIA-L4": 8}
    items.drop(node("n2", 8))
    assert items.max_gpus() == {"NVIDIA-L4": 2}

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

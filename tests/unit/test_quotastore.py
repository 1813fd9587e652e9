"""The shared, watch-fed ResourceQuotas (vlm_operator.quotastore): listed once cluster-wide, kept current by watch
events, served per namespace without a LIST; a LIST of the namespace where the watch is forbidden or turned off."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from kubernetes.client.exceptions import ApiException

from vlm_operator import quota
from vlm_operator.quotastore import QuotaItems, QuotaStore, trim_quota

GPU = "requests.nvidia.com/gpu"


def rq(name: str, ns: str, hard: int, used: int, rv: str = "1") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": ns, "uid": f"u-{ns}-{name}", "resourceVersion": rv, "labels": {}},
        "spec": {"hard": {GPU: str(hard), "pods": "10"}},
        "status": {"hard": {GPU: str(hard), "pods": "10"}, "used": {GPU: str(used), "pods": "3"}},
    }


class WatchingKube:
    """A cluster-wide LIST, then one scripted watch request; ``list`` (the namespace LIST) is counted."""

    def __init__(self, items: list[dict[str, Any]], events: list[dict[str, Any]]) -> None:
        self.items, self.events = items, events
        self.namespace_lists: list[str | None] = []
        self.sent = threading.Event()
        self.release = threading.Event()

    def list_page(self, api_version: str, kind: str, fs: str | None, limit: int, cont: str | None) -> dict[str, Any]:
        assert kind == "ResourceQuota"
        return {"items": self.items, "metadata": {"resourceVersion": "5"}}

    def watch(self, api_version: str, kind: str, fs: str | None, rv: str, timeout_s: int = 290) -> Iterator[Any]:
        self.release.wait(5)
        yield from self.events
        self.events = []
        self.sent.set()
        time.sleep(0.05)

    def list(self, api_version: str, kind: str, namespace: str | None) -> list[dict[str, Any]]:
        self.namespace_lists.append(namespace)
        return [q for q in self.items if q["metadata"]["namespace"] == namespace]


def test_quotas_come_from_the_watch_per_namespace_and_follow_its_events() -> None:
    kube = WatchingKube(
        [rq("team", "a", 8, 6), rq("loose", "a", 100, 10), rq("other", "b", 4, 0)],
        [
            {"type": "MODIFIED", "object": rq("team", "a", 8, 7, rv="6")},
            {"type": "DELETED", "object": rq("other", "b", 4, 0, rv="7")},
            {"type": "ADDED", "object": rq("new", "c", 2, 2, rv="8")},
        ],
    )
    store = QuotaStore()
    first = store.list(kube, "a")
    assert [q["metadata"]["name"] for q in first] == ["loose", "team"]
    assert quota.headroom(first, GPU, 0) is not None and quota.headroom(first, GPU, 0).left == 2  # type: ignore[union-attr]
    assert [q["metadata"]["name"] for q in store.list(kube, "b")] == ["other"]
    kube.release.set()
    assert kube.sent.wait(5)
    assert quota.headroom(store.list(kube, "a"), GPU, 0).left == 1  # type: ignore[union-attr]
    assert store.list(kube, "b") == [] and [q["metadata"]["name"] for q in store.list(kube, "c")] == ["new"]
    assert kube.namespace_lists == []  # not one LIST per check
    store.stop()


def test_a_forbidden_cluster_wide_list_falls_back_to_the_namespace_list() -> None:
    class Namespaced(WatchingKube):
        def list_page(self, *a: Any, **k: Any) -> dict[str, Any]:
            raise ApiException(status=403, reason="Forbidden")

    kube = Namespaced([rq("team", "a", 8, 6)], [])
    store = QuotaStore()
    assert [q["metadata"]["name"] for q in store.list(kube, "a")] == ["team"]
    assert [q["metadata"]["name"] for q in store.list(kube, "a")] == ["team"]
    assert kube.namespace_lists == ["a", "a"]
    store.stop()


def test_without_the_watch_each_check_lists_the_namespace() -> None:
    kube = WatchingKube([rq("team", "a", 8, 6)], [])
    store = QuotaStore(watch=False)
    assert [q["metadata"]["name"] for q in store.list(kube, "a")] == ["team"]
    assert kube.namespace_lists == ["a"]

    class ListOnly:
        def list(self, api_version: str, kind: str, namespace: str | None) -> list[dict[str, Any]]:
            return [rq("x", "a", 1, 0)]

    assert [q["metadata"]["name"] for q in QuotaStore().list(ListOnly(), "a")] == ["x"]


def test_a_quota_that_moves_namespace_or_goes_is_reindexed() -> None:
    items = QuotaItems(trim_quota)
    items.put(rq("q", "a", 1, 0))
    moved = rq("q", "b", 1, 0)
    moved["metadata"]["uid"] = "u-a-q"  # same object (a test of the index, not of the API)
    items.put(moved)
    assert items.of("a") == [] and [q["metadata"]["namespace"] for q in items.of("b")] == ["b"]
    items.drop(moved)
    assert items.by_namespace == {}


def test_the_trimmed_quota_gives_the_same_verdicts() -> None:
    whole = [rq("team", "a", 8, 6), rq("loose", "a", 100, 10)]
    trimmed = [trim_quota(q) for q in whole]
    assert quota.headroom(trimmed, GPU, 1) == quota.headroom(whole, GPU, 1)
    assert quota.replica_limit(trimmed, GPU, 2, 1) == quota.replica_limit(whole, GPU, 2, 1)
    assert "labels" not in trimmed[0]["metadata"] and "pods" in trimmed[0]["status"]["used"]

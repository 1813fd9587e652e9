"""The cluster snapshot a surge decision reads (reconcile.ClusterPods): one LIST pair per TTL, shared."""

from __future__ import annotations

from typing import Any

from vlm_operator.reconcile import ClusterPods


class CountingKube:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None, str | None]] = []

    def list(self, api_version: str, kind: str, namespace: str | None, label_selector: str | None = None,
             field_selector: str | None = None) -> list[dict[str, Any]]:  # fmt: skip
        self.calls.append((kind, namespace, field_selector))
        return [{"metadata": {"name": f"{kind.lower()}-{len(self.calls)}"}}]


def test_reconciles_within_the_ttl_share_one_list_of_nodes_and_pods() -> None:
    now = [100.0]
    snap = ClusterPods(ttl_s=1.0, clock=lambda: now[0])
    kube = CountingKube()
    first = snap.get(kube)  # type: ignore[arg-type]
    now[0] += 0.5
    assert snap.get(kube) is first  # type: ignore[arg-type]
    assert kube.calls == [("Node", None, None), ("Pod", None, "status.phase!=Succeeded,status.phase!=Failed")]
    now[0] += 0.6  # past the TTL: listed again
    second = snap.get(kube)  # type: ignore[arg-type]
    assert second is not first and len(kube.calls) == 4


class ApplyingKube:
    def __init__(self) -> None:
        self.gets = 0
        self.applies = 0
        self.stored: dict[str, Any] | None = None

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        self.gets += 1
        return self.stored

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.applies += 1
        self.stored = obj
        return obj


def test_a_child_event_reconcile_trusts_what_was_applied_and_a_thorough_one_repairs_a_deletion() -> None:
    import logging

    from vlm_operator import reconcile

    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "m", "namespace": "ns-trust", "annotations": {"vlmops.io/object-hash": "h1"}},
    }
    kube = ApplyingKube()
    log = logging.getLogger("test")
    reconcile.forget_applied("ns-trust", "m")
    assert reconcile._apply_if_changed(kube, svc, log, trust_memory=True) is not None  # type: ignore[arg-type]
    assert (kube.gets, kube.applies) == (1, 1)
    assert reconcile._apply_if_changed(kube, svc, log, trust_memory=True) is None  # type: ignore[arg-type]
    assert (kube.gets, kube.applies) == (1, 1)  # no GET, no write
    kube.stored = None  # someone deleted it: the thorough reconcile (drift resync) reads and re-applies
    assert reconcile._apply_if_changed(kube, svc, log) is not None  # type: ignore[arg-type]
    assert (kube.gets, kube.applies) == (2, 2)
    reconcile.forget_applied("ns-trust", "m")
    assert ("Service", "ns-trust", "m") not in reconcile._APPLIED


def test_without_the_watch_free_gpus_come_from_the_list_pair_and_the_own_pods_are_left_to_the_caller() -> None:
    class Lists:
        def list(self, api_version: str, kind: str, namespace: str | None, label_selector: str | None = None,
                 field_selector: str | None = None) -> list[dict[str, Any]]:  # fmt: skip
            if kind == "Node":
                return [{"metadata": {"name": "n1"}, "spec": {}, "status": {"allocatable": {"nvidia.com/gpu": "2"}}}]
            gpu = {"resources": {"requests": {"nvidia.com/gpu": "1"}}}
            return [{"metadata": {"name": "p"}, "spec": {"nodeName": "n1", "containers": [gpu]}, "status": {}}]

    spec = {"containers": [{"resources": {"requests": {"nvidia.com/gpu": "1"}}}]}
    free, own = ClusterPods(watch=False).free_and_own(Lists(), spec, "ns", "m")  # type: ignore[arg-type]
    assert free == {"n1": 1} and own is None


def test_a_forbidden_cluster_watch_counts_no_free_gpu() -> None:
    from kubernetes.client.exceptions import ApiException

    class Forbidden:
        def list_page(self, *a: Any, **k: Any) -> dict[str, Any]:
            raise ApiException(status=403, reason="Forbidden")

        def watch(self, *a: Any, **k: Any) -> Any:
            raise AssertionError("no watch after a forbidden list")

    snap = ClusterPods()
    spec = {"containers": [{"resources": {"requests": {"nvidia.com/gpu": "1"}}}]}
    assert snap.free_and_own(Forbidden(), spec, "ns", "m") == ({}, None)  # type: ignore[arg-type]
    assert snap._watched is not None
    snap._watched.stop()


def test_warming_starts_the_watches_without_waiting_and_only_when_watching() -> None:
    import threading

    listed = threading.Event()

    class Slow:
        def list_page(self, *a: Any, **k: Any) -> dict[str, Any]:
            listed.set()
            return {"items": [], "metadata": {"resourceVersion": "1"}}

        def watch(self, *a: Any, **k: Any) -> Any:
            return iter(())

    snap = ClusterPods()
    snap.warm(Slow())  # type: ignore[arg-type]
    assert listed.wait(5)  # the first LIST runs in the watches' own threads, before any rollout asks
    assert snap._watched is not None
    snap._watched.stop()
    off = ClusterPods(watch=False)
    off.warm(Slow())  # type: ignore[arg-type]
    assert off._watched is None

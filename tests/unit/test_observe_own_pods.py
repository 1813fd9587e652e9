"""reconcile.observe: a rollout's free GPUs and the object's own pods come from one cluster-watch snapshot; the pods
are listed afresh only when that snapshot does not hold the versions of them the reconcile was given (kopf's index),
or when no watch runs."""

from __future__ import annotations

from typing import Any

import pytest

from vlm_operator import reconcile

SPEC = {"containers": [{"resources": {"requests": {"nvidia.com/gpu": "1"}}}]}


def pod(name: str, rv: str, phase: str = "Running") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": f"u-{name}", "resourceVersion": rv},
        "status": {"phase": phase},
    }


class Kube:
    def __init__(self) -> None:
        self.pod_lists: list[str | None] = []

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        return {"metadata": {"name": name}, "spec": {}}

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        if kind == "Pod":
            self.pod_lists.append(field_selector)
            return [pod("listed", "99")]
        return []


class Snapshot:
    def __init__(self, own: list[dict[str, Any]] | None) -> None:
        self.own = own
        self.asked: list[tuple[str, str]] = []

    def free_and_own(
        self, kube: Any, pod_spec: Any, namespace: str, name: str
    ) -> tuple[dict[str, int], list[dict[str, Any]] | None]:
        self.asked.append((namespace, name))
        return {"n1": 1}, self.own


BODY = {"metadata": {"namespace": "ns", "name": "m"}}


def test_the_snapshot_that_holds_the_indexed_versions_is_used_without_a_list(monkeypatch: pytest.MonkeyPatch) -> None:
    indexed = [pod("a", "5"), pod("b", "7"), pod("old", "3", phase="Succeeded")]
    snap = Snapshot([pod("b", "7"), pod("a", "5")])
    monkeypatch.setattr(reconcile, "CLUSTER_PODS", snap)
    kube = Kube()
    obs = reconcile.observe(kube, BODY, pods=indexed, replica_sets=[], deployment=(None,))  # type: ignore[arg-type]
    free, own = obs.free_gpus(SPEC)
    assert free == {"n1": 1} and sorted(p["metadata"]["name"] for p in own) == ["a", "b"]
    assert kube.pod_lists == [] and snap.asked == [("ns", "m")]


@pytest.mark.parametrize(
    "snapshot",
    [
        [pod("a", "5")],  # the snapshot has not seen pod b yet (the ReplicaSet controller just made it)
        [pod("a", "5"), pod("b", "6")],  # it lags b's latest event (say, the scheduler's Unschedulable)
        [pod("a", "5"), pod("b", "7"), pod("c", "8")],  # it is ahead of kopf's index
        None,  # no watch (VLM_OPERATOR_CLUSTER_WATCH=0, or a 403)
    ],
)
def test_a_snapshot_that_disagrees_with_the_index_lists_the_pods_afresh(
    monkeypatch: pytest.MonkeyPatch, snapshot: list[dict[str, Any]] | None
) -> None:
    monkeypatch.setattr(reconcile, "CLUSTER_PODS", Snapshot(snapshot))
    kube = Kube()
    obs = reconcile.observe(kube, BODY, pods=[pod("a", "5"), pod("b", "7")], replica_sets=[], deployment=(None,))  # type: ignore[arg-type]
    _, own = obs.free_gpus(SPEC)
    assert [p["metadata"]["name"] for p in own] == ["listed"]
    assert kube.pod_lists == ["status.phase!=Succeeded,status.phase!=Failed"]


def test_pods_without_versions_never_agree() -> None:
    bare = [{"metadata": {"name": "a"}, "status": {"phase": "Running"}}]
    assert not reconcile._same_versions(bare, bare)
    assert reconcile._same_versions([], [])
    assert reconcile._same_versions([pod("a", "1")], [pod("a", "1"), pod("z", "2", phase="Failed")])

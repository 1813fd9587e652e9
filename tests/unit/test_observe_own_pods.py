"""reconcile.observe: a rollout's free GPUs and the object's own pods come from one cluster-watch snapshot; the pods
are listed afresh only when that snapshot does not hold the same pods, alike in what the decision reads, as the ones
the reconcile was given (kopf's index), or when no watch runs."""

from __future__ import annotations

from typing import Any

import pytest

from vlm_operator import reconcile
from vlm_operator.clusterwatch import trim_pod
from vlm_operator.render import objects

SPEC = {"containers": [{"resources": {"requests": {"nvidia.com/gpu": "1"}}}]}
UNSCHEDULABLE = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "Insufficient"}


def pod(name: str, node: str | None = "n1", phase: str = "Running", **meta: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"u-{name}",
            "labels": objects.labels_for("m"),
            "annotations": {"vlmops.io/spec-hash": "h2"},
            **meta,
        },
        "spec": {"nodeName": node, "containers": []},
        "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True"}]},
    }


def index_copy(p: dict[str, Any]) -> dict[str, Any]:
    """What kopf's pod index keeps (another view: no labels, no resourceVersion; all conditions)."""
    meta = {k: v for k, v in p["metadata"].items() if k not in ("labels", "resourceVersion")}
    return {"metadata": meta, "spec": {"nodeName": p["spec"]["nodeName"]}, "status": dict(p["status"])}


def pending(name: str) -> dict[str, Any]:
    p = pod(name, node=None, phase="Pending")
    p["status"]["conditions"] = [UNSCHEDULABLE]
    return p


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
            return [pod("listed")]
        return []


class Snapshot:
    def __init__(self, own: list[dict[str, Any]] | None) -> None:
        self.own = [trim_pod(p) for p in own] if own is not None else None
        self.asked: list[tuple[str, str]] = []

    def free_and_own(
        self, kube: Any, pod_spec: Any, namespace: str, name: str
    ) -> tuple[dict[str, int], list[dict[str, Any]] | None]:
        self.asked.append((namespace, name))
        return {"n1": 1}, self.own


BODY = {"metadata": {"namespace": "ns", "name": "m"}}
INDEXED = [pod("a"), pending("b"), pod("old", phase="Succeeded")]


def observe(snapshot: Snapshot, kube: Kube, monkeypatch: pytest.MonkeyPatch) -> reconcile.Observation:
    monkeypatch.setattr(reconcile, "CLUSTER_PODS", snapshot)
    indexed = [index_copy(p) for p in INDEXED]
    return reconcile.observe(kube, BODY, pods=indexed, replica_sets=[], deployment=(None,))  # type: ignore[arg-type]


def test_the_snapshot_that_matches_the_index_is_used_without_a_list(monkeypatch: pytest.MonkeyPatch) -> None:
    b = pending("b")
    b["status"]["conditions"].append({"type": "Ready", "status": "False"})  # not read by the decision
    snap, kube = Snapshot([b, pod("a")]), Kube()
    free, own = observe(snap, kube, monkeypatch).free_gpus(SPEC)
    assert free == {"n1": 1} and sorted(p["metadata"]["name"] for p in own) == ["a", "b"]
    assert kube.pod_lists == [] and snap.asked == [("ns", "m")]
    assert all(reconcile._owned_by(p, "ns", "m") for p in own)
    assert reconcile._waiting_for_gpus(own, "h2") == "Insufficient"  # the snapshot's pods answer like the index's


@pytest.mark.parametrize(
    "snapshot",
    [
        [pod("a")],  # the snapshot has not seen pod b yet (the ReplicaSet controller just made it)
        [pod("a"), pod("b", node=None, phase="Pending")],  # it lags the scheduler's Unschedulable on b
        [pod("a", deletionTimestamp="2026-12-07T10:00:00Z"), pending("b")],  # it is ahead of kopf's index on a
        [pod("a"), pending("b"), pod("c")],  # it has a pod kopf's index has not seen
        [pod("a", annotations={"vlmops.io/spec-hash": "h1"}), pending("b")],
        None,  # no watch (VLM_OPERATOR_CLUSTER_WATCH=0, or a 403)
    ],
)
def test_a_snapshot_that_disagrees_with_the_index_lists_the_pods_afresh(
    monkeypatch: pytest.MonkeyPatch, snapshot: list[dict[str, Any]] | None
) -> None:
    kube = Kube()
    _, own = observe(Snapshot(snapshot), kube, monkeypatch).free_gpus(SPEC)
    assert [p["metadata"]["name"] for p in own] == ["listed"]
    assert kube.pod_lists == ["status.phase!=Succeeded,status.phase!=Failed"]


def test_pods_without_uids_never_agree() -> None:
    bare = [{"metadata": {"name": "a"}, "status": {"phase": "Running"}}]
    assert not reconcile._same_pods(bare, bare)
    assert reconcile._same_pods([], [])
    assert reconcile._same_pods([pod("a")], [pod("a"), pod("z", phase="Failed")])

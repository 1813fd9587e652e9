"""vlm_operator.childwatch and the operator's child events: the VLMDeployments' pods, Deployments, Services and
PodDisruptionBudgets by owner, from the operator's own LIST and watch (scripted here), and what each change asks of
the work queue."""

from __future__ import annotations

import threading
import time
from typing import Any

import kopf
import pytest

from vlm_operator import childwatch, handlers, reconcile
from vlm_operator.render import objects
from vlm_operator.settings import Settings

SELECTOR = handlers.MANAGED_SELECTOR


def child(kind: str, name: str, owner: str, ns: str = "ns", rv: str = "1", **extra: Any) -> dict[str, Any]:
    meta = {
        "name": name,
        "namespace": ns,
        "uid": f"{ns}-{kind}-{name}",
        "resourceVersion": rv,
        "labels": {objects.LABEL_OWNER: owner, "app.kubernetes.io/managed-by": objects.MANAGED_BY},
        "managedFields": [{"manager": "x"}],
    }
    meta.update(extra.pop("meta", {}))
    return {"apiVersion": "v1", "kind": kind, "metadata": meta, **extra}


class ScriptedKube:
    """A LIST per (kind, namespace), then the scripted watch events of each, once; every request is recorded."""

    def __init__(self, lists: dict[tuple[str, str | None], list[dict[str, Any]]]) -> None:
        self.lists = lists
        self.events: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
        self.requests: list[tuple[str, str, str | None, str | None]] = []
        self.go = threading.Event()
        self.done: dict[tuple[str, str | None], threading.Event] = {}

    def list_page(self, api_version: str, kind: str, fs: str | None, limit: int, cont: str | None, **k: Any) -> Any:
        ns = k.get("namespace")
        self.requests.append(("LIST", kind, ns, k.get("label_selector")))
        return {"items": list(self.lists.get((kind, ns), [])), "metadata": {"resourceVersion": "1"}}

    def watch(self, api_version: str, kind: str, fs: str | None, rv: str, timeout_s: int = 290, **k: Any) -> Any:
        ns = k.get("namespace")
        self.requests.append(("WATCH", kind, ns, k.get("label_selector")))
        self.go.wait(5)
        yield from self.events.pop((kind, ns), [])
        self.done.setdefault((kind, ns), threading.Event()).set()
        time.sleep(0.05)

    def wait(self, kind: str, ns: str | None = None) -> None:
        assert self.done.setdefault((kind, ns), threading.Event()).wait(5), kind


def wait_synced(watches: childwatch.ChildWatches, n: int = 4) -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while len(watches.indexes()) < n:
        assert time.monotonic() < deadline, "the first LISTs did not complete"
        time.sleep(0.01)
    return watches.indexes()


def test_children_are_indexed_by_owner_from_the_list_and_then_the_watch() -> None:
    pod = child("Pod", "m-1", "m", status={"phase": "Running"})
    dep = child("Deployment", "m", "m", spec={"replicas": 1}, status={"readyReplicas": 1})
    kube = ScriptedKube({("Pod", None): [pod], ("Deployment", None): [dep]})
    seen: list[tuple[str, str, tuple[str, str], str]] = []
    watches = childwatch.ChildWatches(
        kube, SELECTOR, notify=lambda k, t, key, name, o, n: seen.append((k, t, key, name))
    )
    watches.start()
    try:
        indexes = wait_synced(watches)
        assert set(indexes) == {"vlmd_pods", "vlmd_deployments", "vlmd_services", "vlmd_pdbs"}
        (got,) = indexes["vlmd_pods"].get(("ns", "m"), [])
        assert got["metadata"]["name"] == "m-1" and "managedFields" not in got["metadata"]  # the compact copy
        assert indexes["vlmd_deployments"].get(("ns", "m"), [])[0]["status"] == {"readyReplicas": 1}
        assert indexes["vlmd_services"].get(("ns", "m"), []) == []
        assert seen == []  # the first LIST asks for nothing (the VLMDeployments' own LIST queues every object)
        assert {r[3] for r in kube.requests} == {SELECTOR} and {r[2] for r in kube.requests} == {None}
        # then the watch: a new pod, the Deployment's status, the first pod gone
        ready = child("Pod", "m-2", "m", rv="2", status={"phase": "Running"})
        moved = child("Deployment", "m", "m", rv="3", spec={"replicas": 1}, status={"readyReplicas": 2})
        kube.events[("Pod", None)] = [{"type": "ADDED", "object": ready}, {"type": "DELETED", "object": pod}]
        kube.events[("Deployment", None)] = [{"type": "MODIFIED", "object": moved}]
        kube.go.set()
        kube.wait("Pod")
        kube.wait("Deployment")
        assert [p["metadata"]["name"] for p in indexes["vlmd_pods"].get(("ns", "m"), [])] == ["m-2"]
        assert indexes["vlmd_deployments"].get(("ns", "m"), [])[0]["status"] == {"readyReplicas": 2}
        assert sorted(seen) == [
            ("Deployment", "MODIFIED", ("ns", "m"), "m"),
            ("Pod", "ADDED", ("ns", "m"), "m-2"),
            ("Pod", "DELETED", ("ns", "m"), "m-1"),
        ]
    finally:
        watches.stop()
        kube.go.set()


def test_each_watched_namespace_is_listed_and_watched_on_its_own() -> None:
    kube = ScriptedKube(
        {("Pod", "a"): [child("Pod", "p", "m", ns="a")], ("Pod", "b"): [child("Pod", "p", "m", ns="b")]}
    )
    watches = childwatch.ChildWatches(kube, SELECTOR, namespaces=["a", "b"])
    watches.start()
    try:
        indexes = wait_synced(watches)
        assert {r[2] for r in kube.requests if r[0] == "LIST"} == {"a", "b"}  # never cluster-wide
        assert [p["metadata"]["namespace"] for p in indexes["vlmd_pods"].get(("a", "m"), [])] == ["a"]
        assert [p["metadata"]["namespace"] for p in indexes["vlmd_pods"].get(("b", "m"), [])] == ["b"]
    finally:
        watches.stop()
        kube.go.set()
    assert handlers._scopes(["a", "b"]) == ["a", "b"]
    assert handlers._scopes(["team-*"]) == []  # a pattern: kopf matches it, a watch request cannot


def test_a_later_list_reports_what_changed_while_the_watch_was_away() -> None:
    seen: list[tuple[str, str, str]] = []
    old = childwatch.OwnedItems(lambda o: dict(o), "Pod", lambda k, t, key, name, o, n: seen.append((t, key[1], name)))
    for o in (child("Pod", "kept", "m"), child("Pod", "gone", "m"), child("Pod", "moved", "m2")):
        old.put(o)
    old.listed(None)
    assert seen == []
    new = childwatch.OwnedItems(lambda o: dict(o), "Pod", old.notify)
    for o in (child("Pod", "kept", "m"), child("Pod", "moved", "m2", rv="5"), child("Pod", "born", "m3")):
        new.put(o)
    assert seen == []  # quiet while the LIST builds it
    new.listed(old)
    assert sorted(seen) == [("ADDED", "m3", "born"), ("DELETED", "m", "gone"), ("MODIFIED", "m2", "moved")]
    unlabelled = child("Pod", "x", "m")
    del unlabelled["metadata"]["labels"][objects.LABEL_OWNER]
    new.put(unlabelled)  # another object with the operator's label (a batch pod): not indexed, not reported
    assert "ns-Pod-x" not in new.objects and len(seen) == 3


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, float]]:
    asked: list[tuple[Any, float]] = []
    monkeypatch.setattr(handlers.QUEUE, "add", lambda key, delay_s=0.0, settle_max_s=None: asked.append((key, delay_s)))
    return asked


def test_a_pod_or_deployment_change_asks_for_the_owners_reconcile_within_the_child_window(
    queued: list[tuple[Any, float]],
) -> None:
    owner = (("ns", "m"), handlers.CHILD_WINDOW_SECONDS)
    handlers.child_event("Pod", "MODIFIED", ("ns", "m"), "m-1", None, {})
    handlers.child_event("Deployment", "MODIFIED", ("ns", "m"), "m", None, {})
    assert queued == [owner, owner]
    # a deleted Deployment: the copy this process applied is dropped, and the owner applies it again
    handlers.KNOWN.applied("Deployment", ("ns", "m"), {"metadata": {"name": "m", "resourceVersion": "9"}})
    assert handlers.KNOWN.child("Deployment", ("ns", "m"), None) is not None
    handlers.child_event("Deployment", "DELETED", ("ns", "m"), "m", {}, None)
    assert handlers.KNOWN.child("Deployment", ("ns", "m"), None) is None
    assert queued[-1] == owner


def test_a_services_or_pdbs_own_status_change_asks_for_no_reconcile_an_edit_or_a_deletion_does(
    queued: list[tuple[Any, float]],
) -> None:
    key = ("PodDisruptionBudget", "ns-pdb", "m")
    reconcile._APPLIED[key] = "h1"
    try:

        def pdb(hash_: str | None) -> dict[str, Any]:
            ann = {objects.ANN_OBJECT_HASH: hash_} if hash_ else {}
            return {"kind": "PodDisruptionBudget", "metadata": {"name": "m", "annotations": ann}}

        owner = (("ns-pdb", "m"), handlers.CHILD_WINDOW_SECONDS)
        handlers.child_event("PodDisruptionBudget", "MODIFIED", ("ns-pdb", "m"), "m", None, pdb("h1"))
        assert queued == []  # the disruption controller's status write
        handlers.child_event("PodDisruptionBudget", "MODIFIED", ("ns-pdb", "m"), "m", None, pdb(None))
        assert queued == [owner]  # someone dropped the hash
        handlers.child_event("PodDisruptionBudget", "DELETED", ("ns-pdb", "m"), "m", pdb("h1"), None)
        assert queued == [owner, owner]
    finally:
        reconcile._APPLIED.pop(key, None)


def test_kopf_handles_none_of_the_vlmdeployments_children() -> None:
    registry = handlers.register(Settings(webhook=False), kopf.OperatorRegistry())
    assert list(registry._indexing.get_all_handlers()) == []
    watched = {h.selector.any_name for h in registry._watching.get_all_handlers() if h.selector is not None}
    assert watched == {"vlmdeployments", "jobs", "pods"}  # pods and Jobs: the VLMBatchJobs' (handlers/batch.py)
    assert {"deployments", "services", "poddisruptionbudgets"}.isdisjoint(watched)


def test_a_reconcile_reads_only_the_indexes_that_are_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    class Half:
        def indexes(self) -> dict[str, Any]:
            return {"vlmd_pods": "P"}

    monkeypatch.setattr(handlers, "CHILDREN", [Half()])
    assert handlers._indexes() == {"vlmd_pods": "P"}
    monkeypatch.setattr(handlers, "CHILDREN", [])
    assert handlers._indexes() == {}


def test_the_operators_role_lists_and_watches_every_child_kind() -> None:
    from vlm_operator import rbac

    plural = {"Pod": ("", "pods"), "Deployment": ("apps", "deployments"), "Service": ("", "services")}
    plural["PodDisruptionBudget"] = ("policy", "poddisruptionbudgets")
    for _, _, kind, _ in childwatch.KINDS:
        for verb in ("list", "watch"):
            assert rbac.granted(*plural[kind], verb), (kind, verb)


def test_a_watch_hands_over_what_arrived_without_waiting_for_a_full_buffer() -> None:
    from vlm_operator.kube import arrived

    class Raw:
        def __init__(self, pieces: list[bytes]) -> None:
            self.pieces = pieces

        def read1(self, size: int) -> bytes:
            return self.pieces.pop(0) if self.pieces else b""

        def stream(self, size: int, decode_content: bool = True) -> Any:
            raise AssertionError("stream() waits for `size` bytes on a body that is not chunked")

    assert list(arrived(Raw([b'{"type":', b'"ADDED"}\n']))) == [b'{"type":', b'"ADDED"}\n']

    class Old:  # urllib3 1.x: no read1
        def stream(self, size: int, decode_content: bool = True) -> Any:
            yield b"x\n"

    assert list(arrived(Old())) == [b"x\n"]

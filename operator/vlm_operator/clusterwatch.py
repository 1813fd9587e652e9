"""The cluster's nodes and non-terminal pods as a rollout's free-GPU count needs them, fed by two watches.

A rollout weighs a surge on free GPUs: every node's allocatable GPUs less the GPU requests of the pods bound to it.
That used to be a LIST of every node and every non-terminal pod of the cluster, at most once a second while any
rollout ran (:class:`vlm_operator.reconcile.ClusterPods`); with 10,000 unrelated pods each LIST carried all of them.
Here each kind is listed once (in pages of :data:`PAGE`, so the whole list is never in memory at once), then watched
from that list's resourceVersion; each object is kept trimmed to what :func:`vlm_operator.rollout.free_gpus` reads
(the node's labels, taints and allocatable; the pod's node, phase and GPU requests), so 10,000 pods take a few MB.

The watches start on the first rollout that asks (an operator that never surges never streams a pod). A watch that
ends (the server's timeout) resumes from its last resourceVersion; one that expired (410 Gone) or failed lists again.
A 403 (a namespaced install without cluster-wide rights) is raised to the caller, which replaces pods in place, and
the watches are tried again after :data:`RETRY_FORBIDDEN_S`.

A free-GPU count costs O(nodes), not O(pods): each pod event updates the GPUs held per node (:class:`PodItems`, from
:func:`vlm_operator.rollout.gpu_holdings`: subtract what the pod's previous version held, add what the new one holds;
a pod that leaves the watch (deleted, or Succeeded/Failed, which ends its match of the field selector) gives its
GPUs back), a LIST after 410 Gone or a failure rebuilds those sums from scratch, and the nodes a pod may use are
remembered per scheduling constraints until a node changes (:class:`NodeItems`). The pods of each VLMDeployment
(label ``vlmops.io/deployment``) are indexed by (namespace, owner) with what a rollout reads of them, so that the
free GPUs and the object's own pods come from one snapshot (:meth:`ClusterWatch.free_gpus`).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

from kubernetes.client.exceptions import ApiException

from vlm_operator import inventory, rollout
from vlm_operator.render import objects

_log = logging.getLogger(__name__)

NON_TERMINAL = "status.phase!=Succeeded,status.phase!=Failed"
PAGE = 500
RETRY_FORBIDDEN_S = 60.0
GPU_PREFIX = "nvidia.com/"


class _Watcher(Protocol):
    def list_page(
        self,
        api_version: str,
        kind: str,
        field_selector: str | None,
        limit: int,
        cont: str | None,
        label_selector: str | None = ...,
        namespace: str | None = ...,
    ) -> dict[str, Any]: ...

    def watch(
        self,
        api_version: str,
        kind: str,
        field_selector: str | None,
        resource_version: str,
        timeout_s: int = ...,
        label_selector: str | None = ...,
        namespace: str | None = ...,
    ) -> Any: ...


def _gpu_resources(c: Mapping[str, Any]) -> dict[str, Any]:
    res = c.get("resources") or {}
    out = {}
    for k in ("requests", "limits"):
        kept = {n: v for n, v in (res.get(k) or {}).items() if n.startswith(GPU_PREFIX)}
        if kept:
            out[k] = kept
    return {"resources": out}


def trim_pod(pod: Mapping[str, Any]) -> dict[str, Any]:
    """Pure: what the free-GPU count reads of a pod (:func:`vlm_operator.rollout.free_gpus`); for a VLMDeployment's pod
    (label ``vlmops.io/deployment``) also what a rollout reads of its own pods (``reconcile.decide_rollout``: uid,
    labels, the spec-hash annotation, deletion, the PodScheduled condition)."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    status = pod.get("status") or {}
    out: dict[str, Any] = {
        "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace")},
        "spec": {
            "nodeName": spec.get("nodeName"),
            "containers": [_gpu_resources(c) for c in spec.get("containers") or []],
            "initContainers": [_gpu_resources(c) for c in spec.get("initContainers") or []],
        },
        "status": {"phase": status.get("phase")},
    }
    labels = meta.get("labels") or {}
    if labels.get(objects.LABEL_OWNER):
        ann = meta.get("annotations") or {}
        out["metadata"].update(
            uid=meta.get("uid"),
            labels=dict(labels),
            annotations={k: ann[k] for k in (objects.ANN_SPEC_HASH,) if k in ann},
            deletionTimestamp=meta.get("deletionTimestamp"),
        )
        out["status"]["conditions"] = [
            dict(c) for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"
        ]
    return out


def trim_node(node: Mapping[str, Any]) -> dict[str, Any]:
    """Pure: what the free-GPU count reads of a node (labels, taints, cordon, allocatable)."""
    meta, spec = node.get("metadata") or {}, node.get("spec") or {}
    return {
        "metadata": {"name": meta.get("name"), "labels": meta.get("labels") or {}},
        "spec": {"unschedulable": spec.get("unschedulable"), "taints": spec.get("taints") or []},
        "status": {"allocatable": (node.get("status") or {}).get("allocatable") or {}},
    }


Trim = Callable[[Mapping[str, Any]], dict[str, Any]]


class Items:
    """The trimmed objects of one kind by uid; subclasses keep indexes current in :meth:`changed`. Not thread-safe on
    its own: :class:`WatchedKind` calls it under its lock."""

    def __init__(self, trim: Trim) -> None:
        self.trim = trim
        self.objects: dict[str, dict[str, Any]] = {}

    def put(self, obj: Mapping[str, Any]) -> None:
        uid = str(obj["metadata"]["uid"])
        new = self.trim(obj)
        old = self.objects.get(uid)
        self.objects[uid] = new
        self.changed(uid, old, new)

    def drop(self, obj: Mapping[str, Any]) -> None:
        uid = str((obj.get("metadata") or {}).get("uid"))
        old = self.objects.pop(uid, None)
        if old is not None:
            self.changed(uid, old, None)

    def changed(self, uid: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        """``uid`` went from ``old`` to ``new`` (None: absent)."""

    def listed(self, previous: Items | None) -> None:
        """This store, built by a LIST, has replaced ``previous`` (None after the first LIST)."""


OwnerKey = tuple[str, str]


class ByOwner:
    """Objects by (namespace, owner label) beside a store keyed by uid: what a reconcile reads of one VLMDeployment's
    pods or children. Not thread-safe on its own (its store's :class:`WatchedKind` lock covers it)."""

    def __init__(self) -> None:
        #: (namespace, owner) -> uid -> object
        self.owned: dict[OwnerKey, dict[str, dict[str, Any]]] = {}
        self.keys: dict[str, OwnerKey] = {}

    def put(self, uid: str, key: OwnerKey, obj: dict[str, Any]) -> None:
        self.discard(uid)
        self.keys[uid] = key
        self.owned.setdefault(key, {})[uid] = obj

    def discard(self, uid: str) -> OwnerKey | None:
        """Forget ``uid``; the key it was under, if any."""
        key = self.keys.pop(uid, None)
        if key is not None:
            objs = self.owned[key]
            objs.pop(uid, None)
            if not objs:
                del self.owned[key]
        return key

    def get(self, key: OwnerKey) -> list[dict[str, Any]]:
        return list(self.owned.get(key, {}).values())


class PodItems(Items):
    """Pods, with the GPUs held per node (:func:`vlm_operator.rollout.gpu_holdings`, summed) and each VLMDeployment's
    pods by (namespace, owner label), both kept current event by event."""

    def __init__(self, trim: Trim) -> None:
        super().__init__(trim)
        #: node -> GPU resource -> what the pods bound there hold
        self.usage: dict[str, dict[str, int]] = {}
        self._held: dict[str, tuple[str, dict[str, int]]] = {}
        self.by_owner = ByOwner()

    def changed(self, uid: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        gone = self._held.pop(uid, None)
        if gone is not None:
            node, held = gone
            on_node = self.usage[node]
            for res, n in held.items():
                left = on_node.get(res, 0) - n
                if left:
                    on_node[res] = left
                else:
                    on_node.pop(res, None)
            if not on_node:
                del self.usage[node]
        self.by_owner.discard(uid)
        if new is None:
            return
        holds = rollout.gpu_holdings(new)
        if holds is not None:
            self._held[uid] = holds
            on_node = self.usage.setdefault(holds[0], {})
            for res, n in holds[1].items():
                on_node[res] = on_node.get(res, 0) + n
        meta = new["metadata"]
        owner = (meta.get("labels") or {}).get(objects.LABEL_OWNER)
        if owner and meta.get("namespace"):
            self.by_owner.put(uid, (str(meta["namespace"]), str(owner)), new)


class NodeItems(Items):
    """Nodes, with the nodes a pod may use (:func:`vlm_operator.rollout.node_fits`) and their allocatable GPUs
    remembered per (GPU resource, nodeSelector, required node affinity, tolerations) until a node changes: a count
    then reads only the eligible nodes' numbers."""

    def __init__(self, trim: Trim) -> None:
        super().__init__(trim)
        self._eligible: dict[str, list[tuple[str, int]]] = {}
        self._max_gpus: dict[str, int] | None = None

    def changed(self, uid: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        if old != new:  # a heartbeat changes nothing the trimmed node keeps
            self._eligible.clear()
            self._max_gpus = None

    def max_gpus(self) -> dict[str, int]:
        """:func:`vlm_operator.inventory.max_gpus_per_node` of these nodes, remembered until a node changes."""
        if self._max_gpus is None:
            self._max_gpus = inventory.max_gpus_per_node(self.objects.values())
        return dict(self._max_gpus)

    def eligible(self, pod_spec: Mapping[str, Any], resource: str) -> list[tuple[str, int]]:
        """(node, allocatable ``resource``) of every node ``pod_spec`` may use, by name (as in ``free_gpus``)."""
        required = ((pod_spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
            "requiredDuringSchedulingIgnoredDuringExecution"
        )
        key = json.dumps(
            [resource, pod_spec.get("nodeSelector"), required, pod_spec.get("tolerations")],
            sort_keys=True,
            default=str,
        )
        found = self._eligible.get(key)
        if found is None:
            fits = {
                n["metadata"]["name"]: rollout.quantity_int(
                    (n.get("status", {}).get("allocatable") or {}).get(resource)
                )
                for n in self.objects.values()
                if rollout.node_fits(n, pod_spec)
            }
            found = sorted(fits.items())
            if len(self._eligible) >= 256:
                self._eligible.clear()
            self._eligible[key] = found
        return found


_R = TypeVar("_R")


def free_from(eligible: list[tuple[str, int]], usage: Mapping[str, Mapping[str, int]], resource: str) -> dict[str, int]:
    """Pure: free ``resource`` per eligible node (:meth:`NodeItems.eligible`) given what pods hold there
    (:attr:`PodItems.usage`); the same numbers as :func:`vlm_operator.rollout.free_gpus` over those nodes and pods."""
    return {name: max(0, alloc - usage.get(name, {}).get(resource, 0)) for name, alloc in eligible}


class WatchedKind:
    """One kind, cluster-wide or in one namespace, listed once and then kept current by a watch in a daemon
    thread."""

    def __init__(
        self,
        kube: _Watcher,
        api_version: str,
        kind: str,
        trim: Trim,
        field_selector: str | None = None,
        backoff_s: float = 1.0,
        store: Callable[[Trim], Items] = Items,
        label_selector: str | None = None,
        namespace: str | None = None,
    ) -> None:
        self.kube, self.api_version, self.kind, self.trim = kube, api_version, kind, trim
        self.field_selector, self.backoff_s = field_selector, backoff_s
        self.label_selector, self.namespace = label_selector, namespace
        self._new_store = store
        self._store = store(trim)
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._error: ApiException | None = None
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        #: full LISTs made (the first, and one after each expired or failed watch)
        self.lists = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"watch {self.kind}", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def _scope(self) -> dict[str, Any]:
        """The label selector and namespace of the LIST and watch requests, where set."""
        scope = {"label_selector": self.label_selector, "namespace": self.namespace}
        return {k: v for k, v in scope.items() if v}

    def synced(self) -> bool:
        """Whether the first LIST is complete (and was allowed)."""
        return self._ready.is_set() and self._error is None

    def read(self, fn: Callable[[Any], _R], timeout_s: float = 60.0) -> _R:
        """``fn(store)`` under the lock (one consistent snapshot); waits for the first LIST. Raises the API's 403 (and
        a timeout)."""
        self.start()
        if not self._ready.wait(timeout_s):
            raise TimeoutError(f"the first LIST of {self.kind}s took longer than {timeout_s:.0f}s")
        if self._error is not None:
            raise self._error
        with self._lock:
            return fn(self._store)

    def items(self, timeout_s: float = 60.0) -> list[dict[str, Any]]:
        """The current trimmed objects; waits for the first LIST. Raises the API's 403 (and a timeout)."""
        return self.read(lambda store: list(store.objects.values()), timeout_s)

    def _list(self) -> str:
        store = self._new_store(self.trim)  # built aside: the counts stay readable until it replaces them
        cont: str | None = None
        while True:
            page = self.kube.list_page(self.api_version, self.kind, self.field_selector, PAGE, cont, **self._scope())
            for obj in page.get("items") or []:
                store.put(obj)
            meta = page.get("metadata") or {}
            cont = meta.get("continue")
            if not cont:
                break
        with self._lock:
            previous, self._store = self._store, store
        store.listed(previous if self.lists else None)
        self.lists += 1
        return str(meta.get("resourceVersion") or "")

    def _run(self) -> None:
        version: str | None = None
        while not self._stopped.is_set():
            try:
                if version is None:
                    version = self._list()
                    self._error = None
                    self._ready.set()
                version = self._follow(version)
            except ApiException as exc:
                if exc.status == 403:
                    self._error = exc
                    self._ready.set()
                    self._stopped.wait(RETRY_FORBIDDEN_S)
                elif exc.status != 410:
                    _log.warning(f"watch of {self.kind}s failed ({exc.status} {exc.reason}); listing again")
                    self._stopped.wait(self.backoff_s)
                version = None
            except Exception as exc:  # a dropped connection, a timeout: list again after a pause
                _log.warning(f"watch of {self.kind}s failed ({exc}); listing again")
                self._stopped.wait(self.backoff_s)
                version = None

    def _follow(self, version: str) -> str | None:
        """Apply the events of one watch request; the version to resume from, or None to list again (410 Gone)."""
        for event in self.kube.watch(self.api_version, self.kind, self.field_selector, version, **self._scope()):
            if self._stopped.is_set():
                return version
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:
                    return None  # too old: the next round lists again
                raise RuntimeError(f"watch error: {obj.get('message')}")
            meta = obj.get("metadata") or {}
            version = meta.get("resourceVersion") or version
            if kind == "BOOKMARK":
                continue
            with self._lock:
                if kind == "DELETED":
                    self._store.drop(obj)
                else:
                    self._store.put(obj)
        return version


class ClusterWatch:
    """Nodes and non-terminal pods, watch-fed (see the module docstring); ``get`` has :class:`ClusterPods`'s shape."""

    def __init__(self, kube: _Watcher) -> None:
        self.nodes = WatchedKind(kube, "v1", "Node", trim_node, store=NodeItems)
        self.pods = WatchedKind(kube, "v1", "Pod", trim_pod, field_selector=NON_TERMINAL, store=PodItems)

    def start(self) -> None:
        """Start both watches (their first LISTs run in their own threads); returns at once."""
        self.nodes.start()
        self.pods.start()

    def get(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        self.start()
        return self.nodes.items(), self.pods.items()

    def max_gpus_per_node(self) -> dict[str, int] | None:
        """The fit check's GPU inventory (:func:`vlm_operator.inventory.max_gpus_per_node`) from the watched nodes, or
        None while their first LIST has not completed (or was refused): the caller lists them itself."""
        self.start()
        if not self.nodes.synced():
            return None
        found: dict[str, int] = self.nodes.read(lambda s: s.max_gpus())
        return found

    def free_gpus(
        self, pod_spec: Mapping[str, Any], owner: tuple[str, str] | None = None
    ) -> tuple[dict[str, int], list[dict[str, Any]]]:
        """:func:`vlm_operator.rollout.free_gpus` over the watched nodes and pods, in O(eligible nodes), and the
        non-terminal pods of the VLMDeployment ``owner`` (namespace, name), from the same snapshot of the pods."""
        self.start()
        resource = rollout.gpu_resource(pod_spec)
        eligible: list[tuple[str, int]] = self.nodes.read(lambda s: s.eligible(pod_spec, resource))

        def snapshot(s: PodItems) -> tuple[dict[str, int], list[dict[str, Any]]]:
            own = s.by_owner.get(owner) if owner is not None else []
            return free_from(eligible, s.usage, resource), own

        return self.pods.read(snapshot)

    def stop(self) -> None:
        self.nodes.stop()
        self.pods.stop()

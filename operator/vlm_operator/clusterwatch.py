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
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from kubernetes.client.exceptions import ApiException

_log = logging.getLogger(__name__)

NON_TERMINAL = "status.phase!=Succeeded,status.phase!=Failed"
PAGE = 500
RETRY_FORBIDDEN_S = 60.0
GPU_PREFIX = "nvidia.com/"


class _Watcher(Protocol):
    def list_page(
        self, api_version: str, kind: str, field_selector: str | None, limit: int, cont: str | None
    ) -> dict[str, Any]: ...

    def watch(
        self, api_version: str, kind: str, field_selector: str | None, resource_version: str, timeout_s: int = ...
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
    """Pure: what the free-GPU count reads of a pod (:func:`vlm_operator.rollout.free_gpus`)."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    return {
        "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace")},
        "spec": {
            "nodeName": spec.get("nodeName"),
            "containers": [_gpu_resources(c) for c in spec.get("containers") or []],
            "initContainers": [_gpu_resources(c) for c in spec.get("initContainers") or []],
        },
        "status": {"phase": (pod.get("status") or {}).get("phase")},
    }


def trim_node(node: Mapping[str, Any]) -> dict[str, Any]:
    """Pure: what the free-GPU count reads of a node (labels, taints, cordon, allocatable)."""
    meta, spec = node.get("metadata") or {}, node.get("spec") or {}
    return {
        "metadata": {"name": meta.get("name"), "labels": meta.get("labels") or {}},
        "spec": {"unschedulable": spec.get("unschedulable"), "taints": spec.get("taints") or []},
        "status": {"allocatable": (node.get("status") or {}).get("allocatable") or {}},
    }


class WatchedKind:
    """One kind, cluster-wide, listed once and then kept current by a watch in a daemon thread."""

    def __init__(
        self,
        kube: _Watcher,
        api_version: str,
        kind: str,
        trim: Callable[[Mapping[str, Any]], dict[str, Any]],
        field_selector: str | None = None,
        backoff_s: float = 1.0,
    ) -> None:
        self.kube, self.api_version, self.kind, self.trim = kube, api_version, kind, trim
        self.field_selector, self.backoff_s = field_selector, backoff_s
        self._items: dict[str, dict[str, Any]] = {}
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

    def items(self, timeout_s: float = 60.0) -> list[dict[str, Any]]:
        """The current trimmed objects; waits for the first LIST. Raises the API's 403 (and a timeout)."""
        self.start()
        if not self._ready.wait(timeout_s):
            raise TimeoutError(f"the first LIST of {self.kind}s took longer than {timeout_s:.0f}s")
        if self._error is not None:
            raise self._error
        with self._lock:
            return list(self._items.values())

    def _list(self) -> str:
        items: dict[str, dict[str, Any]] = {}
        cont: str | None = None
        while True:
            page = self.kube.list_page(self.api_version, self.kind, self.field_selector, PAGE, cont)
            for obj in page.get("items") or []:
                items[obj["metadata"]["uid"]] = self.trim(obj)
            meta = page.get("metadata") or {}
            cont = meta.get("continue")
            if not cont:
                break
        with self._lock:
            self._items = items
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
        for event in self.kube.watch(self.api_version, self.kind, self.field_selector, version):
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
                    self._items.pop(str(meta.get("uid")), None)
                else:
                    self._items[meta["uid"]] = self.trim(obj)
        return version


class ClusterWatch:
    """Nodes and non-terminal pods, watch-fed (see the module docstring); ``get`` has :class:`ClusterPods`'s shape."""

    def __init__(self, kube: _Watcher) -> None:
        self.nodes = WatchedKind(kube, "v1", "Node", trim_node)
        self.pods = WatchedKind(kube, "v1", "Pod", trim_pod, field_selector=NON_TERMINAL)

    def get(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        self.nodes.start()
        self.pods.start()
        return self.nodes.items(), self.pods.items()

    def stop(self) -> None:
        self.nodes.stop()
        self.pods.stop()

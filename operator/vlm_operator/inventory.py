"""The cluster's GPU inventory as the fit check sees it: per GFD product, the most allocatable GPUs one node has.

The admission webhook and the reconciler read the same cached inventory, so a spec's recommended fixes are the same
in the admission message and in status, and neither recommends a tensor-parallel width no node can hold. It is read
from the operator's node watch where it runs; otherwise it is listed at most once per ``ttl_s`` (one Node list
per half minute, not one per reconcile), and a failed list keeps the last answer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from vlm_operator import gpus

PRODUCT_LABEL = "nvidia.com/gpu.product"


class _Lister(Protocol):
    def list(self, api_version: str, kind: str, namespace: str | None, label_selector: str | None = None) -> Any: ...


def mig_key(product: str, profile: str) -> str:
    """The inventory key of a MIG slice: ``NVIDIA-A100-SXM4-80GB:3g.40gb``."""
    return f"{product}:{profile}"


def _int(raw: Any) -> int:
    try:
        return int(raw or 0)
    except (TypeError, ValueError):
        return 0


def max_gpus_per_node(nodes: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Pure: GFD product name -> the largest ``allocatable[nvidia.com/gpu]`` among the nodes carrying it, and
    ``product:profile`` -> the largest ``allocatable[nvidia.com/mig-<profile>]`` (MIG, mixed strategy)."""
    most: dict[str, int] = {}
    for node in nodes:
        product = (node.get("metadata", {}).get("labels") or {}).get(PRODUCT_LABEL)
        if not product:
            continue
        allocatable = (node.get("status") or {}).get("allocatable") or {}
        most[product] = max(most.get(product, 0), _int(allocatable.get("nvidia.com/gpu")))
        for key, raw in allocatable.items():
            if key.startswith(gpus.MIG_RESOURCE_PREFIX):
                k = mig_key(product, key.removeprefix(gpus.MIG_RESOURCE_PREFIX))
                most[k] = max(most.get(k, 0), _int(raw))
    return most


class GPUInventory:
    """The inventory, read from ``watched`` when it answers (the operator's node watch: no request at all), else
    listed at most once per ``ttl_s``. One thread lists at a time; while it does, the others use the last answer
    (with none yet, they wait for it): a rollout of 1,000 objects made a LIST of every GPU node in up to ten threads
    at once each time the answer expired, 15% of the operator's CPU in a profile."""

    def __init__(
        self,
        ttl_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        watched: Callable[[], dict[str, int] | None] | None = None,
    ) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        #: the watch-fed inventory, or None while it cannot answer
        self.watched = watched
        self._value: dict[str, int] | None = None
        self._at = 0.0
        self._lock = threading.Lock()
        self._listing = threading.Lock()

    def get(self, kube: _Lister) -> dict[str, int]:
        if self.watched is not None:
            try:
                found = self.watched()
            except Exception:  # a refused or broken watch: the LIST below says what the rights allow
                found = None
            if found is not None:
                return found
        with self._lock:
            fresh, last = self._fresh(), self._value
        if fresh is not None:
            return fresh
        # with an answer to fall back on, a thread that finds another listing uses that answer; with none, it waits
        if not self._listing.acquire(blocking=last is None):
            return dict(last or {})
        try:
            with self._lock:  # listed by another thread while this one waited
                fresh = self._fresh()
            if fresh is not None:
                return fresh
            try:
                value = max_gpus_per_node(kube.list("v1", "Node", None, PRODUCT_LABEL))
            except Exception:  # the inventory only sharpens the fit check; never fail a reconcile or an admission
                with self._lock:
                    return dict(self._value or {})
            with self._lock:
                self._value, self._at = value, self.clock()
            return dict(value)
        finally:
            self._listing.release()

    def _fresh(self) -> dict[str, int] | None:
        """A copy of the listed answer while it is younger than ``ttl_s`` (call under ``_lock``), else None."""
        if self._value is not None and self.clock() - self._at < self.ttl_s:
            return dict(self._value)
        return None


#: the process-wide inventory the webhook and the reconciler share
SHARED = GPUInventory()

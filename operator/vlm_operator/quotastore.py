"""The cluster's ResourceQuotas from one watch, shared by the rollout, the autoscaler and admission.

The rollout weighs a surge against the namespace's GPU quota on every reconcile while it runs, and the admission
webhook checks the quota on every create and update (:mod:`vlm_operator.quota`, pure, does the arithmetic). Each
used to LIST the namespace's ResourceQuotas: 400 LISTs in a rollout of 100 objects. Here they are listed once,
cluster-wide (quotas are few), then kept current by a watch (:class:`vlm_operator.clusterwatch.WatchedKind`), each
trimmed to what the arithmetic reads (name, namespace, ``spec.hard``, ``status.hard``, ``status.used``), and indexed by
namespace. A quota's ``used`` is as fresh as the last watch event, which is as fresh as a LIST made a moment earlier
could be; the API server's own quota admission stays the hard limit (two creates can still race for one GPU).

Where the watch is not allowed (a namespaced install: RBAC grants ResourceQuotas in the watched namespaces only, so a
cluster-wide LIST answers 403), where the first LIST takes longer than :data:`FIRST_LIST_S`, or with
``VLM_OPERATOR_CLUSTER_WATCH=0``, each call lists the namespace's quotas as before. A 403 is tried again after
:data:`vlm_operator.clusterwatch.RETRY_FORBIDDEN_S`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException

from vlm_operator import clusterwatch

_log = logging.getLogger(__name__)

#: How long a caller waits for the first cluster-wide LIST before it lists its namespace instead.
FIRST_LIST_S = 10.0


def trim_quota(q: Mapping[str, Any]) -> dict[str, Any]:
    """Pure: what :mod:`vlm_operator.quota` reads of a ResourceQuota."""
    meta, spec, status = q.get("metadata") or {}, q.get("spec") or {}, q.get("status") or {}
    out: dict[str, Any] = {
        "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace")},
        "spec": {"hard": dict(spec.get("hard") or {})},
        "status": {},
    }
    for key in ("hard", "used"):
        if status.get(key) is not None:
            out["status"][key] = dict(status[key])
    return out


class QuotaItems(clusterwatch.Items):
    """ResourceQuotas by namespace."""

    def __init__(self, trim: clusterwatch.Trim) -> None:
        super().__init__(trim)
        self.by_namespace: dict[str, dict[str, dict[str, Any]]] = {}

    def changed(self, uid: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        if old is not None:
            ns = str(old["metadata"].get("namespace"))
            found = self.by_namespace.get(ns, {})
            found.pop(uid, None)
            if not found:
                self.by_namespace.pop(ns, None)
        if new is not None:
            self.by_namespace.setdefault(str(new["metadata"].get("namespace")), {})[uid] = new

    def of(self, namespace: str) -> list[dict[str, Any]]:
        return sorted(self.by_namespace.get(namespace, {}).values(), key=lambda q: str(q["metadata"]["name"]))


class QuotaStore:
    """``list(kube, namespace)``: the namespace's ResourceQuotas, from the shared watch when it runs (see the module
    docstring), else by a LIST. Raises what a LIST raises (callers treat an unreadable quota as no verdict)."""

    def __init__(self, watch: bool = True, first_list_s: float = FIRST_LIST_S) -> None:
        self.watch, self.first_list_s = watch, first_list_s
        self._watched: clusterwatch.WatchedKind | None = None
        self._lock = threading.Lock()
        self._fallback_logged = False

    def list(self, kube: Any, namespace: str) -> list[dict[str, Any]]:
        if self.watch and hasattr(kube, "watch") and hasattr(kube, "list_page"):
            with self._lock:
                if self._watched is None:
                    self._watched = clusterwatch.WatchedKind(kube, "v1", "ResourceQuota", trim_quota, store=QuotaItems)
                watched = self._watched
            try:
                found: list[dict[str, Any]] = watched.read(lambda s: s.of(namespace), self.first_list_s)
                return found
            except ApiException as exc:
                if exc.status != 403:
                    raise
                self._note_fallback("cluster-wide ResourceQuotas are not readable with this install's rights (403)")
            except TimeoutError as exc:
                self._note_fallback(str(exc))
        items: list[dict[str, Any]] = kube.list("v1", "ResourceQuota", namespace)
        return items

    def _note_fallback(self, why: str) -> None:
        if not self._fallback_logged:
            _log.info(f"{why}: ResourceQuotas are listed per namespace on each check")
        self._fallback_logged = True

    def stop(self) -> None:
        with self._lock:
            if self._watched is not None:
                self._watched.stop()
            self._watched = None


#: the process-wide store (the operator's reconciles, autoscaler loops and admission handlers share it)
SHARED = QuotaStore()

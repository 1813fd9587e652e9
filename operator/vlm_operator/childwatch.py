"""The operator's own children (pods, Deployments, Services, PodDisruptionBudgets) by owner, fed by watches of its own.

Each kind is listed once and then watched (:class:`vlm_operator.clusterwatch.WatchedKind`: pages of 500, a watch that
resumes from its last resourceVersion, a new LIST after 410 Gone or a failure), with the operator's label selector,
cluster-wide or in each watched namespace. Every object is kept as the compact copy the reconciler reads
(:mod:`vlm_operator.trim`), by (namespace, owner label), and each change is handed to a callback that decides whether
the owner needs a reconcile (:func:`vlm_operator.handlers.child_event`).

Why not kopf's indexes and event handlers, as before: kopf runs its whole per-object machinery for every watch event
of every kind it watches (a memory per object, cause detection, handler state, the handler's keyword arguments, a
log record per handler run; kopf 1.45.2, ``kopf/_core/reactor/processing.py``), and the operator's children bring
about four times the events of the VLMDeployments themselves: in the 100-object benchmark's rollout, each object's
pods, Deployment and PodDisruptionBudget made about 14, 6 and 3 events against 8 of the object. Here an event costs
its decoding, a compact copy and a dict update.

A reconcile reads an index only once its first LIST is complete in every scope (:meth:`ChildWatches.indexes`); until
then the reconciler reads the children from the API server, as it does without an index.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from vlm_operator import trim
from vlm_operator.clusterwatch import Items, Trim, WatchedKind, _Watcher
from vlm_operator.render import objects

_log = logging.getLogger(__name__)

Key = tuple[str, str]
#: ``(kind, event type, owner key, name, old compact copy or None, new compact copy or None)``; a LIST that replaces
#: the store after the first (410 Gone, a failure) reports what it added, changed or dropped the same way.
Notify = Callable[[str, str, Key, str, dict[str, Any] | None, dict[str, Any] | None], None]

#: (index name, apiVersion, kind, compact copy): the indexes a reconcile reads, by the names kopf's indexes had.
KINDS: tuple[tuple[str, str, str, Trim], ...] = (
    ("vlmd_pods", "v1", "Pod", trim.pod),
    ("vlmd_deployments", "apps/v1", "Deployment", trim.deployment),
    ("vlmd_services", "v1", "Service", trim.hashed),
    ("vlmd_pdbs", "policy/v1", "PodDisruptionBudget", trim.hashed),
)


class OwnedItems(Items):
    """The compact copies of one kind by uid, and by (namespace, owner label); changes go to ``notify``."""

    def __init__(self, trim_fn: Trim, kind: str, notify: Notify | None) -> None:
        super().__init__(trim_fn)
        self.kind, self.notify = kind, notify
        self.owned: dict[Key, dict[str, dict[str, Any]]] = {}
        self._where: dict[str, tuple[Key, str]] = {}  # uid -> (owner key, name)
        self.quiet = True  # a LIST being built reports nothing (see :meth:`listed`)

    def put(self, obj: Mapping[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        owner = (meta.get("labels") or {}).get(objects.LABEL_OWNER)
        namespace, uid, name = meta.get("namespace"), str(meta.get("uid") or ""), str(meta.get("name") or "")
        if not owner or not namespace or not uid:
            return  # not a child of a VLMDeployment (another kind of the operator's, with the same label)
        new = self.trim(obj)
        old = self.objects.get(uid)
        self.objects[uid] = new
        key = (str(namespace), str(owner))
        self._where[uid] = (key, name)
        self.owned.setdefault(key, {})[uid] = new
        if not self.quiet and self.notify is not None:
            self.notify(self.kind, "MODIFIED" if old is not None else "ADDED", key, name, old, new)

    def drop(self, obj: Mapping[str, Any]) -> None:
        uid = str((obj.get("metadata") or {}).get("uid"))
        old = self.objects.pop(uid, None)
        where = self._where.pop(uid, None)
        if old is None or where is None:
            return
        key, name = where
        siblings = self.owned.get(key)
        if siblings is not None:
            siblings.pop(uid, None)
            if not siblings:
                del self.owned[key]
        if not self.quiet and self.notify is not None:
            self.notify(self.kind, "DELETED", key, name, old, None)

    def get(self, key: Key) -> list[dict[str, Any]]:
        return list(self.owned.get(key, {}).values())

    def listed(self, previous: Items | None) -> None:
        """This store, built by a LIST, replaced ``previous``: from now on changes are reported; after a first LIST
        nothing is (the VLMDeployments' own listing queues every object), after a later one each difference is."""
        self.quiet = False
        if not isinstance(previous, OwnedItems) or self.notify is None:
            return
        for uid, (key, name) in previous._where.items():
            old, new = previous.objects.get(uid), self.objects.get(uid)
            if new is None:
                self.notify(self.kind, "DELETED", key, name, old, None)
            elif new != old:
                self.notify(self.kind, "MODIFIED", key, name, old, new)
        for uid, (key, name) in self._where.items():
            if uid not in previous._where:
                self.notify(self.kind, "ADDED", key, name, None, self.objects[uid])


class OwnedIndex:
    """What a reconcile reads of one kind: ``get((namespace, owner), default)``, the compact copies of that owner's
    children of this kind (as kopf's index did), from one consistent snapshot of every scope."""

    def __init__(self, watches: Sequence[WatchedKind]) -> None:
        self.watches = watches

    def synced(self) -> bool:
        return all(w.synced() for w in self.watches)

    def get(self, key: Key, default: Any = None) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for w in self.watches:
            found.extend(w.read(lambda store: store.get(key)))
        return found if found or default is None else default


class ChildWatches:
    """One :class:`WatchedKind` per kind of :data:`KINDS` and scope (each of ``namespaces``, or the whole cluster)."""

    def __init__(
        self, kube: _Watcher, label_selector: str, namespaces: Sequence[str] = (), notify: Notify | None = None
    ) -> None:
        scopes: list[str | None] = list(namespaces) or [None]
        self.indexes_by_name: dict[str, OwnedIndex] = {}
        for name, api_version, kind, trim_fn in KINDS:

            def store(t: Trim, kind: str = kind) -> Items:
                return OwnedItems(t, kind, notify)

            watches = [
                WatchedKind(kube, api_version, kind, trim_fn, label_selector=label_selector, namespace=ns, store=store)
                for ns in scopes
            ]
            self.indexes_by_name[name] = OwnedIndex(watches)

    def start(self) -> None:
        for index in self.indexes_by_name.values():
            for w in index.watches:
                w.start()

    def stop(self) -> None:
        for index in self.indexes_by_name.values():
            for w in index.watches:
                w.stop()

    def indexes(self) -> dict[str, OwnedIndex]:
        """The indexes whose first LIST is complete in every scope (a reconcile reads the others from the API)."""
        return {name: index for name, index in self.indexes_by_name.items() if index.synced()}

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
from vlm_operator.clusterwatch import ByOwner, Items, OwnerKey, Trim, WatchedKind, _Watcher
from vlm_operator.render import objects

_log = logging.getLogger(__name__)

Key = OwnerKey
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


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


class OwnedItems(Items):
    """The compact copies of one kind by uid, and by (namespace, owner label) (:class:`ByOwner`, read from the event's
    labels: the compact copies keep none); changes go to ``notify``."""

    def __init__(self, trim_fn: Trim, kind: str, notify: Notify | None) -> None:
        super().__init__(trim_fn)
        self.kind, self.notify = kind, notify
        self.by_owner = ByOwner()
        self.quiet = True  # a LIST being built reports nothing (see :meth:`listed`)

    def _report(self, type_: str, key: Key, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        if not self.quiet and self.notify is not None:
            self.notify(self.kind, type_, key, _name(new or old or {}), old, new)

    def put(self, obj: Mapping[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        owner = (meta.get("labels") or {}).get(objects.LABEL_OWNER)
        namespace, uid = meta.get("namespace"), str(meta.get("uid") or "")
        if not owner or not namespace or not uid:
            return  # not a child of a VLMDeployment (another kind of the operator's, with the same label)
        new = self.trim(obj)
        old = self.objects.get(uid)
        self.objects[uid] = new
        key = (str(namespace), str(owner))
        self.by_owner.put(uid, key, new)
        self._report("MODIFIED" if old is not None else "ADDED", key, old, new)

    def drop(self, obj: Mapping[str, Any]) -> None:
        uid = str((obj.get("metadata") or {}).get("uid"))
        old = self.objects.pop(uid, None)
        key = self.by_owner.discard(uid)
        if old is not None and key is not None:
            self._report("DELETED", key, old, None)

    def get(self, key: Key) -> list[dict[str, Any]]:
        return self.by_owner.get(key)

    def listed(self, previous: Items | None) -> None:
        """This store, built by a LIST, replaced ``previous``: from now on changes are reported; after a first LIST
        nothing is (the VLMDeployments' own listing queues every object), after a later one each difference is."""
        self.quiet = False
        if not isinstance(previous, OwnedItems):
            return
        for uid, key in previous.by_owner.keys.items():
            old, new = previous.objects.get(uid), self.objects.get(uid)
            if new is None:
                self._report("DELETED", key, old, None)
            elif new != old:
                self._report("MODIFIED", key, old, new)
        for uid, key in self.by_owner.keys.items():
            if uid not in previous.by_owner.keys:
                self._report("ADDED", key, None, self.objects[uid])


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

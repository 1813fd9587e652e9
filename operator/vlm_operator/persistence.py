"""Where kopf keeps its own bookkeeping for VLMDeployments: in this process's memory, not in the objects.

kopf's default storages write two things into every object it handles: the handlers' progress and the "last-handled
configuration" (the diff base that tells a spec change from a status change). Each is a PATCH of the object after
every create and update, and each PATCH wakes every watcher of the object again. The reconcile is level-based and
idempotent (:mod:`vlm_operator.reconcile`), so none of it needs to survive a restart:

- after a restart (or a failover to a standby replica) the memory is empty, every object is seen as created, and the
  create/resume handler (the same function as update) reconciles it once, as a resume would;
- a retry after a ``kopf.TemporaryError`` still works: kopf wakes itself with a "touch" annotation, which this storage
  keeps writing, only then (kopf/_core/actions/application.py, ``apply``: sleep, then ``progress_storage.touch``);
- objects written by an earlier version keep their annotations until their next spec change; their old diff base
  is still read, so an upgrade does not look like a spec change.

The interfaces are kopf's ``ProgressStorage`` and ``DiffBaseStorage`` (kopf/_cogs/configs/progress.py and
diffbase.py, kopf 1.45): ``fetch``/``store``/``purge`` act on the ``patch`` kopf sends afterwards; leaving it empty is
what saves the request.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any, cast

import kopf


def _uid(body: kopf.Body) -> str:
    return str(body.get("metadata", {}).get("uid") or "")


class MemoryProgressStorage(kopf.AnnotationsProgressStorage):
    """Handler progress (retries, delays, success) per object uid and handler id, in memory."""

    def __init__(self, *, prefix: str) -> None:
        super().__init__(prefix=prefix)
        self._records: dict[tuple[str, str], kopf.ProgressRecord] = {}
        self._lock = threading.Lock()

    def fetch(self, *, key: kopf.HandlerId, body: kopf.Body) -> kopf.ProgressRecord | None:
        with self._lock:
            found = self._records.get((_uid(body), key))
        return dict(found) if found is not None else None  # type: ignore[return-value]

    def store(self, *, key: kopf.HandlerId, record: kopf.ProgressRecord, body: kopf.Body, patch: kopf.Patch) -> None:
        with self._lock:
            self._records[(_uid(body), key)] = dict(record)  # type: ignore[assignment]

    def purge(self, *, key: kopf.HandlerId, body: kopf.Body, patch: kopf.Patch) -> None:
        with self._lock:
            self._records.pop((_uid(body), key), None)
        # progress an earlier version stored in an annotation is removed (the only case that adds to the patch)
        super().purge(key=key, body=body, patch=patch)

    def clear(self, *, essence: kopf.BodyEssence) -> kopf.BodyEssence:
        """The essence less the annotations under this storage's prefix, as kopf's ``AnnotationsProgressStorage``
        makes it, without its deep copy of the whole essence first, on every watch event of every kind (kopf 1.45.2,
        kopf/_cogs/configs/progress.py, ``ProgressStorage.clear``). The operator's own children carry annotations
        under the same prefix (their spec hashes), so most events have some to drop: the result shares everything
        but the metadata and annotations mappings with ``essence``. Nothing mutates an essence (kopf only diffs and
        stores them)."""
        meta = essence.get("metadata") or {}
        annotations = meta.get("annotations") or {}
        mine = f"{self.prefix}/"
        if not any(key.startswith(mine) for key in annotations):
            return essence
        kept = {k: v for k, v in annotations.items() if not k.startswith(mine)}
        new_meta = {k: v for k, v in meta.items() if k != "annotations"}
        if kept:
            new_meta["annotations"] = kept
        out: Any = {k: v for k, v in essence.items() if k != "metadata"}
        if new_meta:
            out["metadata"] = new_meta
        return cast(kopf.BodyEssence, out)

    def forget(self, uid: str) -> None:
        with self._lock:
            for k in [k for k in self._records if k[0] == uid]:
                del self._records[k]

    def __len__(self) -> int:
        return len(self._records)


class MemoryDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """The last-handled essence of each object (spec, labels, annotations; never status), in memory."""

    def __init__(
        self, *, prefix: str, key: str, share_spec_of: Iterable[str] = (), essence_free: Iterable[str] = ()
    ) -> None:
        super().__init__(prefix=prefix, key=key)
        #: kinds whose essence keeps a reference to the event's spec instead of a copy (:meth:`build`)
        self.share_spec_of = frozenset(share_spec_of)
        #: kinds with no kopf changing, timer or daemon handler: nothing reads their essence (:meth:`build`)
        self.essence_free = frozenset(essence_free)
        self._bases: dict[str, kopf.BodyEssence] = {}
        self._lock = threading.Lock()

    def build(self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None) -> kopf.BodyEssence:
        """kopf's essence of ``body``, built from a copy without what the essence drops anyway.

        kopf builds the essence of every watch event of every kind it watches (pods and Deployments too), and its
        ``DiffBaseStorage.build`` deep-copies the whole body first, status and ``metadata.managedFields`` included,
        only to delete them (kopf 1.45.2, kopf/_cogs/configs/diffbase.py): the largest single cost of the operator's
        Python time on a 100-object benchmark (docs/performance.md). The same method runs here on the body less its
        status and with only the labels and annotations of its metadata, which is all it keeps; with extra fields
        (a handler that watches a status field) it runs on the whole body.

        For the kinds in ``share_spec_of`` (those with no kopf create/update/resume/delete handler: kopf only compares
        their essences and never stores one) the spec is not copied either: the essence refers to the event's own
        spec, which nothing mutates (kopf's bodies are read-only views of the decoded event).

        For the kinds in ``essence_free`` (the children the operator only indexes or watches with ``on.event``) the
        essence is empty: kopf builds, fetches and diffs the essences of every event of every kind it watches, but
        reads the diff only for changing handlers and to reset daemons' idle timers (kopf 1.45.2,
        kopf/_core/reactor/processing.py, ``_detect_causes``), and these kinds have neither."""
        fields = list(extra_fields or [])
        if fields:
            return super().build(body=body, extra_fields=fields)
        if body.get("kind") in self.essence_free:
            return cast(kopf.BodyEssence, {})
        meta = body.get("metadata") or {}
        kept_meta = {k: meta[k] for k in ("labels", "annotations") if k in meta}
        share = body.get("kind") in self.share_spec_of
        dropped = ("status", "metadata", "spec") if share else ("status", "metadata")
        slim = {k: v for k, v in body.items() if k not in dropped}
        slim_body: Any = {**slim, "metadata": kept_meta}  # a RawBody (kopf types it as a TypedDict)
        essence = super().build(body=kopf.Body(slim_body))
        if share and "spec" in body:
            essence["spec"] = body["spec"]
        return essence

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        if body.get("kind") in self.essence_free:
            return cast(kopf.BodyEssence, {})
        with self._lock:
            found = self._bases.get(_uid(body))
        if found is not None:
            return found
        return super().fetch(body=body)  # what an earlier version stored in the object, if anything

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        with self._lock:
            self._bases[_uid(body)] = essence

    def forget(self, uid: str) -> None:
        with self._lock:
            self._bases.pop(uid, None)

    def __len__(self) -> int:
        return len(self._bases)


class MemoryPersistence:
    """Both storages, installed in kopf's settings by :meth:`install`; :meth:`forget` drops a deleted object."""

    def __init__(self, prefix: str, share_spec_of: Iterable[str] = (), essence_free: Iterable[str] = ()) -> None:
        self.progress = MemoryProgressStorage(prefix=prefix)
        self.diffbase = MemoryDiffBaseStorage(
            prefix=prefix, key="last-handled", share_spec_of=share_spec_of, essence_free=essence_free
        )

    def install(self, settings: kopf.OperatorSettings) -> None:
        settings.persistence.progress_storage = self.progress
        settings.persistence.diffbase_storage = self.diffbase

    def forget(self, uid: str) -> None:
        self.progress.forget(uid)
        self.diffbase.forget(uid)

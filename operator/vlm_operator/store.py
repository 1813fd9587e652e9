"""The newest known copy of each object of one kind, fed by a watch and by the operator's own reads and writes.

A watch-fed cache lags the API server: under a burst its events arrive seconds after the change, and a reconcile that
read a cache entry older than its own last write would compute a status from a state it already replaced (Ready,
then not Ready again). So besides the watch, :meth:`Latest.offer` takes the bodies the operator itself got back from
the API server (the response of a status PATCH or an apply, a fresh GET), and :meth:`Latest.get` serves whichever
copy is newer.

"Newer" compares ``metadata.resourceVersion`` as numbers. The API server derives it from etcd's revision, which only
grows (k8s.io/apiserver, pkg/storage/etcd3, ``APIObjectVersioner.ObjectResourceVersion`` parses it with
``strconv.ParseUint``), but API clients are told to treat it as opaque: where a version does not parse as an integer
the store trusts the watch alone and ignores the offered copy.

Only the watch adds an object (and removes a deleted one): an offered copy of an object the store does not hold is
ignored, so a response that arrives after the watch reported the deletion cannot bring the object back.
``metadata.managedFields`` is dropped from every kept copy: nothing reads it.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Mapping
from typing import Any


def version(body: Mapping[str, Any] | None) -> int | None:
    """``metadata.resourceVersion`` as an integer, or None where it is missing or not a number."""
    if not body:
        return None
    rv = (body.get("metadata") or {}).get("resourceVersion")
    try:
        return int(rv) if rv is not None else None
    except (TypeError, ValueError):
        return None


def compact(body: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``body`` without ``metadata.managedFields`` (shallow: the nested values are shared, so callers never
    mutate what they get)."""
    out = dict(body)
    meta = out.get("metadata")
    if isinstance(meta, Mapping) and "managedFields" in meta:
        out["metadata"] = {k: v for k, v in meta.items() if k != "managedFields"}
    return out


class Latest:
    """Thread-safe: kopf's event loop feeds it, reconciles in worker threads read it and offer their results."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bodies: dict[Hashable, dict[str, Any]] = {}

    def seen(self, key: Hashable, body: Mapping[str, Any], deleted: bool = False) -> None:
        """A watch event of ``key``. The watch's copy replaces the kept one unless that one is provably newer (an
        offered response the watch has not caught up with)."""
        with self._lock:
            if deleted:
                self._bodies.pop(key, None)
                return
            kept = self._bodies.get(key)
            new_rv, kept_rv = version(body), version(kept)
            if kept is not None and new_rv is not None and kept_rv is not None and kept_rv > new_rv:
                return
            self._bodies[key] = compact(body)

    def offer(self, key: Hashable, body: Mapping[str, Any] | None) -> None:
        """A copy the operator read or got back from a write; kept only when it is provably newer than what is kept
        and the watch has seen this key (an object the watch does not know yet is left to the watch)."""
        rv = version(body)
        if body is None or rv is None:
            return
        with self._lock:
            kept = self._bodies.get(key)
            kept_rv = version(kept)
            if kept is None or kept_rv is None or rv <= kept_rv:
                return
            self._bodies[key] = compact(body)

    def get(self, key: Hashable) -> dict[str, Any] | None:
        with self._lock:
            return self._bodies.get(key)

    def known(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._bodies

    def forget(self, key: Hashable) -> None:
        with self._lock:
            self._bodies.pop(key, None)

"""The newest-known-copy store (vlm_operator/store.py) and the reconciler's Known (reconcile.Known)."""

from __future__ import annotations

from typing import Any

from vlm_operator import store
from vlm_operator.reconcile import Known


def obj(rv: str | None, **status: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "m", "namespace": "ns", "managedFields": [{"manager": "x"}]}
    if rv is not None:
        meta["resourceVersion"] = rv
    return {"metadata": meta, "status": status}


def test_the_watch_adds_replaces_and_deletes() -> None:
    s = store.Latest()
    s.seen("k", obj("5", a=1))
    s.seen("k", obj("6", a=2))
    assert s.get("k") == {"metadata": {"name": "m", "namespace": "ns", "resourceVersion": "6"}, "status": {"a": 2}}
    s.seen("k", obj("7"), deleted=True)
    assert s.get("k") is None and not s.known("k")


def test_an_offered_copy_newer_than_the_watch_wins_until_the_watch_catches_up() -> None:
    s = store.Latest()
    s.seen("k", obj("5", ready=False))
    s.offer("k", obj("9", ready=True))  # this process's status PATCH came back at version 9
    s.seen("k", obj("7", ready=False))  # the watch still brings older events
    assert s.get("k")["status"] == {"ready": True}  # type: ignore[index]
    s.seen("k", obj("9", ready=True))
    s.seen("k", obj("12", ready=True, more=1))  # newer than anything offered: the watch's copy
    assert s.get("k")["status"] == {"ready": True, "more": 1}  # type: ignore[index]


def test_an_offer_never_adds_an_object_or_moves_it_back() -> None:
    s = store.Latest()
    s.offer("k", obj("9"))
    assert s.get("k") is None  # only the watch adds (a late response cannot bring back a deleted object)
    s.seen("k", obj("10", x=1))
    s.offer("k", obj("8", x=0))
    assert s.get("k")["status"] == {"x": 1}  # type: ignore[index]


def test_versions_that_are_not_numbers_leave_the_watch_in_charge() -> None:
    s = store.Latest()
    s.seen("k", obj("abc", x=1))
    s.offer("k", obj("99", x=2))
    assert s.get("k")["status"] == {"x": 1}  # type: ignore[index]
    s.seen("k", obj("12", x=3))
    s.offer("k", obj("zz", x=4))
    assert s.get("k")["status"] == {"x": 3}  # type: ignore[index]


def test_known_overlays_the_deployment_this_process_applied_until_the_index_has_it() -> None:
    known = Known()
    key = ("ns", "m")
    assert known.child("Deployment", key, None) is None
    known.applied("Deployment", key, obj("20", hash="new"))
    assert known.child("Deployment", key, None)["status"] == {"hash": "new"}  # type: ignore[index]  # index not there yet
    assert known.child("Deployment", key, obj("15", hash="old"))["status"] == {"hash": "new"}  # type: ignore[index]
    assert known.child("Deployment", key, obj("21", hash="newer"))["status"] == {"hash": "newer"}  # type: ignore[index]
    assert known.child("Deployment", key, None) is None  # caught up once: the applied copy is dropped
    known.applied("Deployment", key, obj("30"))
    known.child_deleted("Deployment", *key)
    assert known.child("Deployment", key, None) is None

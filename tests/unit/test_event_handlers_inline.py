"""Watch-event handlers run in kopf's event loop, not behind reconciles in kopf's sync-handler executor.

During a rollout every thread of kopf's executor waits on API calls; a sync event handler waited for one of them, and
meanwhile each object's watch events (decoded bodies) piled up in kopf's per-object backlog: memory and latency that
grew with the number of objects (docs/performance.md, "Operator RSS"). These tests go through kopf's own invocation
(``kopf._core.actions.invocation.invoke``) with that executor saturated.
"""

from __future__ import annotations

import asyncio
from typing import Any

import kopf

from tests.kopf_invoke import invoke_with_kopf_executor_busy
from vlm_operator import handlers
from vlm_operator.render import objects
from vlm_operator.settings import Settings


def _event_handlers() -> dict[str, Any]:
    registry = handlers.register(Settings(webhook=False), kopf.OperatorRegistry())
    return {h.id: h.fn for h in registry._watching.get_all_handlers() if h.id in ("vlmd_event", "child_changed")}


def test_both_event_handlers_are_registered_as_coroutines() -> None:
    found = _event_handlers()
    assert set(found) == {"vlmd_event", "child_changed"}
    assert all(asyncio.iscoroutinefunction(fn) for fn in found.values())


def _asked(fn: Any, kwargs: dict[str, Any]) -> list[tuple[Any, float]]:
    """What ``fn`` (run through kopf with its executor saturated) asked the work queue for."""
    asked: list[tuple[Any, float]] = []
    original = handlers.QUEUE.add
    handlers.QUEUE.add = lambda key, delay_s=0.0, settle_max_s=None: asked.append((key, delay_s))  # type: ignore[method-assign]
    try:
        invoke_with_kopf_executor_busy(fn, kwargs)
    finally:
        handlers.QUEUE.add = original  # type: ignore[method-assign]
    return asked


def _vlmd(
    generation: int, rv: str, status: dict[str, Any] | None = None, model: str = "x", **annotations: str
) -> dict[str, Any]:
    meta = {"namespace": "ns-inline", "name": "m-inline", "uid": "u", "generation": generation, "resourceVersion": rv}
    if annotations:
        meta["annotations"] = dict(annotations)
    return {"metadata": meta, "spec": {"model": model}, **({"status": status} if status else {})}


def test_a_vlmdeployment_event_is_handled_while_kopf_threads_are_busy() -> None:
    fn = _event_handlers()["vlmd_event"]
    key = ("ns-inline", "m-inline")
    try:
        created = {"type": "ADDED", "uid": "u", "namespace": key[0], "name": key[1], "body": _vlmd(1, "10")}
        assert _asked(fn, created) == [(key, 0.0)]  # a new object: reconciled at once
        assert key in handlers.RESYNC._keys
        assert handlers.KNOWN.objects.get(key) is not None
        # a status-only change (what the operator itself writes) asks for nothing; a spec change does
        status_only = {**created, "type": "MODIFIED", "body": _vlmd(1, "11", {"observedGeneration": 1})}
        assert _asked(fn, status_only) == []
        # another kopf operator's bookkeeping in an annotation (kopf ignores those too) asks for nothing
        other_kopf = {"noop.vlmops.io/kopf-managed": "yes", "noop.vlmops.io/last-handled": "{}"}
        bookkeeping = {**created, "type": "MODIFIED", "body": _vlmd(1, "12", **other_kopf)}
        assert _asked(fn, bookkeeping) == []
        changed = {**created, "type": "MODIFIED", "body": _vlmd(2, "13", model="y", **other_kopf)}
        assert _asked(fn, changed) == [(key, 0.0)]
        labelled = {**created, "type": "MODIFIED", "body": _vlmd(2, "14", model="y", team="a", **other_kopf)}
        assert _asked(fn, labelled) == [(key, 0.0)]  # a user's annotation: reconciled (it may change the render)
        # listed again (the operator restarted its watch): reconciled even though nothing changed
        assert _asked(fn, {**changed, "type": None}) == [(key, 0.0)]
        deleted = {**changed, "type": "DELETED"}
        assert _asked(fn, deleted) == []
        assert handlers.KNOWN.objects.get(key) is None and key not in handlers.RESYNC._keys
    finally:
        handlers.RESYNC.discard(key)
        handlers.KNOWN.forget(*key)
        handlers._SPEC_RUN.discard(key)


def test_a_child_event_asks_for_its_owners_reconcile_while_kopf_threads_are_busy() -> None:
    fn = _event_handlers()["child_changed"]
    body = {"metadata": {"namespace": "ns", "labels": {objects.LABEL_OWNER: "m"}}}
    # within the child window: a burst of a pod's events becomes one reconcile
    assert _asked(fn, {"body": body}) == [(("ns", "m"), handlers.CHILD_WINDOW_SECONDS)]


def test_the_index_functions_run_in_kopfs_event_loop() -> None:
    from kopf._core.actions.invocation import is_async_fn

    registry = handlers.register(Settings(webhook=False), kopf.OperatorRegistry())
    indexers = {h.id: h.fn for h in registry._indexing.get_all_handlers()}
    assert set(indexers) == {"vlmd_pods", "vlmd_deployments", "vlmd_services", "vlmd_pdbs"}
    assert all(is_async_fn(fn) for fn in indexers.values())  # what kopf itself asks before it picks a thread


def test_a_pod_event_asks_for_its_owners_reconcile_through_the_pod_index() -> None:
    registry = handlers.register(Settings(webhook=False), kopf.OperatorRegistry())
    watched = {(h.id, h.selector.any_name if h.selector else None) for h in registry._watching.get_all_handlers()}
    assert ("child_changed", "deployments") in watched
    assert ("child_changed", "pods") not in watched  # no event handler per pod event
    pods = next(h.fn for h in registry._indexing.get_all_handlers() if h.id == "vlmd_pods")
    body = kopf.Body({"metadata": {"namespace": "ns", "name": "p", "labels": {objects.LABEL_OWNER: "m"}}})
    asked = _asked(pods, {"namespace": "ns", "labels": body["metadata"]["labels"], "body": body})
    assert asked == [(("ns", "m"), handlers.CHILD_WINDOW_SECONDS)]


def test_kopfs_success_line_per_event_is_dropped_and_everything_else_kept() -> None:
    import logging

    quiet = handlers.QuietPerEventSuccess(handlers.PER_EVENT_IDS)

    def rec(level: int, msg: str) -> logging.LogRecord:
        return logging.LogRecord("kopf.objects", level, __file__, 1, msg, None, None)

    assert not quiet.filter(rec(logging.INFO, "Handler 'vlmd_event' succeeded."))
    assert not quiet.filter(rec(logging.INFO, "Webhook 'validate' succeeded."))
    assert not quiet.filter(rec(logging.INFO, "Indexer 'vlmd_pods' succeeded."))
    assert quiet.filter(rec(logging.INFO, "Timer 'multimodal_readiness' succeeded."))  # not per event: kept
    assert quiet.filter(rec(logging.ERROR, "Handler 'vlmd_event' failed with an exception. Will retry."))
    assert quiet.filter(rec(logging.INFO, "multimodal probe of pod p: passed"))
    handlers.quiet_kopf_success_lines()
    handlers.quiet_kopf_success_lines()
    installed = [f for f in logging.getLogger("kopf.objects").filters if isinstance(f, handlers.QuietPerEventSuccess)]
    assert len(installed) == 1


def test_a_services_or_pdbs_own_status_change_asks_for_no_reconcile_an_edit_or_a_deletion_does() -> None:
    from vlm_operator import reconcile

    fn = _event_handlers()["child_changed"]
    key = ("PodDisruptionBudget", "ns-pdb", "m")
    reconcile._APPLIED[key] = "h1"
    try:

        def pdb(hash_: str | None) -> dict[str, Any]:
            ann = {objects.ANN_OBJECT_HASH: hash_} if hash_ else {}
            meta = {"namespace": "ns-pdb", "name": "m", "labels": {objects.LABEL_OWNER: "m"}, "annotations": ann}
            return {"kind": "PodDisruptionBudget", "metadata": meta, "status": {"currentHealthy": 1}}

        assert _asked(fn, {"body": pdb("h1"), "type": "MODIFIED"}) == []  # the disruption controller's status write
        owner = (("ns-pdb", "m"), handlers.CHILD_WINDOW_SECONDS)
        assert _asked(fn, {"body": pdb(None), "type": "MODIFIED"}) == [owner]  # someone dropped the hash
        assert _asked(fn, {"body": pdb("h1"), "type": "DELETED"}) == [owner]
    finally:
        reconcile._APPLIED.pop(key, None)

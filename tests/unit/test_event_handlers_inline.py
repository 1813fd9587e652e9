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
from vlm_operator.settings import Settings


def _event_handlers() -> dict[str, Any]:
    registry = handlers.register(Settings(webhook=False), kopf.OperatorRegistry())
    return {h.id: h.fn for h in registry._watching.get_all_handlers() if h.id == "vlmd_event"}


def test_the_event_handler_is_registered_as_a_coroutine() -> None:
    found = _event_handlers()
    assert set(found) == {"vlmd_event"}
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


def test_kopfs_success_line_per_event_is_dropped_and_everything_else_kept() -> None:
    import logging

    quiet = handlers.QuietPerEventSuccess(handlers.PER_EVENT_IDS)

    def rec(level: int, msg: str) -> logging.LogRecord:
        return logging.LogRecord("kopf.objects", level, __file__, 1, msg, None, None)

    assert not quiet.filter(rec(logging.INFO, "Handler 'vlmd_event' succeeded."))
    assert not quiet.filter(rec(logging.INFO, "Webhook 'validate' succeeded."))
    assert not quiet.filter(rec(logging.INFO, "Handler 'batch_child_changed' succeeded."))
    assert quiet.filter(rec(logging.INFO, "Timer 'multimodal_readiness' succeeded."))  # not per event: kept
    assert quiet.filter(rec(logging.ERROR, "Handler 'vlmd_event' failed with an exception. Will retry."))
    assert quiet.filter(rec(logging.INFO, "multimodal probe of pod p: passed"))
    handlers.quiet_kopf_success_lines()
    handlers.quiet_kopf_success_lines()
    installed = [f for f in logging.getLogger("kopf.objects").filters if isinstance(f, handlers.QuietPerEventSuccess)]
    assert len(installed) == 1

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


def test_a_vlmdeployment_event_is_handled_while_kopf_threads_are_busy() -> None:
    fn = _event_handlers()["vlmd_event"]
    key = ("ns-inline", "m-inline")
    try:
        invoke_with_kopf_executor_busy(fn, {"type": "ADDED", "uid": "u", "namespace": key[0], "name": key[1]})
        assert key in handlers.RESYNC._keys
    finally:
        handlers.RESYNC.discard(key)


def test_a_child_event_asks_for_its_owners_reconcile_while_kopf_threads_are_busy() -> None:
    fn = _event_handlers()["child_changed"]
    asked: list[Any] = []
    original = handlers.CHILDREN.ask
    handlers.CHILDREN.ask = asked.append  # type: ignore[method-assign]
    try:
        body = {"metadata": {"namespace": "ns", "labels": {objects.LABEL_OWNER: "m"}}}
        invoke_with_kopf_executor_busy(fn, {"body": body})
    finally:
        handlers.CHILDREN.ask = original  # type: ignore[method-assign]
    assert asked == [("ns", "m")]

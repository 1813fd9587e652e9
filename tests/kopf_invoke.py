"""Invoking a handler through kopf's own invocation path while kopf's sync-handler executor is saturated, as it is
when every thread holds a reconcile that waits on the API server (shared by unit tests; test modules do not import
each other)."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf
from kopf._core.actions import invocation


def invoke_with_kopf_executor_busy(fn: Any, kwargs: dict[str, Any]) -> Any:
    """Invoke ``fn`` as kopf does (``kopf._core.actions.invocation.invoke``) while every thread of kopf's executor
    is blocked; a handler that needs one of those threads times out after 5 s."""
    settings = kopf.OperatorSettings()
    busy = ThreadPoolExecutor(max_workers=2)
    settings.execution.executor = busy
    release = threading.Event()
    try:
        for _ in range(2):
            busy.submit(release.wait, 30)

        async def call() -> Any:
            return await asyncio.wait_for(invocation.invoke(fn, settings=settings, kwargs=kwargs), timeout=5)

        return asyncio.run(call())
    finally:
        release.set()
        busy.shutdown(wait=True)
